package pipe

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/fustor/fustor/agent/internal/bus"
	"github.com/fustor/fustor/agent/internal/source"
	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
)

// walkSource is a Source whose audit is the test's function; the rest does nothing. A fake,
// because the failures it plays (a walk erroring, panicking, cancelled mid-way) cannot be
// produced on demand by a real tree.
type walkSource struct {
	audit func(ctx context.Context, emit func([]source.Event) error) error
	// onAudit, when set, is given each audit's options; stats is what each audit returns.
	onAudit func(source.AuditOptions)
	stats   source.WalkStats
	// snapErr is what every snapshot returns.
	snapErr error
}

func (w walkSource) Snapshot(context.Context, string, source.Origin, func([]source.Event) error) (source.WalkStats, error) {
	return source.WalkStats{}, w.snapErr
}

func (w walkSource) Audit(ctx context.Context, _ *source.AuditCache, opts source.AuditOptions, emit func([]source.Event) error) (source.WalkStats, error) {
	if w.onAudit != nil {
		w.onAudit(opts)
	}
	if w.audit == nil {
		return w.stats, nil
	}
	return w.stats, w.audit(ctx, emit)
}

func (walkSource) Sentinel([]string) []source.SentinelItem { return nil }
func (walkSource) Counters() map[string]uint64             { return nil }

// TestAuditEndIsSentOnEveryWayOut: an audit is framed by an explicit start and an end, and the
// end goes out however the walk ends — done, failed, panicked or cancelled — marked failed
// unless the walk completed (DESIGN.md §4.3, §9.6).
func TestAuditEndIsSentOnEveryWayOut(t *testing.T) {
	for _, tc := range []struct {
		name       string
		walk       func(ctx context.Context, cancel context.CancelFunc, emit func([]source.Event) error) error
		wantFailed bool
	}{
		{"completed", func(_ context.Context, _ context.CancelFunc, emit func([]source.Event) error) error {
			return emit([]source.Event{{Path: "/a.dat", Origin: source.OriginAudit}})
		}, false},
		{"failed", func(context.Context, context.CancelFunc, func([]source.Event) error) error {
			return errors.New("read /mnt: input/output error")
		}, true},
		{"panicked", func(context.Context, context.CancelFunc, func([]source.Event) error) error {
			panic("walker bug")
		}, true},
		{"cancelled mid-walk", func(ctx context.Context, cancel context.CancelFunc, emit func([]source.Event) error) error {
			if err := emit([]source.Event{{Path: "/a.dat", Origin: source.OriginAudit}}); err != nil {
				return err
			}
			cancel() // demotion or a stuck-walk restart
			<-ctx.Done()
			return ctx.Err()
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			walkCtx, cancel := context.WithCancel(context.Background())
			defer cancel()
			src := walkSource{audit: func(ctx context.Context, emit func([]source.Event) error) error { return tc.walk(ctx, cancel, emit) }}
			p := New(nil, Config{ID: "p", BatchSize: 10}, src, nil, nil, nil)
			s := &session{p: p, out: make(chan outItem, 16)}
			s.audit(context.Background(), walkCtx, source.NewAuditCache(), source.AuditOptions{}, false)
			close(s.out)
			var kinds []string
			var end *fustorv1.AuditEnd
			for it := range s.out {
				switch c := it.control.GetPayload().(type) {
				case *fustorv1.PushRequest_AuditStart:
					kinds = append(kinds, "start")
				case *fustorv1.PushRequest_AuditEnd:
					kinds, end = append(kinds, "end"), c.AuditEnd
				case nil:
					kinds = append(kinds, "rows")
				}
			}
			if len(kinds) < 2 || kinds[0] != "start" || kinds[len(kinds)-1] != "end" {
				t.Fatalf("messages %v; want start first and end last", kinds)
			}
			if end.GetFailed() != tc.wantFailed || (tc.wantFailed && end.GetError() == "") {
				t.Fatalf("end %v; want failed=%v with a reason", end, tc.wantFailed)
			}
		})
	}
}

// TestLostBusPositionAsksForASnapshot: when the bus overwrote events a session had not read
// ("position lost"), the session asks its leader loop for a snapshot and keeps forwarding.
func TestLostBusPositionAsksForASnapshot(t *testing.T) {
	b := bus.New(4, func(e source.Event) uint64 { return e.Index })
	sub := b.Subscribe()
	defer sub.Close()
	for i := range 10 {
		b.Publish(source.Event{Path: fmt.Sprintf("/f%d", i), Index: uint64(i + 1)})
	}
	p := New(nil, Config{ID: "p", BatchSize: 10}, walkSource{}, b, nil, nil)
	s := &session{p: p, out: make(chan outItem, 16), roleCh: make(chan struct{}, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.realtime(ctx, sub)
	}()
	defer func() {
		cancel()
		<-done
	}()
	select {
	case <-s.roleCh:
	case <-time.After(30 * time.Second):
		t.Fatal("no snapshot asked for after the position was lost")
	}
	if !s.resnap.Load() {
		t.Fatal("the leader loop was woken without a snapshot request")
	}
	b.Publish(source.Event{Path: "/after", Index: 11})
	select {
	case it := <-s.out:
		if len(it.events) != 1 || it.events[0].Path != "/after" {
			t.Fatalf("forwarded %v; want the event published after the loss", it.events)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("realtime stopped forwarding after the loss")
	}
}
