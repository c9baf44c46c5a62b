package app

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/fustor/fustor/fusion/internal/config"
	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
	"github.com/fustor/fustor/sdk/fsbatch"
)

// TestManySessionsUnderLoad: 20 sessions on one view push realtime rows steadily while they
// heartbeat at timeout/2; none may expire. After all close, goroutines and heap return to
// their baseline. FUSTOR_LOAD_SECONDS sets the duration (default 60).
func TestManySessionsUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("60 s load test")
	}
	seconds := 60
	if v, err := strconv.Atoi(os.Getenv("FUSTOR_LOAD_SECONDS")); err == nil && v > 0 {
		seconds = v
	}
	h := start(t, func(c *config.Config) {
		p := c.Pipes["demo"]
		p.SessionTimeout = 2 * time.Second
		c.Pipes["demo"] = p
	})
	ingest := withKey("demo-ingest-key")
	// Baseline: Fusion running and the client connected, no session yet.
	if _, err := h.views().ListViews(withKey("demo-key"), &fustorv1.ListViewsRequest{}); err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	baseG := runtime.NumGoroutine()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(seconds)*time.Second)
	defer cancel()
	var obsoleted, rows atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	ids := make([]string, 20)
	for i := range ids {
		resp, err := h.session().CreateSession(ingest, &fustorv1.CreateSessionRequest{AgentId: fmt.Sprintf("load-%d", i), SchemaName: "fs"})
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = resp.GetSessionId()
		timeout := resp.GetTimeout().AsDuration()
		g.Go(func() error { // heartbeats at timeout/2
			tk := time.NewTicker(timeout / 2)
			defer tk.Stop()
			for {
				select {
				case <-gctx.Done():
					return nil
				case <-tk.C:
					if _, err := h.session().Heartbeat(ingest, &fustorv1.HeartbeatRequest{SessionId: ids[i], CanRealtime: true}); err != nil {
						return fmt.Errorf("heartbeat of session %d: %w", i, err)
					}
				}
			}
		})
		g.Go(func() error { // steady realtime rows
			sctx, scancel := context.WithCancel(ingest)
			defer scancel()
			stream, err := fustorv1.NewPushServiceClient(h.conn).Push(sctx)
			if err != nil {
				return err
			}
			var wg sync.WaitGroup
			wg.Go(func() {
				for {
					m, err := stream.Recv()
					if err != nil {
						return
					}
					if m.GetSessionObsoleted() != nil {
						obsoleted.Add(1)
					}
				}
			})
			defer wg.Wait()
			defer scancel()
			enc := fsbatch.NewEncoder(0)
			if err := stream.Send(&fustorv1.PushRequest{SessionId: ids[i], Seq: 1}); err != nil {
				return err
			}
			for seq := uint64(2); gctx.Err() == nil; seq++ {
				for f := range 100 {
					enc.Add(fmt.Sprintf("/s%02d/d%d/f%03d", i, seq%50, f), 0, seq, time.Now().UnixNano(), seq, 0)
				}
				b, idx := enc.Flush()
				if err := stream.Send(&fustorv1.PushRequest{Seq: seq, Payload: &fustorv1.PushRequest_Batch{Batch: &fustorv1.EventBatch{
					Source: fustorv1.MessageSource_MESSAGE_SOURCE_REALTIME, SchemaName: "fs", Index: idx, Rows: &fustorv1.EventBatch_Fs{Fs: b}}}}); err != nil {
					return fmt.Errorf("push of session %d: %w", i, err)
				}
				rows.Add(100)
				time.Sleep(5 * time.Millisecond) // steady load, not a flood
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	if n := obsoleted.Load(); n != 0 {
		t.Fatalf("%d sessions were obsoleted under load", n)
	}
	live := 0
	for _, s := range h.f.sessions.List() {
		for _, id := range ids {
			if s.ID == id {
				live++
			}
		}
	}
	if live != len(ids) {
		t.Fatalf("%d of %d sessions alive after %d s of load", live, len(ids), seconds)
	}
	t.Logf("%d rows pushed by %d sessions in %d s; no session expired", rows.Load(), len(ids), seconds)
	for _, id := range ids {
		if _, err := h.session().CloseSession(ingest, &fustorv1.CloseSessionRequest{SessionId: id}); err != nil {
			t.Fatal(err)
		}
	}
	// The live view resets when the last session closes; stream goroutines wind down.
	deadline := time.Now().Add(10 * time.Second)
	for {
		runtime.GC()
		var now runtime.MemStats
		runtime.ReadMemStats(&now)
		g := runtime.NumGoroutine()
		if g <= baseG && now.HeapAlloc < base.HeapAlloc+4<<20 {
			t.Logf("goroutines %d (baseline %d), heap %d KiB (baseline %d KiB)", g, baseG, now.HeapAlloc>>10, base.HeapAlloc>>10)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after close: goroutines %d (baseline %d), heap %d KiB (baseline %d KiB)", g, baseG, now.HeapAlloc>>10, base.HeapAlloc>>10)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
