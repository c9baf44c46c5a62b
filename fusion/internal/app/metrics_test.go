package app

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/fustor/fustor/fusion/internal/config"
	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
)

// TestMetricsEndpoint scrapes a real Fusion after a snapshot, a rejected row and queries (one
// of them refused): the view, pipe and gRPC figures must say what happened.
func TestMetricsEndpoint(t *testing.T) {
	h := start(t, func(c *config.Config) { c.Server.MetricsListen = "127.0.0.1:0" })
	a := h.connect(t)
	a.snapshot(t, map[string]uint64{"/a/one.txt": 10, "/a/two.txt": 20, "/b.txt": 5})
	bad := &fustorv1.FsBatch{ParentIds: []uint32{77}, Names: []string{"orphan"}}
	if ack := a.batch(t, fustorv1.MessageSource_MESSAGE_SOURCE_REALTIME, bad, 5); ack.GetRowsRejected() != 1 {
		t.Fatalf("ack %+v", ack)
	}
	for range 3 {
		if _, err := h.views().GetStats(withKey("demo-key"), &fustorv1.GetStatsRequest{View: "demo", Path: "/"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := h.views().Stat(withKey("demo-key"), &fustorv1.StatRequest{View: "demo", Path: "/missing"}); err == nil {
		t.Fatal("Stat of a missing path succeeded")
	}
	resp, err := http.Get("http://" + h.f.MetricsAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	http.DefaultClient.CloseIdleConnections()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %v %v", resp.Status, err)
	}
	text := string(body)
	for _, want := range []string{
		`fustor_view_files{member="",view="demo"} 3`,
		`fustor_view_dirs{member="",view="demo"} 1`,
		`fustor_view_size_bytes{member="",view="demo"} 35`,
		`fustor_view_snapshot_complete{member="",view="demo"} 1`,
		`fustor_view_has_leader{member="",view="demo"} 1`,
		`fustor_pipe_rows_applied_total{pipe="demo"} 3`,
		`fustor_pipe_rows_rejected_total{pipe="demo"} 1`,
		`fustor_pipe_sessions{pipe="demo"} 1`,
		`fustor_view_batches_dropped_total{pipe="demo",view="demo"} 0`,
		`fustor_grpc_server_handled_total{code="OK",method="/fustor.v1.ViewService/GetStats"} 3`,
		`fustor_grpc_server_handled_total{code="NotFound",method="/fustor.v1.ViewService/Stat"} 1`,
		`fustor_grpc_server_handling_seconds_count{method="/fustor.v1.ViewService/GetStats"} 3`,
		`fustor_grpc_server_open_streams{method="/fustor.v1.PushService/Push"} 1`,
		`go_goroutines `,
	} {
		if !strings.Contains(text, want+"\n") && !strings.Contains(text, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	// The push stream's bytes, framing included, count on the listener.
	for _, name := range []string{"fustor_grpc_server_received_bytes_total", "fustor_grpc_server_sent_bytes_total"} {
		_, rest, ok := strings.Cut(text, "\n"+name+" ")
		v, err := strconv.ParseFloat(strings.Fields(rest + " x")[0], 64)
		if !ok || err != nil || v < 100 {
			t.Errorf("%s: %q %v; want the bytes of the session's calls", name, strings.Fields(rest + " x")[0], err)
		}
	}
	if t.Failed() {
		t.Log(text)
	}
}
