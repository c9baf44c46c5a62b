package ctl

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
)

// changeServer adds the change feed to the fake ViewService of ctl_test.go, and notes the
// deadline each call came with: the deadlines are what watch and wait-stable differ in.
type changeServer struct {
	*server
	mu sync.Mutex
	// left is, per method, the time left to the call's deadline when it came (0: none).
	left map[string]time.Duration
}

func (s *changeServer) note(ctx context.Context, method string) {
	var left time.Duration
	if dl, ok := ctx.Deadline(); ok {
		left = time.Until(dl)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.left[method] = left
}

func (s *changeServer) deadline(method string) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.left[method]
}

func startChangeServer(t *testing.T) (*changeServer, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &changeServer{server: &server{views: []string{"demo"}, drivers: map[string]string{}}, left: map[string]time.Duration{}}
	g := grpc.NewServer()
	fustorv1.RegisterViewServiceServer(g, s)
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	return s, lis.Addr().String()
}

func change(seq uint64, kind fustorv1.ChangeKind, src fustorv1.MessageSource, e *fustorv1.Entry) *fustorv1.Change {
	return &fustorv1.Change{Sequence: seq, Path: e.GetPath(), Kind: kind, Entry: e, Source: src, Member: e.GetMember()}
}

// watchScript is what the fake Watch sends: changes, a heartbeat, a fresh instance, a
// deletion (labelled with its member when the watch asked no member, as a forest does), a
// lag, a flag change. The watch then stays open until the client ends it, but for /eof.
func watchScript(member string) []*fustorv1.WatchResponse {
	mt := timestamppb.New(t0)
	label := ""
	if member == "" {
		label = "storage-1"
	}
	return []*fustorv1.WatchResponse{
		{Meta: &fustorv1.ViewMeta{View: "demo"}, Cursor: "c1"},
		{Changes: []*fustorv1.Change{
			change(1, fustorv1.ChangeKind_CHANGE_KIND_CREATED, fustorv1.MessageSource_MESSAGE_SOURCE_REALTIME,
				&fustorv1.Entry{Path: "/up/a.dat", Size: 3, Mtime: mt, KnownByAgent: true}),
			change(2, fustorv1.ChangeKind_CHANGE_KIND_MODIFIED, fustorv1.MessageSource_MESSAGE_SOURCE_REALTIME,
				&fustorv1.Entry{Path: "/up/a.dat", Size: 5, Mtime: mt, KnownByAgent: true, IntegritySuspect: true}),
		}, Cursor: "c3"},
		{Cursor: "c3"},
		{FreshInstance: true, Cursor: "i2-0"},
		{Changes: []*fustorv1.Change{change(1, fustorv1.ChangeKind_CHANGE_KIND_DELETED, fustorv1.MessageSource_MESSAGE_SOURCE_SNAPSHOT,
			&fustorv1.Entry{Path: "/up/a.dat", Member: label})}, Cursor: "i2-1"},
		{Lagged: true, Cursor: "i2-9"},
		{Changes: []*fustorv1.Change{change(10, fustorv1.ChangeKind_CHANGE_KIND_FLAGS, fustorv1.MessageSource_MESSAGE_SOURCE_UNSPECIFIED,
			&fustorv1.Entry{Path: "/up/b.dat", Size: 7, Mtime: mt})}, Cursor: "i2-10"},
	}
}

func (s *changeServer) Watch(req *fustorv1.WatchRequest, stream fustorv1.ViewService_WatchServer) error {
	if err := s.record(stream.Context(), req); err != nil {
		return err
	}
	s.note(stream.Context(), "Watch")
	for _, m := range watchScript(req.GetMember()) {
		if err := stream.Send(m); err != nil {
			return err
		}
	}
	if req.GetPath() == "/eof" {
		return nil
	}
	<-stream.Context().Done()
	return stream.Context().Err()
}

