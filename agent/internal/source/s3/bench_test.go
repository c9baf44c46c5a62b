package s3

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/fustor/fustor/agent/internal/source"
)

// benchSizes are the buckets of the benchmarks: 10 top-level prefixes, each of 10 × 10
// prefixes, objects spread evenly.
var benchSizes = []int{10_000, 100_000}

// benchBucket is one bucket a benchmark lists: its objects and a source on it.
type benchBucket struct {
	name string
	n    int
	src  func(b *testing.B) *Source
}

// benchBuckets are gofakes3 (s3mem) in this process at benchSizes or, when
// FUSTOR_S3_BENCH_ENDPOINT names a fustor-s3d (host:port; `fustor-s3d --seed N` makes the same
// layout in its bucket "data"), that server's bucket as it is.
func benchBuckets(b *testing.B) []benchBucket {
	if addr := os.Getenv("FUSTOR_S3_BENCH_ENDPOINT"); addr != "" {
		f := &fakeS3{t: b, addr: addr}
		s := newSource(b, f, "", func(c *Config) { c.PageSize = 1000 })
		st, err := s.Snapshot(context.Background(), "/", source.OriginSnapshot, func([]source.Event) error { return nil })
		if err != nil {
			b.Fatal(err)
		}
		return []benchBucket{{name: fmt.Sprintf("server=s3d/objects=%d", st.Files), n: int(st.Files), src: func(b *testing.B) *Source {
			return newSource(b, f, "", func(c *Config) { c.PageSize = 1000 })
		}}}
	}
	var out []benchBucket
	for _, n := range benchSizes {
		out = append(out, benchBucket{name: fmt.Sprintf("objects=%d", n), n: n, src: func(b *testing.B) *Source {
			f := newFakeS3(b)
			for i := range n {
				f.put(fmt.Sprintf("t%d/m%d/l%d/obj-%06d.dat", i%10, i/10%10, i/100%10, i), "x")
			}
			return newSource(b, f, "", func(c *Config) { c.PageSize = 1000 })
		}})
	}
	return out
}

// report adds objects/s and the requests per 1,000 objects of one operation.
func report(b *testing.B, s *Source, n int, req0 uint64) {
	reqs := float64(s.Counters()["s3_requests"]-req0) / float64(b.N)
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "objects/s")
	b.ReportMetric(reqs*1000/float64(n), "requests/1k-objects")
}

// BenchmarkSnapshot lists the whole bucket as a snapshot, over loopback HTTP.
func BenchmarkSnapshot(b *testing.B) {
	for _, bb := range benchBuckets(b) {
		b.Run(bb.name, func(b *testing.B) {
			s := bb.src(b)
			req0 := s.Counters()["s3_requests"]
			b.ResetTimer()
			for range b.N {
				if _, err := s.Snapshot(context.Background(), "/", source.OriginSnapshot, func([]source.Event) error { return nil }); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			report(b, s, bb.n, req0)
		})
	}
}

// BenchmarkIncrementalCycle is one realtime cycle (a listing compared with the last) on an
// unchanged bucket.
func BenchmarkIncrementalCycle(b *testing.B) {
	for _, bb := range benchBuckets(b) {
		b.Run(bb.name, func(b *testing.B) {
			s := bb.src(b)
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
			report(b, s, bb.n, req0)
		})
	}
}
