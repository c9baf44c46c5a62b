// Package sender is the agent's transport contract (DESIGN.md §2): what an AgentPipe needs to
// carry its sessions and events to Fusion (Sender), and the pipes' reconnect backoff a sender
// is built with (Backoff). The pipe is written against this package only; the gRPC
// implementation is sender/grpc, which only agent/internal/app names.
package sender

import (
	"context"
	"errors"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
)

// Sender is what an agent pipe needs from a transport.
//
// Push's stream may reuse a batch's memory once Send returns (the pipe recycles the fs
// columns it sent), so an implementation must not keep a message past Send.
type Sender interface {
	CreateSession(ctx context.Context, req *fustorv1.CreateSessionRequest) (*fustorv1.CreateSessionResponse, error)
	Heartbeat(ctx context.Context, req *fustorv1.HeartbeatRequest) (*fustorv1.HeartbeatResponse, error)
	CloseSession(ctx context.Context, id string) error
	Push(ctx context.Context) (fustorv1.PushService_PushClient, error)
}

// BackoffResetter is a Sender whose transport waits between connection attempts of its own
// (gRPC): the pipe resets that wait before each retry, so its own backoff is the one that
// applies. Optional.
type BackoffResetter interface {
	ResetConnectBackoff()
}

// Backoff is the reconnect backoff of the pipes a sender carries (backoff_min, backoff_max).
type Backoff struct {
	Min, Max time.Duration
}

// Fusion's google.rpc.ErrorInfo for a session it no longer knows: the same strings as
// fusion/internal/errs (ErrorDomain, ReasonSessionNotFound), which the agent cannot import.
// They are API: Fusion never renames them.
const (
	ErrorDomain           = "fustor.v1"
	ReasonSessionNotFound = "SESSION_NOT_FOUND"
)

// ErrSessionGone is what a Sender that is not gRPC wraps to say the session is gone; the gRPC
// one says it with Fusion's status as is.
var ErrSessionGone = errors.New("session gone")

// IsSessionGone reports that err, from Heartbeat, CloseSession or a push stream, means Fusion
// no longer knows the session (expired, closed, or Fusion restarted): the pipe creates a new
// session at once instead of retrying this one.
//
// Fusion says so with NOT_FOUND and an ErrorInfo of reason ReasonSessionNotFound, which tells
// it from any other NOT_FOUND. A NOT_FOUND with no ErrorInfo of Fusion's domain counts as gone
// too: that is a Fusion from before the detail, which answered these calls NOT_FOUND only for
// an unknown session. A NOT_FOUND with another reason of Fusion's is not gone.
func IsSessionGone(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrSessionGone) {
		return true
	}
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.NotFound {
		return false
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == ErrorDomain {
			return info.GetReason() == ReasonSessionNotFound
		}
	}
	return true
}
