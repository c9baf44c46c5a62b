package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
	"github.com/fustor/fustor/sdk/debughttp"
	"github.com/fustor/fustor/sdk/fsbatch"
)

// The scale phase (S, issue 18: "10M paths in one Fusion") pushes a synthetic tree of the
// bench's layout — no files on disk — into one view over the real push stream, as one
// snapshot of an agent, at the reference size (ScaleRef, 1M) and at --scale N, each into a
// Fusion of its own, and measures at both: heap and RSS per path, the ingest rate, the P4
// queries' latencies under --clients clients (paced as P4 is), GC pauses while they run, and
// the checkpoint's write and restore.
const (
	scalePhase = "scale"
	scaleView  = "scale"
	// ScaleRef is the reference size measured beside --scale in the same run.
	ScaleRef = 1_000_000
)

// syntheticTree is a Tree of n files in the bench's layout whose submissions are named by
// a seeded generator (the on-disk tree's names are random too; only the shape matters).
func syntheticTree(n int) Tree {
	rnd := rand.New(rand.NewPCG(seed, uint64(n)))
	t := Tree{Root: "(synthetic)", Files: n}
	seenA, seenB := map[byte]bool{}, map[[2]byte]bool{}
	t.Dirs = 2 // upload, upload/submit
	for f := 0; f < n; f += FilesPerSubm {
		var u [16]byte
		binary.BigEndian.PutUint64(u[:8], rnd.Uint64())
		binary.BigEndian.PutUint64(u[8:], rnd.Uint64())
		name := fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:])
		t.Submissions = append(t.Submissions, fmt.Sprintf("/upload/submit/%02x/%02x/%s", u[0], u[1], name))
		if !seenA[u[0]] {
			seenA[u[0]] = true
			t.Dirs++
		}
		if !seenB[[2]byte{u[0], u[1]}] {
			seenB[[2]byte{u[0], u[1]}] = true
			t.Dirs++
		}
		files := min(FilesPerSubm, n-f)
		t.Dirs += 1 + (files+FilesPerSub-1)/FilesPerSub
	}
	return t
}

// syntheticPath is file i of t: submission i/1000, sub_k, data_NNNN.
func syntheticPath(t *Tree, i int) string {
	s, in := i/FilesPerSubm, i%FilesPerSubm
	return fmt.Sprintf("%s/sub_%d/data_%04d.dat", t.Submissions[s], in/FilesPerSub, in%FilesPerSub)
}

// scaleConfig is a Fusion with one fs view whose checkpoints go to stateDir; none is written
// on its own during the run (the phase asks for one).
func scaleConfig(addr, debug, stateDir string) string {
	return fmt.Sprintf(`server:
  listen: %s
  admin_keys: [%s]
  shutdown_timeout: 60s
  debug_listen: %s
  state_dir: %s
  checkpoint_interval: 24h
log: {level: info, format: json}
receivers:
  default:
    api_keys:
      - {key: %s, pipe: %s}
pipes:
  %s: {receiver: default, views: [%s], session_timeout: 60s}
views:
  %s: {driver: fs, schema: fs, live: true, query_keys: [%s]}
`, addr, adminKey, debug, stateDir, ingestKey, pipeName, pipeName, scaleView, scaleView, queryKey)
}

// scale runs the phase at ScaleRef and at r.o.Scale.
func (r *runner) scale(ctx context.Context) error {
	sizes := []int{ScaleRef, r.o.Scale}
	if r.o.Scale <= ScaleRef {
		sizes = []int{r.o.Scale}
	}
	for _, n := range sizes {
		if err := r.scaleAt(ctx, n); err != nil {
			return fmt.Errorf("at %s paths: %w", commas(int64(n)), err)
		}
	}
	return nil
}

