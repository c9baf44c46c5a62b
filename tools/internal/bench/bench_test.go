package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestPrepareLayout(t *testing.T) {
	root := filepath.Join(t.TempDir(), "tree")
	tr, err := Prepare(context.Background(), root, 2_600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if tr.Reused || tr.Files != 2_600 || len(tr.Submissions) != 3 {
		t.Fatalf("tree %+v; want 2,600 files in 3 submissions, generated", tr)
	}
	files, dirs := 0, 0
	var newest time.Time
	err = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		info, err := d.Info()
		if err != nil {
			return err
		}
		if rel == MarkerName {
			return nil // the bench's own file, excluded from the agent's source
		}
		if info.ModTime().After(newest) {
			newest = info.ModTime()
		}
		if d.IsDir() {
			dirs++
			return nil
		}
		files++
		parts := strings.Split(filepath.ToSlash(rel), "/")
		if len(parts) != 7 || parts[0] != "upload" || parts[1] != "submit" || len(parts[2]) != 2 || len(parts[3]) != 2 ||
			!strings.HasPrefix(parts[4], parts[2]+parts[3]) || len(parts[4]) != 36 || !strings.HasPrefix(parts[5], "sub_") ||
			!strings.HasPrefix(parts[6], "data_") || !strings.HasSuffix(parts[6], ".dat") || len(parts[6]) != len("data_0000.dat") {
			t.Fatalf("path %s does not follow %s", rel, LayoutName)
		}
		if info.Size() > 4096 {
			t.Fatalf("%s is %d bytes; want at most 4 KiB", rel, info.Size())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files != 2_600 || dirs != tr.Dirs {
		t.Fatalf("walk found %d files and %d dirs; want 2,600 and %d", files, dirs, tr.Dirs)
	}
	// Everything, the root included, is older than any agent's hot threshold.
	if age := time.Since(newest); age < time.Hour {
		t.Fatalf("newest entry is %v old; want the tree aged by more than an hour", age)
	}
	// The partial third submission holds 600 files: sub_0, sub_1 full, sub_2 with 100.
	last := filepath.Join(root, filepath.FromSlash(tr.Submissions[2]))
	for k, want := range []int{250, 250, 100} {
		ents, err := os.ReadDir(filepath.Join(last, "sub_"+string(rune('0'+k))))
		if err != nil || len(ents) != want {
			t.Fatalf("sub_%d of the partial submission: %d entries, %v; want %d", k, len(ents), err, want)
		}
	}
}

func TestPrepareReusesAndRegenerates(t *testing.T) {
	root := filepath.Join(t.TempDir(), "tree")
	first, err := Prepare(context.Background(), root, 1_000, nil)
	if err != nil {
		t.Fatal(err)
	}
	// A realtime phase cut short leaves its directory; reuse removes it.
	if err := os.MkdirAll(filepath.Join(root, RealtimeDir, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	again, err := Prepare(context.Background(), root, 1_000, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !again.Reused || again.Submissions[0] != first.Submissions[0] {
		t.Fatalf("second Prepare: reused %v, submissions %v vs %v", again.Reused, again.Submissions, first.Submissions)
	}
	if _, err := os.Stat(filepath.Join(root, RealtimeDir)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("leftover realtime directory not removed: %v", err)
	}
	// Another N: the tree is the bench's, so it is regenerated.
	other, err := Prepare(context.Background(), root, 2_000, nil)
	if err != nil {
		t.Fatal(err)
	}
	if other.Reused {
		t.Fatal("a tree of another N was reused")
	}
	files, dirs, err := countTree(context.Background(), root)
	if err != nil {
		t.Fatal(err)
	}
	if files != 2_000 || dirs != other.Dirs {
		t.Fatalf("regenerated tree: %d files, %d dirs; want 2,000 and %d", files, dirs, other.Dirs)
	}
}

func TestPrepareRefusesForeignDirectory(t *testing.T) {
	root := t.TempDir()
	precious := filepath.Join(root, "precious.txt")
	if err := os.WriteFile(precious, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Prepare(context.Background(), root, 1_000, nil)
	if !errors.Is(err, ErrForeignDir) {
		t.Fatalf("Prepare on a foreign directory: %v; want ErrForeignDir", err)
	}
	ents, _ := os.ReadDir(root)
	if len(ents) != 1 {
		t.Fatalf("the foreign directory was written to: %v", ents)
	}
	// The command says so and exits 2, writing no report.
	out := t.TempDir()
	bin := fakeBin(t)
	var stderr bytes.Buffer
	code := Main(context.Background(), []string{"--dir", root, "--out", out, "--bin", bin, "--files", "1000"}, io.Discard, &stderr, false)
	if code != 2 || !strings.Contains(stderr.String(), "not created by fustor-bench") {
		t.Fatalf("exit %d, stderr %q; want 2 and the refusal", code, stderr.String())
	}
	if ents, _ := os.ReadDir(out); len(ents) != 0 {
		t.Fatalf("a refused run left %v in --out", ents)
	}
	// An empty existing directory is fine.
	empty := t.TempDir()
	if _, err := Prepare(context.Background(), empty, 1_000, nil); err != nil {
		t.Fatalf("Prepare on an empty directory: %v", err)
	}
}

// fakeBin is a --bin directory with placeholder binaries, for runs that stop before use.
func fakeBin(t *testing.T) string {
	dir := t.TempDir()
	for _, n := range []string{"fustor-fusion", "fustor-agent"} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestMainUsage(t *testing.T) {
	for _, args := range [][]string{{"--phases", "snapshot,bogus"}, {"--files", "0"}, {"extra"}, {"--bin", t.TempDir()}} {
		var stderr bytes.Buffer
		if code := Main(context.Background(), append(args, "--out", t.TempDir()), io.Discard, &stderr, false); code != 2 {
			t.Errorf("Main(%q) = %d; want 2 (stderr %q)", args, code, stderr.String())
		}
	}
}

func TestPercentile(t *testing.T) {
	var ds []time.Duration
	for i := 1; i <= 100; i++ {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{50, 50 * time.Millisecond}, {99, 99 * time.Millisecond}, {99.9, 100 * time.Millisecond}, {100, 100 * time.Millisecond}, {0.1, time.Millisecond}} {
		if got := Percentile(ds, c.p); got != c.want {
			t.Errorf("Percentile(1..100 ms, %v) = %v; want %v", c.p, got, c.want)
		}
	}
	if Percentile(nil, 50) != 0 {
		t.Error("Percentile of nothing is not 0")
	}
	// Nearest rank on few samples: p99 of 10 values is the largest.
	few := []time.Duration{10, 1, 9, 2, 8, 3, 7, 4, 6, 5}
	s := Summarise(few)
	if s.Count != 10 || s.P50 != ms(5) || s.P99 != ms(10) || s.Max != ms(10) || s.Mean != ms(5) {
		t.Errorf("Summarise = %+v", s)
	}
}

func sampleReport() *Report {
	r := &Report{Title: "fustor-bench report", Date: "2026-11-22T00:00:00Z", Command: "fustor-bench --files 1000",
		Machine: Machine{CPU: "Test CPU", Cores: 2, RAMBytes: 4 << 30, Kernel: "6.1", GoVersion: "go1.26"},
		Tree:    TreeInfo{Root: "/t", Files: 1000, Dirs: 9, Layout: LayoutName}}
	r.Add("P1", "p1_ratio", "agent start → view complete ÷ find", 0.8, "x", AtMost(1), "")
	r.Add("P2", "p2_ingest_rows_per_s", "rows applied per second", 1_234_567, "rows/s", AtLeast(1_000_000), "in 10 s")
	r.Add("P3", "p3_heap_inuse_per_file", "Fusion heap in use per file", 120.5, "B/file", AtMost(100), "")
	r.Add("A", "agent_rss", "agent peak RSS <&>", 36.1, "MiB", nil, "")
	r.Latency = []Series{{Name: "ls", Lat: Latencies{Count: 10, P50: 0.05, P90: 0.08, P99: 0.4, P999: 0.9, Max: 1.2}, FindMs: 3.2, Target: 1},
		{Name: "realtime", Lat: Latencies{Count: 10, P50: 2, P90: 3, P99: 9, P999: 12, Max: 15}, Target: 20}}
	r.Notes = []string{"how it was measured"}
	r.Errors = []string{"ingest: boom"}
	return r
}

func TestReportText(t *testing.T) {
	var b strings.Builder
	if err := sampleReport().WriteText(&b); err != nil {
		t.Fatal(err)
	}
	txt := b.String()
	for _, want := range []string{"command:  fustor-bench --files 1000", "Test CPU, 2 cores, 4.0 GiB RAM, Linux 6.1, go1.26",
		"0.80×", "<= 1.00×", "1,234,567 rows/s", ">= 1,000,000 rows/s", "120 B/file", "FAIL", "pass",
		"ls", "3.20", "ingest: boom", "how it was measured"} {
		if !strings.Contains(txt, want) {
			t.Errorf("report.txt lacks %q:\n%s", want, txt)
		}
	}
	// Each figure is one line with its value, target and verdict.
	for _, line := range strings.Split(txt, "\n") {
		if strings.HasPrefix(line, "P3 ") && (!strings.Contains(line, "120 B/file") || !strings.Contains(line, "FAIL")) {
			t.Errorf("P3 line %q", line)
		}
	}
}

func TestReportFiles(t *testing.T) {
	dir := t.TempDir()
	r := sampleReport()
	if err := r.WriteFiles(dir); err != nil {
		t.Fatal(err)
	}
	js, err := os.ReadFile(filepath.Join(dir, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js, &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Figures) != 4 || *back.Figures[0].Pass != true || *back.Figures[2].Pass != false || back.Latency[0].Lat.P99 != 0.4 {
		t.Fatalf("report.json round trip: %+v", back)
	}
	html, err := os.ReadFile(filepath.Join(dir, "report.html"))
	if err != nil {
		t.Fatal(err)
	}
	h := string(html)
	for _, want := range []string{"<svg", "<polyline", "target p99 20 ms", "Fusion vs the equivalent find", "agent peak RSS &lt;&amp;&gt;", `class="fail"`} {
		if !strings.Contains(h, want) {
			t.Errorf("report.html lacks %q", want)
		}
	}
	for _, bad := range []string{"<script", "http://", "https://", "NaN"} {
		if strings.Contains(strings.ReplaceAll(h, `xmlns="http://www.w3.org/2000/svg"`, ""), bad) {
			t.Errorf("report.html contains %q", bad)
		}
	}
	txt, err := os.ReadFile(filepath.Join(dir, "report.txt"))
	if err != nil || !strings.Contains(string(txt), "fustor-bench report") {
		t.Fatalf("report.txt: %v", err)
	}
}

func TestFormatValue(t *testing.T) {
	for _, c := range []struct {
		v    float64
		unit string
		want string
	}{{1_000_000, "rows/s", "1,000,000 rows/s"}, {0.0512, "ms", "0.051 ms"}, {21.64, "B/event", "21.6 B/event"},
		{1.25, "x", "1.25×"}, {2.9, "%", "2.9 %"}, {math.NaN(), "ms", "n/a"}, {3, "", "3.00"}} {
		if got := FormatValue(c.v, c.unit); got != c.want {
			t.Errorf("FormatValue(%v, %q) = %q; want %q", c.v, c.unit, got, c.want)
		}
	}
}

func TestProgressPlainLines(t *testing.T) {
	var b syncBuffer
	p := NewProgress(&b, false)
	p.interval = 10 * time.Millisecond
	n := int64(0)
	p.Start("generating tree", 100, func() int64 { n += 10; return min(n, 100) })
	time.Sleep(50 * time.Millisecond)
	p.Stop()
	p.Stop() // idempotent
	out := b.String()
	if !strings.Contains(out, "generating tree: ") || !strings.Contains(out, "/100") || strings.Contains(out, "\r") {
		t.Fatalf("plain progress output %q", out)
	}
	var tty syncBuffer
	p = NewProgress(&tty, true)
	p.Start("waiting", 0, nil)
	p.Logf("a line of its own")
	p.Stop()
	if !strings.Contains(tty.String(), "\r\033[K") || !strings.Contains(tty.String(), "a line of its own\n") {
		t.Fatalf("terminal progress output %q", tty.String())
	}
	if commas(1234567) != "1,234,567" || commas(-1000) != "-1,000" || commas(999) != "999" {
		t.Fatal("commas")
	}
}

func TestParseCounter(t *testing.T) {
	text := "# TYPE fustor_grpc_server_received_bytes_total counter\nfustor_grpc_server_received_bytes_total 2.5547492e+07\nfustor_grpc_server_received_bytes_total_x 1\n"
	if v, err := parseCounter(strings.NewReader(text), receivedMetric); err != nil || v != 25547492 {
		t.Fatalf("parseCounter = %v, %v; want 25547492", v, err)
	}
	if _, err := parseCounter(strings.NewReader("other 1\n"), receivedMetric); err == nil {
		t.Fatal("a missing metric parsed")
	}
}

func TestIngestPaths(t *testing.T) {
	ps := ingestPaths(2_500)
	if len(ps) != 2_500 || ps[0] != "/upload/submit/00/00/run-000000/sub_0/data_0000.dat" ||
		ps[1_999] != "/upload/submit/01/00/run-000001/sub_3/data_0249.dat" {
		t.Fatalf("ingest paths: %d, %q, %q", len(ps), ps[0], ps[1_999])
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestHandlingHistogram(t *testing.T) {
	text := `# HELP fustor_grpc_server_handling_seconds x
fustor_grpc_server_handling_seconds_bucket{method="/fustor.v1.ViewService/GetStats",le="0.0001"} 10
fustor_grpc_server_handling_seconds_bucket{method="/fustor.v1.ViewService/GetStats",le="0.0002"} 90
fustor_grpc_server_handling_seconds_bucket{method="/fustor.v1.ViewService/GetStats",le="0.001"} 100
fustor_grpc_server_handling_seconds_bucket{method="/fustor.v1.ViewService/GetStats",le="+Inf"} 100
fustor_grpc_server_handling_seconds_bucket{method="/fustor.v1.ViewService/Find",le="0.0001"} 7
fustor_grpc_server_handling_seconds_count{method="/fustor.v1.ViewService/GetStats"} 100
`
	h, err := parseHandling(strings.NewReader(text), "/fustor.v1.ViewService/GetStats")
	if err != nil || len(h.bounds) != 4 || h.count() != 100 {
		t.Fatalf("parse: %+v %v", h, err)
	}
	old := histogram{bounds: h.bounds, counts: []float64{0, 40, 50, 50}}
	d := h.since(old)
	for _, c := range []struct{ q, want float64 }{
		{0.5, 0.0001 + 0.0001*(25.0-10)/(50-10)}, // rank 25 of 50, in (0.1 ms, 0.2 ms]
		{0.1, 0.0001 * 5 / 10},                   // rank 5 in the first bucket, from 0
		{1, 0.0002},                              // every later observation fell before 0.2 ms
	} {
		if got := d.quantile(c.q); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("quantile(%v) = %v; want %v", c.q, got, c.want)
		}
	}
	if !math.IsNaN((histogram{}).quantile(0.5)) {
		t.Error("quantile of nothing is not NaN")
	}
	inf := histogram{bounds: []float64{0.001, math.Inf(1)}, counts: []float64{1, 10}}
	if got := inf.quantile(0.99); got != 0.001 {
		t.Errorf("quantile in +Inf = %v; want the highest finite bound", got)
	}
}
