package bench

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestEndToEnd runs the whole bench, every phase, with a small N against the real binaries
// built from the workspace, and checks that the report holds every figure with a plausible
// value. It never asserts a timing target: only that each figure was measured.
func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: builds and runs the real binaries")
	}
	bin := buildDaemons(t)
	dir := filepath.Join(t.TempDir(), "tree")
	out := t.TempDir()
	o := DefaultOptions()
	o.Dir, o.Out, o.Bin, o.Files = dir, out, bin, 2_000
	o.IngestDuration, o.AuditInterval = time.Second, 2*time.Second
	o.Queries, o.RealtimeFiles, o.FindRuns = 200, 50, 2 // 2: one P1 trial besides the main run
	o.PacedFor = 500 * time.Millisecond
	o.Command = "fustor-bench (TestEndToEnd)"
	rep, repDir, stderr := runBench(t, o, 3*time.Minute)
	positive := func(key string, lo, hi float64) { t.Helper(); wantWithin(t, rep, key, lo, hi) }
	const anyTime = 1e6 // ms: plausible means measured and finite, not fast
	positive("p1_snapshot_ms", 0.01, anyTime)
	if f, _ := rep.Figure("p1_snapshot_ms"); !strings.HasPrefix(f.Detail, "best of 2 (") {
		t.Errorf("P1 detail %q: want the best of the trial and the main run", f.Detail)
	}
	positive("p1_find_ms", 0.01, anyTime)
	positive("p1_ratio", 1e-3, 1e4)
	positive("agent_walk_ms", 0.01, anyTime)
	positive("agent_walk_ratio", 1e-4, 1e4)
	positive("agent_rss_snapshot_mib", 1, 4096)
	positive("p1_agent_cpu_s", 0, 1e4) // clock ticks: a 2,000-file start can read 0
	positive("p1_fusion_cpu_s", 0, 1e4)
	positive("p1_fusion_faults", 1, 1e9)
	positive("p1_machine_busy_pct", 0, 100)
	positive("p6_wire_bytes_per_event", 5, 500)
	positive("p3_heap_inuse_per_file", 1, 1e6)
	positive("p3_rss_per_file", 1, 1e7)
	positive("audit_full_ms", 0.001, anyTime)
	positive("audit_unchanged_ms", 0.001, anyTime)
	positive("audit_unchanged_pct", 0, 1e4)
	positive("audit_deep_ms", 0.001, anyTime)
	positive("verify_ms", 0.01, anyTime)
	if f, ok := rep.Figure("verify_differences"); !ok || f.Value != 0 {
		t.Errorf("verify of the unchanged tree: %+v", f)
	}
	positive("agent_rss_audits_mib", 1, 4096)
	for _, q := range []string{qLs, qStatsSub, qStatsRoot, qFindName, qFindNameFull, qFindSub, qGlobSub, qFindGlob} {
		positive(q+"_p50_ms", 1e-3, anyTime)
		positive(q+"_p99_ms", 1e-3, anyTime)
		positive(q+"_find_ms", 1e-3, anyTime)
		positive(q+"_speedup", 1e-6, 1e9)
		positive(q+"_sat_qps", 1, 1e9)
		positive(q+"_sat_p99_ms", 1e-3, anyTime)
		positive(q+"_solo_p99_ms", 1e-3, anyTime)
		positive(q+"_idle_p99_ms", 1e-3, anyTime)
		positive(q+"_server_p99_ms", 1e-4, anyTime)
		if _, ok := rep.Figure(q + "_errors"); ok {
			t.Errorf("%s queries failed", q)
		}
	}
	positive("p5_realtime_p50_ms", 1e-3, 5_000)
	positive("p5_realtime_p99_ms", 1e-3, 5_000)
	if _, ok := rep.Figure("p5_realtime_missed"); ok {
		t.Error("realtime files were missed")
	}
	positive("p2_ingest_rows_per_s", 1_000, 1e9)
	positive("p2_sustained_s", 0.9, 30)
	positive("wake_lateness_p99_ms", 0, anyTime)
	if len(rep.Latency) != 17 {
		t.Errorf("latency series: %d; want 8 query kinds paced and back to back, and realtime", len(rep.Latency))
	}
	for _, name := range []string{"report.txt", "report.json", "report.html"} {
		if st, err := os.Stat(filepath.Join(repDir, name)); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", name, err)
		}
	}
	var back Report
	data, _ := os.ReadFile(filepath.Join(repDir, "report.json"))
	if err := json.Unmarshal(data, &back); err != nil || len(back.Figures) != len(rep.Figures) {
		t.Errorf("report.json: %v, %d figures", err, len(back.Figures))
	}
	// Logs go unless --keep; the realtime directory is gone; the tree is reusable.
	if _, err := os.Stat(filepath.Join(repDir, "logs")); !os.IsNotExist(err) {
		t.Errorf("logs kept without --keep: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, RealtimeDir)); !os.IsNotExist(err) {
		t.Errorf("realtime directory left behind: %v", err)
	}
	if !strings.Contains(stderr, "generating tree") || !strings.Contains(stderr, "waiting for the view") {
		t.Errorf("no progress display on stderr:\n%s", stderr)
	}

	// A second run on the same tree reuses it.
	o.Phases = []string{"snapshot"}
	var quiet syncBuffer
	o.Stderr = &quiet
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep2, _, err := Run(ctx, o)
	if err != nil || len(rep2.Errors) > 0 || !rep2.Tree.Reused {
		t.Fatalf("second run: %v, errors %v, reused %v", err, rep2.Errors, rep2.Tree.Reused)
	}
}

// buildDaemons builds fustor-fusion and fustor-agent into a temporary directory, without the
// race detector: the daemons are measured, not tested, here.
func buildDaemons(t *testing.T) string {
	t.Helper()
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+"/",
		"github.com/fustor/fustor/fusion/cmd/fustor-fusion", "github.com/fustor/fustor/agent/cmd/fustor-agent")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// runBench runs the bench with o within the bound, fails the test unless every phase ran, logs
// the report and returns it, its directory and what the bench wrote on stderr.
func runBench(t *testing.T, o Options, within time.Duration) (rep *Report, repDir, stderrText string) {
	t.Helper()
	var stderr syncBuffer
	o.Stderr = &stderr
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	rep, repDir, err := Run(ctx, o)
	if err != nil {
		t.Fatalf("Run: %v\nstderr:\n%s", err, stderr.String())
	}
	stderrText = stderr.String()
	if len(rep.Errors) > 0 {
		t.Fatalf("phases failed: %v\nstderr:\n%s", rep.Errors, stderr.String())
	}
	var txt strings.Builder
	_ = rep.WriteText(&txt)
	t.Log("\n" + txt.String())
	return rep, repDir, stderrText
}

// wantWithin fails the test unless the report has figure key within [lo, hi].
func wantWithin(t *testing.T, rep *Report, key string, lo, hi float64) {
	t.Helper()
	f, ok := rep.Figure(key)
	if !ok {
		t.Errorf("report lacks %s", key)
		return
	}
	if !(f.Value >= lo && f.Value <= hi) {
		t.Errorf("%s = %v %s; want within [%v, %v]", key, f.Value, f.Unit, lo, hi)
	}
}
