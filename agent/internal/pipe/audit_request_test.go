package pipe

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fustor/fustor/agent/internal/source"
	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
)

// auditRig runs a session's leader duties on a fake source, a fake clock and a fake timer, so
// a test sees every audit start (its options) and every timer the duties arm, in order, and
// decides when time passes and timers fire.
type auditRig struct {
	t   *testing.T
	p   *Pipe
	s   *session
	now atomic.Int64
	// events has the audits started and the timers armed, in the duties' order.
	events chan rigEvent
	// block, when it holds a channel, makes the next audit wait on it (or its context).
	block chan chan struct{}
	// fail is how many of the next audits fail.
	fail   atomic.Int32
	cancel context.CancelFunc
	done   chan struct{}
	// quit ends the recording, so duties still running audits (periodic ones) never block on
	// a full events channel while the test stops them.
	quit     chan struct{}
	stopOnce sync.Once
}

type timer struct {
	d    time.Duration
	fire chan time.Time
}

// rigEvent is an audit start (audit set) or a timer armed.
type rigEvent struct {
	audit *source.AuditOptions
	timer timer
}

func newAuditRig(t *testing.T, cfg Config, snapErr error) *auditRig {
	r := &auditRig{t: t, events: make(chan rigEvent, 64), block: make(chan chan struct{}, 1), quit: make(chan struct{})}
	r.now.Store(time.Unix(1000, 0).UnixNano())
	cfg.ID, cfg.BatchSize = "p", 100
	cfg.Now = func() time.Time { return time.Unix(0, r.now.Load()) }
	cfg.After = func(d time.Duration) <-chan time.Time {
		tm := timer{d, make(chan time.Time, 1)}
		r.record(rigEvent{timer: tm})
		return tm.fire
	}
	src := walkSource{onAudit: func(o source.AuditOptions) { r.record(rigEvent{audit: &o}) }, snapErr: snapErr, audit: func(ctx context.Context, _ func([]source.Event) error) error {
		select {
		case release := <-r.block:
			select {
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
		default:
		}
		if r.fail.Load() > 0 {
			r.fail.Add(-1)
			return errors.New("read /mnt: input/output error")
		}
		return nil
	}}
	r.p = New(nil, cfg, src, nil, nil, nil)
	r.s = &session{p: r.p, out: make(chan outItem, 10_000)}
	return r
}

func (r *auditRig) start(snapshot bool) {
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.done = cancel, make(chan struct{})
	go func() {
		defer close(r.done)
		r.s.duties(ctx, ctx, snapshot)
	}()
	r.t.Cleanup(r.stop)
}

func (r *auditRig) stop() {
	r.stopOnce.Do(func() {
		close(r.quit)
		r.cancel()
		<-r.done
	})
}

func (r *auditRig) record(ev rigEvent) {
	select {
	case r.events <- ev:
	case <-r.quit:
	}
}

func (r *auditRig) advance(d time.Duration) { r.now.Add(int64(d)) }

// next waits for the duties' next audit start or timer.
func (r *auditRig) next() rigEvent {
	r.t.Helper()
	select {
	case ev := <-r.events:
		return ev
	case <-time.After(20 * time.Second):
		r.t.Fatal("no audit started and no timer armed")
	}
	return rigEvent{}
}

// nextAudit waits for the next audit to start and returns its options.
func (r *auditRig) nextAudit() source.AuditOptions {
	r.t.Helper()
	ev := r.next()
	if ev.audit == nil {
		r.t.Fatalf("a timer of %v was armed; want an audit at once", ev.timer.d)
	}
	return *ev.audit
}

// nextTimer waits for the duties to arm a timer and returns it.
func (r *auditRig) nextTimer() timer {
	r.t.Helper()
	ev := r.next()
	if ev.audit != nil {
		r.t.Fatalf("an audit started (%+v); want it held back", *ev.audit)
	}
	return ev.timer
}

// ended waits for the next audit end marker.
func (r *auditRig) ended() *fustorv1.AuditEnd {
	r.t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case it := <-r.s.out:
			if e := it.control.GetAuditEnd(); e != nil {
				return e
			}
		case <-deadline:
			r.t.Fatal("no audit end")
		}
	}
}