// scaleAt measures one size; its report rows are named by it ("S10M", "S1M").
func (r *runner) scaleAt(ctx context.Context, n int) (err error) {
	id := "S" + shortCount(n)
	state := filepath.Join(r.logs, "scale-state-"+shortCount(n))
	cfg := func(addr, debug string) string { return scaleConfig(addr, debug, state) }
	fusion, err := launchFusion(ctx, r.o.Bin, r.logs, "fusion-scale-"+shortCount(n), scaleView, cfg)
	if err != nil {
		return err
	}
	defer func() {
		if fusion != nil {
			if cerr := fusion.close(); cerr != nil && err == nil {
				err = cerr
			}
		}
	}()
	base, err := fusion.memStats(ctx)
	if err != nil {
		return err
	}
	t := syntheticTree(n)
	elapsed, err := r.pushSynthetic(ctx, fusion, &t)
	if err != nil {
		return err
	}
	r.rep.Add(id, "scale_ingest_rows_per_s", fmt.Sprintf("scale %s: snapshot rows applied per second (one stream, 1,000-row batches, %d in flight)", shortCount(n), ingestInFlight),
		float64(n)/elapsed.Seconds(), "rows/s", nil, fmt.Sprintf("%s files + %s directories in %.1f s", commas(int64(n)), commas(int64(t.Dirs)), elapsed.Seconds()))
	full, err := fusion.memStats(ctx)
	if err != nil {
		return err
	}
	mib := func(b uint64) float64 { return float64(b) / (1 << 20) }
	paths := float64(n + t.Dirs)
	r.rep.Add(id, "scale_heap_per_path", fmt.Sprintf("scale %s: Fusion heap (HeapAlloc after GC) per path", shortCount(n)), float64(full.HeapAlloc)/paths, "B/path", AtMost(100),
		fmt.Sprintf("%.0f MiB / %s paths (files and directories); empty Fusion %.1f MiB", mib(full.HeapAlloc), commas(int64(paths)), mib(base.HeapAlloc)))
	r.rep.Add(id, "scale_rss_per_path", fmt.Sprintf("scale %s: Fusion RSS per path", shortCount(n)), float64(full.RSS)/paths, "B/path", AtMost(100),
		fmt.Sprintf("%.0f MiB", mib(full.RSS)))

	saved := r.tree
	r.tree = &t
	defer func() { r.tree = saved }()
	before, err := fusion.memStatsNoGC(ctx)
	if err != nil {
		return err
	}
	if err := r.scaleQueries(ctx, fusion, id, n); err != nil {
		return err
	}
	after, err := fusion.memStatsNoGC(ctx)
	if err != nil {
		return err
	}
	if pauses := pausesBetween(before, after); len(pauses) > 0 {
		p := Summarise(pauses)
		r.rep.Add(id, "scale_gc_pause_p99_ms", fmt.Sprintf("scale %s: GC stop-the-world pause p99 while the queries ran", shortCount(n)), p.P99, "ms", Below(10),
			fmt.Sprintf("%d GCs; max %.2f ms (runtime.MemStats.PauseNs)", p.Count, p.Max))
	} else {
		r.rep.Add(id, "scale_gcs", fmt.Sprintf("scale %s: GCs while the queries ran", shortCount(n)), 0, "", nil, "no GC ran: no pause to report")
	}

	// The checkpoint: written on request, then read by a new Fusion at its start.
	resp, err := fustorv1.NewAdminServiceClient(fusion.conn).Checkpoint(withKey(ctx, adminKey), &fustorv1.CheckpointRequest{})
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	for _, res := range resp.GetCheckpoints() {
		if res.GetError() != "" || res.GetSkipped() != "" {
			return fmt.Errorf("checkpoint %s: %s%s", res.GetView(), res.GetError(), res.GetSkipped())
		}
		r.rep.Add(id, "scale_checkpoint_write_ms", fmt.Sprintf("scale %s: checkpoint write (encode, write, fsync)", shortCount(n)), res.GetDurationMs(), "ms", nil,
			fmt.Sprintf("%.0f MiB, %s nodes; longest lock hold %.1f ms", mib(res.GetBytes()), commas(int64(res.GetNodes())), res.GetEncodeMs()))
	}
	if err := fusion.close(); err != nil {
		return err
	}
	fusion = nil
	start := time.Now()
	again, err := launchFusion(ctx, r.o.Bin, r.logs, "fusion-scale-"+shortCount(n)+"-restart", scaleView, cfg)
	if err != nil {
		return err
	}
	fusion = again
	lines, err := again.waitLogged(ctx, "view restored from its checkpoint", 1)
	if err != nil {
		return err
	}
	took, _ := time.ParseDuration(fmt.Sprint(lines[0]["took"]))
	if f, ok := lines[0]["took"].(float64); ok { // zap's JSON encoder writes durations in seconds
		took = time.Duration(f * float64(time.Second))
	}
	r.rep.Add(id, "scale_checkpoint_restore_ms", fmt.Sprintf("scale %s: checkpoint restore at Fusion's start", shortCount(n)), ms(took), "ms", nil,
		fmt.Sprintf("read and load, from its log; the restarted Fusion answered %.1f s after its start", time.Since(start).Seconds()))
	st, err := again.views().GetStats(withKey(ctx, queryKey), &fustorv1.GetStatsRequest{View: scaleView, Path: "/"})
	if err != nil {
		return fmt.Errorf("stats after the restore: %w", err)
	}
	if st.GetFileCount() != uint64(n) {
		return fmt.Errorf("check the restore: the restored view holds %d files, want %d", st.GetFileCount(), n)
	}
	return nil
}

