// Package query implements ViewService: list, tree, stat, find, stats, suspects, blind spots
// and verify. It reads each view through view.Driver (its Reader and Verifier) and turns the
// contract's types (view.Entry, view.Stats, view.VerifyResult, ...) into the wire's, so it
// serves any view driver alike. Answers are bounded by paging and limits, never by the size
// of the view (DESIGN.md §9.9).
package query

import (
	"context"
	"encoding/base64"
	"fmt"
	"math"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/fustor/fustor/fusion/internal/command"
	"github.com/fustor/fustor/fusion/internal/errs"
	"github.com/fustor/fustor/fusion/internal/server"
	"github.com/fustor/fustor/fusion/internal/session"
	"github.com/fustor/fustor/fusion/internal/view"
	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
	"github.com/fustor/fustor/sdk/fspath"
)

// Limits of one answer.
const (
	DefaultPageSize  = 1000
	MaxPageSize      = 10000
	DefaultFindLimit = 1000
	MaxFindLimit     = 100000
	treeChunk        = 1000
	unlimitedDepth   = math.MaxInt32
)

// Service serves ViewService.
type Service struct {
	fustorv1.UnimplementedViewServiceServer
	views    *view.Registry
	sessions *session.Manager
	commands *command.Tracker
}

// New returns the query service; force_real_time scans go to the views' leader sessions.
func New(views *view.Registry, sessions *session.Manager, commands *command.Tracker) *Service {
	return &Service{views: views, sessions: sessions, commands: commands}
}

// Bounds of a force_real_time wait.
const (
	DefaultForceTimeout = 5 * time.Second
	MaxForceTimeout     = time.Minute
)

// forceScan asks the view's leader agent to re-scan path (DESIGN.md §3, §4.1 step 8) and waits
// until the scan's rows are applied, or the timeout. It returns whether the answer must say
// job_pending: the scan did not finish in time (or could not be sent).
func (s *Service) forceScan(ctx context.Context, v *view.View, path string, f *fustorv1.ForceRealTime) bool {
	if !f.GetEnabled() {
		return false
	}
	timeout := f.GetTimeout().AsDuration()
	if timeout <= 0 {
		timeout = DefaultForceTimeout
	}
	timeout = min(timeout, MaxForceTimeout)
	sess, err := s.sessions.Get(v.State().Leader)
	if err != nil {
		return true
	}
	id, result, ok := s.commands.Start()
	if !ok {
		return true
	}
	if !sess.Command(&fustorv1.Command{Id: id, Kind: &fustorv1.Command_Scan{Scan: &fustorv1.ScanCommand{Path: path, Recursive: true}}}) {
		s.commands.Cancel(id)
		return true
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-result:
		return false
	case <-t.C:
	case <-ctx.Done():
	}
	s.commands.Cancel(id)
	return true
}

// open resolves, authorises and readiness-checks a view, and cleans the path.
func (s *Service) open(ctx context.Context, name, path string) (*view.View, string, error) {
	if name == "" {
		return nil, "", fmt.Errorf("%w: view is required", errs.ErrInvalidArgument)
	}
	v, err := s.views.Get(name)
	if err != nil {
		return nil, "", err
	}
	if !server.PrincipalFrom(ctx).CanQuery(name) {
		return nil, "", fmt.Errorf("%w: the API key may not query view %q", errs.ErrPermission, name)
	}
	clean, err := fspath.Clean(path)
	if err != nil {
		return nil, "", err
	}
	if err := v.Ready(); err != nil {
		return nil, "", err
	}
	return v, clean, nil
}

func (s *Service) meta(v *view.View, jobPending bool) *fustorv1.ViewMeta {
	st := v.State()
	cs := v.Driver.Consistency()
	return &fustorv1.ViewMeta{
		View: v.Name, AuthoritativeSession: st.Leader != "", SnapshotComplete: st.SnapshotComplete,
		Watermark: timestamppb.New(time.Unix(0, cs.WatermarkNs)), HasBlindSpot: cs.HasBlindSpot(),
		JobPending: jobPending,
	}
}

