package debughttp

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestDebugServesMemStatsAndPprof(t *testing.T) {
	d, err := New(nil, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	base := "http://" + d.Addr().String()
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
	resp, err = http.Get(base + "/debug/pprof/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("pprof index: %s", resp.Status)
	}
	http.DefaultClient.CloseIdleConnections()
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run after cancel: %v", err)
	}
}