// pausesBetween returns the GC pauses recorded between two reads of the memstats.
func pausesBetween(before, after debughttp.MemStats) []time.Duration {
	n := int(after.NumGC - before.NumGC)
	n = min(n, len(after.PauseNs))
	out := make([]time.Duration, 0, n)
	for _, p := range after.PauseNs[len(after.PauseNs)-n:] {
		out = append(out, time.Duration(p))
	}
	return out
}

// pushSynthetic sends t as one snapshot over one push stream, up to ingestInFlight batches
// unacknowledged, and returns the time from SnapshotStart to the ack of SnapshotEnd.
func (r *runner) pushSynthetic(ctx context.Context, fusion *fusionProc, t *Tree) (time.Duration, error) {
	sctx, cancel := context.WithCancel(withKey(ctx, ingestKey))
	defer cancel()
	sess, err := fustorv1.NewSessionServiceClient(fusion.conn).CreateSession(sctx, &fustorv1.CreateSessionRequest{
		AgentId: "fustor-bench-scale", TaskId: "scale", SchemaName: "fs", SchemaVersion: 1,
		TimeoutHint: durationpb.New(60 * time.Second)})
	if err != nil {
		return 0, fmt.Errorf("create session: %w", err)
	}
	stream, err := fustorv1.NewPushServiceClient(fusion.conn).Push(sctx)
	if err != nil {
		return 0, fmt.Errorf("open push stream: %w", err)
	}
	seq := uint64(1)
	if err := stream.Send(&fustorv1.PushRequest{Seq: seq, SessionId: sess.GetSessionId()}); err != nil {
		return 0, fmt.Errorf("bind push stream: %w", err)
	}
	start := time.Now()
	seq++
	if err := stream.Send(&fustorv1.PushRequest{Seq: seq, Payload: &fustorv1.PushRequest_SnapshotStart{SnapshotStart: &fustorv1.SnapshotStart{}}}); err != nil {
		return 0, fmt.Errorf("send snapshot start: %w", err)
	}
	if _, err := waitAck(stream, seq); err != nil {
		return 0, err
	}
	sem := make(chan struct{}, ingestInFlight)
	var applied, rejected atomic.Int64
	endSeq := atomic.Uint64{}
	recvErr, ended := make(chan error, 1), make(chan struct{})
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			if a := m.GetAck(); a != nil {
				if a.GetSeq() == endSeq.Load() {
					close(ended)
					return
				}
				applied.Add(int64(a.GetRowsApplied()))
				rejected.Add(int64(a.GetRowsRejected()))
				<-sem
			}
		}
	}()
	r.prog.Start(fmt.Sprintf("scale: pushing %s synthetic paths", commas(int64(t.Files))), int64(t.Files), applied.Load)
	defer r.prog.Stop()
	enc := fsbatch.NewEncoder(0)
	mtime := time.Now().Add(-2 * time.Hour).UnixNano()
	send := func(m *fustorv1.PushRequest) error {
		select {
		case err := <-recvErr:
			return fmt.Errorf("push stream ended: %w", err)
		default:
		}
		return stream.Send(m)
	}
	for i := 0; i < t.Files; {
		select {
		case sem <- struct{}{}:
		case err := <-recvErr:
			return 0, fmt.Errorf("push stream ended: %w", err)
		case <-ctx.Done():
			return 0, ctx.Err()
		}
		for j := 0; j < ingestBatch && i < t.Files; j, i = j+1, i+1 {
			enc.Add(syntheticPath(t, i), 0, uint64(i%4097), mtime+int64(i), 1, 0)
		}
		fb, idx := enc.Flush()
		seq++
		if err := send(&fustorv1.PushRequest{Seq: seq, Payload: &fustorv1.PushRequest_Batch{Batch: &fustorv1.EventBatch{
			Source: fustorv1.MessageSource_MESSAGE_SOURCE_SNAPSHOT, SchemaName: "fs", Index: idx, Rows: &fustorv1.EventBatch_Fs{Fs: fb}}}}); err != nil {
			return 0, fmt.Errorf("send batch: %w", err)
		}
	}
	seq++
	endSeq.Store(seq)
	if err := send(&fustorv1.PushRequest{Seq: seq, Payload: &fustorv1.PushRequest_SnapshotEnd{SnapshotEnd: &fustorv1.SnapshotEnd{}}}); err != nil {
		return 0, fmt.Errorf("send snapshot end: %w", err)
	}
	select {
	case <-ended:
	case err := <-recvErr:
		return 0, fmt.Errorf("push stream ended before the snapshot's end was acked: %w", err)
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	elapsed := time.Since(start)
	if rejected.Load() != 0 || applied.Load() != int64(t.Files) {
		return 0, fmt.Errorf("check acks: %d rows applied, %d rejected, %d sent", applied.Load(), rejected.Load(), t.Files)
	}
	_ = stream.CloseSend()
	cancel()
	// The session stays open until Fusion stops: a view whose last session ends answers stale.
	return elapsed, nil
}

