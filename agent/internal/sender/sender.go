// Package sender is the agent's transport contract (DESIGN.md §2): what an AgentPipe needs to
// carry its sessions and events to Fusion (Sender), and the pipes' reconnect backoff a sender
// is built with (Backoff). The pipe is written against this package only; the gRPC
// implementation is sender/grpc, which only agent/internal/app names.
package sender

import (
	"context"
	"time"

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
