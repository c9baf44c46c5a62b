package app

import (
	"fmt"
	"sync"
	"testing"
	"time"

	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
)

// BenchmarkPushIngest pushes synthetic snapshot rows over loopback gRPC into one view, one
// 1,000-row batch per op, encoded while sending (as an agent does), with up to 64 batches in
// flight; rows cycle over 1,000,000 paths of the product benchmark's layout, so the view grows
// to 1M files and then keeps being updated. Client and Fusion share the machine. Run for ≥ 10 s:
//
//	go test -run '^$' -bench PushIngest -benchtime 15000x ./fusion/internal/app
func BenchmarkPushIngest(b *testing.B) {
	h := start(b, nil)
	a := h.connect(b)
	if err := a.send(&fustorv1.PushRequest{Payload: &fustorv1.PushRequest_SnapshotStart{SnapshotStart: &fustorv1.SnapshotStart{}}}); err != nil {
		b.Fatal(err)
	}
	a.ack(b)
	const files, batch, inFlight = 1_000_000, 1000, 64
	paths := make([]string, 0, files)
	for s := 0; len(paths) < files; s++ {
		sub := fmt.Sprintf("/upload/submit/%02x/%02x/run-%06d", s%256, (s/256)%256, s)
		for k := range 4 {
			for f := range 250 {
				paths = append(paths, fmt.Sprintf("%s/sub_%d/data_%04d.dat", sub, k, f))
			}
		}
	}
	sem := make(chan struct{}, inFlight)
	var applied, rejected uint64
	var wg sync.WaitGroup
	wg.Go(func() {
		for got := 0; got < b.N; {
			m, err := a.stream.Recv()
			if err != nil {
				b.Errorf("recv: %v", err)
				return
			}
			if ack := m.GetAck(); ack != nil {
				applied += uint64(ack.GetRowsApplied())
				rejected += uint64(ack.GetRowsRejected())
				got++
				<-sem
			}
		}
	})
	mtime := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	next := 0
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		sem <- struct{}{}
		for range batch {
			a.enc.Add(paths[next], 0, 1234, mtime, 1, 0)
			next = (next + 1) % files
		}
		fb, idx := a.enc.Flush()
		if err := a.send(&fustorv1.PushRequest{Payload: &fustorv1.PushRequest_Batch{Batch: &fustorv1.EventBatch{
			Source: fustorv1.MessageSource_MESSAGE_SOURCE_SNAPSHOT, SchemaName: "fs", Index: idx, Rows: &fustorv1.EventBatch_Fs{Fs: fb}}}}); err != nil {
			b.Fatal(err)
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if rejected != 0 || applied != uint64(b.N*batch) {
		b.Fatalf("applied %d rejected %d of %d rows", applied, rejected, b.N*batch)
	}
	b.ReportMetric(float64(applied)/elapsed.Seconds(), "rows/s")
	b.ReportMetric(elapsed.Seconds(), "s-sustained")
}
