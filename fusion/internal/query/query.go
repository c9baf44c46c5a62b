// Package query implements ViewService: list, tree, stat, find, stats, suspects, blind spots
// and verify. It reads each view member through view.Driver (its Reader and Verifier) and
// turns the contract's types (view.Entry, view.Stats, view.VerifyResult, ...) into the wire's,
// so it serves any view driver alike. A forest view asked without a member is answered by
// fanning out over its ready members and merging (forest.go). Answers are bounded by paging
// and limits, never by the size of the view (DESIGN.md §9.9).
package query

import (
	"context"
	"encoding/base64"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"
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

	watchers  atomic.Int64
	watchMu   sync.Mutex
	perView   map[string]int // open watches by view
	perKey    map[uint64]int // open watches by key (Principal.KeyID)
	lagged    atomic.Uint64
	batches   batchCache       // Watch messages shared by watchers at one cursor
	heartbeat time.Duration    // idle Watch heartbeat (0 = DefaultWatchHeartbeat)
	now       func() time.Time // WaitStable's clock

	limits limiter // expensive queries' slots (limits.go)
}

// New returns the query service; force_real_time scans go to the views' leader sessions.
func New(views *view.Registry, sessions *session.Manager, commands *command.Tracker) *Service {
	return &Service{views: views, sessions: sessions, commands: commands, now: time.Now,
		perView: map[string]int{}, perKey: map[uint64]int{}}
}

// SetWatchHeartbeat sets how often an idle Watch gets a heartbeat (tests).
func (s *Service) SetWatchHeartbeat(d time.Duration) { s.heartbeat = d }

// Bounds of a force_real_time wait.
const (
	DefaultForceTimeout = 5 * time.Second
	MaxForceTimeout     = time.Minute
)

