package app

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/fustor/fustor/fusion/internal/config"
	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
	"github.com/fustor/fustor/sdk/compress"
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
	compress string // the compressor the watchers ask for ("" none)
	// backToBack starts the next snapshot as soon as one ends, while the watchers still
	// receive the last one's changes (they are not held: they precede the new pass); the other
	// rows wait, untimed, until every watcher has every change, and report how long that took.
	backToBack bool
}

var watcherCases = []watcherCase{
	{watchers: 0},
	{watchers: 100, reading: true},
	{watchers: 100, reading: true, compress: compress.Name},
	{watchers: 100, reading: true, backToBack: true},
	{watchers: 100},
}

func (c watcherCase) String() string {
	name := fmt.Sprintf("watchers=%d", c.watchers)
	if c.watchers > 0 && !c.reading {
		name += "-stalled"
	}
	if c.compress != "" {
		name += "-" + c.compress
	}
	if c.backToBack {
		name += "-back-to-back"
	}
	return name
}

// watchers are a benchmark's Watch streams on the root of view demo.
type watchers struct {
	c        watcherCase
	cancel   context.CancelFunc
	conn     *grpc.ClientConn
	wg       sync.WaitGroup
	received atomic.Int64
	msgs     atomic.Int64
	seen     []atomic.Uint64 // per watcher, the sequence of the last change it received
}

// watchRoot opens c.watchers Watch streams on the root of view demo, on their own connection
// (a stalled reader fills its connection's flow-control window, which must not be the
// agent's).
func watchRoot(b *testing.B, h *harness, c watcherCase) *watchers {
	b.Helper()
	ctx, cancel := context.WithCancel(withKey("demo-key"))
	w := &watchers{c: c, cancel: cancel, seen: make([]atomic.Uint64, c.watchers)}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if !c.reading {
		opts = append(opts, grpc.WithStaticStreamWindowSize(64<<10), grpc.WithStaticConnWindowSize(64<<10))
	}
	conn, err := grpc.NewClient(h.f.Addr().String(), opts...)
	if err != nil {
		b.Fatal(err)
	}
	w.conn = conn
	desc := &grpc.StreamDesc{StreamName: "Watch", ServerStreams: true}
	callOpts := []grpc.CallOption{grpc.ForceCodecV2(rawCodec{})}
	if c.compress != "" {
		callOpts = append(callOpts, grpc.UseCompressor(c.compress))
	}
	for i := range c.watchers {
		st, err := conn.NewStream(ctx, desc, "/fustor.v1.ViewService/Watch", callOpts...)
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
		w.seen[i].Store(first.seq)
		if !c.reading {
			continue
		}
		w.wg.Go(func() {
			for {
				var m rawMsg
				if err := st.RecvMsg(&m); err != nil {
					return
				}
				w.received.Add(int64(m.n))
				w.msgs.Add(1)
				w.seen[i].Store(m.seq)
			}
		})
	}
	return w
}

// caughtUp waits until every watcher received the changes up to the view's last one.
func (w *watchers) caughtUp(b *testing.B, h *harness) {
	b.Helper()
	page, err := h.views().ListChanges(withKey("demo-key"), &fustorv1.ListChangesRequest{View: "demo"})
	if err != nil {
		b.Fatal(err)
	}
	last := cursorSeq(page.GetCursor())
	for i := range w.seen {
		for w.seen[i].Load() < last {
			time.Sleep(100 * time.Microsecond) // a benchmark's poll, untimed
		}
	}
}

// stop closes the streams and reports the bytes each received.
func (w *watchers) stop(b *testing.B) int64 {
	w.cancel()
	w.wg.Wait()
	_ = w.conn.Close()
	if w.c.watchers == 0 {
		return 0
	}
	b.ReportMetric(float64(w.msgs.Load())/float64(w.c.watchers)/float64(b.N), "msgs/watcher/op")
	return w.received.Load() / int64(w.c.watchers)
}

// cursorSeq is the sequence in a single-member cursor ("c1." + base64 JSON, query/changes.go).
func cursorSeq(cur string) uint64 {
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(cur, "c1."))
	if err != nil {
		return 0
	}
	var c map[string]struct {
		S uint64 `json:"s"`
	}
	if json.Unmarshal(raw, &c) != nil {
		return 0
	}
	for _, m := range c {
		return m.S
	}
	return 0
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
		if c.backToBack {
			continue // realtime changes are never held: every row of the matrix is back to back
		}
		b.Run(c.String(), func(b *testing.B) {
			h := startWatched(b)
			a := h.connect(b)
			a.snapshotB(b, map[string]uint64{"/base": 1})
			w := watchRoot(b, h, c)
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
			if per := w.stop(b); c.reading {
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
// to every watcher). The watchers hold the snapshot's changes until its end (watch_max_hold);
// after each op, untimed, the benchmark waits until every watcher has every change and
// reports that wait as deliver-ms/op, except in the back-to-back row. Run:
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
				w := watchRoot(b, h, c)
				b.ResetTimer()
				var elapsed, cpu, deliver time.Duration
				for op := range b.N {
					start, cpu0 := time.Now(), cpuTime()
					snapshot(func(i int) uint64 {
						if i%every == op%every {
							return uint64(2 + op)
						}
						return sizeBefore(i, op, every)
					})
					elapsed, cpu = elapsed+time.Since(start), cpu+cpuTime()-cpu0
					if c.reading && !c.backToBack {
						b.StopTimer()
						end := time.Now()
						w.caughtUp(b, h)
						deliver += time.Since(end)
						b.StartTimer()
					}
				}
				b.StopTimer()
				b.ReportMetric(float64(b.N*files)/elapsed.Seconds(), "rows/s")
				b.ReportMetric(float64(cpu.Milliseconds())/float64(b.N), "cpu-ms/op")
				if deliver > 0 {
					// From the Ack of SnapshotEnd until every watcher has every change.
					b.ReportMetric(float64(deliver.Microseconds())/1000/float64(b.N), "deliver-ms/op")
				}
				if per := w.stop(b); c.reading {
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
	// The last op o < op with o%every == i%every.
	o := op - 1 - ((op-1-i%every)%every+every)%every
	if o < 0 {
		return 1
	}
	return uint64(2 + o)
}

// cpuTime is the process's user + system CPU time so far: the benchmarks report what the
// watchers cost the two cores, not only the apply rate.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
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
type rawMsg struct {
	n   int
	seq uint64 // the sequence in the message's cursor
}

type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	data, err := proto.Marshal(v.(proto.Message))
	if err != nil {
		return nil, err
	}
	return mem.BufferSlice{mem.SliceBuffer(data)}, nil
}

// Unmarshal keeps the size and reads only the cursor (field 3 of WatchResponse, after the
// changes): the watchers' decoding is not what the benchmarks measure.
func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m := v.(*rawMsg)
	m.n = data.Len()
	buf := data.Materialize()
	for len(buf) > 0 {
		num, typ, n := protowire.ConsumeTag(buf)
		if n < 0 {
			return protowire.ParseError(n)
		}
		buf = buf[n:]
		if num == 3 && typ == protowire.BytesType {
			cur, n := protowire.ConsumeBytes(buf)
			if n < 0 {
				return protowire.ParseError(n)
			}
			m.seq = cursorSeq(string(cur))
			return nil
		}
		n = protowire.ConsumeFieldValue(num, typ, buf)
		if n < 0 {
			return protowire.ParseError(n)
		}
		buf = buf[n:]
	}
	return nil
}

func (rawCodec) Name() string { return "proto" }
