package ctl

import (
	"bytes"
	"context"
	"encoding/json"
	"path"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
)

// The fake forest has four members: storage-1 and storage-2 hold the data, storage-3 has no
// agent (not ready) and storage-4 is ready but holds none of the paths asked, so every
// printer must show a member that answered, one that could not and one that holds nothing.

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func forestMeta(view string) *fustorv1.ViewMeta {
	return &fustorv1.ViewMeta{View: view, Members: []*fustorv1.MemberStatus{
		{Member: "storage-1", Ready: true}, {Member: "storage-2", Ready: true},
		{Member: "storage-3", Reason: "no agent connected"}, {Member: "storage-4", Ready: true},
	}}
}

func (s *server) fanOut(view, member string) bool {
	return s.drivers[view] == "forest-fs" && member == ""
}

// forestFiles are the forest's files, sorted by path then member as Fusion merges them.
var forestFiles = []*fustorv1.Entry{
	{Path: "/a/x.dat", Name: "x.dat", Size: 10, Member: "storage-1", Mtime: timestamppb.New(t0)},
	{Path: "/b/x.dat", Name: "x.dat", Size: 5, Member: "storage-1", Mtime: timestamppb.New(t0.Add(time.Hour))},
	{Path: "/b/x.dat", Name: "x.dat", Size: 7, Member: "storage-2", Mtime: timestamppb.New(t0.Add(2 * time.Hour))},
	{Path: "/c/y.dat", Name: "y.dat", Size: 3, Member: "storage-2", Mtime: timestamppb.New(t0)},
}

func forestFind(req *fustorv1.FindRequest) (*fustorv1.FindResponse, error) {
	if req.GetPackedPaths() {
		return nil, status.Error(codes.InvalidArgument, "packed_paths carries no member: set member, or ask for entries")
	}
	if req.GetPath() == "/missing" {
		return nil, status.Error(codes.NotFound, "path not found: /missing is in no ready member")
	}
	out := &fustorv1.FindResponse{Meta: forestMeta(req.GetView()), Members: []*fustorv1.MemberMatches{
		{Member: "storage-1"}, {Member: "storage-2"}, // storage-4 does not hold the path
	}}
	for _, e := range forestFiles {
		ok := e.GetName() == req.GetName()
		if req.GetGlob() != "" {
			ok, _ = path.Match(req.GetGlob(), e.GetName())
		}
		if !ok {
			continue
		}
		mm := out.Members[0]
		if e.GetMember() == "storage-2" {
			mm = out.Members[1]
		}
		if l := req.GetMemberLimit(); l > 0 && mm.Matches >= l {
			mm.Truncated, out.Truncated = true, true
			continue
		}
		mm.Matches++
		out.Entries = append(out.Entries, e)
	}
	return out, nil
}

func forestStats(req *fustorv1.GetStatsRequest) *fustorv1.GetStatsResponse {
	out := &fustorv1.GetStatsResponse{Meta: forestMeta(req.GetView()), FileCount: 7, DirCount: 2, TotalSize: 22,
		Members: []*fustorv1.MemberStats{
			{Member: "storage-1", Found: true, FileCount: 2, DirCount: 2, TotalSize: 15, LatestMtime: timestamppb.New(t0)},
			{Member: "storage-2", Found: true, FileCount: 5, TotalSize: 7},
			{Member: "storage-4"},
		}}
	if req.GetBestBy() == fustorv1.StatsBest_STATS_BEST_TOTAL_SIZE {
		out.Best, out.BestReason, out.Members[0].Best = "storage-1", "largest total size: 15 (next: storage-2, 7)", true
	} else {
		out.Best, out.BestReason, out.Members[1].Best = "storage-2", "most files: 5 (next: storage-1, 2)", true
	}
	return out
}

