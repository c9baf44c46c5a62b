package sql

import (
	"context"
	dbsql "database/sql"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fustor/fustor/agent/internal/source"
	"github.com/fustor/fustor/sdk/pgtest"
)

// keysOf is the keys of a listing, in order.
func keysOf(batches [][]source.Row) []string {
	var keys []string
	for _, b := range batches {
		for _, r := range b {
			keys = append(keys, r.Key)
		}
	}
	return keys
}

// byKey is the rows of a listing or a Follow by key (the last one of a key wins).
func byKey(rows []source.Row) map[string]source.Row {
	m := map[string]source.Row{}
	for _, r := range rows {
		m[r.Key] = r
	}
	return m
}

// TestInfiniteCursor: a time cursor of infinity or -infinity is no index: LastIndex is the
// highest finite value (it used to fail for good, so realtime never started), the listing
// has such rows at index 0, counted, and Follow never polls them, so finite changes after
// them still come through.
func TestInfiniteCursor(t *testing.T) {
	for _, typ := range []string{"timestamptz", "timestamp", "date"} {
		t.Run(typ, func(t *testing.T) {
			srv := pgtest.Start(t)
			srv.Exec(`CREATE TABLE t (id int PRIMARY KEY, at `+typ+` NOT NULL)`,
				`INSERT INTO t VALUES (1, '2026-01-02'), (2, 'infinity'), (3, '-infinity')`)
			s := newSource(t, srv, Config{Table: "t", KeyColumns: []string{"id"}, CursorColumn: "at"})
			jan2 := uint64(time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC).UnixMilli())
			last, err := s.LastIndex(context.Background())
			if err != nil || last != jan2 {
				t.Fatalf("LastIndex %d, %v; want %d (the highest finite cursor)", last, err, jan2)
			}
			rows := byKey(slices.Concat(list(t, s)...))
			if len(rows) != 3 || rows["1"].Index != jan2 || rows["2"].Index != 0 || rows["3"].Index != 0 {
				t.Fatalf("listing %+v: want 3 rows, 2 and 3 at index 0", rows)
			}
			if got := s.Counters()["skipped_invalid_cursor"]; got != 2 {
				t.Errorf("skipped_invalid_cursor %d, want 2", got)
			}
			f := follow(t, s, last, 1)
			f.wait(t, 1)
			srv.Exec(`INSERT INTO t VALUES (4, '2026-01-03')`)
			got := f.wait(t, 2)
			if keys := keysOf([][]source.Row{got}); !slices.Equal(keys, []string{"1", "4"}) {
				t.Fatalf("follow %+v: want 1 then 4, never the infinite cursors", got)
			}
			if !s.Realtime() {
				t.Error("realtime not reported")
			}
		})
	}
}

// TestLastIndexFailureStopsRealtime: while LastIndex fails, the source reports no realtime.
func TestLastIndexFailureStopsRealtime(t *testing.T) {
	srv := pgtest.Start(t)
	s := newSource(t, srv, Config{Table: "missing", KeyColumns: []string{"id"}, CursorColumn: "v"})
	if _, err := s.LastIndex(context.Background()); err == nil || s.Realtime() {
		t.Fatalf("LastIndex of a missing table: %v, realtime %v; want an error and no realtime", err, s.Realtime())
	}
}

// TestNullCursorListedNeverPolled: a row whose cursor is NULL is listed at index 0, and never
// polled, not even by a Follow from 0.
func TestNullCursorListedNeverPolled(t *testing.T) {
	srv := pgtest.Start(t)
	srv.Exec(`CREATE TABLE t (id int PRIMARY KEY, v bigint)`, `INSERT INTO t VALUES (1, NULL), (2, 5)`)
	s := newSource(t, srv, Config{Table: "t", KeyColumns: []string{"id"}, CursorColumn: "v"})
	rows := byKey(slices.Concat(list(t, s)...))
	if len(rows) != 2 || rows["1"].Index != 0 || rows["2"].Index != 5 {
		t.Fatalf("listing %+v: want 1 at index 0 and 2 at 5", rows)
	}
	if last, err := s.LastIndex(context.Background()); err != nil || last != 5 {
		t.Fatalf("LastIndex %d, %v; want 5", last, err)
	}
	f := follow(t, s, 0, 10)
	f.wait(t, 1)
	srv.Exec(`INSERT INTO t VALUES (3, NULL), (4, 6)`)
	got := f.wait(t, 2)
	// The row at 6 was polled after the NULL rows were committed: had they been polled, they
	// would be there.
	if keys := keysOf([][]source.Row{got}); !slices.Equal(keys, []string{"2", "4"}) {
		t.Fatalf("follow %+v: want 2 then 4, never the NULL cursors", got)
	}
}

