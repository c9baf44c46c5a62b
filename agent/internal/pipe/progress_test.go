package pipe

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fustor/fustor/agent/internal/sender"
	"github.com/fustor/fustor/agent/internal/source"
	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
	"github.com/fustor/fustor/sdk/fsbatch"
)

// heldWalk is a source whose snapshot and audit emit the rows the test gives them and then
// hold still until released, so the test reads the heartbeat's progress in the middle of a
// walk. A fake, because a real tree cannot be stopped half-way at a chosen entry.
type heldWalk struct {
	rows    chan []source.Event // the next walk's rows
	emitted chan struct{}       // a walk handed its rows on and holds
	release chan error          // what the holding walk returns
}

func newHeldWalk() *heldWalk {
	return &heldWalk{rows: make(chan []source.Event, 1), emitted: make(chan struct{}), release: make(chan error)}
}

func (h *heldWalk) walk(ctx context.Context, emit func([]source.Event) error) (source.WalkStats, error) {
	if err := emit(<-h.rows); err != nil {
		return source.WalkStats{}, err
	}
	select {
	case h.emitted <- struct{}{}:
	case <-ctx.Done():
		return source.WalkStats{}, ctx.Err()
	}
	select {
	case err := <-h.release:
		return source.WalkStats{}, err
	case <-ctx.Done():
		return source.WalkStats{}, ctx.Err()
	}
}

func (h *heldWalk) Snapshot(ctx context.Context, _ string, _ source.Origin, emit func([]source.Event) error) (source.WalkStats, error) {
	return h.walk(ctx, emit)
}

func (h *heldWalk) Audit(ctx context.Context, _ *source.AuditCache, _ source.AuditOptions, emit func([]source.Event) error) (source.WalkStats, error) {
	return h.walk(ctx, emit)
}

// tree returns dirs directories and files files as one walk's rows.
func tree(dirs, files int) []source.Event {
	var evs []source.Event
	for i := range dirs {
		evs = append(evs, source.Event{Path: fmt.Sprintf("/d%d", i), Flags: fsbatch.FlagDir})
	}
	for i := range files {
		evs = append(evs, source.Event{Path: fmt.Sprintf("/f%d", i)})
	}
	return evs
}

// TestHeartbeatShowsTheRunningWalk: while a snapshot or an audit runs, the heartbeat's progress
// carries the walk — its kind, what it has counted so far (from zero for every walk), elapsed
// time and rate — and as estimated total the entries of the last complete walk of the same
// kind, else of the other kind, else 0. A failed walk estimates nothing; no walk, no progress.
func TestHeartbeatShowsTheRunningWalk(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Unix(1000, 0).UnixNano())
	src := newHeldWalk()
	p := New(nil, Config{ID: "p", BatchSize: 1000, Now: func() time.Time { return time.Unix(0, now.Load()) }}, src, nil, nil, nil)
	s := &session{p: p, out: make(chan outItem, 1000)}
	ctx := context.Background()
	// The walks run one after the other on one pipe, as a leader's duties run them.
	for _, step := range []struct {
		name         string
		kind         string
		dirs, files  int
		fail         bool
		wantEstimate uint64
	}{
		{"first snapshot: no total known", walkSnapshot, 3, 7, false, 0},
		{"second snapshot: the first one's entries", walkSnapshot, 2, 3, false, 10},
		{"first audit: the last snapshot's entries", walkAudit, 1, 1, false, 5},
		{"failed audit", walkAudit, 4, 4, true, 2},
		{"next audit: the last complete audit's entries", walkAudit, 1, 0, false, 2},
		{"snapshot after audits: the last snapshot's", walkSnapshot, 1, 1, false, 5},
	} {
		t.Run(step.name, func(t *testing.T) {
			if w := p.progress().GetWalk(); w != nil {
				t.Fatalf("walk %v reported while none runs", w)
			}
			src.rows <- tree(step.dirs, step.files)
			done := make(chan struct{})
			go func() {
				defer close(done)
				if step.kind == walkSnapshot {
					s.snapshot(ctx)
				} else {
					s.audit(ctx, ctx, source.NewAuditCache(), source.AuditOptions{}, false)
				}
			}()
			<-src.emitted
			now.Add(int64(2 * time.Second))
			pr := p.progress()
			w := pr.GetWalk()
			if w.GetKind() != step.kind || w.GetDirs() != uint64(step.dirs) || w.GetFiles() != uint64(step.files) ||
				w.GetEstimatedTotal() != step.wantEstimate {
				t.Errorf("walk %v; want %s with %d dirs, %d files, estimated total %d", w, step.kind, step.dirs, step.files, step.wantEstimate)
			}
			if w.GetElapsed().AsDuration() != 2*time.Second || w.GetEntriesPerSecond() != float64(step.dirs+step.files)/2 {
				t.Errorf("elapsed %v, rate %v; want 2s and %v/s", w.GetElapsed().AsDuration(), w.GetEntriesPerSecond(), float64(step.dirs+step.files)/2)
			}
			if (step.kind == walkSnapshot) != pr.GetSnapshotRunning() || (step.kind == walkAudit) != pr.GetAuditRunning() {
				t.Errorf("snapshot_running %v, audit_running %v during a %s", pr.GetSnapshotRunning(), pr.GetAuditRunning(), step.kind)
			}
			var err error
			if step.fail {
				err = errors.New("read /mnt: input/output error")
			}
			src.release <- err
			<-done
			if w := p.progress().GetWalk(); w != nil {
				t.Fatalf("walk %v still reported after it ended", w)
			}
		})
	}
}

