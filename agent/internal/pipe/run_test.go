package pipe

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fustor/fustor/agent/internal/sender"
	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
)

// downSender is a Fusion that never answers, and a transport with a backoff of its own.
type downSender struct {
	sender.Sender // nil: only CreateSession is called
	creates       atomic.Int32
	// resets counts ResetConnectBackoff calls made before each CreateSession.
	resets, resetBeforeCreate atomic.Int32
	cancel                    context.CancelFunc
}

func (d *downSender) CreateSession(context.Context, *fustorv1.CreateSessionRequest) (*fustorv1.CreateSessionResponse, error) {
	if n := d.creates.Add(1); n > 1 && d.resets.Load() == n-1 {
		d.resetBeforeCreate.Add(1)
	}
	if d.creates.Load() == 4 {
		d.cancel()
	}
	return nil, status.Error(codes.Unavailable, "connection refused")
}

func (d *downSender) ResetConnectBackoff() { d.resets.Add(1) }

// TestRetryResetsTheConnectBackoff: before each retry the pipe resets the transport's own
// connection backoff, so the pipe's backoff_max is what bounds a reconnect.
func TestRetryResetsTheConnectBackoff(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	snd := &downSender{cancel: cancel}
	p := New(nil, Config{ID: "p", BackoffMin: time.Millisecond, BackoffMax: 2 * time.Millisecond}, walkSource{}, nil, snd, nil)
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	select {
	case err := <-done:
		if err != nil && !errors.Is(err, context.Canceled) {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not stop")
	}
	if snd.creates.Load() != 4 || snd.resetBeforeCreate.Load() != 3 {
		t.Fatalf("%d creates, %d of the retries after a reset; want 4 and 3", snd.creates.Load(), snd.resetBeforeCreate.Load())
	}
}