func forestList(req *fustorv1.ListDirectoryRequest) (*fustorv1.ListDirectoryResponse, error) {
	if req.GetPageToken() != "" {
		return nil, status.Error(codes.InvalidArgument, "page_token continues one member's listing: set member")
	}
	return &fustorv1.ListDirectoryResponse{Meta: forestMeta(req.GetView()), Members: []*fustorv1.MemberListing{
		{Member: "storage-1", Found: true, Directory: &fustorv1.Entry{Path: "/d", IsDir: true, Member: "storage-1"},
			Entries: []*fustorv1.Entry{{Path: "/d/a", Size: 4, KnownByAgent: true, Member: "storage-1"}}, NextPageToken: "p2"},
		{Member: "storage-2"},
		{Member: "storage-4", Found: true, Directory: &fustorv1.Entry{Path: "/d", Size: 9, KnownByAgent: true, Member: "storage-4"}},
	}}, nil
}

func forestStat(req *fustorv1.StatRequest) (*fustorv1.StatResponse, error) {
	return &fustorv1.StatResponse{Meta: forestMeta(req.GetView()), Members: []*fustorv1.MemberEntry{
		{Member: "storage-1", Found: true, Entry: &fustorv1.Entry{Path: req.GetPath(), Size: 5, Member: "storage-1"}},
		{Member: "storage-2"},
	}}, nil
}

func forestTree(req *fustorv1.GetTreeRequest, stream fustorv1.ViewService_GetTreeServer) error {
	if req.GetBestOnly() {
		meta := forestMeta(req.GetView())
		meta.Member = "storage-1"
		return stream.Send(&fustorv1.GetTreeResponse{Meta: meta, Entries: []*fustorv1.Entry{{Path: "/t1"}}})
	}
	for _, m := range []string{"storage-1", "storage-2"} {
		chunk := &fustorv1.GetTreeResponse{Entries: []*fustorv1.Entry{{Path: "/t1", Member: m}}}
		if m == "storage-1" {
			chunk.Meta = forestMeta(req.GetView())
		}
		if err := stream.Send(chunk); err != nil {
			return err
		}
	}
	return nil
}

func (s *server) ListSuspects(ctx context.Context, req *fustorv1.ListSuspectsRequest) (*fustorv1.ListSuspectsResponse, error) {
	if err := s.record(ctx, req); err != nil {
		return nil, err
	}
	e := &fustorv1.Entry{Path: "/s", Size: 1}
	out := &fustorv1.ListSuspectsResponse{Suspects: []*fustorv1.Suspect{{Entry: e, ExpiresInMs: 1000}}}
	if s.fanOut(req.GetView(), req.GetMember()) {
		e.Member, out.Meta = "storage-2", forestMeta(req.GetView())
	}
	return out, nil
}

func (s *server) ListBlindSpots(ctx context.Context, req *fustorv1.ListBlindSpotsRequest) (*fustorv1.ListBlindSpotsResponse, error) {
	if err := s.record(ctx, req); err != nil {
		return nil, err
	}
	out := &fustorv1.ListBlindSpotsResponse{Additions: []*fustorv1.Entry{{Path: "/new"}}, Deletions: []string{"/gone"}}
	if s.fanOut(req.GetView(), req.GetMember()) {
		out.Additions[0].Member, out.DeletionMembers, out.Meta = "storage-1", []string{"storage-2"}, forestMeta(req.GetView())
	}
	return out, nil
}

func (s *server) Verify(ctx context.Context, req *fustorv1.VerifyRequest) (*fustorv1.VerifyResponse, error) {
	if err := s.record(ctx, req); err != nil {
		return nil, err
	}
	return &fustorv1.VerifyResponse{Meta: &fustorv1.ViewMeta{View: req.GetView(), Member: req.GetMember()}, Path: req.GetPath(),
		Walked: 3, Took: durationpb.New(time.Millisecond)}, nil
}

