package client_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/stats"

	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
	"github.com/fustor/fustor/sdk/client"
)

// The benchmark tree, written only when benchmarks run (benchFiles files in benchDirs
// directories under /bench): the tests need none of it.
const (
	benchDirs  = 100
	benchFiles = 20000
)

func benchTree(root string) error {
	files := map[string]string{}
	for i := range benchFiles {
		files[fmt.Sprintf("bench/submit/sub-%03d/data_%05d.dat", i%benchDirs, i)] = "x"
	}
	return writeTree(root, files)
}

// wireCounter counts the answers' bytes as received (compressed) and decompressed.
type wireCounter struct{ wire, payload atomic.Int64 }

func (w *wireCounter) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context   { return ctx }
func (w *wireCounter) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (w *wireCounter) HandleConn(context.Context, stats.ConnStats)                       {}
func (w *wireCounter) HandleRPC(_ context.Context, s stats.RPCStats) {
	if in, ok := s.(*stats.InPayload); ok {
		w.wire.Add(int64(in.WireLength))
		w.payload.Add(int64(in.Length))
	}
}

// BenchmarkLargeAnswers: the whole 20,000-file tree (GetTree) and a find of every file
// (packed paths), plain and with s2 (WithCompression), over loopback: ns/op, and the bytes
// received per answer on the wire and decompressed.
func BenchmarkLargeAnswers(b *testing.B) {
	ctx := context.Background()
	calls := []struct {
		name string
		call func(c *client.Client) (int, error)
	}{
		{"tree", func(c *client.Client) (int, error) {
			n := 0
			for _, err := range c.Tree(ctx, &fustorv1.GetTreeRequest{View: "demo", Path: "/bench"}) {
				if err != nil {
					return n, err
				}
				n++
			}
			return n, nil
		}},
		{"find-packed", func(c *client.Client) (int, error) {
			resp, err := c.Find(ctx, &fustorv1.FindRequest{View: "demo", Path: "/bench", Glob: "*.dat", Limit: benchFiles, PackedPaths: true})
			return len(client.FindPaths(resp)), err
		}},
	}
	want := map[string]int{"tree": benchFiles + benchDirs + 1, "find-packed": benchFiles}
	for _, call := range calls {
		for _, compress := range []bool{false, true} {
			name := call.name + "/plain"
			if compress {
				name = call.name + "/s2"
			}
			b.Run(name, func(b *testing.B) {
				var wc wireCounter
				opts := []client.Option{client.WithKey("demo-key"), client.WithDialOptions(grpc.WithStatsHandler(&wc))}
				if compress {
					opts = append(opts, client.WithCompression())
				}
				c, err := client.New(addr, opts...)
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				for b.Loop() {
					n, err := call.call(c)
					if err != nil || n != want[call.name] {
						b.Fatalf("%d entries, %v; want %d", n, err, want[call.name])
					}
				}
				b.ReportMetric(float64(wc.wire.Load())/float64(b.N), "wire-B/op")
				b.ReportMetric(float64(wc.payload.Load())/float64(b.N), "decoded-B/op")
			})
		}
	}
}