// scaleQueries runs P4's kinds against the view, paced as P4 is (without the find baselines:
// nothing is on disk), and adds their p50 and p99.
func (r *runner) scaleQueries(ctx context.Context, fusion *fusionProc, id string, n int) error {
	conns, err := dialClients(fusion.addr, r.o.Clients)
	if err != nil {
		return err
	}
	defer closeAll(conns)
	qctx := withKey(ctx, queryKey)
	for _, k := range r.queryKinds(scaleView) {
		if !slices.Contains([]string{qLs, qStatsSub, qStatsRoot, qFindSub, qGlobSub, qFindGlob}, k.name) {
			continue // the complete-answer finds grow with the tree: bulk transfers, not lookups
		}
		var done atomic.Int64
		r.prog.Start(fmt.Sprintf("scale %s: queries back to back: %s", shortCount(n), k.name), int64(r.o.Queries), done.Load)
		h, err := r.hammer(qctx, conns, k, &done, fusion.pid())
		r.prog.Stop()
		if err != nil {
			return fmt.Errorf("query %s: %w", k.name, err)
		}
		rate := r.o.Load * h.qps
		var pdone atomic.Int64
		r.prog.Start(fmt.Sprintf("scale %s: queries paced at %.0f/s: %s", shortCount(n), rate, k.name), 0, pdone.Load)
		plat, perrs, err := r.paced(qctx, conns, k, rate, &pdone)
		r.prog.Stop()
		if err != nil {
			return fmt.Errorf("query %s paced: %w", k.name, err)
		}
		p := Summarise(plat)
		note := fmt.Sprintf("%d clients, Poisson arrivals at %.0f queries/s (%.0f%% of the back-to-back %.0f/s), %d queries", r.o.Clients, rate, 100*r.o.Load, h.qps, p.Count)
		r.rep.Add(id, "scale_"+k.name+"_p50_ms", fmt.Sprintf("scale %s: %s p50", shortCount(n), k.label), p.P50, "ms", nil, note)
		r.rep.Add(id, "scale_"+k.name+"_p99_ms", fmt.Sprintf("scale %s: %s p99", shortCount(n), k.label), p.P99, "ms", nil, "")
		if errs := h.errs + perrs; errs > 0 {
			r.rep.Add(id, "scale_"+k.name+"_errors", fmt.Sprintf("scale %s: %s: failed queries", shortCount(n), k.label), float64(errs), "", AtMost(0), "")
		}
	}
	return nil
}

// shortCount names a size: 1M, 10M, 250k.
func shortCount(n int) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return fmt.Sprintf("%dM", n/1_000_000)
	case n >= 1000 && n%1000 == 0:
		return fmt.Sprintf("%dk", n/1000)
	}
	return fmt.Sprint(n)
}
