package app

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/fustor/fustor/fusion/internal/config"
	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
)

// BenchmarkStatUnderGlobs times a plain Stat over loopback gRPC on a 100,000-name view, idle
// and while 100 clients run a long glob back to back (issue 22: a Stat's p99 under 100
// concurrent expensive globs within 2× its idle p99). The globbers honour the RetryInfo of a
// refusal, as a well-behaved client does. "limited" is the default configuration
// (views.<id>.max_expensive_queries = GOMAXPROCS/2); "unlimited" sets the bounds out of reach,
// as before they existed. Fusion, the globbers and the Stat client share the machine. Run:
//
//	go test -run '^$' -bench StatUnderGlobs/limited -benchtime 3000x ./fusion/internal/app
//	go test -run '^$' -bench StatUnderGlobs/unlimited -benchtime 10x -timeout 30m ./fusion/internal/app
func BenchmarkStatUnderGlobs(b *testing.B) {
	for _, c := range []struct {
		name   string
		mutate func(*config.View)
	}{
		{"limited", func(*config.View) {}},
		{"unlimited", func(v *config.View) { v.MaxExpensiveQueries, v.MaxExpensiveQueriesPerKey = 10000, 10000 }},
	} {
		b.Run(c.name, func(b *testing.B) {
			h := start(b, func(cfg *config.Config) {
				v := cfg.Views["demo"]
				c.mutate(&v)
				cfg.Views["demo"] = v
			})
			files := make(map[string]uint64, 100_000)
			for d := range 1000 {
				for f := range 100 {
					files[fmt.Sprintf("/run_%04d/sample_%04d_%03d_acquisition.dat", d, d, f)] = 1
				}
			}
			h.connectWith(b, "demo-ingest-key").snapshotB(b, files)
			stat := &fustorv1.StatRequest{View: "demo", Path: "/run_0500/sample_0500_050_acquisition.dat"}
			q, ctx := h.views(), withKey("demo-key")
			// Stats are paced (one a millisecond at most), so that a sample spans seconds: the
			// pipe's once-a-second tick, a writer, is in it.
			pace := time.NewTicker(time.Millisecond)
			defer pace.Stop()
			timeStats := func(n int) []time.Duration {
				out := make([]time.Duration, 0, n)
				for range n {
					<-pace.C
					t0 := time.Now()
					if _, err := q.Stat(ctx, stat); err != nil {
						b.Fatal(err)
					}
					out = append(out, time.Since(t0))
				}
				return out
			}
			timeStats(500) // warm-up
			idle := timeStats(3000)

			// 100 globbers on 10 connections of their own, as separate clients would be.
			gctx, stop := context.WithCancel(ctx)
			var wg sync.WaitGroup
			var globs, refused atomic.Int64
			glob := &fustorv1.FindRequest{View: "demo", Path: "/", Glob: "*sample_*_9*_acq*_nomatch*.dat"}
			var conns []*grpc.ClientConn
			for range 10 {
				conn, err := grpc.NewClient(h.f.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
				if err != nil {
					b.Fatal(err)
				}
				conns = append(conns, conn)
			}
			for i := range 100 {
				gq := fustorv1.NewViewServiceClient(conns[i%len(conns)])
				wg.Go(func() {
					for gctx.Err() == nil {
						_, err := gq.Find(gctx, glob)
						switch {
						case err == nil:
							globs.Add(1)
						case status.Code(err) == codes.ResourceExhausted:
							refused.Add(1)
							select {
							case <-time.After(retryHint(err)):
							case <-gctx.Done():
							}
						case gctx.Err() == nil:
							b.Error(err)
							return
						}
					}
				})
			}
			// Let the globbers fill the slots and the queue before timing.
			for globs.Load() < 20 {
				time.Sleep(time.Millisecond)
			}
			g0, r0, t0 := globs.Load(), refused.Load(), time.Now()
			loaded := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for b.Loop() {
				<-pace.C
				s := time.Now()
				if _, err := q.Stat(ctx, stat); err != nil {
					b.Fatal(err)
				}
				loaded = append(loaded, time.Since(s))
			}
			b.StopTimer()
			took := time.Since(t0).Seconds()
			g1, r1 := globs.Load(), refused.Load()
			stop()
			wg.Wait()
			for _, conn := range conns {
				_ = conn.Close()
			}
			ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
			ip50, ip99 := percentile(idle, 0.50), percentile(idle, 0.99)
			lp50, lp99 := percentile(loaded, 0.50), percentile(loaded, 0.99)
			b.ReportMetric(ms(ip50), "idle-p50-ms")
			b.ReportMetric(ms(ip99), "idle-p99-ms")
			b.ReportMetric(ms(lp50), "loaded-p50-ms")
			b.ReportMetric(ms(lp99), "loaded-p99-ms")
			b.ReportMetric(ms(percentile(loaded, 1)), "loaded-max-ms")
			b.ReportMetric(float64(lp99)/float64(ip99), "p99-ratio")
			b.ReportMetric(float64(g1-g0)/took, "globs/s")
			b.ReportMetric(float64(r1-r0)/took, "refused/s")
		})
	}
}

// retryHint is a refusal's RetryInfo delay (100 ms without one).
func retryHint(err error) time.Duration {
	for _, d := range status.Convert(err).Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return ri.GetRetryDelay().AsDuration()
		}
	}
	return 100 * time.Millisecond
}

// percentile returns the q-quantile of ds (sorted in place).
func percentile(ds []time.Duration, q float64) time.Duration {
	slices.Sort(ds)
	return ds[min(len(ds)-1, int(q*float64(len(ds))))]
}
