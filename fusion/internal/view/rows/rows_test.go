package rows

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/fustor/fustor/fusion/internal/errs"
	"github.com/fustor/fustor/fusion/internal/view/viewapi"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	rt       = viewapi.OriginRealtime
	snap     = viewapi.OriginSnapshot
	audit    = viewapi.OriginAudit
	onDemand = viewapi.OriginOnDemand
)

// clock is a settable test clock.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newStore(t testing.TB, o Options) (*Store, *clock) {
	t.Helper()
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	o.Now = c.now
	return New(nil, o), c
}

func put(key string, index uint64, kv ...string) viewapi.Row {
	f := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		f[kv[i]] = kv[i+1]
	}
	return viewapi.Row{Key: key, Fields: f, Index: index}
}

func del(key string, index uint64) viewapi.Row {
	return viewapi.Row{Key: key, Delete: true, Index: index}
}

// step is one operation of a table test.
type step struct {
	origin viewapi.Origin
	rows   []viewapi.Row
	// ctl, when set, is a walk boundary: "snapshot-start", "snapshot-end", "snapshot-failed",
	// "audit-start", "audit-end", "audit-failed".
	ctl string
}

func run(s *Store, steps []step) {
	for _, st := range steps {
		switch st.ctl {
		case "snapshot-start":
			s.SnapshotStart("leader")
		case "snapshot-end":
			s.SnapshotEnd("leader", false)
		case "snapshot-failed":
			s.SnapshotEnd("leader", true)
		case "audit-start":
			s.AuditStart()
		case "audit-end":
			s.AuditEnd(false)
		case "audit-failed":
			s.AuditEnd(true)
		default:
			s.Apply(st.origin, st.rows)
		}
	}
}

// state renders the store as "key=index:v,..." in key order (field "v" only), for comparisons.
func state(t testing.TB, s *Store) string {
	t.Helper()
	page, err := s.List(context.Background(), "", "", viewapi.RowFilter{}, viewapi.Limit{Entries: 1 << 20, Bytes: 1 << 30})
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	var b []string
	for _, r := range page.Rows {
		b = append(b, fmt.Sprintf("%s=%d:%s", r.Key, r.Index, r.Fields["v"]))
	}
	return strings.Join(b, ",")
}

