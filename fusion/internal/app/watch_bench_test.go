package app

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
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
	// apart runs the watchers in a child process at the lowest CPU priority (nice 19),
	// standing in for clients on other hosts: they read only when Fusion leaves a core idle,
	// so the row measures what serving them costs Fusion itself.
	apart bool
}

var watcherCases = []watcherCase{
	{0, false, "", false},
	{100, true, "", false},
	{100, true, "", true},
	{100, true, compress.Name, true},
	{100, false, "", false},
}

func (c watcherCase) String() string {
	name := fmt.Sprintf("watchers=%d", c.watchers)
	if c.watchers > 0 && !c.reading {
		name += "-stalled"
	}
	if c.compress != "" {
		name += "-" + c.compress
	}
	if c.apart {
		name += "-apart"
	}
	return name
}

// watchRoot opens c.watchers Watch streams on the root of view demo, on their own connection
// (a stalled reader fills its connection's flow-control window, which must not be the
// agent's), and returns a function that stops them and reports the bytes each received.
func watchRoot(b *testing.B, h *harness, c watcherCase) (stop func() int64) {
	b.Helper()
	report := func(bytes, msgs int64) int64 {
		if c.watchers == 0 {
			return 0
		}
		b.ReportMetric(float64(msgs)/float64(c.watchers)/float64(b.N), "msgs/watcher/op")
		return bytes / int64(c.watchers)
	}
	if c.apart {
		return watchApart(b, h.f.Addr().String(), c, report)
	}
	done, err := openWatchers(h.f.Addr().String(), c)
	if err != nil {
		b.Fatal(err)
	}
	return func() int64 { return report(done()) }
}

// openWatchers opens c's watch streams on addr and returns a function that closes them and
// says what they received.
func openWatchers(addr string, c watcherCase) (stop func() (bytes, msgs int64), err error) {
	ctx, cancel := context.WithCancel(withKey("demo-key"))
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if !c.reading {
		opts = append(opts, grpc.WithStaticStreamWindowSize(64<<10), grpc.WithStaticConnWindowSize(64<<10))
	}
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		cancel()
		return nil, err
	}
	var wg sync.WaitGroup
	var received, msgs atomic.Int64
	stop = func() (int64, int64) {
		cancel()
		wg.Wait()
		_ = conn.Close()
		return received.Load(), msgs.Load()
	}
	desc := &grpc.StreamDesc{StreamName: "Watch", ServerStreams: true}
	callOpts := []grpc.CallOption{grpc.ForceCodecV2(rawCodec{})}
	if c.compress != "" {
		callOpts = append(callOpts, grpc.UseCompressor(c.compress))
	}
	for range c.watchers {
		st, err := conn.NewStream(ctx, desc, "/fustor.v1.ViewService/Watch", callOpts...)
		if err == nil {
			err = st.SendMsg(&fustorv1.WatchRequest{View: "demo", Path: "/"})
		}
		if err == nil {
			err = st.CloseSend()
		}
		var first rawMsg
		if err == nil {
			err = st.RecvMsg(&first)
		}
		if err != nil {
			stop()
			return nil, err
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
	return stop, nil
}

// watchChildEnv carries a child watcher process's orders: address, watchers, compressor.
const watchChildEnv = "FUSTOR_BENCH_WATCH_CHILD"

// watchApart runs c's watchers in this test binary started again as a child at nice 19
// (watchChild); stop closes its stdin and reads what they received.
func watchApart(b *testing.B, addr string, c watcherCase, report func(bytes, msgs int64) int64) (stop func() int64) {
	b.Helper()
	cmd := exec.Command("nice", "-n", "19", os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s,%d,%s", watchChildEnv, addr, c.watchers, c.compress))
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	r := bufio.NewReader(out)
	if line, err := r.ReadString('\n'); err != nil || line != "ready\n" {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		b.Fatalf("watcher process: %q %v", line, err)
	}
	return func() int64 {
		_ = in.Close()
		var bytes, msgs int64
		line, err := r.ReadString('\n')
		if _, serr := fmt.Sscan(line, &bytes, &msgs); err != nil || serr != nil {
			b.Errorf("watcher process said %q: %v %v", line, err, serr)
		}
		if err := cmd.Wait(); err != nil {
			b.Errorf("watcher process: %v", err)
		}
		return report(bytes, msgs)
	}
}

// watchChild is the child of watchApart: it opens the watchers, says "ready", and when its
// stdin closes prints the bytes and messages they received.
func watchChild(spec string) int {
	parts := strings.Split(spec, ",")
	if len(parts) != 3 {
		fmt.Fprintf(os.Stderr, "bad %s %q\n", watchChildEnv, spec)
		return 2
	}
	n, err := strconv.Atoi(parts[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	stop, err := openWatchers(parts[0], watcherCase{watchers: n, reading: true, compress: parts[2]})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	bytes, msgs := stop()
	fmt.Println(bytes, msgs)
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
				start, cpu := time.Now(), cpuTime()
				for op := range b.N {
					snapshot(func(i int) uint64 {
						if i%every == op%every {
							return uint64(2 + op)
						}
						return sizeBefore(i, op, every)
					})
				}
				elapsed, cpu := time.Since(start), cpuTime()-cpu
				b.StopTimer()
				b.ReportMetric(float64(b.N*files)/elapsed.Seconds(), "rows/s")
				b.ReportMetric(float64(cpu.Milliseconds())/float64(b.N), "cpu-ms/op")
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
