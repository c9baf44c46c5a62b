package bench

import (
	"path/filepath"
	"testing"
	"time"
)

// TestForestEndToEnd runs the forest phase alone with a small N against the real binaries and
// checks that F1-F3 were measured; like TestEndToEnd it asserts no timing target.
func TestForestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: builds and runs the real binaries")
	}
	bin := buildDaemons(t)
	o := DefaultOptions()
	o.Dir, o.Out, o.Bin, o.Files = filepath.Join(t.TempDir(), "tree"), t.TempDir(), bin, 2_000
	o.Queries, o.FindRuns, o.PacedFor = 200, 1, 300*time.Millisecond
	o.Forest, o.Phases = 3, []string{forestPhase}
	o.Command = "fustor-bench (TestForestEndToEnd)"
	rep, _, _ := runBench(t, o, 4*time.Minute)
	positive := func(key string, lo, hi float64) { t.Helper(); wantWithin(t, rep, key, lo, hi) }
	const anyTime = 1e6
	positive("f_snapshot_ms", 0.01, anyTime)
	positive("f1_heap_alloc_per_file", 1, 1e7)
	positive("f1_heap_alloc_per_held_file", 1, 1e7)
	positive("rpc_floor_p99_ms", 1e-3, anyTime)
	for _, q := range []string{qForestWhere, qForestFind, qForestFindFirst, qForestStats, qForestFSStats} {
		positive(q+"_p50_ms", 1e-3, anyTime)
		positive(q+"_p99_ms", 1e-3, anyTime)
		positive(q+"_sat_qps", 1, 1e9)
		positive(q+"_solo_p99_ms", 1e-3, anyTime)
		if _, ok := rep.Figure(q + "_errors"); ok {
			t.Errorf("%s queries failed", q)
		}
	}
	positive("f3_stats_p99_ratio", 1e-3, 1e3)
	// No single-agent figure: the forest phase alone ran.
	if _, ok := rep.Figure("p1_snapshot_ms"); ok {
		t.Error("the forest phase alone ran P1")
	}
}