func (s *changeServer) ListChanges(ctx context.Context, req *fustorv1.ListChangesRequest) (*fustorv1.ListChangesResponse, error) {
	if err := s.record(ctx, req); err != nil {
		return nil, err
	}
	e := func(p string) *fustorv1.Entry {
		return &fustorv1.Entry{Path: p, Size: 1, Mtime: timestamppb.New(t0), KnownByAgent: true}
	}
	created, rt := fustorv1.ChangeKind_CHANGE_KIND_CREATED, fustorv1.MessageSource_MESSAGE_SOURCE_REALTIME
	switch req.GetSince() {
	case "c0":
		return &fustorv1.ListChangesResponse{Meta: &fustorv1.ViewMeta{View: "demo"}, Changes: []*fustorv1.Change{
			change(1, created, rt, e("/up/1.dat")), change(2, created, rt, e("/up/2.dat")),
		}, Cursor: "c2", More: true}, nil
	case "c2":
		return &fustorv1.ListChangesResponse{Changes: []*fustorv1.Change{change(3, created, rt, e("/up/3.dat"))}, Cursor: "c3"}, nil
	case "gone":
		return &fustorv1.ListChangesResponse{CursorLost: true, Cursor: "c3"}, nil
	case "stuck":
		return &fustorv1.ListChangesResponse{Cursor: "stuck", More: true}, nil
	}
	return &fustorv1.ListChangesResponse{Cursor: "c3"}, nil
}

func (s *changeServer) WaitStable(ctx context.Context, req *fustorv1.WaitStableRequest) (*fustorv1.WaitStableResponse, error) {
	if err := s.record(ctx, req); err != nil {
		return nil, err
	}
	s.note(ctx, "WaitStable")
	if req.GetPath() == "/busy" {
		return &fustorv1.WaitStableResponse{Reason: "2 suspect files", Suspects: []string{"/busy/a", "/busy/b"}, Files: 3,
			LastChange: timestamppb.New(t0), Cursor: "c7"}, nil
	}
	return &fustorv1.WaitStableResponse{Stable: true, Files: 10, LastChange: timestamppb.New(t0), Cursor: "c9"}, nil
}

// lineWriter is a stdout that says when it has seen a string: the watch test cancels the
// watch once the last scripted change is printed, as ctrl-C would.
type lineWriter struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	want string
	seen chan struct{}
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n, err := w.buf.Write(p)
	if w.want != "" && w.seen != nil && strings.Contains(w.buf.String(), w.want) {
		close(w.seen)
		w.seen = nil
	}
	return n, err
}

func (w *lineWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// runUntil runs fustorctl and, once stdout holds want ("" never), cancels its context or,
// with interrupt, sends the test process SIGINT as ctrl-C does: the watch catches it then.
func runUntil(t *testing.T, addr, want string, interrupt bool, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &lineWriter{want: want, seen: make(chan struct{})}
	seen, done := out.seen, make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-seen:
			if !interrupt {
				cancel()
			} else if err := syscall.Kill(os.Getpid(), syscall.SIGINT); err != nil {
				cancel()
			}
		case <-done:
		case <-time.After(10 * time.Second):
			cancel() // a watch that never printed want: end it, the checks then say why
		}
	}()
	var errOut bytes.Buffer
	code = Run(ctx, append([]string{"--server", addr}, args...), out, &errOut, func(string) string { return "" })
	return code, out.String(), errOut.String()
}

func lines(s string) []string { return strings.Split(strings.TrimSuffix(s, "\n"), "\n") }