// ListViews lists the views the key may query.
func (s *Service) ListViews(ctx context.Context, _ *fustorv1.ListViewsRequest) (*fustorv1.ListViewsResponse, error) {
	p := server.PrincipalFrom(ctx)
	out := &fustorv1.ListViewsResponse{}
	for _, v := range s.views.All() {
		if !p.CanQuery(v.Name) {
			continue
		}
		out.Views = append(out.Views, &fustorv1.ViewInfo{Id: v.Name, Driver: v.Cfg.Driver, Schema: v.Cfg.Schema,
			Live: v.Cfg.Live, Nodes: uint64(v.Driver.Len()), Meta: s.meta(v, false)})
	}
	return out, nil
}

// ListDirectory lists one page of a directory.
func (s *Service) ListDirectory(ctx context.Context, req *fustorv1.ListDirectoryRequest) (*fustorv1.ListDirectoryResponse, error) {
	v, p, err := s.open(ctx, req.GetView(), req.GetPath())
	if err != nil {
		return nil, err
	}
	pending := s.forceScan(ctx, v, p, req.GetForceRealTime())
	size := int(req.GetPageSize())
	if size == 0 {
		size = DefaultPageSize
	}
	size = min(size, MaxPageSize)
	after, err := decodeToken(req.GetPageToken())
	if err != nil {
		return nil, err
	}
	dir, err := v.Driver.Stat(p)
	if err != nil {
		return nil, err
	}
	entries, next, err := v.Driver.List(p, int(req.GetMaxDepth()), after, size)
	if err != nil {
		return nil, err
	}
	out := &fustorv1.ListDirectoryResponse{Meta: s.meta(v, pending), Directory: toProto(dir, false),
		NextPageToken: encodeToken(next)}
	out.Entries = toProtos(entries, req.GetOnlyPaths())
	return out, nil
}

// GetTree streams a subtree in chunks. Each chunk is read under the view's read lock and sent
// after it is released, so a slow client never holds up writers.
func (s *Service) GetTree(req *fustorv1.GetTreeRequest, stream fustorv1.ViewService_GetTreeServer) error {
	v, p, err := s.open(stream.Context(), req.GetView(), req.GetPath())
	if err != nil {
		return err
	}
	if _, err := v.Driver.Stat(p); err != nil {
		return err
	}
	depth := int(req.GetMaxDepth())
	if depth == 0 {
		depth = unlimitedDepth
	}
	limit := req.GetLimit()
	var sent uint64
	after := ""
	first := true
	for {
		n := treeChunk
		if limit > 0 {
			n = int(min(uint64(n), limit-sent))
		}
		entries, next, err := v.Driver.List(p, depth, after, n)
		if err != nil {
			return err
		}
		sent += uint64(len(entries))
		chunk := &fustorv1.GetTreeResponse{Entries: toProtos(entries, req.GetOnlyPaths())}
		if first {
			chunk.Meta = s.meta(v, false)
			first = false
		}
		done := next == ""
		if !done && limit > 0 && sent >= limit {
			chunk.Truncated = true
			done = true
		}
		if err := stream.Send(chunk); err != nil {
			return err
		}
		if done {
			return nil
		}
		after = next
	}
}

// Stat describes one path.
func (s *Service) Stat(ctx context.Context, req *fustorv1.StatRequest) (*fustorv1.StatResponse, error) {
	v, p, err := s.open(ctx, req.GetView(), req.GetPath())
	if err != nil {
		return nil, err
	}
	pending := s.forceScan(ctx, v, p, req.GetForceRealTime())
	e, err := v.Driver.Stat(p)
	if err != nil {
		return nil, err
	}
	return &fustorv1.StatResponse{Meta: s.meta(v, pending), Entry: toProto(e, false)}, nil
}

