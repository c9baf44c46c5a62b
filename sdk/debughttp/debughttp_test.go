package debughttp

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// metricsRoute stands for the /metrics handler the daemons pass.
var metricsRoute = map[string]http.Handler{"/metrics": http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
	_, _ = w.Write([]byte("m 1\n"))
})}

// serve runs d until the test ends and returns its base URL.
func serve(t *testing.T, d *Debug, err error) string {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		http.DefaultClient.CloseIdleConnections()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run after cancel: %v", err)
		}
	})
	return "http://" + d.Addr().String()
}

func TestDebugServesMemStatsAndPprof(t *testing.T) {
	d, err := New(nil, "127.0.0.1:0", metricsRoute)
	base := serve(t, d, err)
	resp, err := http.Get(base + "/debug/memstats?gc=1")
	if err != nil {
		t.Fatal(err)
	}
	var ms MemStats
	err = json.NewDecoder(resp.Body).Decode(&ms)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if ms.HeapInuse == 0 || ms.NumGC == 0 || ms.Goroutines == 0 {
		t.Errorf("memstats %+v: want heap in use, a GC and goroutines", ms)
	}
	if want := min(int(ms.NumGC), 256); len(ms.PauseNs) != want || ms.PauseNs[len(ms.PauseNs)-1] == 0 {
		t.Errorf("memstats: %d GC pauses (last %v), want %d and the forced GC's last", len(ms.PauseNs), ms.PauseNs, want)
	}
	resp, err = http.Get(base + "/debug/pprof/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("pprof index: %s", resp.Status)
	}
	if got := get(t, base+"/metrics"); got != "200 m 1\n" {
		t.Errorf("/metrics on the debug endpoint: %q", got)
	}
}

// TestRoutesServeOnlyTheirRoutes: the metrics endpoint must not expose profiles.
func TestRoutesServeOnlyTheirRoutes(t *testing.T) {
	d, err := NewRoutes(nil, "127.0.0.1:0", metricsRoute)
	base := serve(t, d, err)
	for path, want := range map[string]string{"/metrics": "200 m 1\n", "/debug/pprof/": "404", "/debug/memstats": "404"} {
		if got := get(t, base+path); !strings.HasPrefix(got, want) {
			t.Errorf("GET %s = %q; want %q", path, got, want)
		}
	}
}

// get returns "<status code> <body>".
func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return strconv.Itoa(resp.StatusCode) + " " + string(b)
}