func TestMemberReachesRequests(t *testing.T) {
	s, addr := startServer(t, "all=forest-fs")
	tests := []struct {
		name string
		args []string
		env  map[string]string
	}{
		{"ls", []string{"ls", "/"}, nil},
		{"tree", []string{"tree", "/"}, nil},
		{"stat", []string{"stat", "/a"}, nil},
		{"find", []string{"find", "/", "--name", "x.dat"}, nil},
		{"find --paths packs with a member", []string{"find", "/", "--name", "x.dat", "--paths"}, nil},
		{"stats", []string{"stats"}, nil},
		{"suspects", []string{"suspects"}, nil},
		{"blind-spots", []string{"blind-spots"}, nil},
		{"verify", []string{"verify", "/"}, nil},
		{"where", []string{"where", "x.dat"}, nil},
		{"from the environment", []string{"stats"}, map[string]string{"FUSTOR_MEMBER": "storage-2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"--server", addr, "--key", "k"}, tt.args...)
			if tt.env == nil {
				args = append(args, "--member", "storage-2")
			}
			var out, errOut bytes.Buffer
			if code := Run(context.Background(), args, &out, &errOut, func(k string) string { return tt.env[k] }); code != 0 {
				t.Fatalf("exit %d: %s", code, errOut.String())
			}
			req, ok := s.last().(interface{ GetMember() string })
			if !ok || req.GetMember() != "storage-2" {
				t.Fatalf("last request %v has no member storage-2", s.last())
			}
			if f, ok := s.last().(*fustorv1.FindRequest); ok && strings.Contains(tt.name, "packs") && !f.GetPackedPaths() {
				t.Fatalf("find --paths --member should ask for packed paths: %v", f)
			}
		})
	}
}

