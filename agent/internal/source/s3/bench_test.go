package s3

import (
	"context"
	"fmt"
	"testing"

	"github.com/fustor/fustor/agent/internal/source"
)

// benchObjects is the bucket of the benchmarks: 10 × 10 × 10 prefixes of 10 objects.
const benchObjects = 10_000

func benchSource(b *testing.B) (*fakeS3, *Source) {
	f := newFakeS3(b)
	for i := range benchObjects {
		f.put(fmt.Sprintf("t%d/m%d/l%d/obj-%06d.dat", i%10, i/10%10, i/100%10, i), "x")
	}
	s := newSource(b, f, "", func(c *Config) { c.PageSize = 1000 })
	return f, s
}

// BenchmarkSnapshot lists the whole bucket as a snapshot: objects/s and requests per 1,000
// objects (the cost of a snapshot on a billed store).
func BenchmarkSnapshot(b *testing.B) {
	_, s := benchSource(b)
	req0 := s.Counters()["s3_requests"]
	b.ResetTimer()
	for range b.N {
		n := 0
		_, err := s.Snapshot(context.Background(), "/", source.OriginSnapshot, func(evs []source.Event) error {
			n += len(evs)
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	reqs := float64(s.Counters()["s3_requests"]-req0) / float64(b.N)
	b.ReportMetric(float64(benchObjects*b.N)/b.Elapsed().Seconds(), "objects/s")
	b.ReportMetric(reqs*1000/benchObjects, "requests/1k-objects")
}

// BenchmarkIncrementalCycle is one realtime cycle (a listing compared with the last) on an
// unchanged bucket.
func BenchmarkIncrementalCycle(b *testing.B) {
	_, s := benchSource(b)
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
	reqs := float64(s.Counters()["s3_requests"]-req0) / float64(b.N)
	b.ReportMetric(float64(benchObjects*b.N)/b.Elapsed().Seconds(), "objects/s")
	b.ReportMetric(reqs*1000/benchObjects, "requests/1k-objects")
}
