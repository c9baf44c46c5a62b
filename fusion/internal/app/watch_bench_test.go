package app

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/fustor/fustor/fusion/internal/config"
	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
)

// BenchmarkIngestWithWatchers reports the rows per second a ready view applies from one
// agent's realtime batches (1,000 rows each, cycling over 200,000 paths of the product layout:
// creations, then modifications) with 0 Watch streams on the root, 100 that read every change
// over loopback gRPC (their decoding shares the machine's cores with Fusion and the client),
// and 100 that stopped reading (flow control holds their senders: they must not slow the
// apply loop). Run:
//
//	go test -run '^$' -bench IngestWithWatchers -benchtime 400x ./fusion/internal/app
func BenchmarkIngestWithWatchers(b *testing.B) {
	for _, c := range []struct {
		watchers int
		reading  bool
	}{{0, false}, {100, true}, {100, false}} {
		watchers := c.watchers
		name := fmt.Sprintf("watchers=%d", watchers)
		if watchers > 0 && !c.reading {
			name += "-stalled"
		}
		b.Run(name, func(b *testing.B) {
			h := start(b, func(c *config.Config) {
				v := c.Views["demo"]
				v.MaxWatchers, v.MaxWatchersPerKey = 1000, 1000
				c.Views["demo"] = v
			})
			a := h.connect(b)
			a.snapshotB(b, map[string]uint64{"/base": 1})
			ctx, cancel := context.WithCancel(withKey("demo-key"))
			defer cancel()
			var wg sync.WaitGroup
			var mu sync.Mutex
			received := 0
			// The watchers' own connection: a stalled reader fills its connection's flow-control
			// window, which must not be the agent's (a real agent has its own).
			conn, err := grpc.NewClient(h.f.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			// Watchers receive the messages' bytes without decoding them (rawCodec): the
			// benchmark measures what serving them costs Fusion, not 100 clients' decoding on
			// the same two cores.
			desc := &grpc.StreamDesc{StreamName: "Watch", ServerStreams: true}
			for range watchers {
				st, err := conn.NewStream(ctx, desc, "/fustor.v1.ViewService/Watch", grpc.ForceCodec(rawCodec{}))
				if err != nil {
					b.Fatal(err)
				}
				if err := st.SendMsg(&fustorv1.WatchRequest{View: "demo", Path: "/"}); err != nil {
					b.Fatal(err)
				}
				if err := st.CloseSend(); err != nil {
					b.Fatal(err)
				}
				var first rawMsg
				if err := st.RecvMsg(&first); err != nil {
					b.Fatal(err)
				}
				if !c.reading {
					continue
				}
				wg.Go(func() {
					for {
						var m rawMsg
						if err := st.RecvMsg(&m); err != nil {
							return
						}
						mu.Lock()
						received += m.n
						mu.Unlock()
					}
				})
			}
			const files, batch = 200_000, 1000
			paths := make([]string, 0, files)
			for s := 0; len(paths) < files; s++ {
				for f := range 250 {
					paths = append(paths, fmt.Sprintf("/upload/submit/%02x/run-%06d/sub_0/data_%04d.dat", s%256, s, f))
				}
			}
			mtime := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			next := 0
			b.ResetTimer()
			start := time.Now()
			for i := range b.N {
				for range batch {
					a.enc.Add(paths[next], 0, uint64(1+i), mtime.UnixNano(), 1, 0)
					next = (next + 1) % files
				}
				fb, idx := a.enc.Flush()
				if err := a.send(&fustorv1.PushRequest{Payload: &fustorv1.PushRequest_Batch{Batch: &fustorv1.EventBatch{
					Source: fustorv1.MessageSource_MESSAGE_SOURCE_REALTIME, SchemaName: "fs", Index: idx, Rows: &fustorv1.EventBatch_Fs{Fs: fb}}}}); err != nil {
					b.Fatal(err)
				}
				a.ack(b)
			}
			elapsed := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(b.N*batch)/elapsed.Seconds(), "rows/s")
			cancel()
			wg.Wait()
			if watchers > 0 && c.reading {
				b.ReportMetric(float64(received)/float64(watchers), "bytes/watcher")
			}
		})
	}
}

// rawMsg is a message received as bytes; rawCodec marshals requests as protobuf and keeps
// answers undecoded.
type rawMsg struct{ n int }

type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return proto.Marshal(v.(proto.Message)) }
func (rawCodec) Unmarshal(data []byte, v any) error {
	v.(*rawMsg).n = len(data)
	return nil
}
func (rawCodec) Name() string { return "proto" }
