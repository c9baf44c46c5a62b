package sql

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"

	"github.com/fustor/fustor/agent/internal/source"
	"github.com/fustor/fustor/sdk/pgtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// newSource returns a source on srv's table with cfg's settings, closed when the test ends.
func newSource(t *testing.T, srv *pgtest.Server, cfg Config) *Source {
	t.Helper()
	if cfg.DSN == "" {
		cfg.DSN = srv.DSN()
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 20 * time.Millisecond
	}
	if cfg.BackoffMax == 0 {
		cfg.BackoffMax = 200 * time.Millisecond
	}
	if cfg.QueryTimeout == 0 {
		cfg.QueryTimeout = 5 * time.Second
	}
	s, err := New(zaptest.NewLogger(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// list runs a snapshot and returns its batches.
func list(t *testing.T, s *Source) [][]source.Row {
	t.Helper()
	var out [][]source.Row
	if _, err := s.SnapshotRows(context.Background(), source.OriginSnapshot, func(rs []source.Row) error {
		out = append(out, rs)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// follower runs FollowRows on a goroutine, collecting what it emits, until the test ends.
type follower struct {
	mu   sync.Mutex
	rows []source.Row
	err  error
}

func follow(t *testing.T, s *Source, from uint64, batch int) *follower {
	t.Helper()
	f := &follower{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		err := s.FollowRows(ctx, from, batch, func(rs []source.Row) error {
			if len(rs) > batch {
				return fmt.Errorf("batch of %d rows, want at most %d", len(rs), batch)
			}
			f.mu.Lock()
			f.rows = append(f.rows, rs...)
			f.mu.Unlock()
			return nil
		})
		f.mu.Lock()
		f.err = err
		f.mu.Unlock()
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		if f.err != nil {
			t.Errorf("FollowRows: %v", f.err)
		}
	})
	return f
}

// wait polls until the follower holds n rows and returns them.
func (f *follower) wait(t *testing.T, n int) []source.Row {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		f.mu.Lock()
		got := slices.Clone(f.rows)
		f.mu.Unlock()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("follow: %d rows after 30s, want %d: %+v", len(got), n, got)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSnapshotPaginates: 10,000 rows listed in pages of 500, every row once, in key order, with
// its fields and its cursor as index; each page is one bounded statement.
func TestSnapshotPaginates(t *testing.T) {
	srv := pgtest.Start(t)
	srv.Exec(`CREATE TABLE items (id bigint PRIMARY KEY, name text, version bigint NOT NULL)`,
		`INSERT INTO items SELECT g, 'item-' || g, g * 10 FROM generate_series(1, 10000) g`)
	s := newSource(t, srv, Config{Table: "items", KeyColumns: []string{"id"}, CursorColumn: "version", PageSize: 500})
	before := s.Counters()["sql_queries"]
	batches := list(t, s)
	if len(batches) != 20 {
		t.Errorf("%d batches, want 20 of 500", len(batches))
	}
	n := 0
	for _, b := range batches {
		if len(b) > 500 {
			t.Fatalf("a batch of %d rows, page_size 500", len(b))
		}
		for _, r := range b {
			n++
			want := source.Row{Key: strconv.Itoa(n), Index: uint64(n * 10),
				Fields: map[string]string{"id": strconv.Itoa(n), "name": "item-" + strconv.Itoa(n), "version": strconv.Itoa(n * 10)}}
			if r.Key != want.Key || r.Index != want.Index || r.Delete || !maps.Equal(r.Fields, want.Fields) {
				t.Fatalf("row %d: %+v, want %+v", n, r, want)
			}
		}
	}
	if n != 10000 {
		t.Fatalf("%d rows, want 10000", n)
	}
	// 20 full pages, one empty, and the table's description.
	if q := s.Counters()["sql_queries"] - before; q < 21 || q > 23 {
		t.Errorf("%d statements for 20 pages", q)
	}
	if got := s.Counters()["sql_rows_read"]; got != 10000 {
		t.Errorf("sql_rows_read %d", got)
	}
}

// TestFollowInCursorOrder: from LastIndex, Follow sends inserts and updates in cursor order,
// each with its new version as index, in batches of at most the pipe's size.
func TestFollowInCursorOrder(t *testing.T) {
	srv := pgtest.Start(t)
	srv.Exec(`CREATE SEQUENCE ver`,
		`CREATE TABLE items (id int PRIMARY KEY, name text, version bigint NOT NULL DEFAULT nextval('ver'))`,
		`INSERT INTO items (id, name) SELECT g, 'old-' || g FROM generate_series(1, 5) g`)
	s := newSource(t, srv, Config{Table: "items", KeyColumns: []string{"id"}, CursorColumn: "version", Columns: []string{"name"}})
	last, err := s.LastIndex(context.Background())
	if err != nil || last != 5 {
		t.Fatalf("LastIndex %d, %v; want 5", last, err)
	}
	// From the last index itself: its row comes again (>=, so that ties are never skipped).
	f := follow(t, s, last, 2)
	srv.Exec(`INSERT INTO items (id, name) VALUES (6, 'new-6'), (7, 'new-7')`)
	f.wait(t, 3)
	srv.Exec(`UPDATE items SET name = 'upd-3', version = nextval('ver') WHERE id = 3`,
		`UPDATE items SET name = 'upd-6', version = nextval('ver') WHERE id = 6`)
	got := f.wait(t, 5)
	want := []source.Row{
		{Key: "5", Index: 5, Fields: map[string]string{"name": "old-5"}},
		{Key: "6", Index: 6, Fields: map[string]string{"name": "new-6"}},
		{Key: "7", Index: 7, Fields: map[string]string{"name": "new-7"}},
		{Key: "3", Index: 8, Fields: map[string]string{"name": "upd-3"}},
		{Key: "6", Index: 9, Fields: map[string]string{"name": "upd-6"}},
	}
	if len(got) != len(want) {
		t.Fatalf("rows %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i].Key != want[i].Key || got[i].Index != want[i].Index || !maps.Equal(got[i].Fields, want[i].Fields) {
			t.Errorf("row %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	if s.Counters()["sql_polls"] == 0 || !s.Realtime() {
		t.Errorf("counters %v, realtime %v", s.Counters(), s.Realtime())
	}
}

// TestFollowTimestampTies: a timestamp cursor is ms as index; rows sharing one cursor value
// (one transaction's now()) split across batches are each sent once, and a Follow resumed at
// their index sends them again rather than skip one.
func TestFollowTimestampTies(t *testing.T) {
	srv := pgtest.Start(t)
	srv.Exec(`CREATE TABLE events (site text, n int, updated_at timestamptz NOT NULL, PRIMARY KEY (site, n))`)
	s := newSource(t, srv, Config{Table: "events", KeyColumns: []string{"site", "n"}, CursorColumn: "updated_at"})
	last, err := s.LastIndex(context.Background())
	if err != nil || last != 0 {
		t.Fatalf("LastIndex of an empty table %d, %v", last, err)
	}
	f := follow(t, s, 0, 2)
	srv.Exec(`INSERT INTO events SELECT 'a/b', g, '2026-01-02T03:04:05.678901Z' FROM generate_series(1, 5) g`)
	got := f.wait(t, 5)
	ms := uint64(time.Date(2026, 1, 2, 3, 4, 5, 678e6, time.UTC).UnixMilli())
	for i, r := range got {
		// "a/b" with "/" escaped, then the number: the parts of a composite key stay apart.
		if wantKey := "a%2Fb/" + strconv.Itoa(i+1); r.Key != wantKey || r.Index != ms {
			t.Errorf("row %d: key %q index %d, want %q %d", i, r.Key, r.Index, wantKey, ms)
		}
		if r.Fields["updated_at"] != "2026-01-02T03:04:05.678901Z" {
			t.Errorf("row %d: updated_at %q", i, r.Fields["updated_at"])
		}
	}
	if len(got) != 5 {
		t.Fatalf("%d rows, want 5 (each once): %+v", len(got), got)
	}
	again := follow(t, s, ms, 10).wait(t, 5)
	if len(again) != 5 {
		t.Fatalf("resumed at %d: %d rows, want the 5 at that index", ms, len(again))
	}
}

// TestSoftDelete: a soft-deleted row is left out of listings, and a poll sends it as a delete.
func TestSoftDelete(t *testing.T) {
	srv := pgtest.Start(t)
	srv.Exec(`CREATE TABLE users (id int PRIMARY KEY, name text, deleted boolean NOT NULL DEFAULT false, version bigint NOT NULL)`,
		`INSERT INTO users VALUES (1, 'ann', false, 1), (2, 'bob', true, 2), (3, 'cy', false, 3)`)
	s := newSource(t, srv, Config{Table: "users", KeyColumns: []string{"id"}, CursorColumn: "version", SoftDeleteColumn: "deleted"})
	var keys []string
	for _, b := range list(t, s) {
		for _, r := range b {
			keys = append(keys, r.Key)
		}
	}
	if !slices.Equal(keys, []string{"1", "3"}) {
		t.Fatalf("listed %v, want [1 3] (2 is soft-deleted)", keys)
	}
	f := follow(t, s, 4, 100)
	srv.Exec(`UPDATE users SET deleted = true, version = 4 WHERE id = 3`)
	got := f.wait(t, 1)
	if len(got) != 1 || got[0].Key != "3" || !got[0].Delete || got[0].Index != 4 {
		t.Fatalf("poll %+v, want a delete of 3 at 4", got)
	}
	if s.Counters()["sql_deletes_found"] != 1 {
		t.Errorf("counters %v", s.Counters())
	}
}

// TestAuditListsEveryRow: an audit is the complete listing, as of now: a row deleted from
// the table (no poll can see that) is absent from it, so Fusion finds it missing.
func TestAuditListsEveryRow(t *testing.T) {
	srv := pgtest.Start(t)
	srv.Exec(`CREATE TABLE items (id int PRIMARY KEY, version bigint NOT NULL)`,
		`INSERT INTO items SELECT g, g FROM generate_series(1, 7) g`,
		`DELETE FROM items WHERE id IN (2, 5)`)
	s := newSource(t, srv, Config{Table: "items", KeyColumns: []string{"id"}, CursorColumn: "version", PageSize: 2})
	var keys []string
	ws, err := s.AuditRows(context.Background(), func(rs []source.Row) error {
		for _, r := range rs {
			keys = append(keys, r.Key)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(keys, []string{"1", "3", "4", "6", "7"}) || ws.Files != 5 {
		t.Fatalf("audit listed %v (%d), want [1 3 4 6 7]", keys, ws.Files)
	}
}

// TestCompositeKeyPages: with a key of two columns the pages follow the key's order, each page
// starting after the last (text, int) pair, and no row is listed twice or skipped.
func TestCompositeKeyPages(t *testing.T) {
	srv := pgtest.Start(t)
	srv.Exec(`CREATE TABLE stock (site text, item int, qty int, version bigint NOT NULL, PRIMARY KEY (site, item))`,
		`INSERT INTO stock SELECT s, i, i * 2, i FROM unnest(ARRAY['b', 'a', 'c/d']) s, generate_series(1, 4) i`)
	s := newSource(t, srv, Config{Table: "stock", KeyColumns: []string{"site", "item"}, CursorColumn: "version", Columns: []string{"qty"}, PageSize: 3})
	var keys []string
	for _, b := range list(t, s) {
		if len(b) > 3 {
			t.Fatalf("a page of %d rows", len(b))
		}
		for _, r := range b {
			keys = append(keys, r.Key)
		}
	}
	want := []string{"a/1", "a/2", "a/3", "a/4", "b/1", "b/2", "b/3", "b/4", "c%2Fd/1", "c%2Fd/2", "c%2Fd/3", "c%2Fd/4"}
	if !slices.Equal(keys, want) {
		t.Fatalf("listed %v\nwant   %v", keys, want)
	}
}

// TestValues: how column values become fields: NULL is left out, times are RFC 3339 UTC,
// bytes that are not UTF-8 are hex, numbers and booleans as PostgreSQL writes them.
func TestValues(t *testing.T) {
	srv := pgtest.Start(t)
	srv.Exec(`CREATE TABLE v (id uuid PRIMARY KEY, at timestamp NOT NULL, d date, price numeric(10,2), ok boolean,
		f double precision, raw bytea, txt bytea, note text)`,
		`INSERT INTO v VALUES ('6f1c2b1e-4b7a-4c57-9a43-5d0b2f8f1d11', '2026-03-04 05:06:07.5', '2026-03-04', 12.50, true,
		1.5, '\xff00', convert_to('hé', 'UTF8'), NULL)`)
	s := newSource(t, srv, Config{Table: "v", KeyColumns: []string{"id"}, CursorColumn: "at"})
	b := list(t, s)
	if len(b) != 1 || len(b[0]) != 1 {
		t.Fatalf("listing %+v", b)
	}
	r := b[0][0]
	want := map[string]string{"id": "6f1c2b1e-4b7a-4c57-9a43-5d0b2f8f1d11", "at": "2026-03-04T05:06:07.5Z", "d": "2026-03-04T00:00:00Z",
		"price": "12.50", "ok": "true", "f": "1.5", "raw": `\xff00`, "txt": "hé"}
	if !maps.Equal(r.Fields, want) {
		t.Errorf("fields %v\nwant   %v", r.Fields, want)
	}
	if r.Key != want["id"] || r.Index != uint64(time.Date(2026, 3, 4, 5, 6, 7, 5e8, time.UTC).UnixMilli()) {
		t.Errorf("key %q index %d", r.Key, r.Index)
	}
}

// TestTableProblems: a missing table or column, or a cursor of a type that cannot be an index,
// is a clear error naming it, from the first statement.
func TestTableProblems(t *testing.T) {
	srv := pgtest.Start(t)
	srv.Exec(`CREATE TABLE items (id int PRIMARY KEY, label text NOT NULL, version bigint)`)
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no table", Config{Table: "nope", KeyColumns: []string{"id"}, CursorColumn: "version"}, `"nope" does not exist`},
		{"no column", Config{Table: "items", KeyColumns: []string{"id"}, CursorColumn: "version", Columns: []string{"size"}}, `no column "size"`},
		{"text cursor", Config{Table: "items", KeyColumns: []string{"id"}, CursorColumn: "label"}, `cursor column "label" is of type text`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := newSource(t, srv, tt.cfg).LastIndex(context.Background())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one with %q", err, tt.want)
			}
		})
	}
}

// TestPassword: the password may come apart from the DSN; a wrong one fails without being
// repeated in the error.
func TestPassword(t *testing.T) {
	srv := pgtest.Start(t)
	srv.Exec(`CREATE TABLE items (id int PRIMARY KEY, version bigint NOT NULL)`, `INSERT INTO items VALUES (1, 41)`)
	cfg := Config{DSN: srv.DSNWithoutPassword(), Password: pgtest.Password, Table: "items", KeyColumns: []string{"id"}, CursorColumn: "version"}
	if last, err := newSource(t, srv, cfg).LastIndex(context.Background()); err != nil || last != 41 {
		t.Fatalf("LastIndex %d, %v; want 41", last, err)
	}
	cfg.Password = "wrong-secret"
	_, err := newSource(t, srv, cfg).LastIndex(context.Background())
	if err == nil || strings.Contains(err.Error(), "wrong-secret") {
		t.Fatalf("error %v: want a failure that does not quote the password", err)
	}
}

// TestOutage: the database stops under a running Follow and a snapshot: neither fails; the
// source reports no realtime while polls fail; once it is back, Follow goes on from where it
// was and the snapshot completes.
func TestOutage(t *testing.T) {
	srv := pgtest.Start(t)
	srv.Exec(`CREATE TABLE items (id int PRIMARY KEY, version bigint NOT NULL)`, `INSERT INTO items VALUES (1, 1)`)
	s := newSource(t, srv, Config{Table: "items", KeyColumns: []string{"id"}, CursorColumn: "version", QueryTimeout: 2 * time.Second})
	f := follow(t, s, 2, 100)
	srv.Exec(`INSERT INTO items VALUES (2, 2)`)
	f.wait(t, 1)

	srv.Stop()
	deadline := time.Now().Add(30 * time.Second)
	for s.Realtime() {
		if time.Now().After(deadline) {
			t.Fatal("realtime still reported 30s into the outage")
		}
		time.Sleep(10 * time.Millisecond)
	}
	failures := s.Counters()["sql_query_failures"]
	// A snapshot started during the outage waits for the database rather than fail.
	snap := make(chan error, 1)
	var listed []string
	go func() {
		_, err := s.SnapshotRows(context.Background(), source.OriginSnapshot, func(rs []source.Row) error {
			for _, r := range rs {
				listed = append(listed, r.Key)
			}
			return nil
		})
		snap <- err
	}()
	for s.Counters()["sql_query_failures"] < failures+2 {
		if time.Now().After(deadline) {
			t.Fatal("no retries counted during the outage")
		}
		time.Sleep(10 * time.Millisecond)
	}
	srv.Restart()
	srv.Exec(`INSERT INTO items VALUES (3, 3)`)
	got := f.wait(t, 2)
	if len(got) != 2 || got[0].Key != "2" || got[1].Key != "3" {
		t.Fatalf("follow across the outage: %+v, want 2 then 3", got)
	}
	// The snapshot may resume before or after the insert.
	if err := <-snap; err != nil || !slices.Equal(listed[:min(2, len(listed))], []string{"1", "2"}) || len(listed) > 3 {
		t.Fatalf("snapshot across the outage: %v, %v", listed, err)
	}
	for !s.Realtime() {
		if time.Now().After(deadline) {
			t.Fatal("realtime not reported again after the outage")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestConfig: Validate reports what is missing; defaults fill the rest.
func TestConfig(t *testing.T) {
	err := Config{Dialect: "mysql", PageSize: -1}.Validate()
	for _, want := range []string{"dialect", "dsn is required", "table, key_columns and cursor_column", "page_size"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
	if err := (Config{DSN: "postgres://u:secret@h/db", Table: "a.b.c", KeyColumns: []string{"id"}, CursorColumn: "v"}).Validate(); err == nil ||
		!strings.Contains(err.Error(), "schema.name") {
		t.Errorf("three-part table: %v", err)
	}
	c := Config{Table: "sales.orders"}.withDefaults()
	if c.SchemaName != "sales.orders" || c.SchemaVersion != 1 || c.PageSize != 1000 || c.PollInterval != 5*time.Second {
		t.Errorf("defaults %+v", c)
	}
	uri, err := URI("postgres://u:secret@db.example:6543/app", "orders")
	if err != nil || uri != "sql://db.example:6543/app/orders" {
		t.Errorf("URI %q, %v", uri, err)
	}
}
