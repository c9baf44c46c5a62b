package query

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/fustor/fustor/fusion/internal/errs"
	"github.com/fustor/fustor/fusion/internal/view"
	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
	"github.com/fustor/fustor/sdk/fspath"
)

// A forest view asked without a member (DESIGN.md §6): every ready member answers from its
// own tree, one after the other under its own read lock, and the answers are merged here
// with each part labelled by its member. Members that are not ready are not asked; the
// answer's meta lists them with the reason.

// listForest lists a directory in every ready member holding it: each member's first page,
// the members sharing the answer's byte budget equally.
func (s *Service) listForest(ctx context.Context, sc scope, p string, depth, size int, onlyPaths, pending bool) (*fustorv1.ListDirectoryResponse, error) {
	out := &fustorv1.ListDirectoryResponse{Meta: s.meta(sc, pending)}
	found := false
	share := bytesLeft(sc.v, out, 0) / len(sc.members)
	for _, m := range sc.members {
		ml := &fustorv1.MemberListing{Member: m.Name}
		out.Members = append(out.Members, ml)
		dir, err := m.Driver.Stat(p)
		if err != nil {
			continue
		}
		found, ml.Found, ml.Directory = true, true, labelled1(toProto(dir, false), m.Name)
		budget := share - proto.Size(ml) - tokenBytes - size*len(m.Name)
		entries, next, err := m.Driver.List(ctx, p, depth, "", view.Limit{Entries: size, Bytes: max(1, budget)})
		if err != nil {
			if errors.Is(err, errs.ErrNotDir) {
				continue // a file in this member: its entry says so
			}
			return nil, err
		}
		ml.Entries, ml.NextPageToken = labelled(toProtos(entries, onlyPaths), m.Name), encodeToken(next)
	}
	if !found {
		return nil, fmt.Errorf("%w: %s is in no ready member of view %q", view.ErrPathNotFound, p, sc.v.Name)
	}
	return out, nil
}

// statForest describes a path in every ready member.
func (s *Service) statForest(sc scope, p string, pending bool) (*fustorv1.StatResponse, error) {
	out := &fustorv1.StatResponse{Meta: s.meta(sc, pending)}
	found := false
	for _, m := range sc.members {
		me := &fustorv1.MemberEntry{Member: m.Name}
		if e, err := m.Driver.Stat(p); err == nil {
			found, me.Found, me.Entry = true, true, labelled1(toProto(e, false), m.Name)
		}
		out.Members = append(out.Members, me)
	}
	if !found {
		return nil, fmt.Errorf("%w: %s is in no ready member of view %q", view.ErrPathNotFound, p, sc.v.Name)
	}
	return out, nil
}

// findForest finds in every ready member, at most memberLimit matches each (0 = limit), and
// merges them by path, then member, cut at limit and at the byte budget. Entries become
// messages only once kept. out holds the answer's meta.
func (s *Service) findForest(ctx context.Context, sc scope, p string, mt view.Matcher, limit, memberLimit int, onlyPaths bool, out *fustorv1.FindResponse) (*fustorv1.FindResponse, error) {
	per := limit
	if memberLimit > 0 {
		per = min(memberLimit, limit)
	}
	type hit struct {
		e view.Entry
		m int // index in sc.members
	}
	var hits []hit
	truncated := make([]bool, len(sc.members))
	asked := make([]bool, len(sc.members))
	// The members' counts take at most 32 bytes each besides the member's name.
	budget := bytesLeft(sc.v, out, 0)
	for _, m := range sc.members {
		budget -= 32 + len(m.Name)
	}
	budget = max(1, budget)
	for i, m := range sc.members {
		entries, trunc, err := m.Driver.Find(ctx, p, mt, view.Limit{Entries: per, Bytes: budget})
		if err != nil {
			if errors.Is(err, errs.ErrNotFound) {
				continue // the subtree is not in this member
			}
			return nil, err
		}
		asked[i], truncated[i] = true, trunc
		for _, e := range entries {
			hits = append(hits, hit{e, i})
		}
	}
	if !slices.Contains(asked, true) {
		return nil, fmt.Errorf("%w: %s is in no ready member of view %q", view.ErrPathNotFound, p, sc.v.Name)
	}
	// Members are sorted by name and each member's matches by path: a stable sort by path
	// alone orders ties by member.
	slices.SortStableFunc(hits, func(a, b hit) int { return fspath.Compare(a.e.Path, b.e.Path) })
	lim, used, keep := view.Limit{Entries: limit, Bytes: budget}, 0, len(hits)
	for i, h := range hits {
		c := entryBytes(h.e, sc.members[h.m].Name)
		if !lim.Fits(i, used, c) {
			keep = i
			break
		}
		used += c
	}
	for _, h := range hits[keep:] {
		truncated[h.m] = true
	}
	hits = hits[:keep]
	kept := make([]int, len(sc.members))
	entries := make([]view.Entry, len(hits))
	for i, h := range hits {
		entries[i] = h.e
		kept[h.m]++
	}
	out.Entries = toProtos(entries, onlyPaths)
	for i, e := range out.Entries {
		e.Member = sc.members[hits[i].m].Name
	}
	for i, m := range sc.members {
		if asked[i] {
			out.Members = append(out.Members, &fustorv1.MemberMatches{Member: m.Name, Matches: uint32(kept[i]), Truncated: truncated[i]})
			out.Truncated = out.Truncated || truncated[i]
		}
	}
	return out, nil
}

