package pipe

import (
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fustor/fustor/agent/internal/source/fs"
	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
)

// TestRequestedAuditsAreBackedOff: a known loss of realtime events (RequestAudit, wired to the
// watcher's queue overflow) starts an audit at once with explicit start and end, and requests
// closer together than the backoff cannot loop the walk.
func TestRequestedAuditsAreBackedOff(t *testing.T) {
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	src, err := fs.New(nil, fs.Config{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	var now atomic.Int64
	now.Store(time.Unix(1000, 0).UnixNano())
	p := New(nil, Config{ID: "p", BatchSize: 100, RequestedAuditBackoff: time.Minute,
		Now: func() time.Time { return time.Unix(0, now.Load()) }}, src, nil, nil, nil)
	s := &session{p: p, out: make(chan outItem, 64)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.duties(ctx, ctx, false)
	}()
	waitAudit := func() {
		t.Helper()
		started := false
		for it := range s.out {
			switch it.control.GetPayload().(type) {
			case *fustorv1.PushRequest_AuditStart:
				started = true
			case *fustorv1.PushRequest_AuditEnd:
				if !started || it.control.GetAuditEnd().GetFailed() {
					t.Fatalf("audit end without start, or failed: %v", it.control)
				}
				return
			}
		}
	}
	p.RequestAudit()
	waitAudit()
	p.RequestAudit() // within the backoff: skipped (or coalesced with the next)
	now.Add(int64(2 * time.Minute))
	p.RequestAudit()
	waitAudit()
	cancel()
	<-done
	if got := p.Status().Audits; got != 2 {
		t.Fatalf("audits %d; want 2", got)
	}
}
