package app

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/fustor/fustor/agent/internal/config"
	"github.com/fustor/fustor/agent/internal/sender"
	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
)

// TestSenderBackoffs: a sender's connection retries as eagerly as the most eager pipe it
// carries; a sender no pipe uses keeps gRPC's defaults.
func TestSenderBackoffs(t *testing.T) {
	cfg := config.Default()
	cfg.Pipes["a"] = config.Pipe{Sender: "shared", BackoffMin: 5 * time.Second, BackoffMax: 60 * time.Second}
	cfg.Pipes["b"] = config.Pipe{Sender: "shared", BackoffMin: 2 * time.Second, BackoffMax: 10 * time.Second}
	cfg.Pipes["c"] = config.Pipe{Sender: "own", BackoffMin: time.Second, BackoffMax: 3 * time.Second}
	got := senderBackoffs(cfg)
	want := map[string]sender.Backoff{"shared": {Min: 2 * time.Second, Max: 10 * time.Second}, "own": {Min: time.Second, Max: 3 * time.Second}}
	if len(got) != len(want) || got["shared"] != want["shared"] || got["own"] != want["own"] {
		t.Fatalf("backoffs %v; want %v", got, want)
	}
	if b := got["unused"]; b != (sender.Backoff{}) {
		t.Fatalf("unused sender: %v", b)
	}
}

// serveFusion serves f on ln until the returned stop is called (stop waits for Serve).
func serveFusion(f *fakeFusion, ln net.Listener) (stop func()) {
	srv := grpc.NewServer()
	fustorv1.RegisterSessionServiceServer(srv, f)
	fustorv1.RegisterPushServiceServer(srv, f)
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	return func() { srv.Stop(); <-done }
}

// TestReconnectIsAsFastAsConfigured: Fusion goes away for a while and comes back on the same
// address; the agent's session must be back within about backoff_max of its return — not
// whenever gRPC's own connection backoff (growing to 120 s) next tries. The bound is generous
// (a correctness check on a shared machine, not a timing): with backoff_max 500 ms the session
// is back in about a second.
func TestReconnectIsAsFastAsConfigured(t *testing.T) {
	const outage = 5 * time.Second
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	f := &fakeFusion{rows: map[fustorv1.MessageSource]int{}}
	stop := serveFusion(f, ln)
	defer func() { stop() }()

	cfg := config.Default()
	cfg.AgentID = "test-agent"
	cfg.Sources["src"] = config.Source{Driver: "fs", Root: t.TempDir(), DisableRealtime: true}
	cfg.Senders["fusion"] = config.Sender{Address: addr, APIKey: "k"}
	cfg.Pipes["p"] = config.Pipe{Source: "src", Sender: "fusion", BackoffMin: 100 * time.Millisecond, BackoffMax: 500 * time.Millisecond}
	a, err := New(nil, cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- a.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-runErr; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	p := a.Pipe("p")
	eventually(t, "the first session", func() bool { return p.Status().Connected })

	stop()
	eventually(t, "the session to end with fusion gone", func() bool { return !p.Status().Connected })
	<-time.After(outage) // the outage itself: long enough for gRPC's own backoff to have grown
	var ln2 net.Listener
	eventually(t, "the address to be free again", func() bool {
		ln2, err = net.Listen("tcp", addr)
		return err == nil
	})
	back := time.Now()
	stop = serveFusion(f, ln2)
	eventually(t, "a session after fusion's return", func() bool { st := p.Status(); return st.Connected && st.Sessions >= 2 })
	took := time.Since(back)
	t.Logf("session back %v after fusion's return (backoff_max 500ms, outage %v)", took, outage)
	if took > 10*time.Second {
		t.Fatalf("session back %v after fusion's return; want about backoff_max (500 ms)", took)
	}
}