// lineOf returns the output line starting with prefix.
func lineOf(out, prefix string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

func TestForestOutput(t *testing.T) {
	s, addr := startServer(t, "demo", "all=forest-fs")
	tests := []struct {
		name  string
		args  []string
		code  int
		want  []string
		check func(t *testing.T, req any, out string)
	}{
		{"stats per member, best by file count", []string{"stats", "/"}, 0,
			[]string{"MEMBER     FILES  DIRS  SIZE  NEWEST MTIME", "storage-3  not ready: no agent connected",
				"storage-4  path not in this member", "best: storage-2 (most files: 5 (next: storage-1, 2))", "files:"},
			func(t *testing.T, req any, out string) {
				if l := lineOf(out, "storage-2"); !strings.HasSuffix(l, "*") {
					t.Fatalf("storage-2 not starred: %q", l)
				}
				if l := lineOf(out, "storage-1"); strings.HasSuffix(l, "*") || !strings.Contains(l, "15") {
					t.Fatalf("storage-1 row %q", l)
				}
			}},
		{"stats --best total_size", []string{"stats", "--best", "total_size"}, 0, []string{"best: storage-1 (largest total size"},
			func(t *testing.T, req any, out string) {
				if req.(*fustorv1.GetStatsRequest).GetBestBy() != fustorv1.StatsBest_STATS_BEST_TOTAL_SIZE {
					t.Fatalf("request %v", req)
				}
				if l := lineOf(out, "storage-1"); !strings.HasSuffix(l, "*") {
					t.Fatalf("storage-1 not starred: %q", l)
				}
			}},
		{"find labels matches and sums members", []string{"find", "/", "--name", "x.dat", "--member-limit", "1"}, 0,
			[]string{"MEMBER     TYPE", "… truncated: raise --limit or --member-limit", "MEMBER     MATCHES  TRUNCATED",
				"storage-1  1        true", "storage-2  1        false", "storage-3  not ready: no agent connected", "storage-4  0        false"},
			func(t *testing.T, req any, out string) {
				if req.(*fustorv1.FindRequest).GetMemberLimit() != 1 {
					t.Fatalf("request %v", req)
				}
				if l := lineOf(out, "storage-1  f"); !strings.HasSuffix(l, "/a/x.dat") {
					t.Fatalf("storage-1 match %q in %q", l, out)
				}
			}},
		{"find --paths of a forest prints members", []string{"find", "/", "--name", "x.dat", "--paths"}, 0,
			[]string{"storage-1\t/a/x.dat\nstorage-1\t/b/x.dat\nstorage-2\t/b/x.dat\n"},
			func(t *testing.T, req any, out string) {
				if r := req.(*fustorv1.FindRequest); r.GetPackedPaths() || !r.GetOnlyPaths() {
					t.Fatalf("request %v", r)
				}
			}},
		{"ls per member", []string{"ls", "/d", "--all"}, 0,
			[]string{"== storage-1\nf  4", "/d/a", "… more entries: fustorctl --member storage-1 ls /d --all",
				"== storage-2\nnot in this member", "== storage-3\nnot ready: no agent connected", "== storage-4\nf  9", "add --member NAME"},
			func(t *testing.T, req any, _ string) {
				if req.(*fustorv1.ListDirectoryRequest).GetPageToken() != "" {
					t.Fatalf("fan-out listing paged: %v", req)
				}
			}},
		{"stat per member", []string{"stat", "/a"}, 0,
			[]string{"== storage-1\npath:", "size:               5", "== storage-2\nnot in this member", "== storage-3\nnot ready"}, nil},
		{"tree labels entries", []string{"tree", "/"}, 0,
			[]string{"MEMBER     TYPE", "storage-2  f", "member storage-3 not ready: no agent connected"}, nil},
		{"tree --best", []string{"tree", "/", "--best", "total_size"}, 0, []string{"== storage-1 (the best member by total_size)\nf"},
			func(t *testing.T, req any, _ string) {
				if r := req.(*fustorv1.GetTreeRequest); !r.GetBestOnly() || r.GetBestBy() != fustorv1.StatsBest_STATS_BEST_TOTAL_SIZE {
					t.Fatalf("request %v", r)
				}
			}},
		{"suspects labelled", []string{"suspects"}, 0, []string{"MEMBER     SIZE", "storage-2  1", "member storage-3 not ready"}, nil},
		{"blind-spots labelled", []string{"blind-spots"}, 0,
			[]string{"MEMBER     KIND", "storage-1  added    /new", "storage-2  deleted  /gone", "member storage-3 not ready"}, nil},
		{"where", []string{"where", "x.dat"}, 0,
			[]string{"== view all: in 2 of 4 members", "MEMBER     MATCHES  SIZE  NEWEST MTIME          FIRST PATH",
				"storage-1  2        15    2026-01-02T04:04:05Z  /a/x.dat", "storage-2  1        7     2026-01-02T05:04:05Z  /b/x.dat",
				"storage-3  not ready: no agent connected", "storage-4  0        0     -                     -"},
			func(t *testing.T, req any, _ string) {
				if r := req.(*fustorv1.FindRequest); r.GetName() != "x.dat" || r.GetGlob() != "" || r.GetView() != "all" || r.GetPath() != "/" {
					t.Fatalf("request %v", r)
				}
			}},
		{"where a glob", []string{"where", "*.dat", "/", "--member-limit", "1", "--type", "f", "--limit", "50"}, 0,
			[]string{"storage-1  1+", "storage-2  1+", "(N+: cut by --limit or --member-limit"},
			func(t *testing.T, req any, _ string) {
				if r := req.(*fustorv1.FindRequest); r.GetGlob() != "*.dat" || r.GetName() != "" || r.GetMemberLimit() != 1 ||
					!r.GetFilesOnly() || r.GetLimit() != 50 {
					t.Fatalf("request %v", r)
				}
			}},
		{"where nowhere exits 4", []string{"where", "nothing.dat"}, 4, []string{"== view all: in 0 of 4 members", "storage-1  0"}, nil},
		{"where under a path no member holds", []string{"where", "x.dat", "/missing"}, 4, []string{"storage-2  0", "storage-3  not ready"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.args
			if args[0] != "where" {
				args = append([]string{"--view", "all"}, args...)
			}
			code, out, errOut := run(addr, append([]string{"--key", "k"}, args...)...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d: %s\n%s", code, tt.code, errOut, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Fatalf("output lacks %q:\n%s", w, out)
				}
			}
			if tt.check != nil {
				tt.check(t, s.last(), out)
			}
		})
	}
}

