// Package grpcsender is the gRPC implementation of the agent's sender contract
// (agent/internal/sender): it carries an agent pipe's sessions and events to Fusion.
package grpcsender

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/keepalive"

	"github.com/fustor/fustor/agent/internal/config"
	"github.com/fustor/fustor/agent/internal/sender"
	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
	"github.com/fustor/fustor/sdk/dial"
)

// The contract this package implements, the optional backoff reset included.
var (
	_ sender.Sender          = (*GRPC)(nil)
	_ sender.BackoffResetter = (*GRPC)(nil)
)

// GRPC is the gRPC sender. One client connection is shared by every call; gRPC reconnects it
// by itself, and calls made while it is down fail at once so the pipe's own backoff decides.
// gRPC's connection backoff is bounded by the pipes' (Backoff), and a pipe resets it before
// each retry (ResetConnectBackoff): left alone, it grows to 120 s, and a pipe retrying every
// backoff_max would only find the connection still waiting between attempts.
type GRPC struct {
	conn    *grpc.ClientConn
	session fustorv1.SessionServiceClient
	push    fustorv1.PushServiceClient
}

// apiKey sends the ingest key with every call.
type apiKey string

func (k apiKey) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(k)}, nil
}

func (apiKey) RequireTransportSecurity() bool { return false }

// NewGRPC returns a sender for cfg whose connection retries no slower than b (zero = gRPC's
// defaults). It does not connect until the first call.
//
// The connection has no stats handler or interceptor that reads a message after Send
// returns: the push stream reuses a sent batch's columns (pipe/stream.go). Adding one
// means dropping that reuse.
//
// With cfg.TLS enabled the connection is TLS, with the agent's client certificate when one is
// configured (read again when its files change; log hears of it).
func NewGRPC(cfg config.Sender, b sender.Backoff, log *zap.Logger) (*GRPC, error) {
	creds, err := dial.TLS{Enabled: cfg.TLS.Enabled, Client: cfg.TLS.Client()}.Credentials(log)
	if err != nil {
		return nil, fmt.Errorf("sender for %s: %w", cfg.Address, err)
	}
	conn, err := grpc.NewClient(cfg.Address,
		grpc.WithTransportCredentials(creds),
		grpc.WithPerRPCCredentials(apiKey(cfg.APIKey)),
		grpc.WithConnectParams(connectParams(b)),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 20 * time.Second, Timeout: 10 * time.Second, PermitWithoutStream: true}),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(16<<20)),
	)
	if err != nil {
		return nil, fmt.Errorf("create grpc client for %s: %w", cfg.Address, err)
	}
	return &GRPC{conn: conn, session: fustorv1.NewSessionServiceClient(conn), push: fustorv1.NewPushServiceClient(conn)}, nil
}

// CreateSession opens a session.
func (g *GRPC) CreateSession(ctx context.Context, req *fustorv1.CreateSessionRequest) (*fustorv1.CreateSessionResponse, error) {
	return g.session.CreateSession(ctx, req)
}

// Heartbeat keeps a session alive.
func (g *GRPC) Heartbeat(ctx context.Context, req *fustorv1.HeartbeatRequest) (*fustorv1.HeartbeatResponse, error) {
	return g.session.Heartbeat(ctx, req)
}

// CloseSession ends a session.
func (g *GRPC) CloseSession(ctx context.Context, id string) error {
	_, err := g.session.CloseSession(ctx, &fustorv1.CloseSessionRequest{SessionId: id})
	return err
}

// Push opens the session's event stream.
func (g *GRPC) Push(ctx context.Context) (fustorv1.PushService_PushClient, error) {
	return g.push.Push(ctx)
}

// ResetConnectBackoff makes a connection waiting between attempts try again at once.
func (g *GRPC) ResetConnectBackoff() { g.conn.ResetConnectBackoff() }

// connectParams bounds gRPC's connection backoff by the pipes': never longer than backoff_max
// between attempts, the first retry no later than backoff_min (nor than gRPC's own 1 s), with
// gRPC's growth and jitter. An attempt still gets gRPC's 20 s to connect: ConnectParams' zero
// would cut it to the backoff delay, too short for a slow link.
func connectParams(b sender.Backoff) grpc.ConnectParams {
	bc := backoff.DefaultConfig
	if b.Max > 0 {
		bc.MaxDelay = b.Max
		bc.BaseDelay = min(bc.BaseDelay, b.Max)
		if b.Min > 0 {
			bc.BaseDelay = min(bc.BaseDelay, b.Min)
		}
	}
	return grpc.ConnectParams{Backoff: bc, MinConnectTimeout: minConnectTimeout}
}

// minConnectTimeout is gRPC's default for one connection attempt.
const minConnectTimeout = 20 * time.Second

// Close releases the connection.
func (g *GRPC) Close() error { return g.conn.Close() }
