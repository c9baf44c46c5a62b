package sender

import (
	"context"
	"testing"

	"go.uber.org/goleak"

	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// plain is a transport with no connection backoff of its own.
type plain struct{}

func (plain) CreateSession(context.Context, *fustorv1.CreateSessionRequest) (*fustorv1.CreateSessionResponse, error) {
	return &fustorv1.CreateSessionResponse{}, nil
}
func (plain) Heartbeat(context.Context, *fustorv1.HeartbeatRequest) (*fustorv1.HeartbeatResponse, error) {
	return &fustorv1.HeartbeatResponse{}, nil
}
func (plain) CloseSession(context.Context, string) error                    { return nil }
func (plain) Push(context.Context) (fustorv1.PushService_PushClient, error) { return nil, nil }

type resetting struct {
	plain
	resets *int
}

func (r resetting) ResetConnectBackoff() { *r.resets++ }

// TestBackoffResetterIsOptional: the pipe finds the reset by assertion, so a Sender need not
// have one, and one that has it is found through the Sender interface.
func TestBackoffResetterIsOptional(t *testing.T) {
	var n int
	for _, tt := range []struct {
		s    Sender
		want bool
	}{{plain{}, false}, {resetting{resets: &n}, true}} {
		r, ok := tt.s.(BackoffResetter)
		if ok != tt.want {
			t.Fatalf("%T: BackoffResetter %v, want %v", tt.s, ok, tt.want)
		}
		if ok {
			r.ResetConnectBackoff()
		}
	}
	if n != 1 {
		t.Fatalf("%d resets, want 1", n)
	}
}
