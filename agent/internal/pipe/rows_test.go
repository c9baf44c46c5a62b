package pipe

import (
	"context"
	"reflect"
	"strings"
	"testing"

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
// row where the walk hands it on (so the snapshot's end counts what is sent, drop_row's rows
// not), and sends GenericBatch batches of at most batch_size rows of that schema.
func TestGenericRowsAreMappedAndBatched(t *testing.T) {
	src := tableRows{rows: []source.Row{
		{Key: "1", Index: 10, Fields: map[string]string{"age": "0042", "name": "Ann"}},
		{Key: "2", Index: 20, Fields: map[string]string{"age": "x", "name": "Bob"}},
		{Key: "3", Index: 30, Delete: true, Fields: map[string]string{"age": "7"}},
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
	if len(items) != 3 || items[0].control.GetSnapshotStart() == nil || items[2].control.GetSnapshotEnd().GetRows() != 2 {
		t.Fatalf("items %+v: want start, rows, end with 2 rows", items)
	}
	var sent []*fustorv1.PushRequest
	if err := s.sendRows(items[1], func(m *fustorv1.PushRequest) error { sent = append(sent, m); return nil }); err != nil {
		t.Fatal(err)
	}
	want := []*fustorv1.GenericRow{
		{Key: "1", Index: 10, Fields: map[string]string{"age": "42", "user": "Ann", "site": "eu"}},
		{Key: "3", Index: 30, Delete: true, Fields: map[string]string{"age": "7", "site": "eu"}},
	}
	if len(sent) != 2 {
		t.Fatalf("%d batches, want 2 of one row", len(sent))
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
	if st.MappedRows != 3 || st.CastFailures != 1 || st.RowsDropped != 1 || st.EventsSent != 2 {
		t.Errorf("status %+v", st)
	}
	c := p.Progress().GetCounters()
	if c["mapping_rows"] != 3 || c["mapping_cast_failures"] != 1 || c["mapping_rows_dropped"] != 1 {
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