// Find finds entries by basename under a path.
func (s *Service) Find(ctx context.Context, req *fustorv1.FindRequest) (*fustorv1.FindResponse, error) {
	v, p, err := s.open(ctx, req.GetView(), req.GetPath())
	if err != nil {
		return nil, err
	}
	pending := s.forceScan(ctx, v, p, req.GetForceRealTime())
	if (req.GetName() == "") == (req.GetGlob() == "") {
		return nil, fmt.Errorf("%w: set exactly one of name and glob", errs.ErrInvalidArgument)
	}
	if req.GetDirsOnly() && req.GetFilesOnly() {
		return nil, fmt.Errorf("%w: dirs_only and files_only exclude each other", errs.ErrInvalidArgument)
	}
	if g := req.GetGlob(); g != "" {
		if err := validGlob(g); err != nil {
			return nil, err
		}
	}
	m := view.Matcher{Name: req.GetName(), Glob: req.GetGlob(), DirsOnly: req.GetDirsOnly(), FilesOnly: req.GetFilesOnly()}
	if req.GetPackedPaths() {
		packed, dirs, truncated, err := v.Driver.FindPaths(p, m, limitOf(req.GetLimit()))
		if err != nil {
			return nil, err
		}
		return &fustorv1.FindResponse{Meta: s.meta(v, pending), Truncated: truncated, PackedPaths: packed, DirIndexes: dirs}, nil
	}
	entries, truncated, err := v.Driver.Find(p, m, limitOf(req.GetLimit()))
	if err != nil {
		return nil, err
	}
	return &fustorv1.FindResponse{Meta: s.meta(v, pending), Truncated: truncated, Entries: toProtos(entries, req.GetOnlyPaths())}, nil
}

// GetStats returns subtree figures.
func (s *Service) GetStats(ctx context.Context, req *fustorv1.GetStatsRequest) (*fustorv1.GetStatsResponse, error) {
	v, p, err := s.open(ctx, req.GetView(), req.GetPath())
	if err != nil {
		return nil, err
	}
	pending := s.forceScan(ctx, v, p, req.GetForceRealTime())
	st, err := v.Driver.Stats(p)
	if err != nil {
		return nil, err
	}
	cs := v.Driver.Consistency()
	out := &fustorv1.GetStatsResponse{Meta: s.meta(v, pending), FileCount: st.Files, DirCount: st.Dirs,
		TotalSize: st.TotalSize, SuspectCount: uint64(cs.Suspects), BlindSpotAdditions: uint64(cs.Additions),
		BlindSpotDeletions: uint64(cs.Deletions), AuditCycles: cs.AuditCycles, AuditRunning: cs.AuditRunning,
		Tombstones: uint64(cs.Tombstones)}
	if st.LatestMtimeNs != 0 {
		out.LatestMtime = timestamppb.New(time.Unix(0, st.LatestMtimeNs))
	}
	if cs.LastAuditEndNs != 0 {
		out.LastAuditEnd = timestamppb.New(time.Unix(0, cs.LastAuditEndNs))
	}
	return out, nil
}

// ListSuspects lists files that may still be being written, sorted by path.
func (s *Service) ListSuspects(ctx context.Context, req *fustorv1.ListSuspectsRequest) (*fustorv1.ListSuspectsResponse, error) {
	v, p, err := s.open(ctx, req.GetView(), orRoot(req.GetPath()))
	if err != nil {
		return nil, err
	}
	list, truncated := v.Driver.Suspects(p, limitOf(req.GetLimit()))
	out := &fustorv1.ListSuspectsResponse{Meta: s.meta(v, false), Truncated: truncated}
	for _, e := range list {
		out.Suspects = append(out.Suspects, &fustorv1.Suspect{Entry: toProto(e.Entry, false), ExpiresInMs: e.ExpiresIn.Milliseconds()})
	}
	return out, nil
}

