package app

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"github.com/fustor/fustor/fusion/internal/config"
	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
)

// The watch benchmarks measure what serving Watch streams costs Fusion's apply loop. Their
// watchers share the machine's two cores with Fusion and the pushing client, so they keep what
// they receive as undecoded buffers (rawCodec, no copy): the figure is Fusion's cost, not 100
// clients' decoding. A stalled watcher is a client that stopped reading: its connection has
// static flow-control windows (64 KiB), as a frozen process's socket would hold its sender;
// with grpc-go's dynamic windows a stalled client's transport keeps accepting megabytes per
// does.

// watcherCase is one row of the benchmarks' matrix.
type watcherCase struct {
	watchers int
	reading  bool
}

var watcherCases = []watcherCase{{0, false}, {100, true}, {100, false}}

func (c watcherCase) String() string {
	name := fmt.Sprintf("watchers=%d", c.watchers)
	if c.watchers > 0 && !c.reading {
		name += "-stalled"
	}
	return name
}

// watchRoot opens c.watchers Watch streams on the root of view demo, on their own connection
// (a stalled reader fills its connection's flow-control window, which must not be the
// agent's), and returns a function that stops them and reports the bytes each received.
func watchRoot(b *testing.B, h *harness, c watcherCase) (stop func() int64) {
	b.Helper()
	ctx, cancel := context.WithCancel(withKey("demo-key"))
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if !c.reading {
		opts = append(opts, grpc.WithStaticStreamWindowSize(64<<10), grpc.WithStaticConnWindowSize(64<<10))
	}
	conn, err := grpc.NewClient(h.f.Addr().String(), opts...)
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	var received, msgs atomic.Int64
	desc := &grpc.StreamDesc{StreamName: "Watch", ServerStreams: true}
	for range c.watchers {
		st, err := conn.NewStream(ctx, desc, "/fustor.v1.ViewService/Watch", grpc.ForceCodecV2(rawCodec{}))
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
				received.Add(int64(m.n))
				msgs.Add(1)
			}
		})
	}
	return func() int64 {
		cancel()
		wg.Wait()
		_ = conn.Close()
		if c.watchers == 0 {
			return 0
		}
		b.ReportMetric(float64(msgs.Load())/float64(c.watchers)/float64(b.N), "msgs/watcher/op")
		return received.Load() / int64(c.watchers)
	}
}

// benchPaths returns n file paths of the product benchmark's layout.
func benchPaths(n int) []string {
	paths := make([]string, 0, n)
	for s := 0; len(paths) < n; s++ {
		for f := range 250 {
			paths = append(paths, fmt.Sprintf("/upload/submit/%02x/run-%06d/sub_0/data_%04d.dat", s%256, s, f))
		}
	}
	return paths[:n]
}

// BenchmarkIngestWithWatchers reports the rows per second a ready view applies from one
// agent's realtime batches (1,000 rows each, each waiting for its Ack, cycling over 200,000
// paths of the product layout: creations, then modifications, so every row is a change) with
// 0 Watch streams on the root, 100 that read every change, and 100 that stopped reading. It
// is the worst case (every row is a change sent to every watcher). Run:
//
//	go test -run '^$' -bench IngestWithWatchers -benchtime 400x ./fusion/internal/app
func BenchmarkIngestWithWatchers(b *testing.B) {
	for _, c := range watcherCases {
		b.Run(c.String(), func(b *testing.B) {
			h := startWatched(b)
			a := h.connect(b)
			a.snapshotB(b, map[string]uint64{"/base": 1})
			stop := watchRoot(b, h, c)
			const files, batch = 200_000, 1000
			paths := benchPaths(files)
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
			if per := stop(); c.reading {
				b.ReportMetric(float64(per), "bytes/watcher")
			}
		})
	}
}

