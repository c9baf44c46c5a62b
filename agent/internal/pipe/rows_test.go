package pipe

import (
	"context"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/fustor/fustor/agent/internal/mapping"
	"github.com/fustor/fustor/agent/internal/source"
	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
)

// tableRows is a generic source listing fixed rows (the real one, source/sql, needs a
// database: its pipe runs end to end in agent/internal/app).
type tableRows struct{ rows []source.Row }

func (t tableRows) Schema() source.Schema { return source.Schema{Name: "people", Version: 2} }

func (t tableRows) SnapshotRows(_ context.Context, _ source.Origin, emit func([]source.Row) error) (source.WalkStats, error) {
	return source.WalkStats{Files: uint64(len(t.rows))}, emit(t.rows)
}

// TestGenericRowsAreMappedAndBatched: a generic pipe declares the source's schema, maps each
// row where the walk hands it on (so the snapshot's end counts what is sent), and sends
// GenericBatch batches of at most batch_size rows of that schema. drop_row sends a row that
// fails as a delete of its key (the view must not keep its older version) and never drops a
// delete: one that fails is sent without fields.
func TestGenericRowsAreMappedAndBatched(t *testing.T) {
	src := tableRows{rows: []source.Row{
		{Key: "1", Index: 10, Fields: map[string]string{"age": "0042", "name": "Ann"}},
		{Key: "2", Index: 20, Fields: map[string]string{"age": "x", "name": "Bob"}},
		{Key: "3", Index: 30, Delete: true, Fields: map[string]string{"age": "7"}},
		{Key: "4", Index: 40, Delete: true, Fields: map[string]string{"age": "y"}},
	}}
	site := "eu"
	p := NewRows(nil, Config{ID: "p", BatchSize: 1, FieldsMapping: mapping.Config{OnCastError: mapping.OnCastErrorDropRow,
		Fields: []mapping.Rule{{To: "age", Type: "int"}, {To: "user", From: "name"}, {To: "site", Value: &site}}}}, src, nil, nil)
	if p.cfg.Schema != "people" || p.cfg.SchemaVersion != 2 || p.caps != (source.Capabilities{}) {
		t.Fatalf("schema %s %d, caps %+v", p.cfg.Schema, p.cfg.SchemaVersion, p.caps)
	}
	s := &session{p: p, out: make(chan outItem, 16)}
	if !s.snapshot(context.Background()) {
		t.Fatal("snapshot failed")
	}
	close(s.out)
	var items []outItem
	for it := range s.out {
		items = append(items, it)
	}
	if len(items) != 3 || items[0].control.GetSnapshotStart() == nil || items[2].control.GetSnapshotEnd().GetRows() != 4 {
		t.Fatalf("items %+v: want start, rows, end with 4 rows", items)
	}
	var sent []*fustorv1.PushRequest
	if err := s.sendRows(items[1], func(m *fustorv1.PushRequest) error { sent = append(sent, m); return nil }); err != nil {
		t.Fatal(err)
	}
	want := []*fustorv1.GenericRow{
		{Key: "1", Index: 10, Fields: map[string]string{"age": "42", "user": "Ann", "site": "eu"}},
		{Key: "2", Index: 20, Delete: true},
		{Key: "3", Index: 30, Delete: true, Fields: map[string]string{"age": "7", "site": "eu"}},
		{Key: "4", Index: 40, Delete: true},
	}
	if len(sent) != 4 {
		t.Fatalf("%d batches, want 4 of one row", len(sent))
	}
	for i, m := range sent {
		b := m.GetBatch()
		if b.GetSchemaName() != "people" || b.GetSource() != fustorv1.MessageSource_MESSAGE_SOURCE_SNAPSHOT || b.GetIndex() != want[i].Index ||
			len(b.GetGeneric().GetRows()) != 1 || !reflect.DeepEqual(b.GetGeneric().GetRows()[0].GetFields(), want[i].Fields) ||
			b.GetGeneric().GetRows()[0].GetKey() != want[i].Key || b.GetGeneric().GetRows()[0].GetDelete() != want[i].Delete {
			t.Errorf("batch %d: %v, want rows of people %v", i, b, want[i])
		}
	}
	st := p.Status()
	if st.MappedRows != 4 || st.CastFailures != 2 || st.RowsDropped != 1 || st.EventsSent != 4 {
		t.Errorf("status %+v", st)
	}
	c := p.Progress().GetCounters()
	if c["mapping_rows"] != 4 || c["mapping_cast_failures"] != 2 || c["mapping_rows_dropped"] != 1 {
		t.Errorf("heartbeat counters %v", c)
	}
}

