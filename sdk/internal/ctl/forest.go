package ctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
)

// A forest view (driver forest-fs) holds one tree per member, one storage each. Asked without
// --member its members answer together and each part of the answer names its member; the
// members that could not answer are only in meta.members, so every printer here lists them
// with their reason: a missing member must never read as "not on that storage".

const forestDriver = "forest-fs"

// whereExamples bounds the paths `where --json` lists per member: enough to recognise the
// matches, few enough to keep the document small for a name matching millions.
const whereExamples = 10

// errNowhere makes where exit with 4 once its answer is printed: no member holds a match.
var errNowhere = errors.New("no match in any ready member")

var bestValues = map[string]fustorv1.StatsBest{
	"file_count":   fustorv1.StatsBest_STATS_BEST_FILE_COUNT,
	"total_size":   fustorv1.StatsBest_STATS_BEST_TOTAL_SIZE,
	"latest_mtime": fustorv1.StatsBest_STATS_BEST_LATEST_MTIME,
}

// parseBest parses --best ("" leaves the choice to the server: file_count).
func parseBest(s string) (fustorv1.StatsBest, error) {
	if s == "" {
		return fustorv1.StatsBest_STATS_BEST_UNSPECIFIED, nil
	}
	b, ok := bestValues[s]
	if !ok {
		return 0, fmt.Errorf("%w: --best is file_count, total_size or latest_mtime, not %q", errUsage, s)
	}
	return b, nil
}

// bestName is the --best spelling of b.
func bestName(b fustorv1.StatsBest) string {
	for k, v := range bestValues {
		if v == b {
			return k
		}
	}
	return "file_count" // unspecified is the server's default
}

func reason(m *fustorv1.MemberStatus) string {
	if m.GetReason() == "" {
		return "no reason given"
	}
	return m.GetReason()
}

// notReady writes one line per member that could not answer.
func notReady(w io.Writer, meta *fustorv1.ViewMeta) {
	for _, m := range meta.GetMembers() {
		if !m.GetReady() {
			fmt.Fprintf(w, "member %s not ready: %s\n", m.GetMember(), reason(m))
		}
	}
}

// notReadyBlocks writes, after per-member blocks ("== MEMBER"), one for each member that
// could not answer.
func notReadyBlocks(w io.Writer, meta *fustorv1.ViewMeta) {
	for _, m := range meta.GetMembers() {
		if !m.GetReady() {
			fmt.Fprintf(w, "== %s\nnot ready: %s\n", m.GetMember(), reason(m))
		}
	}
}

// memberOrder lists the members a table shows: the view's, as meta lists them, then answered
// ones meta does not list; those that could not answer come last, as their short rows would
// otherwise split the tabwriter's columns in two blocks of different widths.
func memberOrder(meta *fustorv1.ViewMeta, answered []string) []*fustorv1.MemberStatus {
	all := append([]*fustorv1.MemberStatus(nil), meta.GetMembers()...)
	seen := map[string]bool{}
	for _, m := range all {
		seen[m.GetMember()] = true
	}
	for _, n := range answered {
		if !seen[n] {
			seen[n] = true
			all = append(all, &fustorv1.MemberStatus{Member: n, Ready: true})
		}
	}
	out := make([]*fustorv1.MemberStatus, 0, len(all))
	for _, ready := range []bool{true, false} {
		for _, m := range all {
			if m.GetReady() == ready {
				out = append(out, m)
			}
		}
	}
	return out
}

// lsMembers writes a forest's fan-out listing: each member's first page under its name.
func (c *client) lsMembers(w io.Writer, p string, resp *fustorv1.ListDirectoryResponse) {
	more := false
	for _, ml := range resp.GetMembers() {
		fmt.Fprintf(w, "== %s\n", ml.GetMember())
		switch {
		case !ml.GetFound():
			fmt.Fprintln(w, "not in this member")
		case !ml.GetDirectory().GetIsDir():
			entryTable(w, []*fustorv1.Entry{ml.GetDirectory()}, false) // a file in this member
		default:
			entryTable(w, ml.GetEntries(), false)
		}
		if ml.GetNextPageToken() != "" {
			more = true
			fmt.Fprintf(w, "… more entries: fustorctl --member %s ls %s --all\n", ml.GetMember(), p)
		}
	}
	notReadyBlocks(w, resp.GetMeta())
	if more && c.o.all {
		fmt.Fprintln(w, "(--all pages one member's listing at a time: add --member NAME)")
	}
}

