package fs

import (
	"fmt"
	"testing"

	"github.com/fustor/fustor/fusion/internal/config"
	"github.com/fustor/fustor/sdk/fsbatch"
)

func TestMaxNodesLimitFitsTheIndex(t *testing.T) {
	if config.MaxNodesLimit != MaxIndexedNodes-1 {
		t.Fatalf("config.MaxNodesLimit %d, want fs.MaxIndexedNodes-1 = %d", config.MaxNodesLimit, MaxIndexedNodes-1)
	}
	if v := New(nil, Options{MaxNodes: 1 << 30}); v.opts.MaxNodes > MaxIndexedNodes-1 {
		t.Fatalf("MaxNodes %d not capped", v.opts.MaxNodes)
	}
}

// TestTablesGrowFromTheArena grows the child index and the name table through many doublings
// while subtrees are deleted and their ids reused, with names unique (the name table rehashes
// from an arena scan) and repeated (from its old slots); every node must stay reachable by its
// key and on its name's chain.
func TestTablesGrowFromTheArena(t *testing.T) {
	for _, tc := range []struct {
		name string
		leaf func(d, f int) string
	}{
		{"unique names", func(d, f int) string { return fmt.Sprintf("u%d-%d", d, f) }},
		{"repeated names", func(_, f int) string { return fmt.Sprintf("data_%04d.dat", f) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newView(t)
			for d := range 300 {
				dir := fmt.Sprintf("/top%d/d%d", d%7, d)
				rows := []fsbatch.Row{row(dir, fsbatch.FlagDir, 0, 1)}
				for f := range 40 {
					rows = append(rows, row(dir+"/"+tc.leaf(d, f), 0, uint64(f), 2))
				}
				apply(t, v, OriginRealtime, rows...)
				if d%5 == 4 {
					// Free a whole directory so later inserts take recycled ids below a.next.
					apply(t, v, OriginRealtime, row(fmt.Sprintf("/top%d/d%d", (d-2)%7, d-2), fsbatch.FlagDelete|fsbatch.FlagDir, 0, 3))
				}
			}
			checkInvariants(t, v)
			if inserted := uint32(7 + 300*41); v.st.Allocated() >= inserted {
				t.Fatalf("ids up to %d for %d inserts: none recycled, the test lost its point", v.st.Allocated(), inserted)
			}
		})
	}
}