func TestWatch(t *testing.T) {
	s, addr := startChangeServer(t)
	const mt = "2026-01-02T03:04:05Z"
	tests := []struct {
		name  string
		args  []string
		want  string // printed last: the test cancels then, as ctrl-C
		sig   bool   // end with a real SIGINT rather than a cancelled context
		code  int
		check func(t *testing.T, req *fustorv1.WatchRequest, out, errOut string)
	}{
		{"lines, resets on stderr, resume cursor", []string{"watch", "/up", "--glob", "*.dat"}, "/up/b.dat", false, 0,
			func(t *testing.T, req *fustorv1.WatchRequest, out, errOut string) {
				if req.GetPath() != "/up" || req.GetGlob() != "*.dat" || req.GetSince() != "" || req.GetView() != "demo" {
					t.Fatalf("request %v", req)
				}
				want := []string{
					"1\tcreated\trealtime\tf\t3\t" + mt + "\t-\t/up/a.dat",
					"2\tmodified\trealtime\tf\t5\t" + mt + "\tS\t/up/a.dat",
					"1\tdeleted\tsnapshot\tf\t-\t-\t-\tstorage-1\t/up/a.dat",
					"10\tflags\tfusion\tf\t7\t" + mt + "\t?\t/up/b.dat",
				}
				if got := lines(out); strings.Join(got, "\n") != strings.Join(want, "\n") {
					t.Fatalf("output\n%s\nwant\n%s", out, strings.Join(want, "\n"))
				}
				for _, w := range []string{"fresh instance", "going on from --since i2-0", "lagged", "going on from --since i2-9",
					"resume with --since i2-10"} {
					if !strings.Contains(errOut, w) {
						t.Fatalf("stderr %q lacks %q", errOut, w)
					}
				}
				if d := s.deadline("Watch"); d != 0 {
					t.Fatalf("watch had a deadline %v without --timeout", d)
				}
			}},
		{"json lines with member and cursor", []string{"--json", "--member", "storage-1", "watch", "/up", "--since", "c0"}, "/up/b.dat", false, 0,
			func(t *testing.T, req *fustorv1.WatchRequest, out, errOut string) {
				if req.GetSince() != "c0" || req.GetMember() != "storage-1" {
					t.Fatalf("request %v", req)
				}
				got := lines(out)
				if len(got) != 6 {
					t.Fatalf("%d lines, want 6: %q", len(got), out)
				}
				docs := make([]map[string]any, len(got))
				for i, l := range got {
					if err := json.Unmarshal([]byte(l), &docs[i]); err != nil {
						t.Fatalf("line %d %q: %v", i, l, err)
					}
				}
				if docs[0]["sequence"] != "1" || docs[0]["kind"] != "CHANGE_KIND_CREATED" || docs[0]["path"] != "/up/a.dat" {
					t.Fatalf("first change %v", docs[0])
				}
				if docs[2]["freshInstance"] != true || docs[2]["cursor"] != "i2-0" || len(docs[2]) != 2 {
					t.Fatalf("reset line %v", docs[2])
				}
				if docs[3]["member"] != nil || docs[3]["kind"] != "CHANGE_KIND_DELETED" {
					t.Fatalf("deletion asked with --member %v", docs[3])
				}
				if docs[4]["lagged"] != true || docs[4]["cursor"] != "i2-9" {
					t.Fatalf("lag line %v", docs[4])
				}
				if !strings.Contains(errOut, "resume with --since i2-10") {
					t.Fatalf("stderr %q", errOut)
				}
			}},
		{"ctrl-C ends it with exit 0 and the cursor", []string{"watch", "/up"}, "/up/b.dat", true, 0,
			func(t *testing.T, _ *fustorv1.WatchRequest, out, errOut string) {
				if len(lines(out)) != 4 || !strings.HasSuffix(errOut, "fustorctl: resume with --since i2-10\n") {
					t.Fatalf("stdout %q stderr %q", out, errOut)
				}
			}},
		{"--since now is from now", []string{"watch", "/up", "--since", "now"}, "/up/b.dat", false, 0,
			func(t *testing.T, req *fustorv1.WatchRequest, _, _ string) {
				if req.GetSince() != "" {
					t.Fatalf("request %v", req)
				}
			}},
		{"an explicit --timeout ends it cleanly", []string{"--timeout", "300ms", "watch", "/up"}, "", false, 0,
			func(t *testing.T, _ *fustorv1.WatchRequest, out, errOut string) {
				if d := s.deadline("Watch"); d <= 0 || d > 300*time.Millisecond {
					t.Fatalf("deadline %v, want ≤ 300ms", d)
				}
				if len(lines(out)) != 4 || !strings.Contains(errOut, "resume with --since i2-10") {
					t.Fatalf("stdout %q stderr %q", out, errOut)
				}
			}},
		{"the server ending the stream is an error", []string{"watch", "/eof"}, "", false, 1,
			func(t *testing.T, _ *fustorv1.WatchRequest, _, errOut string) {
				if !strings.Contains(errOut, "watch ended by the server") || !strings.Contains(errOut, "resume with --since i2-10") {
					t.Fatalf("stderr %q", errOut)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runUntil(t, addr, tt.want, tt.sig, append([]string{"--key", "k"}, tt.args...)...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d: %s", code, tt.code, errOut)
			}
			tt.check(t, s.last().(*fustorv1.WatchRequest), out, errOut)
		})
	}
}

func TestChanges(t *testing.T) {
	s, addr := startChangeServer(t)
	tests := []struct {
		name  string
		args  []string
		code  int
		check func(t *testing.T, req *fustorv1.ListChangesRequest, out, errOut string)
	}{
		{"one page says there is more", []string{"changes", "/up", "--since", "c0", "--limit", "2", "--glob", "*.dat", "--member", "storage-1"}, 0,
			func(t *testing.T, req *fustorv1.ListChangesRequest, out, errOut string) {
				if req.GetLimit() != 2 || req.GetGlob() != "*.dat" || req.GetPath() != "/up" || req.GetMember() != "storage-1" {
					t.Fatalf("request %v", req)
				}
				got := lines(out)
				if len(got) != 3 || !strings.HasPrefix(got[0], "1\tcreated\t") || got[2] != "cursor: c2" {
					t.Fatalf("output %q", out)
				}
				if !strings.Contains(errOut, "use --all, or go on with --since c2") {
					t.Fatalf("stderr %q", errOut)
				}
			}},
		{"--all follows more", []string{"changes", "/up", "--since", "c0", "--all"}, 0,
			func(t *testing.T, req *fustorv1.ListChangesRequest, out, errOut string) {
				if req.GetSince() != "c2" {
					t.Fatalf("last request %v", req)
				}
				got := lines(out)
				if len(got) != 4 || !strings.HasSuffix(got[2], "/up/3.dat") || got[3] != "cursor: c3" || errOut != "" {
					t.Fatalf("output %q stderr %q", out, errOut)
				}
			}},
		{"--all --json is one document", []string{"--json", "changes", "--since", "c0", "--all"}, 0,
			func(t *testing.T, _ *fustorv1.ListChangesRequest, out, _ string) {
				var doc struct {
					Changes []map[string]any
					Cursor  string
					More    bool
				}
				if err := json.Unmarshal([]byte(out), &doc); err != nil || len(doc.Changes) != 3 || doc.Cursor != "c3" || doc.More {
					t.Fatalf("json %q: %v", out, err)
				}
			}},
		{"one page --json keeps more", []string{"--json", "changes", "--since", "c0"}, 0,
			func(t *testing.T, _ *fustorv1.ListChangesRequest, out, _ string) {
				var doc struct{ More bool }
				if err := json.Unmarshal([]byte(out), &doc); err != nil || !doc.More {
					t.Fatalf("json %q: %v", out, err)
				}
			}},
		{"--since now gives the cursor, path / by default", []string{"changes", "--since", "now"}, 0,
			func(t *testing.T, req *fustorv1.ListChangesRequest, out, _ string) {
				if req.GetSince() != "" || req.GetPath() != "/" || out != "cursor: c3\n" {
					t.Fatalf("request %v output %q", req, out)
				}
			}},
		{"a lost cursor is told", []string{"changes", "/", "--since", "gone"}, 0,
			func(t *testing.T, _ *fustorv1.ListChangesRequest, out, errOut string) {
				if out != "cursor: c3\n" || !strings.Contains(errOut, "cursor lost") || !strings.Contains(errOut, "follow cursor c3") {
					t.Fatalf("output %q stderr %q", out, errOut)
				}
			}},
		{"more without a new cursor stops --all", []string{"changes", "/", "--since", "stuck", "--all"}, 1,
			func(t *testing.T, _ *fustorv1.ListChangesRequest, _, errOut string) {
				if !strings.Contains(errOut, "page changes") {
					t.Fatalf("stderr %q", errOut)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := run(addr, append([]string{"--key", "k"}, tt.args...)...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d: %s", code, tt.code, errOut)
			}
			tt.check(t, s.last().(*fustorv1.ListChangesRequest), out, errOut)
		})
	}
}

func TestWaitStable(t *testing.T) {
	s, addr := startChangeServer(t)
	tests := []struct {
		name  string
		args  []string
		code  int
		check func(t *testing.T, req *fustorv1.WaitStableRequest, out, errOut string)
	}{
		{"stable exits 0, deadline 10m", []string{"--member", "storage-1", "wait-stable", "/done", "--quiet", "30s", "--min-files", "5"}, 0,
			func(t *testing.T, req *fustorv1.WaitStableRequest, out, _ string) {
				if req.GetQuiet().AsDuration() != 30*time.Second || req.GetMinFiles() != 5 || req.GetMember() != "storage-1" || req.GetPath() != "/done" {
					t.Fatalf("request %v", req)
				}
				if d := s.deadline("WaitStable"); d < 9*time.Minute || d > 10*time.Minute {
					t.Fatalf("deadline %v, want 10m", d)
				}
				if !strings.Contains(out, "stable:") || !strings.Contains(out, "true") || !strings.Contains(out, "c9") || strings.Contains(out, "reason") {
					t.Fatalf("output %q", out)
				}
			}},
		{"not stable exits 1 with the reason", []string{"wait-stable", "/busy", "--timeout", "2s"}, 1,
			func(t *testing.T, req *fustorv1.WaitStableRequest, out, errOut string) {
				if req.GetQuiet() != nil {
					t.Fatalf("no --quiet sent %v", req.GetQuiet())
				}
				if d := s.deadline("WaitStable"); d <= 0 || d > 2*time.Second {
					t.Fatalf("deadline %v, want ≤ 2s", d)
				}
				for _, w := range []string{"2 suspect files", "/busy/a", "/busy/b", "2026-01-02T03:04:05Z", "c7"} {
					if !strings.Contains(out, w) {
						t.Fatalf("output %q lacks %q", out, w)
					}
				}
				if !strings.Contains(errOut, "not stable: 2 suspect files") {
					t.Fatalf("stderr %q", errOut)
				}
			}},
		{"--json prints the answer", []string{"--json", "wait-stable", "/done"}, 0,
			func(t *testing.T, _ *fustorv1.WaitStableRequest, out, _ string) {
				var doc struct {
					Stable bool
					Files  string
				}
				if err := json.Unmarshal([]byte(out), &doc); err != nil || !doc.Stable || doc.Files != "10" {
					t.Fatalf("json %q: %v", out, err)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := run(addr, append([]string{"--key", "k"}, tt.args...)...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d: %s", code, tt.code, errOut)
			}
			tt.check(t, s.last().(*fustorv1.WaitStableRequest), out, errOut)
		})
	}
}

func TestChangeUsage(t *testing.T) {
	s, addr := startChangeServer(t)
	tests := []struct {
		name     string
		args     []string
		contains string
	}{
		{"changes needs --since", []string{"changes", "/up"}, "changes needs --since"},
		{"bad duration", []string{"wait-stable", "/up", "--quiet", "soon"}, `invalid argument "soon" for "--quiet"`},
		{"negative quiet", []string{"wait-stable", "/up", "--quiet=-1s"}, "--quiet must not be negative"},
		{"negative min-files", []string{"wait-stable", "/up", "--min-files=-1"}, "--min-files must not be negative"},
		{"watch needs a path", []string{"watch"}, "a PATH is required"},
		{"one path only", []string{"wait-stable", "/a", "/b"}, "unexpected arguments /b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errOut := run(addr, append([]string{"--key", "k"}, tt.args...)...)
			if code != 2 || !strings.Contains(errOut, tt.contains) {
				t.Fatalf("exit %d stderr %q; want 2 and %q", code, errOut, tt.contains)
			}
		})
	}
	s.server.mu.Lock()
	defer s.server.mu.Unlock()
	if len(s.reqs) != 0 {
		t.Fatalf("usage errors reached the server: %v", s.reqs)
	}
}