// memberStatsTable writes a forest's per-member figures, the best one starred.
func memberStatsTable(w io.Writer, resp *fustorv1.GetStatsResponse) {
	byName := map[string]*fustorv1.MemberStats{}
	var names []string
	for _, m := range resp.GetMembers() {
		byName[m.GetMember()] = m
		names = append(names, m.GetMember())
	}
	fmt.Fprintln(w, "MEMBER\tFILES\tDIRS\tSIZE\tNEWEST MTIME\tBEST")
	var absent, down []string // rows without figures, after the full ones (see memberOrder)
	for _, st := range memberOrder(resp.GetMeta(), names) {
		m, ok := byName[st.GetMember()]
		switch {
		case !st.GetReady():
			down = append(down, fmt.Sprintf("%s\tnot ready: %s\n", st.GetMember(), reason(st)))
		case !ok || !m.GetFound():
			absent = append(absent, fmt.Sprintf("%s\tpath not in this member\n", st.GetMember()))
		default:
			star := ""
			if m.GetBest() || m.GetMember() == resp.GetBest() {
				star = "*"
			}
			fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%s\t%s\n", m.GetMember(), m.GetFileCount(), m.GetDirCount(), m.GetTotalSize(),
				ts(m.GetLatestMtime()), star)
		}
	}
	for _, l := range append(absent, down...) {
		fmt.Fprint(w, l)
	}
	if resp.GetBest() == "" {
		fmt.Fprintln(w, "best: none (no member holds the path)")
	} else {
		fmt.Fprintf(w, "best: %s (%s)\n", resp.GetBest(), resp.GetBestReason())
	}
}

// findSummary writes a forest find's per-member counts.
func findSummary(w io.Writer, resp *fustorv1.FindResponse) {
	byName := map[string]*fustorv1.MemberMatches{}
	var names []string
	for _, m := range resp.GetMembers() {
		byName[m.GetMember()] = m
		names = append(names, m.GetMember())
	}
	fmt.Fprintln(w, "MEMBER\tMATCHES\tTRUNCATED")
	for _, st := range memberOrder(resp.GetMeta(), names) {
		if !st.GetReady() {
			fmt.Fprintf(w, "%s\tnot ready: %s\n", st.GetMember(), reason(st))
			continue
		}
		m := byName[st.GetMember()] // nil (0 matches) when the member does not hold the path
		fmt.Fprintf(w, "%s\t%d\t%v\n", st.GetMember(), m.GetMatches(), m.GetTruncated())
	}
}

// whereDoc is where's --json document; its keys are read by scripts and fusion/e2e.
type whereDoc struct {
	Views []whereView `json:"views"`
}

type whereView struct {
	View    string         `json:"view"`
	Members []*whereMember `json:"members"`
}

type whereMember struct {
	Member      string   `json:"member"`
	Ready       bool     `json:"ready"`
	Stale       bool     `json:"stale,omitempty"`
	Restored    bool     `json:"restored,omitempty"`
	Reason      string   `json:"reason,omitempty"`
	Matches     int      `json:"matches"`
	Truncated   bool     `json:"truncated"`
	TotalSize   uint64   `json:"totalSize"`
	NewestMtime string   `json:"newestMtime,omitempty"`
	Paths       []string `json:"paths,omitempty"`

	newest time.Time
}

// where finds a name in every forest view the key can read and tells, per member, how much
// of it is there: the question "on which storage is it?".
func (c *client) where(ctx context.Context, args []string) error {
	if len(args) == 0 || len(args) > 2 {
		return fmt.Errorf("%w: where takes NAME or GLOB, then an optional PATH", errUsage)
	}
	pattern, p := args[0], "/"
	if len(args) == 2 {
		p = args[1]
	}
	req := &fustorv1.FindRequest{Path: p, Limit: uint32(c.o.limit), MemberLimit: uint32(c.o.memberLimit),
		Member: c.o.member, ForceRealTime: c.force()}
	if strings.ContainsAny(pattern, "*?[") {
		req.Glob = pattern
	} else {
		req.Name = pattern
	}
	if err := c.setType(req); err != nil {
		return err
	}
	views, err := c.viewInfos(ctx)
	if err != nil {
		return err
	}
	var forests []*fustorv1.ViewInfo
	for _, v := range views {
		switch {
		case c.o.view != "" && v.GetId() != c.o.view:
		case v.GetDriver() != forestDriver && c.o.view != "":
			return fmt.Errorf("view %q is not a forest (driver %q): use find", c.o.view, v.GetDriver())
		case v.GetDriver() != forestDriver:
		case c.o.member != "" && !hasMember(v.GetMeta(), c.o.member):
			// --member names a storage of one forest; the others do not hold it.
			if c.o.view != "" {
				return fmt.Errorf("view %q has no member %q", c.o.view, c.o.member)
			}
		default:
			forests = append(forests, v)
		}
	}
	switch {
	case len(forests) > 0:
	case c.o.view != "":
		return fmt.Errorf("the key cannot read view %q", c.o.view)
	case c.o.member != "":
		return fmt.Errorf("no forest view the key can read has member %q", c.o.member)
	default:
		return fmt.Errorf("none of the %d views the key can read is a forest (driver %s): use find", len(views), forestDriver)
	}
	doc := whereDoc{Views: []whereView{}}
	found, down := false, 0
	for _, v := range forests {
		req.View = v.GetId()
		wv, err := c.whereIn(ctx, v, req)
		if err != nil {
			return fmt.Errorf("find %s in view %s: %w", pattern, v.GetId(), status.Convert(err).Err())
		}
		for _, m := range wv.Members {
			found = found || m.Matches > 0
			if !m.Ready {
				down++
			}
		}
		doc.Views = append(doc.Views, wv)
	}
	if err := c.printWhere(doc); err != nil {
		return err
	}
	switch {
	case found:
		return nil
	case down > 0:
		return fmt.Errorf("%w: %s under %s (%d members not ready may hold it)", errNowhere, pattern, p, down)
	}
	return fmt.Errorf("%w: %s under %s", errNowhere, pattern, p)
}