// memberStats is one member's figures under a path.
type memberStats struct {
	m     *view.Member
	found bool
	st    view.Stats
}

// statsOf returns each member's figures under p.
func statsOf(members []*view.Member, p string) []memberStats {
	out := make([]memberStats, len(members))
	for i, m := range members {
		out[i].m = m
		if st, err := m.Driver.Stats(p); err == nil {
			out[i].found, out[i].st = true, st
		}
	}
	return out
}

// holding returns the members that hold p.
func holding(members []*view.Member, p string) []*view.Member {
	var out []*view.Member
	for _, m := range members {
		if _, err := m.Driver.Stat(p); err == nil {
			out = append(out, m)
		}
	}
	return out
}

// bestMember picks the best of the members holding the path by the criterion (ties: the first
// by name, as members are sorted) and says why. ok is false when no member holds it.
func bestMember(all []memberStats, by fustorv1.StatsBest) (best memberStats, why string) {
	key, what := func(st view.Stats) int64 { return int64(st.Files) }, "most files"
	switch by {
	case fustorv1.StatsBest_STATS_BEST_TOTAL_SIZE:
		key, what = func(st view.Stats) int64 { return int64(st.TotalSize) }, "largest total size"
	case fustorv1.StatsBest_STATS_BEST_LATEST_MTIME:
		key, what = func(st view.Stats) int64 { return st.LatestMtimeNs }, "newest mtime"
	}
	var found []memberStats
	for _, ms := range all {
		if ms.found {
			found = append(found, ms)
		}
	}
	if len(found) == 0 {
		return memberStats{}, ""
	}
	slices.SortStableFunc(found, func(a, b memberStats) int {
		ka, kb := key(a.st), key(b.st)
		switch {
		case ka > kb:
			return -1
		case ka < kb:
			return 1
		}
		return 0
	})
	show := func(ms memberStats) string {
		if by == fustorv1.StatsBest_STATS_BEST_LATEST_MTIME {
			return time.Unix(0, ms.st.LatestMtimeNs).UTC().Format(time.RFC3339Nano)
		}
		return fmt.Sprint(key(ms.st))
	}
	why = fmt.Sprintf("%s: %s", what, show(found[0]))
	if len(found) > 1 {
		why += fmt.Sprintf(" (next: %s, %s)", found[1].m.Name, show(found[1]))
		if key(found[0].st) == key(found[1].st) {
			why += "; a tie, the first by name"
		}
	} else {
		why += " (the only member holding the path)"
	}
	return found[0], why
}

// statsForest returns every ready member's figures, their sums and the best member.
func (s *Service) statsForest(sc scope, p string, by fustorv1.StatsBest, pending bool) (*fustorv1.GetStatsResponse, error) {
	all := statsOf(sc.members, p)
	best, why := bestMember(all, by)
	if best.m == nil {
		return nil, fmt.Errorf("%w: %s is in no ready member of view %q", view.ErrPathNotFound, p, sc.v.Name)
	}
	// Each member's consistency state is read once, for its figures and the meta alike.
	cons := make(map[*view.Member]view.ConsistencyStats, len(sc.v.Members()))
	for _, m := range sc.v.Members() {
		cons[m] = m.Driver.Consistency()
	}
	out := &fustorv1.GetStatsResponse{Meta: s.forestMetaOf(sc.v, pending, cons), Best: best.m.Name, BestReason: why}
	var sum view.Stats
	var cs view.ConsistencyStats
	for _, ms := range all {
		c := cons[ms.m]
		cs.Suspects += c.Suspects
		cs.Additions += c.Additions
		cs.Deletions += c.Deletions
		cs.Tombstones += c.Tombstones
		cs.AuditCycles += c.AuditCycles
		cs.AuditRunning = cs.AuditRunning || c.AuditRunning
		cs.LastAuditEndNs = max(cs.LastAuditEndNs, c.LastAuditEndNs)
		pm := &fustorv1.MemberStats{Member: ms.m.Name, Found: ms.found, SuspectCount: uint64(c.Suspects), Best: ms.m == best.m}
		if ms.found {
			pm.FileCount, pm.DirCount, pm.TotalSize = ms.st.Files, ms.st.Dirs, ms.st.TotalSize
			if ms.st.LatestMtimeNs != 0 {
				pm.LatestMtime = timestamppb.New(time.Unix(0, ms.st.LatestMtimeNs))
			}
			sum.Files += ms.st.Files
			sum.Dirs += ms.st.Dirs
			sum.TotalSize += ms.st.TotalSize
			sum.LatestMtimeNs = max(sum.LatestMtimeNs, ms.st.LatestMtimeNs)
		}
		out.Members = append(out.Members, pm)
	}
	fillStats(out, sum, cs)
	return out, nil
}

// labelled sets the member of entries (no-op for "").
func labelled(entries []*fustorv1.Entry, member string) []*fustorv1.Entry {
	if member != "" {
		for _, e := range entries {
			e.Member = member
		}
	}
	return entries
}

func labelled1(e *fustorv1.Entry, member string) *fustorv1.Entry {
	e.Member = member
	return e
}

// compareEntries orders merged entries by path as the tree walk does, then by member.
func compareEntries(a, b *fustorv1.Entry) int {
	if c := fspath.Compare(a.GetPath(), b.GetPath()); c != 0 {
		return c
	}
	return strings.Compare(a.GetMember(), b.GetMember())
}