// forceScan asks the leader agent of each member to re-scan path (DESIGN.md §3, §4.1 step 8)
// and waits until the scans' rows are applied, or the timeout. It returns whether the answer
// must say job_pending: a scan did not finish in time (or could not be sent).
func (s *Service) forceScan(ctx context.Context, sc scope, path string, f *fustorv1.ForceRealTime) bool {
	if !f.GetEnabled() {
		return false
	}
	timeout := f.GetTimeout().AsDuration()
	if timeout <= 0 {
		timeout = DefaultForceTimeout
	}
	timeout = min(timeout, MaxForceTimeout)
	pending := false
	type started struct {
		id     string
		result <-chan command.Result
	}
	var waits []started
	for _, m := range sc.members {
		sess, err := s.sessions.Get(m.State().Leader)
		if err != nil {
			pending = true
			continue
		}
		id, result, ok := s.commands.Start()
		if !ok {
			pending = true
			continue
		}
		if !sess.Command(&fustorv1.Command{Id: id, Kind: &fustorv1.Command_Scan{Scan: &fustorv1.ScanCommand{Path: path, Recursive: true}}}) {
			s.commands.Cancel(id)
			pending = true
			continue
		}
		waits = append(waits, started{id, result})
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	for i, w := range waits {
		select {
		case <-w.result:
			continue
		case <-t.C:
		case <-ctx.Done():
		}
		for _, rest := range waits[i:] {
			s.commands.Cancel(rest.id)
		}
		return true
	}
	return pending
}

// scope is what a request reads: one member (an fs view's only one, or the member a forest
// request names), or every ready member of a forest asked without a member (fan-out).
type scope struct {
	v *view.View
	// members are the members answering: one, or the ready members of a fan-out.
	members []*view.Member
	fanOut  bool
}

// one returns the member of a single-member scope.
func (sc scope) one() *view.Member { return sc.members[0] }

// open resolves, authorises and readiness-checks a request's view and member, and cleans the
// path.
func (s *Service) open(ctx context.Context, name, member, path string) (scope, string, error) {
	if name == "" {
		return scope{}, "", fmt.Errorf("%w: view is required", errs.ErrInvalidArgument)
	}
	v, err := s.views.Get(name)
	if err != nil {
		return scope{}, "", err
	}
	if !server.PrincipalFrom(ctx).CanQuery(name) {
		return scope{}, "", fmt.Errorf("%w: the API key may not query view %q", errs.ErrPermission, name)
	}
	if v.IsRows() {
		// A rows view has no tree: every path query is refused, FAILED_PRECONDITION.
		_, err := v.Members()[0].FS()
		return scope{}, "", err
	}
	clean, err := fspath.Clean(path)
	if err != nil {
		return scope{}, "", err
	}
	if v.IsForest() && member == "" {
		sc := scope{v: v, fanOut: true}
		for _, m := range v.Members() {
			if m.Ready() == nil {
				sc.members = append(sc.members, m)
			}
		}
		if len(sc.members) == 0 {
			return scope{}, "", v.Ready()
		}
		return sc, clean, nil
	}
	m, err := v.Member(member)
	if err != nil {
		return scope{}, "", err
	}
	if err := m.Ready(); err != nil {
		return scope{}, "", err
	}
	return scope{v: v, members: []*view.Member{m}}, clean, nil
}

// meta describes the answer's trust: the member's state for a single member, and for a
// fan-out every member's (the ones that could not answer with their reason) and a summary.
func (s *Service) meta(sc scope, jobPending bool) *fustorv1.ViewMeta {
	if !sc.fanOut {
		m := sc.one()
		if m.Rows != nil {
			return rowsMeta(sc.v, m)
		}
		st, cs := m.State(), m.Driver.Consistency()
		out := &fustorv1.ViewMeta{
			View: sc.v.Name, Member: m.Name, AuthoritativeSession: st.Leader != "", SnapshotComplete: st.SnapshotComplete,
			Watermark: timestamppb.New(time.Unix(0, cs.WatermarkNs)), HasBlindSpot: cs.HasBlindSpot(),
			JobPending: jobPending,
		}
		out.Restored, out.CheckpointTime = restoredOf(st)
		out.Stale, out.StaleSince = staleOf(st)
		return out
	}
	return s.forestMeta(sc.v, jobPending)
}

// restoredOf says whether a member answers from an unconfirmed checkpoint, and its time.
func restoredOf(st view.State) (bool, *timestamppb.Timestamp) {
	if st.RestoredAt.IsZero() {
		return false, nil
	}
	return true, timestamppb.New(st.RestoredAt)
}

// staleOf says whether a member answers from a tree no session feeds, and since when.
func staleOf(st view.State) (bool, *timestamppb.Timestamp) {
	if st.StaleSince.IsZero() {
		return false, nil
	}
	return true, timestamppb.New(st.StaleSince)
}

func (s *Service) forestMeta(v *view.View, jobPending bool) *fustorv1.ViewMeta {
	return s.forestMetaOf(v, jobPending, nil)
}

// forestMetaOf is forestMeta with the members' consistency states already read (nil: read).
func (s *Service) forestMetaOf(v *view.View, jobPending bool, cons map[*view.Member]view.ConsistencyStats) *fustorv1.ViewMeta {
	out := &fustorv1.ViewMeta{View: v.Name, JobPending: jobPending, AuthoritativeSession: len(v.Members()) > 0,
		SnapshotComplete: len(v.Members()) > 0}
	var wm int64
	for _, m := range v.Members() {
		st := m.State()
		cs, ok := cons[m]
		if !ok {
			cs = m.Driver.Consistency()
		}
		ms := &fustorv1.MemberStatus{Member: m.Name, Ready: true, HasBlindSpot: cs.HasBlindSpot(),
			AuthoritativeSession: st.Leader != "", SnapshotComplete: st.SnapshotComplete,
			Watermark: timestamppb.New(time.Unix(0, cs.WatermarkNs))}
		if err := m.Ready(); err != nil {
			ms.Ready, ms.Reason = false, err.Error()
		}
		if ms.Restored, ms.CheckpointTime = restoredOf(st); ms.Restored {
			if !out.Restored || ms.CheckpointTime.AsTime().Before(out.CheckpointTime.AsTime()) {
				out.CheckpointTime = ms.CheckpointTime
			}
			out.Restored = true
		}
		if ms.Stale, ms.StaleSince = staleOf(st); ms.Stale {
			if ms.Reason == "" {
				ms.Reason = fmt.Sprintf("member %q has had no agent session since %s: it answers from the tree it kept, which may be out of date", m.Name, st.StaleSince.UTC().Format(time.RFC3339))
			}
			if !out.Stale || ms.StaleSince.AsTime().Before(out.StaleSince.AsTime()) {
				out.StaleSince = ms.StaleSince
			}
			out.Stale = true
		}
		out.Members = append(out.Members, ms)
		out.HasBlindSpot = out.HasBlindSpot || ms.HasBlindSpot
		out.AuthoritativeSession = out.AuthoritativeSession && ms.AuthoritativeSession
		out.SnapshotComplete = out.SnapshotComplete && ms.SnapshotComplete
		wm = max(wm, cs.WatermarkNs)
	}
	out.Watermark = timestamppb.New(time.Unix(0, wm))
	return out
}

// ListViews lists the views the key may query.
func (s *Service) ListViews(ctx context.Context, _ *fustorv1.ListViewsRequest) (*fustorv1.ListViewsResponse, error) {
	p := server.PrincipalFrom(ctx)
	out := &fustorv1.ListViewsResponse{}
	for _, v := range s.views.All() {
		if !p.CanQuery(v.Name) {
			continue
		}
		sc := scope{v: v, members: v.Members(), fanOut: v.IsForest()}
		var meta *fustorv1.ViewMeta
		if len(sc.members) > 0 {
			meta = s.meta(sc, false)
		}
		out.Views = append(out.Views, &fustorv1.ViewInfo{Id: v.Name, Driver: v.Cfg.Driver, Schema: v.Cfg.Schema,
			Live: v.Cfg.Live, Nodes: uint64(v.Len()), Meta: meta})
	}
	return out, nil
}

// pageSize is a request's page size: 0 asks for DefaultPageSize, and none gets more than
// MaxPageSize.
func pageSize(asked uint32) int {
	if asked == 0 {
		return DefaultPageSize
	}
	return min(int(asked), MaxPageSize)
}

// ListDirectory lists one page of a directory.
func (s *Service) ListDirectory(ctx context.Context, req *fustorv1.ListDirectoryRequest) (*fustorv1.ListDirectoryResponse, error) {
	sc, p, err := s.open(ctx, req.GetView(), req.GetMember(), req.GetPath())
	if err != nil {
		return nil, err
	}
	size := pageSize(req.GetPageSize())
	after, err := decodeToken(req.GetPageToken())
	if err != nil {
		return nil, err
	}
	if sc.fanOut && after != "" {
		return nil, fmt.Errorf("%w: page_token continues one member's listing: set member", errs.ErrInvalidArgument)
	}
	pending := s.forceScan(ctx, sc, p, req.GetForceRealTime())
	if sc.fanOut {
		return s.listForest(ctx, sc, p, int(req.GetMaxDepth()), size, req.GetOnlyPaths(), pending)
	}
	d := sc.one().Driver
	dir, err := d.Stat(p)
	if err != nil {
		return nil, err
	}
	out := &fustorv1.ListDirectoryResponse{Meta: s.meta(sc, pending), Directory: toProto(dir, false)}
	entries, next, err := d.List(ctx, p, int(req.GetMaxDepth()), after, view.Limit{Entries: size, Bytes: bytesLeft(sc.v, out, tokenBytes)})
	if err != nil {
		return nil, err
	}
	out.NextPageToken = encodeToken(next)
	out.Entries = toProtos(entries, req.GetOnlyPaths())
	return out, nil
}

// tokenBytes bounds a page token's field: the base64 of the longest path, tag and length.
const tokenBytes = 4<<10*4/3 + 8

// bytesLeft is the view's answer budget less what the message holds already and reserve
// more (at least 1: an answer always takes one entry).
func bytesLeft(v *view.View, m proto.Message, reserve int) int {
	return max(1, answerBytes(v)-proto.Size(m)-reserve)
}

// GetTree streams a subtree in chunks. Each chunk is read under the view's read lock and sent
// after it is released, so a slow client never holds up writers.
//
// A tree is an expensive query: each chunk is read holding one of the view's slots, the first
// waiting as any expensive query does (RESOURCE_EXHAUSTED beyond), the next ones as long as
// the stream lasts; no slot is held while a chunk is sent, so a slow reader holds none.
func (s *Service) GetTree(req *fustorv1.GetTreeRequest, stream fustorv1.ViewService_GetTreeServer) error {
	ctx := stream.Context()
	sc, p, err := s.open(ctx, req.GetView(), req.GetMember(), req.GetPath())
	if err != nil {
		return err
	}
	trees := sc.members
	meta := s.meta(sc, false)
	if sc.fanOut {
		if trees = holding(sc.members, p); len(trees) == 0 {
			return fmt.Errorf("%w: %s is in no ready member of view %q", view.ErrPathNotFound, p, sc.v.Name)
		}
		if req.GetBestOnly() {
			best, _ := bestMember(statsOf(trees, p), req.GetBestBy())
			trees = []*view.Member{best.m}
			meta.Member = best.m.Name
		}
	} else if _, err := sc.one().Driver.Stat(p); err != nil {
		return err
	}
	depth := int(req.GetMaxDepth())
	if depth == 0 {
		depth = unlimitedDepth
	}
	limit := req.GetLimit()
	var sent uint64
	first := true
	for ti, m := range trees {
		label := ""
		if sc.fanOut && !req.GetBestOnly() {
			label = m.Name
		}
		after := ""
		for {
			n := treeChunk
			if limit > 0 {
				n = int(min(uint64(n), limit-sent))
			}
			budget := answerBytes(sc.v) - len(label)*n
			if first {
				budget -= proto.Size(meta)
			}
			release, err := s.limits.acquire(ctx, sc.v, !first)
			if err != nil {
				return err
			}
			entries, next, err := m.Driver.List(ctx, p, depth, after, view.Limit{Entries: n, Bytes: max(1, budget)})
			release()
			if err != nil {
				return err
			}
			sent += uint64(len(entries))
			chunk := &fustorv1.GetTreeResponse{Entries: labelled(toProtos(entries, req.GetOnlyPaths()), label)}
			if first {
				chunk.Meta, first = meta, false
			}
			last := next == "" && ti == len(trees)-1
			full := limit > 0 && sent >= limit && !last
			if full {
				chunk.Truncated = true
			}
			if err := stream.Send(chunk); err != nil {
				return err
			}
			if full || last {
				return nil
			}
			if next == "" {
				break
			}
			after = next
		}
	}
	return nil
}

// Stat describes one path.
func (s *Service) Stat(ctx context.Context, req *fustorv1.StatRequest) (*fustorv1.StatResponse, error) {
	sc, p, err := s.open(ctx, req.GetView(), req.GetMember(), req.GetPath())
	if err != nil {
		return nil, err
	}
	pending := s.forceScan(ctx, sc, p, req.GetForceRealTime())
	if sc.fanOut {
		return s.statForest(sc, p, pending)
	}
	e, err := sc.one().Driver.Stat(p)
	if err != nil {
		return nil, err
	}
	return &fustorv1.StatResponse{Meta: s.meta(sc, pending), Entry: toProto(e, false)}, nil
}

// Find finds entries by basename under a path.
func (s *Service) Find(ctx context.Context, req *fustorv1.FindRequest) (*fustorv1.FindResponse, error) {
	sc, p, err := s.open(ctx, req.GetView(), req.GetMember(), req.GetPath())
	if err != nil {
		return nil, err
	}
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
	if sc.fanOut && req.GetPackedPaths() {
		return nil, fmt.Errorf("%w: packed_paths carries no member: set member, or ask for entries", errs.ErrInvalidArgument)
	}
	pending := s.forceScan(ctx, sc, p, req.GetForceRealTime())
	if expensiveFind(req.GetGlob(), req.GetLimit()) {
		release, err := s.limits.acquire(ctx, sc.v, false)
		if err != nil {
			return nil, err
		}
		defer release()
	}
	m := view.Matcher{Name: req.GetName(), Glob: req.GetGlob(), DirsOnly: req.GetDirsOnly(), FilesOnly: req.GetFilesOnly()}
	out := &fustorv1.FindResponse{Meta: s.meta(sc, pending)}
	if sc.fanOut {
		return s.findForest(ctx, sc, p, m, limitOf(req.GetLimit()), int(req.GetMemberLimit()), req.GetOnlyPaths(), out)
	}
	d := sc.one().Driver
	lim := view.Limit{Entries: limitOf(req.GetLimit()), Bytes: bytesLeft(sc.v, out, 0)}
	if req.GetPackedPaths() {
		out.PackedPaths, out.DirIndexes, out.Truncated, err = d.FindPaths(ctx, p, m, lim)
	} else {
		var entries []view.Entry
		entries, out.Truncated, err = d.Find(ctx, p, m, lim)
		out.Entries = toProtos(entries, req.GetOnlyPaths())
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

// GetStats returns subtree figures.
func (s *Service) GetStats(ctx context.Context, req *fustorv1.GetStatsRequest) (*fustorv1.GetStatsResponse, error) {
	sc, p, err := s.open(ctx, req.GetView(), req.GetMember(), req.GetPath())
	if err != nil {
		return nil, err
	}
	pending := s.forceScan(ctx, sc, p, req.GetForceRealTime())
	if sc.fanOut {
		return s.statsForest(sc, p, req.GetBestBy(), pending)
	}
	d := sc.one().Driver
	st, err := d.Stats(p)
	if err != nil {
		return nil, err
	}
	out := &fustorv1.GetStatsResponse{Meta: s.meta(sc, pending)}
	fillStats(out, st, d.Consistency())
	return out, nil
}

// fillStats sets a GetStatsResponse's figures from subtree stats and consistency state.
func fillStats(out *fustorv1.GetStatsResponse, st view.Stats, cs view.ConsistencyStats) {
	out.FileCount, out.DirCount, out.TotalSize = st.Files, st.Dirs, st.TotalSize
	out.SuspectCount, out.BlindSpotAdditions, out.BlindSpotDeletions = uint64(cs.Suspects), uint64(cs.Additions), uint64(cs.Deletions)
	out.AuditCycles, out.AuditRunning, out.Tombstones = cs.AuditCycles, cs.AuditRunning, uint64(cs.Tombstones)
	if st.LatestMtimeNs != 0 {
		out.LatestMtime = timestamppb.New(time.Unix(0, st.LatestMtimeNs))
	}
	if cs.LastAuditEndNs != 0 {
		out.LastAuditEnd = timestamppb.New(time.Unix(0, cs.LastAuditEndNs))
	}
}

// ListSuspects lists files that may still be being written, sorted by path.
func (s *Service) ListSuspects(ctx context.Context, req *fustorv1.ListSuspectsRequest) (*fustorv1.ListSuspectsResponse, error) {
	sc, p, err := s.open(ctx, req.GetView(), req.GetMember(), orRoot(req.GetPath()))
	if err != nil {
		return nil, err
	}
	limit := limitOf(req.GetLimit())
	out := &fustorv1.ListSuspectsResponse{Meta: s.meta(sc, false)}
	type hit struct {
		e view.SuspectEntry
		m string
	}
	var hits []hit
	for _, m := range sc.members {
		list, truncated := m.Driver.Suspects(p, limit)
		out.Truncated = out.Truncated || truncated
		label := ""
		if sc.fanOut {
			label = m.Name
		}
		for _, e := range list {
			hits = append(hits, hit{e, label})
		}
	}
	if sc.fanOut {
		slices.SortStableFunc(hits, func(a, b hit) int {
			return compareEntries(&fustorv1.Entry{Path: a.e.Entry.Path, Member: a.m}, &fustorv1.Entry{Path: b.e.Entry.Path, Member: b.m})
		})
	}
	// Cut at limit and at the byte budget, in path order: the suspects left are the last ones.
	lim, used := view.Limit{Entries: limit, Bytes: bytesLeft(sc.v, out, 0)}, 0
	for i, h := range hits {
		c := entryBytes(h.e.Entry, h.m) + suspectOverhead
		if !lim.Fits(i, used, c) {
			out.Truncated = true
			break
		}
		used += c
		pe := toProto(h.e.Entry, false)
		pe.Member = h.m
		out.Suspects = append(out.Suspects, &fustorv1.Suspect{Entry: pe, ExpiresInMs: h.e.ExpiresIn.Milliseconds()})
	}
	return out, nil
}

// suspectOverhead is what a Suspect message adds to its entry: expires_in_ms, tags, lengths.
const suspectOverhead = 16

// ListBlindSpots lists additions (with their nodes) and deletions (paths).
func (s *Service) ListBlindSpots(ctx context.Context, req *fustorv1.ListBlindSpotsRequest) (*fustorv1.ListBlindSpotsResponse, error) {
	sc, p, err := s.open(ctx, req.GetView(), req.GetMember(), orRoot(req.GetPath()))
	if err != nil {
		return nil, err
	}
	limit := limitOf(req.GetLimit())
	out := &fustorv1.ListBlindSpotsResponse{Meta: s.meta(sc, false)}
	for _, m := range sc.members {
		bs := m.Driver.BlindSpots(p, limit)
		out.Truncated = out.Truncated || bs.Truncated
		for _, a := range bs.Additions {
			if e, err := m.Driver.Stat(a); err == nil {
				pe := toProto(e, false)
				if sc.fanOut {
					pe.Member = m.Name
				}
				out.Additions = append(out.Additions, pe)
			}
		}
		out.Deletions = append(out.Deletions, bs.Deletions...)
		if sc.fanOut {
			for range bs.Deletions {
				out.DeletionMembers = append(out.DeletionMembers, m.Name)
			}
		}
	}
	if sc.fanOut {
		slices.SortStableFunc(out.Additions, compareEntries)
	}
	// Each list is cut at limit; both share the byte budget, additions first. The answer's
	// first item is always kept.
	budget, used := bytesLeft(sc.v, &fustorv1.ListBlindSpotsResponse{Meta: out.Meta}, 0), 0
	fits := func(c int) bool { return used == 0 || used+c <= budget }
	for i, e := range out.Additions {
		c := view.EntryBytes(len(e.GetPath()), len(e.GetName())) + len(e.GetMember())
		if i == limit || !fits(c) {
			out.Additions, out.Truncated = out.Additions[:i], true
			break
		}
		used += c
	}
	for i, d := range out.Deletions {
		c := len(d) + 8
		if sc.fanOut {
			c += len(out.DeletionMembers[i]) + 8
		}
		if i == limit || !fits(c) {
			out.Deletions, out.Truncated = out.Deletions[:i], true
			if sc.fanOut {
				out.DeletionMembers = out.DeletionMembers[:i]
			}
			break
		}
		used += c
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