// TestGenericScanOfAPath: a generic schema has no paths, so a scan of anything but "/" fails
// with a clear result; "/" lists the rows as on-demand rows.
func TestGenericScanOfAPath(t *testing.T) {
	p := NewRows(nil, Config{ID: "p", BatchSize: 10}, tableRows{rows: []source.Row{{Key: "1"}}}, nil, nil)
	s := &session{p: p, out: make(chan outItem, 16)}
	s.runCommand(context.Background(), &fustorv1.Command{Id: "c1", Kind: &fustorv1.Command_Scan{Scan: &fustorv1.ScanCommand{Path: "/a"}}})
	if res := (<-s.out).control.GetCommandResult(); res.GetOk() || !strings.Contains(res.GetError(), "lists only all its rows") {
		t.Fatalf("scan /a: %v", res)
	}
	s.runCommand(context.Background(), &fustorv1.Command{Id: "c2", Kind: &fustorv1.Command_Scan{Scan: &fustorv1.ScanCommand{Path: "/"}}})
	it := <-s.out
	if it.origin != fustorv1.MessageSource_MESSAGE_SOURCE_ON_DEMAND || it.commandID != "c2" || len(it.rows) != 1 || it.rows[0].GetKey() != "1" {
		t.Fatalf("scan /: %+v", it)
	}
	if res := (<-s.out).control.GetCommandResult(); !res.GetOk() {
		t.Fatalf("scan /: %v", res)
	}
}

// TestRowBoundsAndBatchBytes: rows over Fusion's bounds never reach it — one whose key cannot be
// sent is left out, one too large is sent as a delete of its key, each counted — and batches
// are cut by bytes as well as by batch_size, so that a batch of wide rows is never too large
// for a message (it would fail, and be rebuilt from the same index, for good).
func TestRowBoundsAndBatchBytes(t *testing.T) {
	wide := strings.Repeat("w", 20_000)
	var rs []source.Row
	for i := range 1000 {
		rs = append(rs, source.Row{Key: "w" + strconv.Itoa(i), Index: uint64(i + 1), Fields: map[string]string{"text": wide}})
	}
	many := map[string]string{}
	for i := range 300 {
		many["f"+strconv.Itoa(i)] = "v"
	}
	rs = append(rs,
		source.Row{Key: "big", Index: 2000, Fields: map[string]string{"text": strings.Repeat("b", 2<<20)}},
		source.Row{Key: "many", Index: 2001, Fields: many},
		source.Row{Key: "noname", Index: 2002, Fields: map[string]string{"": "v"}},
		source.Row{Key: "", Index: 2003},
		source.Row{Key: strings.Repeat("k", 5000), Index: 2004},
		source.Row{Key: "bad\xff", Index: 2005},
		source.Row{Key: "ok", Index: 2006, Fields: map[string]string{"a": "1"}},
	)
	p := NewRows(nil, Config{ID: "p", BatchSize: 1000}, tableRows{rows: rs}, nil, nil)
	s := &session{p: p, out: make(chan outItem, 16)}
	if !s.snapshot(context.Background()) {
		t.Fatal("snapshot failed")
	}
	close(s.out)
	var items []outItem
	for it := range s.out {
		items = append(items, it)
	}
	if len(items) != 3 || items[2].control.GetSnapshotEnd().GetRows() != 1004 {
		t.Fatalf("%d items, end %v: want start, rows, end with 1004 rows (3 keys left out)", len(items), items[len(items)-1].control)
	}
	var got []*fustorv1.GenericRow
	batches := 0
	if err := s.sendRows(items[1], func(m *fustorv1.PushRequest) error {
		batches++
		if n := proto.Size(m); n > maxBatchBytes+64<<10 {
			t.Errorf("batch %d: %d bytes, over %d", batches, n, maxBatchBytes)
		}
		got = append(got, m.GetBatch().GetGeneric().GetRows()...)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// 20 MB of rows in batches of at most 4 MiB.
	if batches < 5 || len(got) != 1004 {
		t.Fatalf("%d rows in %d batches, want 1004 in at least 5", len(got), batches)
	}
	for i := range 1000 {
		if got[i].GetKey() != "w"+strconv.Itoa(i) || got[i].GetFields()["text"] != wide || got[i].GetDelete() {
			t.Fatalf("row %d: key %q delete %v, want w%d in order", i, got[i].GetKey(), got[i].GetDelete(), i)
		}
	}
	for i, key := range []string{"big", "many", "noname"} {
		if g := got[1000+i]; g.GetKey() != key || !g.GetDelete() || len(g.GetFields()) != 0 || g.GetIndex() != uint64(2000+i) {
			t.Errorf("%s: %v, want a delete of its key without fields", key, g)
		}
	}
	if g := got[1003]; g.GetKey() != "ok" || g.GetDelete() || g.GetFields()["a"] != "1" {
		t.Errorf("last row %v, want ok as it was", g)
	}
	st := p.Status()
	if st.RowsBadKey != 3 || st.RowsOversize != 3 || st.EventsSent != 1004 {
		t.Errorf("status %+v: want 3 bad keys, 3 oversize, 1004 sent", st)
	}
	if c := p.Progress().GetCounters(); c["rows_bad_key"] != 3 || c["rows_oversize"] != 3 {
		t.Errorf("heartbeat counters %v", c)
	}
}