// BenchmarkSnapshotWithWatchers reports the rows per second of a snapshot applied to a ready
// view of 200,000 files (a new leader's or a restarted agent's full snapshot: up to 64 batches
// of 1,000 rows in flight, SnapshotStart to the Ack of SnapshotEnd) with 0, 100 reading and 100
// stalled Watch streams on the root, when 1% of the files changed since the view's last
// snapshot (each op changes another 1%) and when every file changed (every row a change sent
// to every watcher). Run:
//
//	go test -run '^$' -bench SnapshotWithWatchers -benchtime 5x ./fusion/internal/app
func BenchmarkSnapshotWithWatchers(b *testing.B) {
	const files, batch, inFlight = 200_000, 1000, 64
	paths := benchPaths(files)
	for _, every := range []int{100, 1} {
		for _, c := range watcherCases {
			b.Run(fmt.Sprintf("changed=%d%%/%s", 100/every, c), func(b *testing.B) {
				h := startWatched(b)
				a := h.connect(b)
				mtime := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
				snapshot := func(size func(int) uint64) {
					a.pipelinedSnapshot(b, paths, batch, inFlight, func(i int) (uint64, int64) { return size(i), mtime })
				}
				snapshot(func(int) uint64 { return 1 })
				stop := watchRoot(b, h, c)
				b.ResetTimer()
				start := time.Now()
				for op := range b.N {
					snapshot(func(i int) uint64 {
						if i%every == op%every {
							return uint64(2 + op)
						}
						return sizeBefore(i, op, every)
					})
				}
				elapsed := time.Since(start)
				b.StopTimer()
				b.ReportMetric(float64(b.N*files)/elapsed.Seconds(), "rows/s")
				if per := stop(); c.reading {
					b.ReportMetric(float64(per), "bytes/watcher")
				}
			})
		}
	}
}

// sizeBefore is the size file i has after ops 0..op-1 of BenchmarkSnapshotWithWatchers (1
// until an op changed it, then 2+ the last op that did), so an unchanged file is reported
// unchanged.
func sizeBefore(i, op, every int) uint64 {
	for o := op - 1; o >= 0; o-- {
		if i%every == o%every {
			return uint64(2 + o)
		}
	}
	return 1
}

// startWatched starts Fusion with room for the benchmarks' watchers.
func startWatched(b *testing.B) *harness {
	return start(b, func(c *config.Config) {
		v := c.Views["demo"]
		v.MaxWatchers, v.MaxWatchersPerKey = 1000, 1000
		c.Views["demo"] = v
	})
}

// pipelinedSnapshot sends paths as one snapshot in batches with up to inFlight unacknowledged,
// as an agent does, and returns when SnapshotEnd is acknowledged.
func (a *agent) pipelinedSnapshot(b *testing.B, paths []string, batch, inFlight int, attrs func(int) (uint64, int64)) {
	b.Helper()
	if err := a.send(&fustorv1.PushRequest{Payload: &fustorv1.PushRequest_SnapshotStart{SnapshotStart: &fustorv1.SnapshotStart{}}}); err != nil {
		b.Fatal(err)
	}
	a.ack(b)
	batches := (len(paths) + batch - 1) / batch
	sem := make(chan struct{}, inFlight)
	done := make(chan error, 1)
	go func() {
		for got := 0; got < batches; {
			m, err := a.stream.Recv()
			if err != nil {
				done <- err
				return
			}
			if ack := m.GetAck(); ack != nil {
				if ack.GetRowsRejected() != 0 {
					done <- fmt.Errorf("ack %+v", ack)
					return
				}
				got++
				<-sem
			}
		}
		done <- nil
	}()
	for i := 0; i < len(paths); i += batch {
		sem <- struct{}{}
		for j := i; j < min(i+batch, len(paths)); j++ {
			size, mtime := attrs(j)
			a.enc.Add(paths[j], 0, size, mtime, 1, 0)
		}
		fb, idx := a.enc.Flush()
		if err := a.send(&fustorv1.PushRequest{Payload: &fustorv1.PushRequest_Batch{Batch: &fustorv1.EventBatch{
			Source: fustorv1.MessageSource_MESSAGE_SOURCE_SNAPSHOT, SchemaName: "fs", Index: idx, Rows: &fustorv1.EventBatch_Fs{Fs: fb}}}}); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	if err := a.send(&fustorv1.PushRequest{Payload: &fustorv1.PushRequest_SnapshotEnd{SnapshotEnd: &fustorv1.SnapshotEnd{}}}); err != nil {
		b.Fatal(err)
	}
	a.ack(b)
}

// rawMsg is a message received as bytes; rawCodec marshals requests as protobuf and keeps
// answers as the transport's buffers, undecoded and uncopied.
type rawMsg struct{ n int }

type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	data, err := proto.Marshal(v.(proto.Message))
	if err != nil {
		return nil, err
	}
	return mem.BufferSlice{mem.SliceBuffer(data)}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	v.(*rawMsg).n = data.Len()
	return nil
}

func (rawCodec) Name() string { return "proto" }
