package app

import (
	"context"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fustor/fustor/fusion/internal/config"
	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
)

// idleStreams opens n push streams with the ingest key that never send a message, and
// returns each one's status code once the server ended it (in opening order).
func idleStreams(t testing.TB, h *harness, n int) []codes.Code {
	t.Helper()
	ctx, cancel := context.WithCancel(withKey("demo-ingest-key"))
	defer cancel()
	out := make([]codes.Code, n)
	var wg sync.WaitGroup
	for i := range n {
		st, err := fustorv1.NewPushServiceClient(h.conn).Push(ctx)
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			_, err := st.Recv()
			out[i] = status.Code(err)
		})
	}
	wg.Wait()
	return out
}

// TestIdlePushStreamsAreBounded (issue 22): a key holds at most max_push_streams_per_key push
// streams (RESOURCE_EXHAUSTED beyond), and a stream that sends no first message within
// push_first_message_timeout is ended (INVALID_ARGUMENT, saying why); the view's agent and
// queries are unaffected.
func TestIdlePushStreamsAreBounded(t *testing.T) {
	h := start(t, func(c *config.Config) {
		c.Server.PushFirstMessageTimeout, c.Server.MaxPushStreamsPerKey = 300*time.Millisecond, 20
	})
	a := h.connect(t) // one stream of the key's 20, busy
	a.snapshot(t, map[string]uint64{"/f": 1})
	start := time.Now()
	codesOf := idleStreams(t, h, 60)
	took := time.Since(start)
	counts := map[codes.Code]int{}
	for _, c := range codesOf {
		counts[c]++
	}
	if counts[codes.InvalidArgument] != 19 || counts[codes.ResourceExhausted] != 41 || len(counts) != 2 {
		t.Fatalf("60 idle streams with 1 of 20 taken: %v; want 19 timed out, 41 refused", counts)
	}
	if took < 300*time.Millisecond {
		t.Fatalf("the idle streams ended after %v, before the first-message timeout", took)
	}
	// The agent's own stream was never touched.
	a.realtime(t, map[string]uint64{"/g": 2}, time.Now())
	if st, err := h.views().Stat(withKey("demo-key"), &fustorv1.StatRequest{View: "demo", Path: "/g"}); err != nil || st.GetEntry().GetSize() != 2 {
		t.Fatalf("after the idle streams: %v, %v", st, err)
	}
}

// BenchmarkStatDuringIdlePushStreams reports a Stat's latency (p50, p99) while 500 push streams
// that never send are opened with a valid ingest key (64 held until the first-message timeout,
// the rest refused), against the same Stat with nothing else going on. Run:
//
//	go test -run '^$' -bench StatDuringIdlePushStreams -benchtime 2000x ./fusion/internal/app
func BenchmarkStatDuringIdlePushStreams(b *testing.B) {
	h := start(b, func(c *config.Config) { c.Server.PushFirstMessageTimeout = 2 * time.Second })
	a := h.connect(b)
	a.snapshotB(b, map[string]uint64{"/f": 1})
	q, ctx := h.views(), withKey("demo-key")
	stat := func() time.Duration {
		t0 := time.Now()
		if _, err := q.Stat(ctx, &fustorv1.StatRequest{View: "demo", Path: "/f"}); err != nil {
			b.Fatal(err)
		}
		return time.Since(t0)
	}
	measure := func(n int) (p50, p99 time.Duration) {
		lat := make([]time.Duration, n)
		for i := range lat {
			lat[i] = stat()
		}
		slices.Sort(lat)
		return lat[n/2], lat[n*99/100]
	}
	idle50, idle99 := measure(b.N)
	done := make(chan []codes.Code)
	go func() { done <- idleStreams(b, h, 500) }()
	b.ResetTimer()
	busy50, busy99 := measure(b.N)
	b.StopTimer()
	codesOf := <-done
	held := 0
	for _, c := range codesOf {
		if c == codes.InvalidArgument {
			held++
		}
	}
	b.ReportMetric(float64(idle50.Microseconds())/1e3, "idle-p50-ms")
	b.ReportMetric(float64(idle99.Microseconds())/1e3, "idle-p99-ms")
	b.ReportMetric(float64(busy50.Microseconds())/1e3, "p50-ms")
	b.ReportMetric(float64(busy99.Microseconds())/1e3, "p99-ms")
	b.ReportMetric(float64(held), "streams-held")
}

// TestHostileDeepChainIsBounded (issue 22): one push declaring a 600-deep chain of 1 KB
// directory names, with a row under every level, costs Fusion no path per level: rows beyond
// max_path_bytes are rejected with a short reason, the heap stays within a few MB, and the
// view's good data and queries are as before.
func TestHostileDeepChainIsBounded(t *testing.T) {
	h := start(t, nil)
	a := h.connect(t)
	a.snapshot(t, map[string]uint64{"/good": 7})
	long := strings.Repeat("n", 1000)
	b := &fustorv1.FsBatch{}
	for i := range 600 {
		b.Dirs = append(b.Dirs, &fustorv1.FsDir{Id: uint32(2 + i), ParentId: uint32(1 + i), Name: long})
		b.ParentIds, b.Names, b.Sizes = append(b.ParentIds, uint32(2+i)), append(b.Names, "f"), append(b.Sizes, 1)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	ack := a.batch(t, fustorv1.MessageSource_MESSAGE_SOURCE_REALTIME, b, 2)
	runtime.GC()
	runtime.ReadMemStats(&after)
	// Four levels fit in 4,096 bytes, with their rows; the rest are rejected.
	if ack.GetRowsApplied() != 4 || ack.GetRowsRejected() != 596 || len(ack.GetError()) > 300 {
		t.Fatalf("ack: applied %d, rejected %d, error %d bytes: %.300s", ack.GetRowsApplied(), ack.GetRowsRejected(), len(ack.GetError()), ack.GetError())
	}
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 8<<20 {
		t.Fatalf("the heap grew %d MB", grew>>20)
	}
	st, err := h.views().Stat(withKey("demo-key"), &fustorv1.StatRequest{View: "demo", Path: "/good"})
	if err != nil || st.GetEntry().GetSize() != 7 {
		t.Fatalf("the good file after the hostile push: %v, %v", st, err)
	}
}
