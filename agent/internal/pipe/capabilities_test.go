package pipe

import (
	"context"
	"testing"
	"time"

	"github.com/fustor/fustor/agent/internal/source"
	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
)

// walkOnly is a source with the one capability every source has: walks. No audits, no
// sentinel, no counters, no realtime of its own.
type walkOnly struct{}

func (walkOnly) Snapshot(context.Context, string, source.Origin, func([]source.Event) error) (source.WalkStats, error) {
	return source.WalkStats{}, nil
}

// TestOptionalCapabilities: the pipe asks a source only for what it implements. A source that
// cannot audit gets no audit (not even a start marker) and its leader's duties end after the
// snapshot; one without a sentinel answers the sentinel with no items, so Fusion judges
// nothing from it; one without counters still reports the pipe's own.
func TestOptionalCapabilities(t *testing.T) {
	p := New(nil, Config{ID: "p", BatchSize: 10, AuditInterval: time.Millisecond}, walkOnly{}, nil, nil, nil)
	if p.caps != (source.Capabilities{}) {
		t.Fatalf("capabilities %+v; want none", p.caps)
	}
	s := &session{p: p, out: make(chan outItem, 16), roleCh: make(chan struct{}, 1)}
	ctx := context.Background()
	if s.audit(ctx, ctx, source.NewAuditCache(), source.AuditOptions{}, false) {
		t.Fatal("a source without audits reported an audit done")
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.duties(ctx, ctx, true)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the duties of a source without audits did not end after the snapshot")
	}
	for len(s.out) > 0 {
		it := <-s.out
		if it.control.GetAuditStart() != nil || it.control.GetAuditEnd() != nil {
			t.Fatalf("audit marker %v sent for a source without audits", it.control)
		}
	}
	s.runCommand(ctx, &fustorv1.Command{Id: "c", Kind: &fustorv1.Command_Sentinel{Sentinel: &fustorv1.SentinelCommand{Paths: []string{"/a"}}}})
	fb := (<-s.out).control.GetSentinelFeedback()
	if fb == nil || fb.GetCommandId() != "c" || len(fb.GetItems()) != 0 {
		t.Fatalf("sentinel feedback %v; want command c with no items", fb)
	}
	if c := p.progress().GetCounters(); c["recovery_audits"] != 0 || len(c) != 1 {
		t.Fatalf("counters %v; want only the pipe's own", c)
	}
}
