package bench

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
	"github.com/fustor/fustor/sdk/fsbatch"
)

const (
	ingestBatch = 1000
	// ingestInFlight batches may be unacknowledged at once, so the stream never idles
	// waiting for an ack round trip.
	ingestInFlight = 64
)

// ingestPaths returns the paths of an n-file tree of the bench's layout (submission
// directories named by number: only the shape matters here).
func ingestPaths(n int) []string {
	paths := make([]string, 0, n)
	for s := 0; len(paths) < n; s++ {
		sub := fmt.Sprintf("/upload/submit/%02x/%02x/run-%06d", s%256, (s/256)%256, s)
		for k := 0; k < SubDirs && len(paths) < n; k++ {
			for f := 0; f < FilesPerSub && len(paths) < n; f++ {
				paths = append(paths, fmt.Sprintf("%s/sub_%d/data_%04d.dat", sub, k, f))
			}
		}
	}
	return paths
}

// ingest is P2: a separate Fusion, one session speaking the push protocol as an agent does
// (create the session, bind the stream with an empty first message, SnapshotStart, then
// FsBatch batches built with fsbatch.Encoder), up to ingestInFlight batches unacknowledged,
// for IngestDuration. Rows cycle over the N paths of the layout, so the view grows to N files
// and is then updated in place. The ack of a batch is sent once it is applied, so acked rows
// per second is the applied rate.
func (r *runner) ingest(ctx context.Context) (err error) {
	fusion, err := startFusion(ctx, r.o.Bin, r.logs, "fusion-ingest", "ingest")
	if err != nil {
		return err
	}
	defer func() {
		if cerr := fusion.close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	paths := ingestPaths(r.o.Files)
	sctx, cancel := context.WithCancel(withKey(ctx, ingestKey))
	defer cancel()
	sess, err := fustorv1.NewSessionServiceClient(fusion.conn).CreateSession(sctx, &fustorv1.CreateSessionRequest{
		AgentId: "fustor-bench-ingest", TaskId: "ingest", SchemaName: "fs", SchemaVersion: 1,
		TimeoutHint: durationpb.New(30 * time.Second)})
	if err != nil {
		return fmt.Errorf("create session: %w", err)
	}
	if sess.GetRole() != fustorv1.Role_ROLE_LEADER {
		return fmt.Errorf("create session: role %v, want leader", sess.GetRole())
	}
	stream, err := fustorv1.NewPushServiceClient(fusion.conn).Push(sctx)
	if err != nil {
		return fmt.Errorf("open push stream: %w", err)
	}
	seq := uint64(1)
	if err := stream.Send(&fustorv1.PushRequest{Seq: seq, SessionId: sess.GetSessionId()}); err != nil {
		return fmt.Errorf("bind push stream: %w", err)
	}
	seq++
	if err := stream.Send(&fustorv1.PushRequest{Seq: seq, Payload: &fustorv1.PushRequest_SnapshotStart{SnapshotStart: &fustorv1.SnapshotStart{}}}); err != nil {
		return fmt.Errorf("send snapshot start: %w", err)
	}
	if _, err := waitAck(stream, seq); err != nil {
		return err
	}

	// The receiver counts acks and frees a slot per ack; it ends when the stream does.
	sem := make(chan struct{}, ingestInFlight)
	var applied, rejected, acked atomic.Int64
	var lastAck atomic.Int64 // unix ns
	recvErr := make(chan error, 1)
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			if a := m.GetAck(); a != nil {
				applied.Add(int64(a.GetRowsApplied()))
				rejected.Add(int64(a.GetRowsRejected()))
				acked.Add(1)
				lastAck.Store(time.Now().UnixNano())
				<-sem
			}
		}
	}()
	r.prog.Start(fmt.Sprintf("ingest: rows applied in %s", r.o.IngestDuration), 0, applied.Load)
	enc := fsbatch.NewEncoder(0)
	mtime := time.Now().Add(-2 * time.Hour).UnixNano()
	next, sent, wireBytes := 0, int64(0), 0
	start := time.Now()
	end := start.Add(r.o.IngestDuration)
	for time.Now().Before(end) {
		select {
		case sem <- struct{}{}:
		case err := <-recvErr:
			r.prog.Stop()
			return fmt.Errorf("push stream ended: %w", err)
		case <-ctx.Done():
			r.prog.Stop()
			return ctx.Err()
		}
		for range ingestBatch {
			enc.Add(paths[next], 0, uint64(next%4097), mtime+int64(next), 1, 0)
			next = (next + 1) % len(paths)
		}
		fb, idx := enc.Flush()
		seq++
		m := &fustorv1.PushRequest{Seq: seq, Payload: &fustorv1.PushRequest_Batch{Batch: &fustorv1.EventBatch{
			Source: fustorv1.MessageSource_MESSAGE_SOURCE_SNAPSHOT, SchemaName: "fs", Index: idx, Rows: &fustorv1.EventBatch_Fs{Fs: fb}}}}
		if sent < 100 {
			wireBytes += proto.Size(m)
		}
		if err := stream.Send(m); err != nil {
			r.prog.Stop()
			return fmt.Errorf("send batch: %w", err)
		}
		sent++
	}
	// Drain: every batch sent must be acknowledged before the clock stops.
	for acked.Load() < sent {
		select {
		case err := <-recvErr:
			r.prog.Stop()
			return fmt.Errorf("push stream ended with %d of %d batches acked: %w", acked.Load(), sent, err)
		case <-ctx.Done():
			r.prog.Stop()
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
	elapsed := time.Duration(lastAck.Load() - start.UnixNano())
	r.prog.Stop()
	_ = stream.CloseSend()
	cancel()
	_, _ = fustorv1.NewSessionServiceClient(fusion.conn).CloseSession(withKey(ctx, ingestKey), &fustorv1.CloseSessionRequest{SessionId: sess.GetSessionId()})
	if rejected.Load() != 0 || applied.Load() != sent*ingestBatch {
		return fmt.Errorf("check acks: %d rows applied, %d rejected, %d sent", applied.Load(), rejected.Load(), sent*ingestBatch)
	}
	rate := float64(applied.Load()) / elapsed.Seconds()
	r.rep.Add("P2", "p2_ingest_rows_per_s", "rows applied per second over loopback gRPC into one view", rate, "rows/s", AtLeast(1_000_000),
		fmt.Sprintf("%s rows in %.1f s, %d-row batches, %d in flight", commas(applied.Load()), elapsed.Seconds(), ingestBatch, ingestInFlight))
	r.rep.Add("P2", "p2_sustained_s", "P2 sustained for", elapsed.Seconds(), "s", AtLeast(10), "")
	if n := min(sent, 100); n > 0 {
		r.rep.Add("P6", "p6_proto_bytes_per_row", "PushRequest proto bytes per row (first batches of P2)", float64(wireBytes)/float64(n*ingestBatch), "B/row", nil, "")
	}
	return nil
}

func waitAck(stream fustorv1.PushService_PushClient, seq uint64) (*fustorv1.Ack, error) {
	for {
		m, err := stream.Recv()
		if err != nil {
			return nil, fmt.Errorf("wait for ack %d: %w", seq, err)
		}
		if a := m.GetAck(); a != nil {
			if a.GetSeq() != seq {
				return nil, errors.New("wait for ack: out of order")
			}
			return a, nil
		}
	}
}