// TestFollowDateAndLocalTimestamp: a date cursor (ms of its midnight UTC) and a timestamp
// without time zone (its wall clock read as UTC, whatever the session's time zone) are
// polled in order, ties split across batches sent once, and a Follow resumed at an index
// sends that index's rows again.
func TestFollowDateAndLocalTimestamp(t *testing.T) {
	tests := []struct {
		typ      string
		at, next string
		ms, nms  time.Time
	}{
		{"date", "2026-01-02", "2026-01-03", time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC), time.Date(2026, 1, 3, 0, 0, 0, 0, time.UTC)},
		{"timestamp", "2026-01-02 03:04:05.5", "2026-01-02 03:04:06", time.Date(2026, 1, 2, 3, 4, 5, 5e8, time.UTC),
			time.Date(2026, 1, 2, 3, 4, 6, 0, time.UTC)},
	}
	for _, tt := range tests {
		t.Run(tt.typ, func(t *testing.T) {
			srv := pgtest.Start(t)
			srv.Exec(`CREATE TABLE t (id int PRIMARY KEY, at ` + tt.typ + ` NOT NULL)`)
			s := newSource(t, srv, Config{Table: "t", KeyColumns: []string{"id"}, CursorColumn: "at", DSN: srv.DSN() + "&timezone=America/New_York"})
			last, err := s.LastIndex(context.Background())
			if err != nil || last != 0 {
				t.Fatalf("LastIndex of an empty table %d, %v", last, err)
			}
			f := follow(t, s, last, 2)
			srv.Exec(`INSERT INTO t VALUES (1, '` + tt.at + `'), (2, '` + tt.at + `'), (3, '` + tt.at + `')`)
			f.wait(t, 3)
			srv.Exec(`INSERT INTO t VALUES (4, '` + tt.next + `')`)
			got := f.wait(t, 4)
			ms, nms := uint64(tt.ms.UnixMilli()), uint64(tt.nms.UnixMilli())
			want := []uint64{ms, ms, ms, nms}
			if len(got) != 4 {
				t.Fatalf("follow %+v: want 4 rows, each once", got)
			}
			for i, r := range got {
				if r.Key != []string{"1", "2", "3", "4"}[i] || r.Index != want[i] {
					t.Errorf("row %d: key %q index %d, want index %d", i, r.Key, r.Index, want[i])
				}
			}
			if last, err := s.LastIndex(context.Background()); err != nil || last != nms {
				t.Errorf("LastIndex %d, %v; want %d", last, err, nms)
			}
			if again := follow(t, s, ms, 10).wait(t, 4); len(again) != 4 {
				t.Errorf("resumed at %d: %+v, want the 3 rows at that index and the next", ms, again)
			}
		})
	}
}

// TestOddNames: table, schema and column names with quotes, spaces, dots and semicolons are
// quoted in every statement: listing, Follow, LastIndex and the soft-delete test.
func TestOddNames(t *testing.T) {
	srv := pgtest.Start(t)
	srv.Exec(`CREATE SCHEMA "my sch"`,
		`CREATE TABLE "my sch"."we""ird; tbl" ("i""d" int PRIMARY KEY, "na me; DROP TABLE x" text, "v.er" bigint NOT NULL, "gone?" boolean)`,
		`INSERT INTO "my sch"."we""ird; tbl" VALUES (1, 'a', 1, false), (2, 'b', 2, true)`)
	s := newSource(t, srv, Config{Table: `my sch.we"ird; tbl`, KeyColumns: []string{`i"d`}, CursorColumn: "v.er", SoftDeleteColumn: "gone?"})
	b := list(t, s)
	if len(b) != 1 || len(b[0]) != 1 {
		t.Fatalf("listing %+v: want row 1 alone (2 is soft-deleted)", b)
	}
	want := map[string]string{`i"d`: "1", "na me; DROP TABLE x": "a", "v.er": "1", "gone?": "false"}
	if r := b[0][0]; r.Key != "1" || r.Index != 1 || !maps.Equal(r.Fields, want) {
		t.Fatalf("row %+v, want fields %v", r, want)
	}
	if last, err := s.LastIndex(context.Background()); err != nil || last != 2 {
		t.Fatalf("LastIndex %d, %v; want 2", last, err)
	}
	f := follow(t, s, 1, 1)
	got := f.wait(t, 2)
	if len(got) != 2 || got[0].Key != "1" || got[1].Key != "2" || !got[1].Delete {
		t.Fatalf("follow %+v: want 1, then 2 as a delete", got)
	}
	if n := srv.Query(`SELECT count(*) FROM "my sch"."we""ird; tbl"`); strings.TrimSpace(n) != "2" {
		t.Errorf("the table holds %q rows after the run, want 2", n)
	}
}

