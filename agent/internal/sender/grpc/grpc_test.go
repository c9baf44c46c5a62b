package grpcsender

import (
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc/backoff"

	"github.com/fustor/fustor/agent/internal/config"
	"github.com/fustor/fustor/agent/internal/sender"
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
	g, err := NewGRPC(config.Sender{Address: "127.0.0.1:1", APIKey: "k"}, sender.Backoff{Min: time.Millisecond, Max: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	g.ResetConnectBackoff() // no connection yet: nothing to reset, and no panic
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
}