func TestArbitration(t *testing.T) {
	tests := []struct {
		name        string
		steps       []step
		want        string
		stale       uint64
		blindDelete uint64
	}{
		{name: "realtime newer replaces", steps: []step{
			{origin: rt, rows: []viewapi.Row{put("a", 1, "v", "x"), put("a", 2, "v", "y")}},
		}, want: "a=2:y"},
		{name: "realtime older is stale", steps: []step{
			{origin: rt, rows: []viewapi.Row{put("a", 5, "v", "x"), put("a", 3, "v", "y")}},
		}, want: "a=5:x", stale: 1},
		{name: "realtime tie applies", steps: []step{
			{origin: rt, rows: []viewapi.Row{put("a", 5, "v", "x"), put("a", 5, "v", "y")}},
		}, want: "a=5:y"},
		{name: "delete leaves a tombstone a lagging snapshot cannot pass", steps: []step{
			{origin: rt, rows: []viewapi.Row{put("a", 1, "v", "x"), del("a", 4)}},
			{origin: snap, rows: []viewapi.Row{put("a", 3, "v", "old")}},
			{origin: snap, rows: []viewapi.Row{put("a", 4, "v", "tie")}},
		}, want: "", stale: 2},
		{name: "snapshot newer than the tombstone recreates", steps: []step{
			{origin: rt, rows: []viewapi.Row{del("a", 4)}},
			{origin: snap, rows: []viewapi.Row{put("a", 5, "v", "new")}},
		}, want: "a=5:new"},
		{name: "snapshot loses a tie to realtime", steps: []step{
			{origin: rt, rows: []viewapi.Row{put("a", 5, "v", "rt")}},
			{origin: snap, rows: []viewapi.Row{put("a", 5, "v", "snap")}},
		}, want: "a=5:rt", stale: 1},
		{name: "snapshot tie with a snapshot row applies", steps: []step{
			{origin: snap, rows: []viewapi.Row{put("a", 5, "v", "1"), put("a", 5, "v", "2")}},
		}, want: "a=5:2"},
		{name: "a later walk's read replaces a walk's row whatever the index", steps: []step{
			{ctl: "snapshot-start"},
			{origin: snap, rows: []viewapi.Row{put("a", 9, "v", "snap")}},
			{ctl: "snapshot-end"},
			{ctl: "audit-start"},
			{origin: audit, rows: []viewapi.Row{put("a", 4, "v", "audit")}},
		}, want: "a=4:audit"},
		{name: "a walk open since before does not move a walk's row back", steps: []step{
			{ctl: "audit-start"}, // left open: its end was never sent
			{ctl: "snapshot-start"},
			{origin: snap, rows: []viewapi.Row{put("a", 9, "v", "snap")}},
			{origin: audit, rows: []viewapi.Row{put("a", 4, "v", "audit")}},
		}, want: "a=9:snap", stale: 1},
		{name: "the same walk's reads: the index decides", steps: []step{
			{ctl: "snapshot-start"},
			{origin: snap, rows: []viewapi.Row{put("a", 9, "v", "new"), put("a", 4, "v", "old"), put("a", 9, "v", "tie")}},
		}, want: "a=9:tie", stale: 1},
		{name: "an audit row does not move an on-demand row back", steps: []step{
			{ctl: "audit-start"},
			{origin: onDemand, rows: []viewapi.Row{put("a", 200, "v", "on-demand")}},
			{origin: audit, rows: []viewapi.Row{put("a", 100, "v", "audit")}},
			{origin: rt, rows: []viewapi.Row{put("a", 200, "v", "rt")}},
		}, want: "a=200:rt", stale: 1},
		{name: "an on-demand read replaces an earlier walk's row", steps: []step{
			{ctl: "snapshot-start"},
			{origin: snap, rows: []viewapi.Row{put("a", 9, "v", "snap")}},
			{ctl: "snapshot-end"},
			{ctl: "audit-start"},
			{origin: onDemand, rows: []viewapi.Row{put("a", 4, "v", "on-demand")}},
		}, want: "a=4:on-demand"},
		{name: "walk rows with their walk not open: the index decides", steps: []step{
			{origin: snap, rows: []viewapi.Row{put("a", 9, "v", "snap")}},
			{origin: audit, rows: []viewapi.Row{put("a", 4, "v", "audit")}},
		}, want: "a=9:snap", stale: 1},
		{name: "audit end keeps a row an open snapshot wrote during the audit", steps: []step{
			{origin: rt, rows: []viewapi.Row{put("a", 1)}},
			{ctl: "audit-start"},
			{origin: audit, rows: []viewapi.Row{put("a", 1)}},
			{ctl: "snapshot-start"},
			{origin: snap, rows: []viewapi.Row{put("b", 5, "v", "snap")}},
			{ctl: "audit-end"},
		}, want: "a=1:,b=5:snap", stale: 1},
		{name: "snapshot end keeps a row an on-demand read wrote during the walk", steps: []step{
			{origin: rt, rows: []viewapi.Row{put("a", 1), put("b", 1)}},
			{ctl: "snapshot-start"},
			{origin: snap, rows: []viewapi.Row{put("a", 1)}},
			{origin: onDemand, rows: []viewapi.Row{put("b", 2, "v", "od")}},
			{ctl: "snapshot-end"},
		}, want: "a=1:,b=2:od", stale: 1},
		{name: "realtime loses to a newer snapshot row", steps: []step{
			{origin: snap, rows: []viewapi.Row{put("a", 9, "v", "snap")}},
			{origin: rt, rows: []viewapi.Row{put("a", 8, "v", "rt")}},
		}, want: "a=9:snap", stale: 1},
		{name: "snapshot end removes what it did not report", steps: []step{
			{origin: rt, rows: []viewapi.Row{put("a", 1), put("b", 1), put("c", 1)}},
			{ctl: "snapshot-start"},
			{origin: snap, rows: []viewapi.Row{put("a", 2, "v", "s")}},
			{ctl: "snapshot-end"},
		}, want: "a=2:s", blindDelete: 2},
		{name: "snapshot end keeps rows realtime wrote during the walk", steps: []step{
			{origin: rt, rows: []viewapi.Row{put("a", 1), put("b", 1)}},
			{ctl: "snapshot-start"},
			{origin: rt, rows: []viewapi.Row{put("b", 3, "v", "rt")}},
			{origin: snap, rows: []viewapi.Row{put("a", 2)}},
			{ctl: "snapshot-end"},
		}, want: "a=2:,b=3:rt"},
		{name: "snapshot end keeps a row the walk reported but lost to realtime", steps: []step{
			{origin: rt, rows: []viewapi.Row{put("a", 9, "v", "rt")}},
			{ctl: "snapshot-start"},
			{origin: snap, rows: []viewapi.Row{put("a", 2, "v", "old")}},
			{ctl: "snapshot-end"},
		}, want: "a=9:rt", stale: 1},
		{name: "failed snapshot removes nothing", steps: []step{
			{origin: rt, rows: []viewapi.Row{put("a", 1), put("b", 1)}},
			{ctl: "snapshot-start"},
			{ctl: "snapshot-failed"},
		}, want: "a=1:,b=1:"},
		{name: "audit end removes what it did not report", steps: []step{
			{origin: snap, rows: []viewapi.Row{put("a", 1), put("b", 1)}},
			{ctl: "audit-start"},
			{origin: audit, rows: []viewapi.Row{put("b", 2)}},
			{ctl: "audit-end"},
		}, want: "b=2:", blindDelete: 1},
		{name: "snapshot rows do not count as an audit's", steps: []step{
			{origin: rt, rows: []viewapi.Row{put("a", 5), put("b", 1)}},
			{ctl: "audit-start"},
			{ctl: "snapshot-start"},
			{origin: snap, rows: []viewapi.Row{put("a", 2)}}, // stale: seen by the snapshot, not written
			{origin: audit, rows: []viewapi.Row{put("b", 2)}},
			{ctl: "audit-end"},
		}, want: "b=2:", stale: 1, blindDelete: 1},
		{name: "an end without a start removes nothing", steps: []step{
			{origin: snap, rows: []viewapi.Row{put("a", 1)}},
			{ctl: "snapshot-end"},
			{ctl: "audit-end"},
		}, want: "a=1:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := newStore(t, Options{})
			run(s, tt.steps)
			if got := state(t, s); got != tt.want {
				t.Errorf("state = %q, want %q", got, tt.want)
			}
			st := s.Stats()
			if st.Stale != tt.stale || st.BlindSpotDeletions != tt.blindDelete {
				t.Errorf("stale %d, blind-spot deletions %d; want %d, %d", st.Stale, st.BlindSpotDeletions, tt.stale, tt.blindDelete)
			}
		})
	}
}

