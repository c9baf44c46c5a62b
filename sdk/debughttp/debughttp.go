// Package debughttp serves the optional HTTP endpoints of Fusion and the agent over plain
// HTTP: the debug endpoint (/debug/pprof/, /debug/memstats, and /metrics when given) and the
// metrics endpoint (/metrics only).
package debughttp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
)

// Debug serves /debug/pprof/ and /debug/memstats over plain HTTP. It runs only when a
// debug_listen address is configured, and is meant for loopback: profiles are how a missed
// performance target is investigated, and memstats is how benchmarks read heap and RSS.
type Debug struct {
	log *zap.Logger
	ln  net.Listener
	srv *http.Server
}

// MemStats is the JSON document of /debug/memstats. With ?gc=1 a collection runs first and
// the freed pages go back to the system, so heap_inuse and rss are what live data holds.
type MemStats struct {
	HeapAlloc  uint64 `json:"heap_alloc"`
	HeapInuse  uint64 `json:"heap_inuse"`
	HeapSys    uint64 `json:"heap_sys"`
	Sys        uint64 `json:"sys"`
	NumGC      uint32 `json:"num_gc"`
	Goroutines int    `json:"goroutines"`
	// RSS is the resident set from /proc/self/status (0 where unavailable).
	RSS uint64 `json:"rss"`
	// PauseNs are the stop-the-world pauses of the last GCs (at most 256, the runtime's
	// record), oldest first: with NumGC, a reader takes the pauses between two reads.
	PauseNs []uint64 `json:"pause_ns"`
}

// New binds addr and serves /debug/pprof/, /debug/memstats and routes (pattern → handler,
// e.g. /metrics).
func New(log *zap.Logger, addr string, routes map[string]http.Handler) (*Debug, error) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/debug/memstats", serveMemStats)
	return listen(log, addr, "debug", mux, routes)
}

// NewRoutes binds addr and serves only routes: the metrics endpoint, which is safe to expose
// to a scraper, unlike the profiles.
func NewRoutes(log *zap.Logger, addr string, routes map[string]http.Handler) (*Debug, error) {
	return listen(log, addr, "metrics", http.NewServeMux(), routes)
}

func listen(log *zap.Logger, addr, what string, mux *http.ServeMux, routes map[string]http.Handler) (*Debug, error) {
	if log == nil {
		log = zap.NewNop()
	}
	for pattern, h := range routes {
		mux.Handle(pattern, h)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s %s: %w", what, addr, err)
	}
	return &Debug{log: log.With(zap.String("endpoint", what)), ln: ln, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}}, nil
}

// Addr returns the bound address.
func (d *Debug) Addr() net.Addr { return d.ln.Addr() }

// Run serves until ctx is done; it returns nil on cancel.
func (d *Debug) Run(ctx context.Context) error {
	d.log.Info("http endpoint listening", zap.String("addr", d.ln.Addr().String()))
	errc := make(chan error, 1)
	go func() { errc <- d.srv.Serve(d.ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve http %s: %w", d.ln.Addr(), err)
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := d.srv.Shutdown(sctx); err != nil {
			_ = d.srv.Close()
		}
		if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve http %s: %w", d.ln.Addr(), err)
		}
		return nil
	}
}

func serveMemStats(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("gc") == "1" {
		// A GC that also returns the freed pages to the system: the RSS read next is what the
		// live heap needs, not what the last burst of garbage left mapped.
		debug.FreeOSMemory()
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	out := MemStats{HeapAlloc: ms.HeapAlloc, HeapInuse: ms.HeapInuse, HeapSys: ms.HeapSys, Sys: ms.Sys,
		NumGC: ms.NumGC, Goroutines: runtime.NumGoroutine(), RSS: selfRSS()}
	n := min(ms.NumGC, uint32(len(ms.PauseNs)))
	for i := ms.NumGC - n; i < ms.NumGC; i++ {
		out.PauseNs = append(out.PauseNs, ms.PauseNs[i%uint32(len(ms.PauseNs))])
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

// selfRSS reads VmRSS from /proc/self/status in bytes.
func selfRSS() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// Close releases the listener of an endpoint that will not Run.
func (d *Debug) Close() { _ = d.ln.Close() }
