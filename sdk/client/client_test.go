package client_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
	"github.com/fustor/fustor/sdk/client"
)

func newClient(t *testing.T, opts ...client.Option) *client.Client {
	t.Helper()
	c, err := client.New(addr, append([]client.Option{client.WithKey("demo-key")}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// TestErrorsKeepCodes: every error names the call, its view and path, and status.Code still
// finds the server's code through the wrapping.
func TestErrorsKeepCodes(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key")
	if err := os.WriteFile(keyFile, []byte("demo-key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	noEnv := client.WithEnv(func(string) string { return "" })
	tests := []struct {
		name string
		opts []client.Option
		req  *fustorv1.StatRequest
		code codes.Code
		msg  string // in err.Error()
	}{
		{"ok", []client.Option{client.WithKey("demo-key")}, &fustorv1.StatRequest{View: "demo", Path: "/docs"}, codes.OK, ""},
		{"unknown view", []client.Option{client.WithKey("demo-key")}, &fustorv1.StatRequest{View: "nope", Path: "/"}, codes.NotFound, "stat nope /: "},
		{"unknown path", []client.Option{client.WithKey("demo-key")}, &fustorv1.StatRequest{View: "demo", Path: "/gone"}, codes.NotFound, "stat demo /gone: "},
		{"bad path", []client.Option{client.WithKey("demo-key")}, &fustorv1.StatRequest{View: "demo", Path: "/a/../b"}, codes.InvalidArgument, "stat demo /a/../b: "},
		{"unknown key", []client.Option{client.WithKey("wrong")}, &fustorv1.StatRequest{View: "demo", Path: "/"}, codes.Unauthenticated, "stat demo /: "},
		{"no key", []client.Option{noEnv}, &fustorv1.StatRequest{View: "demo", Path: "/"}, codes.Unauthenticated, ""},
		{"ingest key", []client.Option{client.WithKey("demo-ingest-key")}, &fustorv1.StatRequest{View: "demo", Path: "/"}, codes.Unauthenticated, ""},
		{"another view's key", []client.Option{client.WithKey("other-key")}, &fustorv1.StatRequest{View: "demo", Path: "/"}, codes.PermissionDenied, "stat demo /: "},
		{"key from FUSTOR_KEY", []client.Option{client.WithEnv(func(k string) string { return map[string]string{"FUSTOR_KEY": "demo-key"}[k] })},
			&fustorv1.StatRequest{View: "demo", Path: "/"}, codes.OK, ""},
		{"key file over FUSTOR_KEY", []client.Option{client.WithKeyFile(keyFile), client.WithEnv(func(string) string { return "wrong" })},
			&fustorv1.StatRequest{View: "demo", Path: "/"}, codes.OK, ""},
		{"key over key file", []client.Option{client.WithKey("wrong"), client.WithKeyFile(keyFile)},
			&fustorv1.StatRequest{View: "demo", Path: "/"}, codes.Unauthenticated, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := client.New(addr, tt.opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_, err = c.Stat(testCtx(t), tt.req)
			if got := status.Code(err); got != tt.code {
				t.Fatalf("code %v; want %v (%v)", got, tt.code, err)
			}
			if tt.msg != "" && !strings.HasPrefix(err.Error(), tt.msg) {
				t.Fatalf("error %q; want it to start with %q", err, tt.msg)
			}
			if err != nil {
				var se interface{ GRPCStatus() *status.Status }
				if !errors.As(err, &se) || se.GRPCStatus().Code() != tt.code {
					t.Fatalf("errors.As finds no status of code %v in %v", tt.code, err)
				}
				// The status is the server's, its message without the call's name.
				if st, ok := status.FromError(err); !ok || st.Message() == "" || strings.HasPrefix(st.Message(), "stat ") {
					t.Fatalf("status.FromError(%v) = %v, %v", err, st, ok)
				}
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		name string
		addr string
		opts []client.Option
		want string
	}{
		{"no address", " , ", nil, "no address"},
		{"missing key file", addr, []client.Option{client.WithKeyFile(filepath.Join(t.TempDir(), "gone"))}, "read key file"},
		{"empty key file", addr, []client.Option{client.WithKeyFile(os.DevNull)}, "is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := client.New(tt.addr, tt.opts...)
			if err == nil {
				c.Close()
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q; want %q", err, tt.want)
			}
		})
	}
}

// TestListDirectoryPaging: whatever the page size, the pages hold every entry once, in
// order, and there are as many pages as the size asks.
func TestListDirectoryPaging(t *testing.T) {
	c := newClient(t)
	var want []string
	for i := range 25 {
		want = append(want, fmt.Sprintf("/many/f%02d.txt", i))
	}
	tests := []struct {
		pageSize uint32
		pages    int
	}{{1, 25}, {7, 4}, {10, 3}, {25, 1}, {0, 1}}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.pageSize), func(t *testing.T) {
			req := &fustorv1.ListDirectoryRequest{View: "demo", Path: "/many", PageSize: tt.pageSize}
			orig := proto.Clone(req)
			var got []string
			pages := 0
			for resp, err := range c.ListDirectoryPages(testCtx(t), req) {
				if err != nil {
					t.Fatal(err)
				}
				if pages == 0 && resp.GetDirectory().GetPath() != "/many" {
					t.Fatalf("first page's directory %v", resp.GetDirectory())
				}
				pages++
				for _, e := range resp.GetEntries() {
					got = append(got, e.GetPath())
				}
			}
			if pages != tt.pages || !slices.Equal(got, want) {
				t.Fatalf("%d pages %v; want %d pages %v", pages, got, tt.pages, want)
			}
			var flat []string
			for e, err := range c.Entries(testCtx(t), req) {
				if err != nil {
					t.Fatal(err)
				}
				flat = append(flat, e.GetPath())
			}
			if !slices.Equal(flat, want) {
				t.Fatalf("Entries %v; want %v", flat, want)
			}
			if !proto.Equal(req, orig) {
				t.Fatalf("the request was changed: %v", req)
			}
		})
	}
}

// TestIteratorsStopEarly: breaking out of a loop stops asking (and, for a stream, cancels
// it: goleak in TestMain finds a stream left behind).
func TestIteratorsStopEarly(t *testing.T) {
	c := newClient(t)
	n := 0
	for _, err := range c.Entries(testCtx(t), &fustorv1.ListDirectoryRequest{View: "demo", Path: "/many", PageSize: 2}) {
		if err != nil {
			t.Fatal(err)
		}
		if n++; n == 3 {
			break
		}
	}
	m := 0
	for _, err := range c.Tree(testCtx(t), &fustorv1.GetTreeRequest{View: "demo", Path: "/"}) {
		if err != nil {
			t.Fatal(err)
		}
		if m++; m == 2 {
			break
		}
	}
	if n != 3 || m != 2 {
		t.Fatalf("stopped after %d entries and %d tree entries; want 3 and 2", n, m)
	}
}

func TestGetTreeLimit(t *testing.T) {
	c := newClient(t)
	tests := []struct {
		limit     uint64
		entries   int
		truncated bool
	}{{5, 5, true}, {0, 26, false}}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.limit), func(t *testing.T) {
			n, truncated, meta := 0, false, false
			for chunk, err := range c.GetTree(testCtx(t), &fustorv1.GetTreeRequest{View: "demo", Path: "/many", Limit: tt.limit}) {
				if err != nil {
					t.Fatal(err)
				}
				n += len(chunk.GetEntries())
				truncated = truncated || chunk.GetTruncated()
				meta = meta || chunk.GetMeta().GetView() == "demo"
			}
			// /many's 25 files, and /many itself when the tree is not cut.
			if n != tt.entries && !(tt.limit == 0 && n == 25) || truncated != tt.truncated || !meta {
				t.Fatalf("%d entries, truncated %v, meta %v; want %d, %v, true", n, truncated, meta, tt.entries, tt.truncated)
			}
		})
	}
}

// settle waits until the subtree under path holds files files and nothing under it is
// suspect, and returns the cursor at that moment.
func settle(t *testing.T, c *client.Client, path string, files uint64) {
	t.Helper()
	resp, err := c.WaitStable(testCtx(t), &fustorv1.WaitStableRequest{View: "demo", Path: path, MinFiles: files})
	if err != nil {
		t.Fatal(err)
	}
	if !resp.GetStable() || resp.GetFiles() != files {
		t.Fatalf("%s not stable: %s (%d files)", path, resp.GetReason(), resp.GetFiles())
	}
}

// changesSince reads every change under path since cursor with Changes, pages of limit.
func changesSince(t *testing.T, c *client.Client, path, cursor string, limit uint32) (seqs []uint64, paths []string, next string, pages int) {
	t.Helper()
	for b, err := range c.Changes(testCtx(t), &fustorv1.ListChangesRequest{View: "demo", Path: path, Since: cursor, Limit: limit}) {
		if err != nil {
			t.Fatal(err)
		}
		if b.Reset != client.NoReset {
			t.Fatalf("reset %v", b.Reset)
		}
		pages++
		for _, ch := range b.Changes {
			seqs, paths = append(seqs, ch.GetSequence()), append(paths, ch.GetPath())
		}
		next = b.Cursor
	}
	return seqs, paths, next, pages
}

// TestChangeFeedResumes: a watch, or Changes, from a cursor gets exactly the changes after
// it: none from before, none twice, the same whichever way and page size they are read.
func TestChangeFeedResumes(t *testing.T) {
	c := newClient(t)
	now, err := c.ListChanges(testCtx(t), &fustorv1.ListChangesRequest{View: "demo", Path: "/"})
	if err != nil {
		t.Fatal(err)
	}
	c0 := now.GetCursor()
	dir := filepath.Join(dataDir, "resume")
	for _, name := range []string{"a.dat", "b.dat"} {
		if err := writeFile(filepath.Join(dir, name), name); err != nil {
			t.Fatal(err)
		}
	}
	settle(t, c, "/resume", 2)
	seqs1, paths1, c1, _ := changesSince(t, c, "/resume", c0, 0)
	if !slices.Contains(paths1, "/resume/a.dat") || !slices.Contains(paths1, "/resume/b.dat") {
		t.Fatalf("changes since the first cursor %v lack the files", paths1)
	}
	if err := writeFile(filepath.Join(dir, "c.dat"), "c"); err != nil {
		t.Fatal(err)
	}
	settle(t, c, "/resume", 3)
	seqs2, paths2, _, _ := changesSince(t, c, "/resume", c1, 0)
	if len(seqs2) == 0 || !slices.Contains(paths2, "/resume/c.dat") || slices.Contains(paths2, "/resume/a.dat") {
		t.Fatalf("changes since the second cursor %v: want c.dat's alone", paths2)
	}
	all := append(slices.Clone(seqs1), seqs2...)
	if !slices.IsSorted(all) || len(slices.Compact(slices.Clone(all))) != len(all) {
		t.Fatalf("sequences %v then %v: want increasing, none twice", seqs1, seqs2)
	}
	t.Run("Changes in pages of 1", func(t *testing.T) {
		seqs, _, _, pages := changesSince(t, c, "/resume", c0, 1)
		if !slices.Equal(seqs, all) || pages < len(all) {
			t.Fatalf("%d pages of %v; want %v one a page", pages, seqs, all)
		}
	})
	tests := []struct {
		name   string
		cursor string
		want   []uint64
	}{{"from the first cursor", c0, all}, {"from the second cursor", c1, seqs2}}
	for _, tt := range tests {
		t.Run("Watch "+tt.name, func(t *testing.T) {
			var got []uint64
			for b, err := range c.Watch(testCtx(t), &fustorv1.WatchRequest{View: "demo", Path: "/resume", Since: tt.cursor}) {
				if err != nil {
					t.Fatal(err)
				}
				if b.Reset != client.NoReset {
					t.Fatalf("reset %v", b.Reset)
				}
				for _, ch := range b.Changes {
					got = append(got, ch.GetSequence())
				}
				if len(got) >= len(tt.want) {
					break
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("watch gave %v; want %v", got, tt.want)
			}
		})
	}
}

// TestWatchEndsWithItsContext: a watch whose context ends stops without an error.
func TestWatchEndsWithItsContext(t *testing.T) {
	c := newClient(t)
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	batches := 0
	for _, err := range c.Watch(ctx, &fustorv1.WatchRequest{View: "demo", Path: "/"}) {
		if err != nil {
			t.Fatal(err)
		}
		batches++
		cancel()
	}
	if batches != 1 {
		t.Fatalf("%d batches after cancel; want 1", batches)
	}
}

// TestOptions: compression, several addresses with one dead, and the call timeout give the
// same answers.
func TestOptions(t *testing.T) {
	dead, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"/upload/run-0001/data_0001.dat", "/upload/run-0001/data_0002.dat", "/upload/run-0002/data_0001.dat"}
	tests := []struct {
		name  string
		addrs string
		opts  []client.Option
	}{
		{"plain", addr, nil},
		{"s2 compression", addr, []client.Option{client.WithCompression()}},
		{"a dead replica", dead + "," + addr, nil},
		{"call timeout", addr, []client.Option{client.WithCallTimeout(30 * time.Second)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := client.New(tt.addrs, append(tt.opts, client.WithKey("demo-key"))...)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			for range 3 { // round-robin: every call finds the live replica
				resp, err := c.Find(testCtx(t), &fustorv1.FindRequest{View: "demo", Path: "/upload", Glob: "*.dat"})
				if err != nil {
					t.Fatal(err)
				}
				if got := client.FindPaths(resp); !slices.Equal(got, want) {
					t.Fatalf("found %v; want %v", got, want)
				}
			}
		})
	}
}

// TestCalls: one call of each remaining RPC against the demo, with what it must answer.
func TestCalls(t *testing.T) {
	c := newClient(t)
	ctx := testCtx(t)
	tests := []struct {
		name  string
		check func() error
	}{
		{"ListViews", func() error {
			r, err := c.ListViews(ctx)
			if err != nil || !slices.Equal(viewIDs(r.GetViews()), []string{"all", "demo"}) {
				return fmt.Errorf("%v, %v", r, err) // not "other": the key may not read it
			}
			return nil
		}},
		{"ListSuspects", func() error {
			r, err := c.ListSuspects(ctx, &fustorv1.ListSuspectsRequest{View: "demo", Path: "/upload"})
			if err != nil || len(r.GetSuspects()) != 0 {
				return fmt.Errorf("%v, %v", r, err)
			}
			return nil
		}},
		{"ListBlindSpots", func() error {
			r, err := c.ListBlindSpots(ctx, &fustorv1.ListBlindSpotsRequest{View: "demo", Path: "/upload"})
			if err != nil || len(r.GetAdditions())+len(r.GetDeletions()) != 0 {
				return fmt.Errorf("%v, %v", r, err)
			}
			return nil
		}},
		{"Verify", func() error {
			r, err := c.Verify(ctx, &fustorv1.VerifyRequest{View: "demo", Path: "/upload"})
			if err != nil || r.GetWalked() != 6 || r.GetMissing()+r.GetExtra()+r.GetDifferent() != 0 {
				return fmt.Errorf("%v, %v", r, err)
			}
			return nil
		}},
		{"Admin.ListSessions", func() error {
			r, err := c.Admin().ListSessions(ctx, &fustorv1.ListSessionsRequest{View: "demo"})
			if err != nil || len(r.GetSessions()) != 1 || r.GetSessions()[0].GetRole() != fustorv1.Role_ROLE_LEADER {
				return fmt.Errorf("%v, %v", r, err)
			}
			return nil
		}},
		{"Admin.ListPipes", func() error {
			r, err := c.Admin().ListPipes(ctx)
			if err != nil || len(r.GetPipes()) != 3 || r.GetPipes()[0].GetId() != "demo" || r.GetPipes()[1].GetId() != "second" || r.GetPipes()[2].GetId() != "subs" {
				return fmt.Errorf("%v, %v", r, err)
			}
			return nil
		}},
		{"Admin.ListViews", func() error {
			r, err := c.Admin().ListViews(ctx)
			if err != nil || len(r.GetViews()) != 4 {
				return fmt.Errorf("%v, %v", r, err)
			}
			return nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.check(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestNilRequests: a nil request is an empty one: the server's error, never a panic.
func TestNilRequests(t *testing.T) {
	c := newClient(t)
	ctx := testCtx(t)
	first := func(seq func(func(any, error) bool)) error {
		var got error
		seq(func(_ any, err error) bool { got = err; return false })
		return got
	}
	tests := []struct {
		name string
		call func() error
	}{
		{"Stat", func() error { _, err := c.Stat(ctx, nil); return err }},
		{"Find", func() error { _, err := c.Find(ctx, nil); return err }},
		{"GetStats", func() error { _, err := c.GetStats(ctx, nil); return err }},
		{"ListChanges", func() error { _, err := c.ListChanges(ctx, nil); return err }},
		{"GetRow", func() error { _, err := c.GetRow(ctx, nil); return err }},
		{"ListRows", func() error { _, err := c.ListRows(ctx, nil); return err }},
		{"Rows", func() error {
			return first(func(y func(any, error) bool) {
				c.Rows(ctx, nil)(func(r *fustorv1.Row, err error) bool { return y(r, err) })
			})
		}},
		{"Entries", func() error {
			return first(func(y func(any, error) bool) {
				c.Entries(ctx, nil)(func(e *fustorv1.Entry, err error) bool { return y(e, err) })
			})
		}},
		{"Tree", func() error {
			return first(func(y func(any, error) bool) {
				c.Tree(ctx, nil)(func(e *fustorv1.Entry, err error) bool { return y(e, err) })
			})
		}},
		{"Changes", func() error {
			return first(func(y func(any, error) bool) {
				c.Changes(ctx, nil)(func(b *client.Batch, err error) bool { return y(b, err) })
			})
		}},
		{"Follow", func() error {
			return first(func(y func(any, error) bool) {
				c.Follow(ctx, nil)(func(b *client.Batch, err error) bool { return y(b, err) })
			})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if code := status.Code(err); code != codes.InvalidArgument && code != codes.NotFound {
				t.Fatalf("error %v; want InvalidArgument or NotFound", err)
			}
		})
	}
}

func viewIDs(views []*fustorv1.ViewInfo) []string {
	var ids []string
	for _, v := range views {
		ids = append(ids, v.GetId())
	}
	return ids
}

// TestForestEntries: from a forest asked without member, Entries pages through each member
// alone after the fan-out answer's first pages, labelling every entry with its member; with
// member, it pages through that member as through an fs view.
func TestForestEntries(t *testing.T) {
	c := newClient(t)
	var demo, second []string
	for i := range 25 {
		demo = append(demo, fmt.Sprintf("demo /many/f%02d.txt", i))
	}
	for i := range 15 {
		second = append(second, fmt.Sprintf("second /many/g%02d.txt", i))
	}
	tests := []struct {
		member   string
		pageSize uint32
		want     []string
	}{
		{"", 4, append(slices.Clone(demo), second...)},
		{"", 100, append(slices.Clone(demo), second...)},
		{"second", 4, second},
		{"demo", 10, demo},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("member %q page %d", tt.member, tt.pageSize), func(t *testing.T) {
			var got []string
			req := &fustorv1.ListDirectoryRequest{View: "all", Member: tt.member, Path: "/many", PageSize: tt.pageSize}
			for e, err := range c.Entries(testCtx(t), req) {
				if err != nil {
					t.Fatal(err)
				}
				m := e.GetMember()
				if m == "" {
					m = tt.member
				}
				got = append(got, m+" "+e.GetPath())
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("entries %v; want %v", got, tt.want)
			}
		})
	}
}