// ListBlindSpots lists additions (with their nodes) and deletions (paths).
func (s *Service) ListBlindSpots(ctx context.Context, req *fustorv1.ListBlindSpotsRequest) (*fustorv1.ListBlindSpotsResponse, error) {
	v, p, err := s.open(ctx, req.GetView(), orRoot(req.GetPath()))
	if err != nil {
		return nil, err
	}
	bs := v.Driver.BlindSpots(p, limitOf(req.GetLimit()))
	out := &fustorv1.ListBlindSpotsResponse{Meta: s.meta(v, false), Deletions: bs.Deletions, Truncated: bs.Truncated}
	for _, a := range bs.Additions {
		if e, err := v.Driver.Stat(a); err == nil {
			out.Additions = append(out.Additions, toProto(e, false))
		}
	}
	return out, nil
}

func orRoot(p string) string {
	if p == "" {
		return fspath.Root
	}
	return p
}

func limitOf(l uint32) int {
	if l == 0 {
		return DefaultFindLimit
	}
	return min(int(l), MaxFindLimit)
}

func toProto(e view.Entry, onlyPaths bool) *fustorv1.Entry {
	if onlyPaths {
		return &fustorv1.Entry{Path: e.Path, IsDir: e.IsDir}
	}
	out := &fustorv1.Entry{Path: e.Path, Name: e.Name, IsDir: e.IsDir, Size: e.Size,
		IntegritySuspect: e.Suspect, KnownByAgent: e.KnownByAgent, AuditSkipped: e.AuditSkipped,
		ChildCount: uint64(e.ChildCount)}
	if e.MtimeNs != 0 {
		out.Mtime = timestamppb.New(time.Unix(0, e.MtimeNs))
	}
	if e.LastUpdatedAtNs != 0 {
		out.LastUpdatedAt = timestamppb.New(time.Unix(0, e.LastUpdatedAtNs))
	}
	return out
}

// toProtos converts a listing with three allocations instead of three per entry: entries and
// their timestamps live in two slices the messages point into. Listings are the hot answers.
func toProtos(entries []view.Entry, onlyPaths bool) []*fustorv1.Entry {
	out := make([]*fustorv1.Entry, len(entries))
	msgs := make([]fustorv1.Entry, len(entries))
	var stamps []timestamppb.Timestamp
	if !onlyPaths {
		stamps = make([]timestamppb.Timestamp, 2*len(entries))
	}
	for i := range entries {
		e, m := &entries[i], &msgs[i]
		out[i] = m
		m.Path, m.IsDir = e.Path, e.IsDir
		if onlyPaths {
			continue
		}
		m.Name, m.Size, m.ChildCount = e.Name, e.Size, uint64(e.ChildCount)
		m.IntegritySuspect, m.KnownByAgent, m.AuditSkipped = e.Suspect, e.KnownByAgent, e.AuditSkipped
		if e.MtimeNs != 0 {
			ts := &stamps[2*i]
			ts.Seconds, ts.Nanos = e.MtimeNs/1e9, int32(e.MtimeNs%1e9)
			if ts.Nanos < 0 {
				ts.Seconds, ts.Nanos = ts.Seconds-1, ts.Nanos+1e9
			}
			m.Mtime = ts
		}
		if e.LastUpdatedAtNs != 0 {
			ts := &stamps[2*i+1]
			ts.Seconds, ts.Nanos = e.LastUpdatedAtNs/1e9, int32(e.LastUpdatedAtNs%1e9)
			if ts.Nanos < 0 {
				ts.Seconds, ts.Nanos = ts.Seconds-1, ts.Nanos+1e9
			}
			m.LastUpdatedAt = ts
		}
	}
	return out
}

func encodeToken(last string) string {
	if last == "" {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString([]byte(last))
}

func decodeToken(tok string) (string, error) {
	if tok == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return "", fmt.Errorf("%w: page_token is not one this server issued", errs.ErrInvalidArgument)
	}
	if _, err := fspath.Clean(string(b)); err != nil {
		return "", fmt.Errorf("%w: page_token is not one this server issued", errs.ErrInvalidArgument)
	}
	return string(b), nil
}