func hasMember(meta *fustorv1.ViewMeta, name string) bool {
	for _, m := range meta.GetMembers() {
		if m.GetMember() == name {
			return true
		}
	}
	return false
}

// whereIn runs one view's find and sums its matches per member.
func (c *client) whereIn(ctx context.Context, v *fustorv1.ViewInfo, req *fustorv1.FindRequest) (whereView, error) {
	wv := whereView{View: v.GetId(), Members: []*whereMember{}}
	resp, err := c.api.Find(ctx, req)
	meta := resp.GetMeta()
	switch status.Code(err) {
	case codes.OK:
	case codes.NotFound, codes.Unavailable:
		// The path is in no ready member, or no member is ready: nowhere here, and
		// ListViews' meta says which members are ready.
		meta = v.GetMeta()
	default:
		return wv, err
	}
	byName := map[string]*whereMember{}
	var names []string
	add := func(name string) *whereMember {
		m, ok := byName[name]
		if !ok {
			m = &whereMember{Member: name, Ready: true}
			byName[name] = m
			names = append(names, name)
		}
		return m
	}
	for _, mm := range resp.GetMembers() {
		add(mm.GetMember()).Truncated = mm.GetTruncated()
	}
	for _, e := range resp.GetEntries() {
		name := e.GetMember()
		if name == "" {
			name = c.o.member // asked with --member: that member alone answered
		}
		m := add(name)
		m.Matches++
		m.TotalSize += e.GetSize()
		if t := e.GetMtime(); t != nil && t.AsTime().After(m.newest) {
			m.newest = t.AsTime()
		}
		if len(m.Paths) < whereExamples {
			m.Paths = append(m.Paths, e.GetPath())
		}
	}
	if c.o.member != "" {
		add(c.o.member).Truncated = resp.GetTruncated()
	}
	for _, st := range memberOrder(meta, names) {
		if c.o.member != "" && st.GetMember() != c.o.member {
			continue
		}
		m := byName[st.GetMember()]
		if m == nil {
			m = &whereMember{Member: st.GetMember(), Ready: true} // holds no match: shown with 0
		}
		if !st.GetReady() {
			m.Ready, m.Reason = false, reason(st)
		}
		if st.GetStale() || st.GetRestored() {
			m.Stale, m.Restored, m.Reason = st.GetStale(), st.GetRestored(), st.GetReason()
		}
		if !m.newest.IsZero() {
			m.NewestMtime = m.newest.UTC().Format(time.RFC3339Nano)
		}
		wv.Members = append(wv.Members, m)
	}
	return wv, nil
}

func (c *client) printWhere(doc whereDoc) error {
	if c.o.json {
		b, err := json.MarshalIndent(doc, "", "  ")
		if err != nil {
			return fmt.Errorf("encode json: %w", err)
		}
		_, err = fmt.Fprintln(c.out, string(b))
		return err
	}
	tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	truncated := false
	for i, v := range doc.Views {
		if i > 0 {
			fmt.Fprintln(tw)
		}
		holding := 0
		for _, m := range v.Members {
			if m.Matches > 0 {
				holding++
			}
		}
		fmt.Fprintf(tw, "== view %s: in %d of %d members\n", v.View, holding, len(v.Members))
		fmt.Fprintln(tw, "MEMBER\tMATCHES\tSIZE\tNEWEST MTIME\tFIRST PATH")
		for _, m := range v.Members {
			if !m.Ready {
				fmt.Fprintf(tw, "%s\tnot ready: %s\n", m.Member, m.Reason)
				continue
			}
			matches, first, newest := fmt.Sprint(m.Matches), "-", m.NewestMtime
			if m.Truncated {
				matches += "+"
				truncated = true
			}
			if len(m.Paths) > 0 {
				first = m.Paths[0]
			}
			if newest == "" {
				newest = "-"
			}
			name := m.Member
			switch {
			case m.Restored:
				name += " (restored)"
			case m.Stale:
				name += " (stale)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", name, matches, m.TotalSize, newest, first)
		}
	}
	if truncated {
		fmt.Fprintln(tw, "(N+: cut by --limit or --member-limit; SIZE and NEWEST MTIME cover the matches shown)")
	}
	return tw.Flush()
}