func TestInvalidRowsAreRejectedAndCounted(t *testing.T) {
	s, _ := newStore(t, Options{MaxRows: 2, MaxKeyBytes: 8, MaxFields: 2, MaxRowBytes: 32})
	tests := []struct {
		name string
		row  viewapi.Row
		want string
	}{
		{"empty key", put("", 1), "empty key"},
		{"long key", put("123456789", 1), "key of 9 bytes is over 8"},
		{"bad utf-8 key", put("a\xffb", 1), "not UTF-8"},
		{"too many fields", put("k", 1, "a", "1", "b", "2", "c", "3"), "3 fields, over 2"},
		{"row too big", put("k", 1, "a", strings.Repeat("x", 40)), "over 32"},
		{"empty field name", put("k", 1, "", "x"), "empty name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := s.Stats().Rejected
			applied, rejected, err := s.Apply(rt, []viewapi.Row{tt.row})
			if applied != 0 || rejected != 1 || err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Apply = %d, %d, %v; want 0, 1, an error with %q", applied, rejected, err, tt.want)
			}
			if !errors.Is(err, ErrRow) || !errors.Is(err, errs.ErrInvalidArgument) {
				t.Errorf("error %v is not ErrRow of kind invalid argument", err)
			}
			if s.Stats().Rejected != before+1 {
				t.Errorf("rejected count %d, want %d", s.Stats().Rejected, before+1)
			}
		})
	}
	// The bound on rows refuses new keys, never updates of held ones.
	applied, rejected, err := s.Apply(rt, []viewapi.Row{put("a", 1), put("b", 1), put("c", 1), put("a", 2)})
	if applied != 3 || rejected != 1 || err == nil || !strings.Contains(err.Error(), "max_nodes") {
		t.Fatalf("Apply over max rows = %d, %d, %v; want 3, 1, a max_nodes error", applied, rejected, err)
	}
	if got := state(t, s); got != "a=2:,b=1:" {
		t.Errorf("state = %q", got)
	}
}

func TestTombstonesExpireAndAreBounded(t *testing.T) {
	s, c := newStore(t, Options{TombstoneTTL: time.Minute, MaxRows: 3})
	s.Apply(rt, []viewapi.Row{del("a", 5)})
	c.t = c.t.Add(30 * time.Second)
	s.Apply(rt, []viewapi.Row{del("b", 5)})
	if got := s.Stats().Tombstones; got != 2 {
		t.Fatalf("tombstones = %d, want 2", got)
	}
	c.t = c.t.Add(31 * time.Second)
	s.Tick()
	if got := s.Stats().Tombstones; got != 1 {
		t.Fatalf("tombstones after a's TTL = %d, want 1", got)
	}
	// a's tombstone gone: a lagging snapshot brings it back; b's still guards.
	s.Apply(snap, []viewapi.Row{put("a", 1), put("b", 1)})
	if got := state(t, s); got != "a=1:" {
		t.Fatalf("state = %q, want a=1:", got)
	}
	for i := range 10 {
		s.Apply(rt, []viewapi.Row{del(fmt.Sprintf("k%d", i), 1)})
	}
	if got := s.Stats().Tombstones; got > 3 {
		t.Errorf("tombstones = %d, over max rows 3", got)
	}
}

