package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
)

// BenchmarkAgentOnTree runs the real agent and Fusion (built without the race detector) on the
// tree named by FUSTOR_FS_FIND_DIR (skipped when unset) and reports, side by side in one run:
// find -printf '%P|%y|%s|%T@\n' on the tree, agent start → the view reports every file, the
// agent's peak RSS during the snapshot and during two audits (the first full, the second of the
// unchanged tree), both audits' walk times, the client→server bytes per snapshot row on the
// push stream (through a counting proxy) and Fusion's heap and RSS per file. Run:
//
//	FUSTOR_FS_FIND_DIR=/data/tree go test -run '^$' -bench AgentOnTree -benchtime 1x -timeout 30m ./fusion/e2e
func BenchmarkAgentOnTree(b *testing.B) {
	root := os.Getenv("FUSTOR_FS_FIND_DIR")
	if root == "" {
		b.Skip("FUSTOR_FS_FIND_DIR not set")
	}
	bin := binaries(b, false)
	files, dirs := countTree(b, root) // also warms the cache for both contenders
	findTime := timeFind(b, root)
	for b.Loop() {
		b.StopTimer()
		c := newClusterWith(b, root, bin)
		c.auditEvery, c.debugListen = "8s", freePort(b)
		px := newProxy(b, c.addr)
		c.agentAddr = px.addr
		c.writeConfigs()
		c.startFusion()
		conn, err := grpc.NewClient(c.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		must(b, err)
		views := fustorv1.NewViewServiceClient(conn)
		ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer query-key")
		eventually(b, 30*time.Second, "fusion answers", func() error {
			_, err := views.ListViews(ctx, &fustorv1.ListViewsRequest{})
			return err
		})

		start := time.Now()
		c.startAgent()
		poll(b, 10*time.Minute, func() bool {
			st, err := views.GetStats(ctx, &fustorv1.GetStatsRequest{View: "files", Path: "/"})
			return err == nil && st.GetFileCount() == files
		})
		snapshot := time.Since(start)
		wire := px.up.Load()
		pid := c.agent.cmd.Process.Pid
		snapRSS := procKB(b, pid, "VmHWM")
		must(b, os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0))
		poll(b, 10*time.Minute, func() bool { return len(auditTimes(c.agent)) >= 2 })
		auditRSS := procKB(b, pid, "VmHWM")
		audits := auditTimes(c.agent)
		heap := fusionMem(b, c.debugListen)

		rows := float64(files + dirs)
		b.ReportMetric(float64(files), "files")
		b.ReportMetric(float64(findTime.Milliseconds()), "ms-find")
		b.ReportMetric(float64(snapshot.Milliseconds()), "ms-agent-start-to-view-complete")
		b.ReportMetric(snapshot.Seconds()/findTime.Seconds(), "x-find")
		b.ReportMetric(audits[0], "ms-first-audit-walk")
		b.ReportMetric(audits[1], "ms-unchanged-audit-walk")
		b.ReportMetric(float64(snapRSS)/1024, "MiB-agent-peak-rss-snapshot")
		b.ReportMetric(float64(auditRSS)/1024, "MiB-agent-peak-rss-audits")
		b.ReportMetric(float64(wire)/rows, "B/row-on-the-wire")
		b.ReportMetric(float64(heap.HeapInuse)/float64(files), "B/file-fusion-heap-inuse")
		b.ReportMetric(float64(heap.RSS)/float64(files), "B/file-fusion-rss")
		_ = conn.Close()
		c.agent.stop(b, syscall.SIGTERM)
		c.fusion.stop(b, syscall.SIGTERM)
		b.StartTimer()
	}
}

// countTree returns the regular files (and the other entries, directories included, which
// are rows too) below root, as find sees them.
func countTree(b *testing.B, root string) (files, others uint64) {
	cmd := exec.Command("find", root, "-mindepth", "1", "-printf", "%y\n")
	out, err := cmd.StdoutPipe()
	must(b, err)
	must(b, cmd.Start())
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if sc.Text() == "f" {
			files++
		} else {
			others++
		}
	}
	must(b, cmd.Wait())
	return files, others + 1 // the root's row
}

// timeFind times find with the snapshot row's fields, output to /dev/null, after one warm-up.
func timeFind(b *testing.B, root string) time.Duration {
	var best time.Duration
	for i := range 3 {
		start := time.Now()
		must(b, exec.Command("find", root, "-printf", "%P|%y|%s|%T@\n").Run())
		if d := time.Since(start); i == 0 || d < best {
			best = d
		}
	}
	return best
}

// poll waits for cond without a fixed sleep of the caller's choosing.
func poll(b *testing.B, within time.Duration, cond func() bool) {
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatal("condition not met in time")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func procKB(b *testing.B, pid int, key string) uint64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	must(b, err)
	for line := range strings.SplitSeq(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, key+":"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb
		}
	}
	b.Fatalf("no %s in /proc/%d/status", key, pid)
	return 0
}

var auditLine = regexp.MustCompile(`audit sent.*"duration_ms": ([0-9.]+)`)

// auditTimes returns the walk time (ms) of each audit the agent logged.
func auditTimes(p *proc) []float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []float64
	for _, m := range auditLine.FindAllStringSubmatch(p.log.String(), -1) {
		v, _ := strconv.ParseFloat(m[1], 64)
		out = append(out, v)
	}
	return out
}

type memStats struct {
	HeapInuse uint64 `json:"heap_inuse"`
	RSS       uint64 `json:"rss"`
}

func fusionMem(b *testing.B, addr string) memStats {
	resp, err := http.Get("http://" + addr + "/debug/memstats?gc=1")
	must(b, err)
	defer resp.Body.Close()
	var ms memStats
	must(b, json.NewDecoder(resp.Body).Decode(&ms))
	http.DefaultClient.CloseIdleConnections()
	return ms
}