// TestCompositeKeyEscapes: parts of a composite key holding "%" and "/" are escaped so that
// keys that differ stay apart, in listings and polls alike.
func TestCompositeKeyEscapes(t *testing.T) {
	srv := pgtest.Start(t)
	srv.Exec(`CREATE TABLE k (a text, b text, v bigint NOT NULL, PRIMARY KEY (a, b))`,
		`INSERT INTO k VALUES ('a/b', 'c', 1), ('a%2Fb', 'c', 2), ('a', 'b/c', 3), ('100%', '%', 4), ('%25', '', 5)`)
	s := newSource(t, srv, Config{Table: "k", KeyColumns: []string{"a", "b"}, CursorColumn: "v", PageSize: 2})
	want := map[string]uint64{"a%2Fb/c": 1, "a%252Fb/c": 2, "a/b%2Fc": 3, "100%25/%25": 4, "%2525/": 5}
	rows := byKey(slices.Concat(list(t, s)...))
	got := byKey(follow(t, s, 0, 2).wait(t, 5))
	for what, m := range map[string]map[string]source.Row{"listing": rows, "follow": got} {
		if len(m) != len(want) {
			t.Errorf("%s: keys %v, want %v", what, m, want)
		}
		for k, idx := range want {
			if r, ok := m[k]; !ok || r.Index != idx {
				t.Errorf("%s: key %q: %+v, want index %d", what, k, r, idx)
			}
		}
	}
}

// TestNullableKey: a table's key column that allows NULL is refused with a clear error (a NULL
// part merges keys and hides rows from pages); a view's rows with a NULL key part are left
// out of listings and polls.
func TestNullableKey(t *testing.T) {
	srv := pgtest.Start(t)
	srv.Exec(`CREATE TABLE k (a text NOT NULL, b text, v bigint NOT NULL, UNIQUE (a, b))`,
		`INSERT INTO k VALUES ('x', NULL, 1), ('x', '', 2), ('y', 'z', 3)`,
		`CREATE VIEW kv AS SELECT * FROM k`)
	_, err := newSource(t, srv, Config{Table: "k", KeyColumns: []string{"a", "b"}, CursorColumn: "v"}).LastIndex(context.Background())
	if err == nil || !strings.Contains(err.Error(), `key column "b" of table k allows NULL`) {
		t.Fatalf("error %v, want a refusal of the nullable key column b", err)
	}
	s := newSource(t, srv, Config{Table: "kv", KeyColumns: []string{"a", "b"}, CursorColumn: "v", PageSize: 1})
	if keys := keysOf(list(t, s)); !slices.Equal(keys, []string{"x/", "y/z"}) {
		t.Fatalf("view listing %v, want [x/ y/z] (the NULL key left out)", keys)
	}
	if keys := keysOf([][]source.Row{follow(t, s, 0, 1).wait(t, 2)}); !slices.Equal(keys, []string{"x/", "y/z"}) {
		t.Fatalf("view follow %v, want [x/ y/z]", keys)
	}
}

// TestByteaKeys: a bytea key that is not UTF-8 is hex, and one that is has "\" doubled, so the
// byte 0xff and the four characters \xff are two keys.
func TestByteaKeys(t *testing.T) {
	srv := pgtest.Start(t)
	srv.Exec(`CREATE TABLE kb (id bytea PRIMARY KEY, v bigint NOT NULL)`,
		`INSERT INTO kb VALUES ('\xff', 1), (convert_to('\xff', 'UTF8'), 2), ('abc', 3)`)
	s := newSource(t, srv, Config{Table: "kb", KeyColumns: []string{"id"}, CursorColumn: "v"})
	rows := byKey(slices.Concat(list(t, s)...))
	want := map[string]uint64{`\xff`: 1, `\\xff`: 2, "abc": 3}
	if len(rows) != len(want) {
		t.Fatalf("keys %v, want %v", rows, want)
	}
	for k, idx := range want {
		if rows[k].Index != idx {
			t.Errorf("key %q: %+v, want index %d", k, rows[k], idx)
		}
	}
}

// TestNonUTF8Key: in a database that stores text unchecked (SQL_ASCII), a key that is not
// UTF-8 is skipped and counted, not rewritten (which would merge it with another key), and
// neither the pages nor the polls stop at it.
func TestNonUTF8Key(t *testing.T) {
	srv := pgtest.Start(t)
	srv.Exec(`CREATE DATABASE raw ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0`)
	dsn := strings.Replace(srv.DSN(), "/"+pgtest.Database+"?", "/raw?", 1)
	db, err := dbsql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, stmt := range []string{`CREATE TABLE k (id text PRIMARY KEY, v bigint NOT NULL)`,
		`INSERT INTO k VALUES ('a', 1), (E'b\xff', 2), (E'b\xfe', 3), (E'b\xef\xbf\xbd', 4), ('c', 5)`} {
		if _, err := db.Exec(stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	s := newSource(t, srv, Config{DSN: dsn, Table: "k", KeyColumns: []string{"id"}, CursorColumn: "v", PageSize: 1})
	if keys := keysOf(list(t, s)); !slices.Equal(keys, []string{"a", "b\uFFFD", "c"}) {
		t.Fatalf("listing %q, want a, b\uFFFD (a real U+FFFD) and c", keys)
	}
	if got := s.Counters()["skipped_invalid_key"]; got != 2 {
		t.Errorf("skipped_invalid_key %d, want 2", got)
	}
	// Batches of one: the poll that reads only a skipped row must still move past it.
	got := follow(t, s, 0, 1).wait(t, 3)
	if keys := keysOf([][]source.Row{got}); !slices.Equal(keys, []string{"a", "b\uFFFD", "c"}) {
		t.Fatalf("follow %q, want a, b\uFFFD, c", keys)
	}
}