// TestCancelledSnapshotLeavesNoProgress: a snapshot cancelled mid-walk (demotion, stuck-walk
// restart) sends no end marker; its progress ends with it and its count is no estimate.
func TestCancelledSnapshotLeavesNoProgress(t *testing.T) {
	src := newHeldWalk()
	p := New(nil, Config{ID: "p", BatchSize: 1000}, src, nil, nil, nil)
	s := &session{p: p, out: make(chan outItem, 1000)}
	ctx, cancel := context.WithCancel(context.Background())
	src.rows <- tree(1, 5)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.snapshot(ctx)
	}()
	<-src.emitted
	if w := p.progress().GetWalk(); w.GetFiles() != 5 {
		t.Fatalf("walk %v; want the running snapshot's 5 files", w)
	}
	cancel()
	<-done
	if w := p.progress().GetWalk(); w != nil {
		t.Fatalf("walk %v reported after the snapshot was cancelled", w)
	}
	if n := p.walks.estimate(walkSnapshot); n != 0 {
		t.Fatalf("estimate %d from a cancelled snapshot; want 0", n)
	}
}

// beats is a Fusion that records the heartbeats it is sent.
type beats struct {
	sender.Sender // nil: only Heartbeat is called
	got           chan *fustorv1.HeartbeatRequest
}

func (b *beats) Heartbeat(ctx context.Context, req *fustorv1.HeartbeatRequest) (*fustorv1.HeartbeatResponse, error) {
	select {
	case b.got <- req:
	case <-ctx.Done():
	}
	return &fustorv1.HeartbeatResponse{Role: fustorv1.Role_ROLE_LEADER}, nil
}

// TestHeartbeatCarriesTheWalk: what the heartbeat loop sends while a snapshot runs holds the
// walk, and the heartbeats after it ended do not.
func TestHeartbeatCarriesTheWalk(t *testing.T) {
	src := newHeldWalk()
	snd := &beats{got: make(chan *fustorv1.HeartbeatRequest)}
	p := New(nil, Config{ID: "p", BatchSize: 1000}, src, nil, snd, nil)
	s := &session{p: p, id: "s1", timeout: 20 * time.Millisecond, out: make(chan outItem, 1000), roleCh: make(chan struct{}, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	hb := make(chan struct{})
	go func() {
		defer close(hb)
		_ = s.heartbeat(ctx)
	}()
	defer func() {
		cancel()
		<-hb
	}()
	src.rows <- tree(2, 40)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.snapshot(ctx)
	}()
	<-src.emitted
	// Heartbeats built before the rows were counted (none yet, or none of them) may come
	// first; then every one has the snapshot's counts until it ends.
	w := (<-snd.got).GetProgress().GetWalk()
	for w.GetDirs()+w.GetFiles() < 42 {
		w = (<-snd.got).GetProgress().GetWalk()
	}
	if w.GetKind() != walkSnapshot || w.GetDirs() != 2 || w.GetFiles() != 40 {
		t.Fatalf("heartbeat walk %v; want the snapshot's 2 dirs and 40 files", w)
	}
	src.release <- nil
	<-done
	// A heartbeat built before the end may still be on its way: wait for one without the walk.
	for (<-snd.got).GetProgress().GetWalk() != nil {
	}
}
