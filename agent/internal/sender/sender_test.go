package sender

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"go.uber.org/goleak"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

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

func notFound(t *testing.T, msg string, infos ...*errdetails.ErrorInfo) error {
	t.Helper()
	return withInfo(t, status.New(codes.NotFound, msg), infos...)
}

func withInfo(t *testing.T, st *status.Status, infos ...*errdetails.ErrorInfo) error {
	t.Helper()
	for _, info := range infos {
		var err error
		if st, err = st.WithDetails(info); err != nil {
			t.Fatal(err)
		}
	}
	return st.Err()
}

func TestIsSessionGone(t *testing.T) {
	gone := &errdetails.ErrorInfo{Reason: ReasonSessionNotFound, Domain: ErrorDomain}
	for _, tt := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"not a status", errors.New("boom"), false},
		{"a sender's own", fmt.Errorf("heartbeat: %w", ErrSessionGone), true},
		{"fusion's detail", notFound(t, "session not found", gone), true},
		{"fusion's detail, wrapped", fmt.Errorf("heartbeat: %w", notFound(t, "session not found", gone)), true},
		{"another reason of fusion's", notFound(t, "view not found", &errdetails.ErrorInfo{Reason: "VIEW_NOT_FOUND", Domain: ErrorDomain}), false},
		{"an older fusion: no detail", notFound(t, `session not found: "s1" is unknown`), true},
		{"another domain's detail only", notFound(t, "x", &errdetails.ErrorInfo{Reason: ReasonSessionNotFound, Domain: "example.com"}), true},
		{"fusion's after another domain's", notFound(t, "x", &errdetails.ErrorInfo{Reason: "OTHER", Domain: "example.com"}, gone), true},
		{"another code with the reason", withInfo(t, status.New(codes.Unavailable, "no"), gone), false},
		{"canceled", status.Error(codes.Canceled, "bye"), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := IsSessionGone(tt.err); got != tt.want {
				t.Errorf("IsSessionGone(%v) = %v; want %v", tt.err, got, tt.want)
			}
		})
	}
}
