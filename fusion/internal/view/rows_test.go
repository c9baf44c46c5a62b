package view

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/fustor/fustor/fusion/internal/config"
	"github.com/fustor/fustor/fusion/internal/errs"
)

func rowsConfig(schema string, maxNodes int) config.Config {
	return config.Config{Views: map[string]config.View{
		"subs": {Driver: config.DriverRows, Schema: schema, MaxNodes: maxNodes},
		"fsv":  {Driver: config.DriverFS, Schema: "fs"},
	}}
}

func TestRowsViewMember(t *testing.T) {
	r := NewRegistry(nil, rowsConfig("submissions", 2), nil)
	v := mustGet(t, r, "subs")
	if !v.IsRows() || v.IsForest() {
		t.Fatal("a rows view is rows, not a forest")
	}
	m := member(t, r, "subs")
	if m.Rows == nil || m.Driver != nil {
		t.Fatalf("rows member: Rows %v, Driver %v", m.Rows, m.Driver)
	}
	_, err := m.FS()
	if !errors.Is(err, ErrRowsView) || !errors.Is(err, errs.ErrPrecondition) ||
		!strings.Contains(err.Error(), `view "subs" holds rows of schema "submissions": use GetRow/ListRows`) {
		t.Fatalf("FS() = %v", err)
	}
	if d, err := member(t, r, "fsv").FS(); d == nil || err != nil {
		t.Fatalf("FS() of an fs view = %v, %v", d, err)
	}
	// The shared member methods serve a rows view.
	if a, rej, _ := m.Rows.Apply(OriginRealtime, []Row{{Key: "a", Index: 1}, {Key: "b", Index: 1}, {Key: "c", Index: 1}}); a != 2 || rej != 1 {
		t.Fatalf("apply over max_nodes 2: %d applied, %d rejected", a, rej)
	}
	if m.Len() != 2 || v.Len() != 2 || m.MemoryBytes() == 0 || v.MemoryBytes() == 0 {
		t.Fatalf("Len %d, view %d, memory %d", m.Len(), v.Len(), m.MemoryBytes())
	}
	var buf bytes.Buffer
	if info, err := m.Checkpointer().WriteCheckpoint(&buf); err != nil || info.Nodes != 2 || info.Instance != m.Instance() {
		t.Fatalf("checkpoint %+v, %v (instance %d)", info, err, m.Instance())
	}
	m.Tick()

	// A reload with new bounds keeps the rows; a new schema is another table: rebuilt.
	ch := r.Apply(rowsConfig("submissions", 10))
	if member(t, r, "subs") != m || m.Len() != 2 || len(ch.Changed) != 1 {
		t.Fatalf("reload with max_nodes 10: %+v, %d rows", ch, m.Len())
	}
	if a, _, _ := m.Rows.Apply(OriginRealtime, []Row{{Key: "c", Index: 1}}); a != 1 {
		t.Fatal("the raised bound was not taken in place")
	}
	ch = r.Apply(rowsConfig("orders", 10))
	if n := member(t, r, "subs"); n == m || n.Len() != 0 || !strings.Contains(strings.Join(ch.Details, ";"), "schema submissions -> orders") {
		t.Fatalf("schema change: %+v, %d rows", ch, n.Len())
	}
	inst := member(t, r, "subs").Instance()
	member(t, r, "subs").Reset()
	if member(t, r, "subs").Instance() == inst {
		t.Error("Reset kept the instance")
	}
}