// consumed waits until the duties have taken every request made so far.
func (r *auditRig) consumed() {
	r.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for len(r.p.auditReq) > 0 {
		if time.Now().After(deadline) {
			r.t.Fatal("requests never taken")
		}
		time.Sleep(time.Millisecond) // polling a condition, not waiting a fixed time
	}
}

// TestRecoveryAuditsAreNeverDropped: every RequestAudit (a queue overflow) leads to a deep
// audit. The first runs at once; one inside OverflowAuditDelay of the last one's end waits for
// the rest of the delay (requests meanwhile coalesce into it); one made while an audit runs
// waits for that audit, then for the delay. The fake clock moves only while the duties wait
// on a timer, so every figure is exact.
func TestRecoveryAuditsAreNeverDropped(t *testing.T) {
	r := newAuditRig(t, Config{OverflowAuditDelay: 10 * time.Second, AuditRollingShare: 0.5}, nil)
	r.start(false)

	r.p.RequestAudit()
	if o := r.nextAudit(); !o.Deep || o.Cycle != 1 || o.Share != 0.5 {
		t.Fatalf("first recovery audit %+v; want deep", o)
	}
	if e := r.ended(); e.GetFailed() {
		t.Fatalf("audit end %v", e)
	}

	// Inside the delay: held back, never dropped.
	r.p.RequestAudit()
	tm := r.nextTimer()
	if tm.d != 10*time.Second {
		t.Fatalf("held back %v; want the delay", tm.d)
	}
	for range 3 { // more overflows meanwhile: one audit covers them all
		r.p.RequestAudit()
		r.consumed()
	}
	// Woken early (4 s in): held back for the 6 s left.
	r.advance(4 * time.Second)
	tm.fire <- time.Time{}
	if tm = r.nextTimer(); tm.d != 6*time.Second {
		t.Fatalf("held back %v; want the 6 s left of the delay", tm.d)
	}
	r.advance(6 * time.Second)
	tm.fire <- time.Time{}
	if o := r.nextAudit(); !o.Deep {
		t.Fatalf("held-back recovery audit %+v; want deep", o)
	}
	r.ended()

	// During an audit: owed, and run after it (and the delay).
	r.p.RequestAudit()
	tm = r.nextTimer()
	release := make(chan struct{})
	r.block <- release
	r.advance(tm.d)
	tm.fire <- time.Time{}
	r.nextAudit() // running, blocked
	r.p.RequestAudit()
	close(release)
	r.ended()
	if tm = r.nextTimer(); tm.d != 10*time.Second {
		t.Fatalf("held back %v after the running audit; want the whole delay", tm.d)
	}
	r.advance(10 * time.Second)
	tm.fire <- time.Time{}
	if o := r.nextAudit(); !o.Deep {
		t.Fatalf("recovery audit %+v; want deep", o)
	}
	r.ended()
	r.stop()
	st := r.p.Status()
	if st.RecoveryAudits != 4 || st.Audits != 4 {
		t.Fatalf("recovery audits %d, audits %d; want 4 each", st.RecoveryAudits, st.Audits)
	}
	if len(r.events) > 0 {
		t.Fatalf("%d more audits or timers than requested", len(r.events))
	}
	if c := r.p.progress().GetCounters(); c["recovery_audits"] != 4 {
		t.Fatalf("heartbeat counters %v; want recovery_audits 4", c)
	}
}

