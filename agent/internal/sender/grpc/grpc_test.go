package grpcsender

import (
	"context"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fustor/fustor/agent/internal/config"
	"github.com/fustor/fustor/agent/internal/sender"
	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestConnectParams: gRPC's connection backoff never exceeds the pipes' backoff_max, starts no
// later than their backoff_min (nor gRPC's 1 s), and keeps gRPC's 20 s per attempt.
func TestConnectParams(t *testing.T) {
	for _, tt := range []struct {
		name      string
		b         sender.Backoff
		base, max time.Duration
	}{
		{"unset: gRPC's defaults", sender.Backoff{}, time.Second, 120 * time.Second},
		{"agent defaults", sender.Backoff{Min: 5 * time.Second, Max: 60 * time.Second}, time.Second, 60 * time.Second},
		{"fast", sender.Backoff{Min: 100 * time.Millisecond, Max: 500 * time.Millisecond}, 100 * time.Millisecond, 500 * time.Millisecond},
		{"max only", sender.Backoff{Max: 300 * time.Millisecond}, 300 * time.Millisecond, 300 * time.Millisecond},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := connectParams(tt.b)
			want := backoff.Config{BaseDelay: tt.base, Multiplier: 1.6, Jitter: 0.2, MaxDelay: tt.max}
			if p.Backoff != want || p.MinConnectTimeout != 20*time.Second {
				t.Fatalf("%+v; want backoff %+v and 20 s per attempt", p, want)
			}
		})
	}
}

func TestNewGRPCDoesNotDial(t *testing.T) {
	g, err := NewGRPC(config.Sender{Address: "127.0.0.1:1", APIKey: "k"}, sender.Backoff{Min: time.Millisecond, Max: time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	g.ResetConnectBackoff() // no connection yet: nothing to reset, and no panic
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
}

// fusionStub answers every session and push call with err, as Fusion's server would.
type fusionStub struct {
	fustorv1.UnimplementedSessionServiceServer
	fustorv1.UnimplementedPushServiceServer
	err error
}

func (f *fusionStub) Heartbeat(context.Context, *fustorv1.HeartbeatRequest) (*fustorv1.HeartbeatResponse, error) {
	return nil, f.err
}

func (f *fusionStub) CloseSession(context.Context, *fustorv1.CloseSessionRequest) (*fustorv1.CloseSessionResponse, error) {
	return nil, f.err
}

func (f *fusionStub) Push(fustorv1.PushService_PushServer) error { return f.err }

// TestSessionGoneOverTheWire: Fusion's ErrorInfo survives gRPC, so the pipe can tell a gone
// session from another NOT_FOUND on every call that names a session.
func TestSessionGoneOverTheWire(t *testing.T) {
	detailed := func(reason string) error {
		st, err := status.New(codes.NotFound, "not found").WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: sender.ErrorDomain})
		if err != nil {
			t.Fatal(err)
		}
		return st.Err()
	}
	stub := &fusionStub{}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	fustorv1.RegisterSessionServiceServer(srv, stub)
	fustorv1.RegisterPushServiceServer(srv, stub)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	g, err := NewGRPC(config.Sender{Address: lis.Addr().String(), APIKey: "k"}, sender.Backoff{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = g.Close()
		srv.Stop()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	calls := []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"heartbeat", func(ctx context.Context) error {
			_, err := g.Heartbeat(ctx, &fustorv1.HeartbeatRequest{SessionId: "s"})
			return err
		}},
		{"close", func(ctx context.Context) error { return g.CloseSession(ctx, "s") }},
		{"push", func(ctx context.Context) error {
			stream, err := g.Push(ctx)
			if err != nil {
				return err
			}
			_, err = stream.Recv()
			return err
		}},
	}
	for _, tt := range []struct {
		name string
		err  error
		gone bool
	}{
		{"session not found", detailed(sender.ReasonSessionNotFound), true},
		{"another not found", detailed("VIEW_NOT_FOUND"), false},
		{"permission denied", status.Error(codes.PermissionDenied, "no"), false},
	} {
		stub.err = tt.err
		for _, c := range calls {
			t.Run(tt.name+"/"+c.name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				err := c.call(ctx)
				if status.Code(err) != status.Code(tt.err) || sender.IsSessionGone(err) != tt.gone {
					t.Fatalf("%v: gone %v; want %v, gone %v", err, sender.IsSessionGone(err), status.Code(tt.err), tt.gone)
				}
			})
		}
	}
}