func TestListPagesPrefixAndFilter(t *testing.T) {
	s, _ := newStore(t, Options{})
	var rows []viewapi.Row
	for i := range 3000 {
		team := "red"
		if i%3 == 0 {
			team = "blue"
		}
		rows = append(rows, put(fmt.Sprintf("u%05d", i), 1, "team", team))
	}
	rows = append(rows, put("a", 1), put("z", 1))
	s.Apply(snap, rows)
	ctx := context.Background()
	collect := func(prefix string, f viewapi.RowFilter, lim viewapi.Limit) (keys []string, pages int) {
		after := ""
		for {
			p, err := s.List(ctx, prefix, after, f, lim)
			if err != nil {
				t.Fatalf("list: %v", err)
			}
			pages++
			for _, r := range p.Rows {
				keys = append(keys, r.Key)
			}
			if p.Next == "" {
				return keys, pages
			}
			if p.Next <= after {
				t.Fatalf("next %q does not advance past %q", p.Next, after)
			}
			after = p.Next
		}
	}
	keys, pages := collect("u", viewapi.RowFilter{}, viewapi.Limit{Entries: 700, Bytes: 1 << 30})
	if len(keys) != 3000 || pages != 5 || keys[0] != "u00000" || keys[2999] != "u02999" {
		t.Fatalf("prefix u: %d keys in %d pages (%v...)", len(keys), pages, keys[:1])
	}
	for i := 1; i < len(keys); i++ {
		if keys[i-1] >= keys[i] {
			t.Fatalf("keys out of order at %d: %q %q", i, keys[i-1], keys[i])
		}
	}
	keys, _ = collect("", viewapi.RowFilter{Field: "team", Value: "blue"}, viewapi.Limit{Entries: 333, Bytes: 1 << 30})
	if len(keys) != 1000 {
		t.Errorf("team=blue: %d keys, want 1000", len(keys))
	}
	keys, _ = collect("", viewapi.RowFilter{}, viewapi.Limit{Entries: 10000, Bytes: 2000})
	if len(keys) != 3002 || keys[0] != "a" || keys[3001] != "z" {
		t.Errorf("byte-bounded pages: %d keys", len(keys))
	}
	if p, _ := s.List(ctx, "nope", "", viewapi.RowFilter{}, viewapi.Limit{Entries: 10, Bytes: 1 << 20}); len(p.Rows) != 0 || p.Next != "" {
		t.Errorf("unknown prefix: %+v", p)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.List(cancelled, "", "", viewapi.RowFilter{}, viewapi.Limit{Entries: 10, Bytes: 1 << 20}); !errors.Is(err, context.Canceled) {
		t.Errorf("list on a cancelled context: %v", err)
	}
	if _, err := s.Get("missing"); !errors.Is(err, errs.ErrNotFound) {
		t.Errorf("Get(missing) = %v, want not found", err)
	}
	if r, err := s.Get("u00003"); err != nil || r.Fields["team"] != "blue" || r.Origin != snap || r.Index != 1 {
		t.Errorf("Get(u00003) = %+v, %v", r, err)
	}
}

func TestFilterThatMatchesLittleIsBoundedPerPage(t *testing.T) {
	s, _ := newStore(t, Options{})
	rows := make([]viewapi.Row, MaxScanPerPage+10)
	for i := range rows {
		rows[i] = put(fmt.Sprintf("k%07d", i), 1, "v", "no")
	}
	rows[len(rows)-1].Fields["v"] = "yes"
	s.Apply(snap, rows)
	f := viewapi.RowFilter{Field: "v", Value: "yes"}
	p, err := s.List(context.Background(), "", "", f, viewapi.Limit{Entries: 10, Bytes: 1 << 20})
	if err != nil || len(p.Rows) != 0 || p.Next == "" {
		t.Fatalf("first page = %d rows, next %q, %v; want none and a next token", len(p.Rows), p.Next, err)
	}
	p, err = s.List(context.Background(), "", p.Next, f, viewapi.Limit{Entries: 10, Bytes: 1 << 20})
	if err != nil || len(p.Rows) != 1 || p.Next != "" {
		t.Fatalf("second page = %+v, %v; want the one match", p, err)
	}
}

func TestCheckpointRoundTrip(t *testing.T) {
	s, c := newStore(t, Options{})
	s.Apply(snap, []viewapi.Row{put("a", 1, "v", "x", "w", "y"), put("b", 2)})
	s.Apply(rt, []viewapi.Row{del("c", 7), put("d", 3, "v", "")})
	var buf bytes.Buffer
	info, err := s.WriteCheckpoint(&buf)
	if err != nil || info.Nodes != 3 || info.Bytes != buf.Len() {
		t.Fatalf("WriteCheckpoint = %+v, %v", info, err)
	}
	r, _ := newStore(t, Options{})
	r.Apply(rt, []viewapi.Row{put("gone", 1)})
	got, err := r.LoadCheckpoint(buf.Bytes())
	if err != nil || got.Nodes != 3 || !got.WrittenAt.Equal(c.t) {
		t.Fatalf("LoadCheckpoint = %+v, %v", got, err)
	}
	if a, b := state(t, s), state(t, r); a != b {
		t.Errorf("restored %q, want %q", b, a)
	}
	if st := r.Stats(); st.Tombstones != 1 || st.LastIndex != 7 || st.Applied != s.Stats().Applied {
		t.Errorf("restored stats %+v", st)
	}
	// The tombstone still guards against a lagging snapshot.
	r.Apply(snap, []viewapi.Row{put("c", 6)})
	if _, err := r.Get("c"); err == nil {
		t.Error("a snapshot row older than a restored tombstone was applied")
	}
	full := buf.Bytes()
	bad := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"another magic", append([]byte("FUSTORVW"), full[8:]...)},
		{"truncated", full[:len(full)-3]},
		{"flipped byte", func() []byte { b := bytes.Clone(full); b[12] ^= 1; return b }()},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			before := state(t, r)
			if _, err := r.LoadCheckpoint(tt.data); !errors.Is(err, ErrCheckpoint) {
				t.Errorf("LoadCheckpoint = %v, want ErrCheckpoint", err)
			}
			if state(t, r) != before {
				t.Error("a refused checkpoint changed the store")
			}
		})
	}
	small, _ := newStore(t, Options{MaxRows: 2})
	if _, err := small.LoadCheckpoint(full); !errors.Is(err, ErrCheckpoint) || !strings.Contains(err.Error(), "max_nodes") {
		t.Errorf("load over max rows = %v", err)
	}
}