// TestFailedRecoveryAuditIsRetried: a recovery audit that fails is owed again, after the delay
// but never at once (OverflowAuditDelay 0 here), so a failing walk cannot spin.
func TestFailedRecoveryAuditIsRetried(t *testing.T) {
	r := newAuditRig(t, Config{}, nil)
	r.fail.Store(1)
	r.start(false)
	r.p.RequestAudit()
	r.nextAudit()
	if e := r.ended(); !e.GetFailed() {
		t.Fatalf("audit end %v; want failed", e)
	}
	tm := r.nextTimer()
	if tm.d != failedRecoveryRetry {
		t.Fatalf("retry in %v; want %v", tm.d, failedRecoveryRetry)
	}
	r.advance(tm.d)
	tm.fire <- time.Time{}
	if o := r.nextAudit(); !o.Deep {
		t.Fatalf("retried recovery audit %+v; want deep", o)
	}
	if e := r.ended(); e.GetFailed() {
		t.Fatalf("retry failed: %v", e)
	}
	r.stop()
	if st := r.p.Status(); st.RecoveryAudits != 1 {
		t.Fatalf("recovery audits %d; want 1", st.RecoveryAudits)
	}
}

// TestOwedRecoveryOutlivesTheLeadership: a recovery audit still held back when the duties end
// (demotion, session end) stays owed by the pipe, for its next leadership.
func TestOwedRecoveryOutlivesTheLeadership(t *testing.T) {
	r := newAuditRig(t, Config{OverflowAuditDelay: time.Hour}, nil)
	r.start(false)
	r.p.RequestAudit()
	r.nextAudit()
	r.ended()
	r.p.RequestAudit()
	r.nextTimer()
	r.stop()
	if len(r.p.auditReq) != 1 {
		t.Fatal("the owed recovery audit was dropped with the leadership")
	}
}

// TestSnapshotAnswersEarlierRequests: a loss before the snapshot starts is repaired by the
// snapshot, so no recovery audit follows it (the next request runs at once: none ran before
// it); unless the snapshot failed, and then the recovery audit runs after it.
func TestSnapshotAnswersEarlierRequests(t *testing.T) {
	t.Run("snapshot done", func(t *testing.T) {
		r := newAuditRig(t, Config{OverflowAuditDelay: time.Hour}, nil)
		r.p.RequestAudit()
		r.start(true)
		r.consumed()
		r.p.RequestAudit()
		if o := r.nextAudit(); !o.Deep || o.Cycle != 1 {
			t.Fatalf("audit %+v; want the first one, deep", o)
		}
		r.ended()
		r.stop()
		if st := r.p.Status(); st.RecoveryAudits != 1 || st.Snapshots != 1 {
			t.Fatalf("status %+v", st)
		}
	})
	t.Run("snapshot failed", func(t *testing.T) {
		r := newAuditRig(t, Config{OverflowAuditDelay: time.Hour}, errors.New("open /mnt: no such file or directory"))
		r.p.RequestAudit()
		r.start(true)
		if o := r.nextAudit(); !o.Deep {
			t.Fatalf("audit %+v after a failed snapshot; want deep", o)
		}
		r.ended()
		r.stop()
		if st := r.p.Status(); st.RecoveryAudits != 1 {
			t.Fatalf("recovery audits %d; want 1", st.RecoveryAudits)
		}
	})
}

// TestPeriodicAuditAnswersAHeldBackRequest: a periodic audit starting while a recovery audit
// is held back by the delay runs deep and answers it.
func TestPeriodicAuditAnswersAHeldBackRequest(t *testing.T) {
	r := newAuditRig(t, Config{OverflowAuditDelay: time.Hour, AuditInterval: 5 * time.Millisecond}, nil)
	r.start(false)
	r.p.RequestAudit()
	for !r.nextAudit().Deep { // periodic ones may come first
	}
	r.p.RequestAudit()
	// Periodic audits started before the request was taken are plain; the duties then arm
	// the hour's timer, and the first audit after it is deep.
	for ev := r.next(); ev.audit != nil; ev = r.next() {
		if ev.audit.Deep {
			t.Fatalf("deep audit %+v before the request was taken", *ev.audit)
		}
	}
	if o := r.nextAudit(); !o.Deep {
		t.Fatalf("the periodic audit after the request: %+v; want deep", o)
	}
	r.stop()
	if st := r.p.Status(); st.RecoveryAudits < 2 {
		t.Fatalf("recovery audits %d; want 2", st.RecoveryAudits)
	}
}
