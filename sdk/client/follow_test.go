package client_test

import (
	"context"
	"io"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
	"github.com/fustor/fustor/sdk/client"
)

// proxy forwards TCP connections to Fusion; cut closes the open ones, as a network break or
// a Fusion restart would, and new ones are let through again.
type proxy struct {
	l        net.Listener
	mu       sync.Mutex
	conns    []net.Conn
	accepted int
	wg       sync.WaitGroup
}

func startProxy(t *testing.T, target string) *proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{l: l}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			p.mu.Lock()
			p.conns, p.accepted = append(p.conns, in, out), p.accepted+1
			p.mu.Unlock()
			p.wg.Add(2)
			go func() { defer p.wg.Done(); _, _ = io.Copy(out, in); out.Close() }()
			go func() { defer p.wg.Done(); _, _ = io.Copy(in, out); in.Close() }()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		p.cut()
		p.wg.Wait()
	})
	return p
}

func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *proxy) connections() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted
}

// TestFollowResumesAcrossABreak: the connection under a Follow is cut between two writes;
// Follow watches again from its cursor and yields every change since the first cursor
// exactly once, as ListChanges lists them.
func TestFollowResumesAcrossABreak(t *testing.T) {
	direct := newClient(t)
	p := startProxy(t, addr)
	c, err := client.New(p.l.Addr().String(), client.WithKey("demo-key"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := testCtx(t)
	now, err := direct.ListChanges(ctx, &fustorv1.ListChangesRequest{View: "demo", Path: "/"})
	if err != nil {
		t.Fatal(err)
	}
	fctx, stop := context.WithCancel(ctx)
	type got struct {
		ch  *fustorv1.Change
		err error
	}
	feed := make(chan got)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for b, err := range c.Follow(fctx, &fustorv1.WatchRequest{View: "demo", Path: "/follow", Since: now.GetCursor()}) {
			if err != nil {
				select {
				case feed <- got{err: err}:
				case <-fctx.Done():
				}
				return
			}
			for _, ch := range b.Changes {
				select {
				case feed <- got{ch: ch}:
				case <-fctx.Done():
					return
				}
			}
		}
	}()
	defer func() { stop(); <-done }()
	var seqs []uint64
	next := func() *fustorv1.Change {
		t.Helper()
		select {
		case g := <-feed:
			if g.err != nil {
				t.Fatal(g.err)
			}
			seqs = append(seqs, g.ch.GetSequence())
			return g.ch
		case <-ctx.Done():
			t.Fatalf("no change after %v", seqs)
		}
		return nil
	}
	waitFor := func(path string) {
		t.Helper()
		for next().GetPath() != path {
		}
	}
	dir := filepath.Join(dataDir, "follow")
	if err := writeFile(filepath.Join(dir, "a.dat"), "a"); err != nil {
		t.Fatal(err)
	}
	waitFor("/follow/a.dat")
	p.cut()
	if err := writeFile(filepath.Join(dir, "b.dat"), "b"); err != nil {
		t.Fatal(err)
	}
	waitFor("/follow/b.dat")
	settle(t, direct, "/follow", 2)
	want, _, _, _ := changesSince(t, direct, "/follow", now.GetCursor(), 0)
	for len(seqs) < len(want) {
		next()
	}
	if !slices.Equal(seqs, want) {
		t.Fatalf("Follow gave %v; want %v", seqs, want)
	}
	if n := p.connections(); n < 2 {
		t.Fatalf("%d connections through the proxy; want a second one after the cut", n)
	}
}

// TestFollowEndsOnOtherErrors: only a break is retried; an error of the request ends the
// feed at once with its code.
func TestFollowEndsOnOtherErrors(t *testing.T) {
	tests := []struct {
		name string
		key  string
		req  *fustorv1.WatchRequest
		code codes.Code
	}{
		{"unknown view", "demo-key", &fustorv1.WatchRequest{View: "nope", Path: "/"}, codes.NotFound},
		{"bad key", "wrong", &fustorv1.WatchRequest{View: "demo", Path: "/"}, codes.Unauthenticated},
		{"bad path", "demo-key", &fustorv1.WatchRequest{View: "demo", Path: "rel"}, codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := client.New(addr, client.WithKey(tt.key))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			var errs []error
			for _, err := range c.Follow(testCtx(t), tt.req) {
				if err == nil {
					t.Fatal("a batch; want an error")
				}
				errs = append(errs, err)
			}
			if len(errs) != 1 || status.Code(errs[0]) != tt.code {
				t.Fatalf("errors %v; want one of code %v", errs, tt.code)
			}
		})
	}
}
