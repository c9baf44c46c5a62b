package s3

import (
	"context"
	"fmt"
	"testing"

	"github.com/fustor/fustor/agent/internal/source"
)

// benchSizes are the buckets of the benchmarks: 10 top-level prefixes, each of 10 × 10
// prefixes, objects spread evenly.
var benchSizes = []int{10_000, 100_000}

func benchSource(b *testing.B, n int) *Source {
	f := newFakeS3(b)
	for i := range n {
		f.put(fmt.Sprintf("t%d/m%d/l%d/obj-%06d.dat", i%10, i/10%10, i/100%10, i), "x")
	}
	return newSource(b, f, "", func(c *Config) { c.PageSize = 1000 })
}

// report adds objects/s and the requests per 1,000 objects of one operation.
func report(b *testing.B, s *Source, n int, req0 uint64) {
	reqs := float64(s.Counters()["s3_requests"]-req0) / float64(b.N)
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "objects/s")
	b.ReportMetric(reqs*1000/float64(n), "requests/1k-objects")
}

// BenchmarkSnapshot lists the whole bucket as a snapshot, against gofakes3 over loopback HTTP.
func BenchmarkSnapshot(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("objects=%d", n), func(b *testing.B) {
			s := benchSource(b, n)
			req0 := s.Counters()["s3_requests"]
			b.ResetTimer()
			for range b.N {
				if _, err := s.Snapshot(context.Background(), "/", source.OriginSnapshot, func([]source.Event) error { return nil }); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			report(b, s, n, req0)
		})
	}
}

// BenchmarkIncrementalCycle is one realtime cycle (a listing compared with the last) on an
// unchanged bucket.
func BenchmarkIncrementalCycle(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("objects=%d", n), func(b *testing.B) {
			s := benchSource(b, n)
			ctx := context.Background()
			if err := s.cycle(ctx, func(source.Event) {}); err != nil {
				b.Fatal(err)
			}
			req0 := s.Counters()["s3_requests"]
			b.ResetTimer()
			for range b.N {
				if err := s.cycle(ctx, func(source.Event) {}); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			report(b, s, n, req0)
		})
	}
}