func TestWhereJSON(t *testing.T) {
	_, addr := startServer(t, "demo", "all=forest-fs")
	type member struct {
		Member      string
		Ready       bool
		Reason      string
		Matches     int
		Truncated   bool
		TotalSize   uint64
		NewestMtime string
		Paths       []string
	}
	var doc struct {
		Views []struct {
			View    string
			Members []member
		}
	}
	code, out, errOut := run(addr, "--json", "--key", "k", "where", "x.dat")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil || len(doc.Views) != 1 || doc.Views[0].View != "all" {
		t.Fatalf("json %q: %v", out, err)
	}
	want := []member{
		{Member: "storage-1", Ready: true, Matches: 2, TotalSize: 15, NewestMtime: "2026-01-02T04:04:05Z", Paths: []string{"/a/x.dat", "/b/x.dat"}},
		{Member: "storage-2", Ready: true, Matches: 1, TotalSize: 7, NewestMtime: "2026-01-02T05:04:05Z", Paths: []string{"/b/x.dat"}},
		{Member: "storage-4", Ready: true},
		{Member: "storage-3", Reason: "no agent connected"}, // members that could not answer come last
	}
	got := doc.Views[0].Members
	if len(got) != len(want) {
		t.Fatalf("members %+v", got)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Member != w.Member || g.Ready != w.Ready || g.Reason != w.Reason || g.Matches != w.Matches || g.TotalSize != w.TotalSize ||
			g.NewestMtime != w.NewestMtime || strings.Join(g.Paths, ",") != strings.Join(w.Paths, ",") {
			t.Fatalf("member %d: %+v, want %+v", i, g, w)
		}
	}
	for _, key := range []string{`"member"`, `"ready"`, `"reason"`, `"matches"`, `"truncated"`, `"totalSize"`, `"newestMtime"`, `"paths"`} {
		if !strings.Contains(out, key) {
			t.Fatalf("json lacks key %s: %s", key, out)
		}
	}
	if code, out, _ := run(addr, "--json", "--key", "k", "where", "nothing.dat"); code != 4 || !strings.Contains(out, `"matches": 0`) {
		t.Fatalf("nowhere: exit %d %s", code, out)
	}
}

func TestForestErrors(t *testing.T) {
	_, addr := startServer(t, "demo", "all=forest-fs")
	_, fsOnly := startServer(t, "demo")
	tests := []struct {
		name     string
		addr     string
		args     []string
		code     int
		contains string
	}{
		{"bad --best on stats", addr, []string{"--view", "all", "stats", "--best", "biggest"}, 2, `--best is file_count, total_size or latest_mtime, not "biggest"`},
		{"bad --best on tree", addr, []string{"--view", "all", "tree", "/", "--best", "newest"}, 2, "--best is file_count"},
		{"tree --best with --member", addr, []string{"--view", "all", "--member", "storage-1", "tree", "/", "--best", "file_count"}, 2, "drop --member or --best"},
		{"where needs a name", addr, []string{"where"}, 2, "where takes NAME or GLOB"},
		{"where bad type", addr, []string{"where", "x", "--type", "z"}, 2, "--type is f or d"},
		{"where in an fs view", addr, []string{"--view", "demo", "where", "x.dat"}, 1, `view "demo" is not a forest`},
		{"where in an unknown view", addr, []string{"--view", "nope", "where", "x.dat"}, 1, `cannot read view "nope"`},
		{"where an unknown member", addr, []string{"--member", "storage-9", "where", "x.dat"}, 1, `has member "storage-9"`},
		{"where without forests", fsOnly, []string{"where", "x.dat"}, 1, "is a forest"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errOut := run(tt.addr, append([]string{"--key", "k"}, tt.args...)...)
			if code != tt.code || !strings.Contains(errOut, tt.contains) {
				t.Fatalf("exit %d stderr %q; want %d and %q", code, errOut, tt.code, tt.contains)
			}
		})
	}
}
