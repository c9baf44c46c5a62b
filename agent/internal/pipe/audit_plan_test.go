package pipe

import (
	"context"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/fustor/fustor/agent/internal/source"
)

// TestAuditOptionsFollowTheConfig: audits are numbered per pipe, carry the rolling share, and
// every AuditDeepEvery-th one is deep (never with 0).
func TestAuditOptionsFollowTheConfig(t *testing.T) {
	p := New(nil, Config{ID: "p", AuditRollingShare: 0.5, AuditDeepEvery: 3}, walkSource{}, nil, nil, nil)
	for i := uint64(1); i <= 7; i++ {
		o := p.nextAudit()
		if want := (source.AuditOptions{Cycle: i, Share: 0.5, Deep: i%3 == 0}); o != want {
			t.Errorf("audit %d: %+v; want %+v", i, o, want)
		}
	}
	never := New(nil, Config{ID: "p"}, walkSource{}, nil, nil, nil)
	for i := range 12 {
		if o := never.nextAudit(); o.Deep || o.Share != 0 {
			t.Fatalf("audit %d of a pipe with no deep audits or share: %+v", i+1, o)
		}
	}
}

// TestAuditPassesItsOptions: the audit hands its options to the source and logs how deep it
// looked, with the silent directories it re-listed.
func TestAuditPassesItsOptions(t *testing.T) {
	opts := make(chan source.AuditOptions, 1)
	src := walkSource{onAudit: func(o source.AuditOptions) { opts <- o }, stats: source.WalkStats{Dirs: 10, Silent: 6, Rolled: 3, Files: 40}}
	core, logs := observer.New(zap.InfoLevel)
	p := New(zap.New(core), Config{ID: "p", BatchSize: 10}, src, nil, nil, nil)
	s := &session{p: p, out: make(chan outItem, 16)}
	want := source.AuditOptions{Cycle: 5, Share: 0.25, Deep: true}
	s.audit(context.Background(), context.Background(), source.NewAuditCache(), want, true)
	if got := <-opts; got != want {
		t.Fatalf("source got %+v; want %+v", got, want)
	}
	sent := logs.FilterMessage("audit sent").All()
	if len(sent) != 1 || p.Status().RecoveryAudits != 1 {
		t.Fatalf("%d audit sent logs, %d recovery audits; want 1 each", len(sent), p.Status().RecoveryAudits)
	}
	f := sent[0].ContextMap()
	if f["deep"] != true || f["recovery"] != true || f["rolled_dirs"] != uint64(3) || f["silent_dirs"] != uint64(6) || f["cycle"] != uint64(5) {
		t.Fatalf("audit sent fields %v", f)
	}
}