func TestResetChangesTheInstance(t *testing.T) {
	s, _ := newStore(t, Options{})
	s.Apply(rt, []viewapi.Row{put("a", 1)})
	inst := s.Instance()
	s.Reset()
	if s.Instance() == inst || s.Len() != 0 || s.Stats().Tombstones != 0 {
		t.Errorf("after reset: instance %d (was %d), %d rows", s.Instance(), inst, s.Len())
	}
}

func TestIndexStaysSortedThroughSplitsAndRemovals(t *testing.T) {
	var x index
	keys := map[string]bool{}
	for i := range 5000 {
		k := fmt.Sprintf("%04d", (i*7919)%5000)
		x.insert(k)
		keys[k] = true
	}
	for i := 0; i < 5000; i += 3 {
		k := fmt.Sprintf("%04d", i)
		x.remove(k)
		delete(keys, k)
	}
	var got []string
	x.ascend("", false, func(k string) bool { got = append(got, k); return true })
	if len(got) != len(keys) || x.n != len(keys) {
		t.Fatalf("%d keys listed, n %d, want %d", len(got), x.n, len(keys))
	}
	for i := 1; i < len(got); i++ {
		if got[i-1] >= got[i] {
			t.Fatalf("out of order at %d", i)
		}
	}
	var from []string
	x.ascend("2500", true, func(k string) bool { from = append(from, k); return len(from) < 2 })
	if len(from) != 2 || from[0] <= "2500" {
		t.Errorf("seek above 2500: %v", from)
	}
}

func TestMessagesQuoteAtMost64BytesOfAKey(t *testing.T) {
	for _, k := range []string{"short", strings.Repeat("x", 200), strings.Repeat("é", 100)} {
		q := quote(k)
		if len(k) <= 64 && q != fmt.Sprintf("%q", k) {
			t.Errorf("quote(%q) = %s", k, q)
		}
		if len(k) > 64 && (len(q) > 64+5 || !strings.HasSuffix(q, `"...`) || strings.Contains(q, `\x`)) {
			t.Errorf("quote of %d bytes = %s", len(k), q)
		}
	}
}
