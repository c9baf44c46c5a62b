package ctl

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
)

// print writes m as one JSON document with --json; otherwise human calls human.
func (c *client) print(m proto.Message, human func(w io.Writer)) error {
	if c.o.json {
		b, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(m)
		if err != nil {
			return fmt.Errorf("encode json: %w", err)
		}
		_, err = fmt.Fprintln(c.out, string(b))
		return err
	}
	tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	human(tw)
	return tw.Flush()
}

func ts(t *timestamppb.Timestamp) string {
	if t == nil {
		return "-"
	}
	return t.AsTime().UTC().Format(time.RFC3339Nano)
}

func flags(e *fustorv1.Entry) string {
	var b strings.Builder
	if e.GetIntegritySuspect() {
		b.WriteByte('S')
	}
	if !e.GetKnownByAgent() {
		b.WriteByte('?')
	}
	if e.GetAuditSkipped() {
		b.WriteByte('K')
	}
	if b.Len() == 0 {
		return "-"
	}
	return b.String()
}

// entryLines writes entries one a line; entries labelled with their forest member get a
// MEMBER first column, under a header (an fs view's lines stay as they always were).
func entryLines(w io.Writer, entries []*fustorv1.Entry) {
	member := anyLabelled(entries)
	if member {
		fmt.Fprintln(w, "MEMBER\tTYPE\tSIZE\tMTIME\tFLAGS\tPATH")
	}
	entryTable(w, entries, member)
}

func entryTable(w io.Writer, entries []*fustorv1.Entry, member bool) {
	for _, e := range entries {
		typ := "f"
		if e.GetIsDir() {
			typ = "d"
		}
		if member {
			fmt.Fprintf(w, "%s\t", e.GetMember())
		}
		fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\n", typ, e.GetSize(), ts(e.GetMtime()), flags(e), e.GetPath())
	}
}

func anyLabelled(entries []*fustorv1.Entry) bool {
	for _, e := range entries {
		if e.GetMember() != "" {
			return true
		}
	}
	return false
}

func (c *client) listViews(ctx context.Context) error {
	resp, err := c.api.ListViews(ctx)
	if err != nil {
		return err
	}
	return c.print(resp, func(w io.Writer) {
		fmt.Fprintln(w, "VIEW\tDRIVER\tNODES\tLEADER\tSNAPSHOT COMPLETE")
		for _, v := range resp.GetViews() {
			fmt.Fprintf(w, "%s\t%s\t%d\t%v\t%v\n", v.GetId(), v.GetDriver(), v.GetNodes(),
				v.GetMeta().GetAuthoritativeSession(), v.GetMeta().GetSnapshotComplete())
		}
	})
}

func (c *client) ls(ctx context.Context, p string) error {
	req := &fustorv1.ListDirectoryRequest{View: c.o.view, Path: p, MaxDepth: uint32(c.o.depth),
		PageSize: uint32(c.o.pageSize), ForceRealTime: c.force(), Member: c.o.member}
	var all *fustorv1.ListDirectoryResponse
	// A forest's fan-out answer is every member's first page, and the pages stop there: the
	// next ones are asked one member at a time (the server refuses a page token without
	// member).
	for resp, err := range c.api.ListDirectoryPages(ctx, req) {
		if err != nil {
			return err
		}
		if all == nil {
			all = resp
		} else {
			all.Entries = append(all.Entries, resp.GetEntries()...)
			all.NextPageToken = resp.GetNextPageToken()
		}
		if !c.o.all {
			break
		}
	}
	if len(all.GetMembers()) > 0 {
		return c.print(all, func(w io.Writer) { c.lsMembers(w, p, all) })
	}
	return c.print(all, func(w io.Writer) {
		entryLines(w, all.GetEntries())
		if all.GetNextPageToken() != "" {
			fmt.Fprintf(w, "… more entries: use --all, or --page-size\n")
		}
	})
}

func (c *client) tree(ctx context.Context, p string) error {
	req := &fustorv1.GetTreeRequest{View: c.o.view, Path: p, MaxDepth: uint32(c.o.depth),
		Limit: uint64(c.o.limit), Member: c.o.member}
	if c.o.best != "" {
		req.BestOnly, req.BestBy = true, c.bestBy
	}
	all := &fustorv1.GetTreeResponse{}
	for chunk, err := range c.api.GetTree(ctx, req) {
		if err != nil {
			return err
		}
		if chunk.GetMeta() != nil {
			all.Meta = chunk.GetMeta()
		}
		all.Entries = append(all.Entries, chunk.GetEntries()...)
		all.Truncated = all.Truncated || chunk.GetTruncated()
	}
	return c.print(all, func(w io.Writer) {
		if req.GetBestOnly() && all.GetMeta().GetMember() != "" {
			fmt.Fprintf(w, "== %s (the best member by %s)\n", all.GetMeta().GetMember(), bestName(c.bestBy))
		}
		entryLines(w, all.GetEntries())
		if all.GetTruncated() {
			fmt.Fprintf(w, "… truncated at --limit %d\n", c.o.limit)
		}
		notReady(w, all.GetMeta())
	})
}

func (c *client) stat(ctx context.Context, p string) error {
	resp, err := c.api.Stat(ctx, &fustorv1.StatRequest{View: c.o.view, Path: p, ForceRealTime: c.force(), Member: c.o.member})
	if err != nil {
		return err
	}
	return c.print(resp, func(w io.Writer) {
		if len(resp.GetMembers()) == 0 {
			statLines(w, resp.GetEntry())
			kv(w, "job_pending", resp.GetMeta().GetJobPending())
			return
		}
		for _, me := range resp.GetMembers() {
			fmt.Fprintf(w, "== %s\n", me.GetMember())
			if !me.GetFound() {
				fmt.Fprintln(w, "not in this member")
				continue
			}
			statLines(w, me.GetEntry())
		}
		notReadyBlocks(w, resp.GetMeta())
		fmt.Fprintln(w)
		kv(w, "job_pending", resp.GetMeta().GetJobPending())
	})
}

func statLines(w io.Writer, e *fustorv1.Entry) {
	kv(w, "path", e.GetPath())
	kv(w, "type", map[bool]string{true: "directory", false: "file"}[e.GetIsDir()])
	kv(w, "size", e.GetSize())
	kv(w, "mtime", ts(e.GetMtime()))
	kv(w, "integrity_suspect", e.GetIntegritySuspect())
	kv(w, "known_by_agent", e.GetKnownByAgent())
	kv(w, "last_updated_at", ts(e.GetLastUpdatedAt()))
	if e.GetIsDir() {
		kv(w, "children", e.GetChildCount())
		kv(w, "audit_skipped", e.GetAuditSkipped())
	}
}

func kv(w io.Writer, k string, v any) { fmt.Fprintf(w, "%s:\t%v\n", k, v) }

func (c *client) find(ctx context.Context, p string) error {
	if (c.o.name == "") == (c.o.glob == "") {
		return fmt.Errorf("%w: find needs exactly one of --name and --glob", errUsage)
	}
	req := &fustorv1.FindRequest{View: c.o.view, Path: p, Name: c.o.name, Glob: c.o.glob, Limit: uint32(c.o.limit),
		ForceRealTime: c.force(), OnlyPaths: c.o.paths, Member: c.o.member, MemberLimit: uint32(c.o.memberLimit)}
	if err := c.setType(req); err != nil {
		return err
	}
	if c.o.paths && !c.o.json {
		// One path per line comes packed (decoded much faster: BenchmarkFindAnswer); --json
		// keeps entries, which read better than a base64 blob. A forest asked without member
		// refuses packed paths: they carry no member.
		forest := false
		if c.o.member == "" {
			var err error
			if forest, err = c.isForest(ctx); err != nil {
				return err
			}
		}
		req.PackedPaths = !forest
	}
	resp, err := c.api.Find(ctx, req)
	if err != nil {
		return err
	}
	if c.o.paths && !c.o.json {
		return c.printPaths(resp)
	}
	return c.print(resp, func(w io.Writer) {
		entryLines(w, resp.GetEntries())
		if resp.GetTruncated() {
			fmt.Fprintf(w, "… truncated: raise --limit%s\n", map[bool]string{true: " or --member-limit"}[c.o.memberLimit > 0])
		}
		if len(resp.GetMembers()) > 0 || len(resp.GetMeta().GetMembers()) > 0 {
			fmt.Fprintln(w)
			findSummary(w, resp)
		}
	})
}

// setType sets --type on a find.
func (c *client) setType(req *fustorv1.FindRequest) error {
	switch c.o.typ {
	case "":
	case "f":
		req.FilesOnly = true
	case "d":
		req.DirsOnly = true
	default:
		return fmt.Errorf("%w: --type is f or d, not %q", errUsage, c.o.typ)
	}
	return nil
}

// printPaths writes find --paths: one path a line, "MEMBER<TAB>PATH" for a forest's labelled
// matches. It bypasses the tabwriter, which would pad the tab away and mangle paths holding
// one; members that could not answer are told on stderr, out of the way of scripts.
func (c *client) printPaths(resp *fustorv1.FindResponse) error {
	w := bufio.NewWriter(c.out)
	for _, e := range resp.GetEntries() {
		if e.GetMember() != "" {
			fmt.Fprintf(w, "%s\t%s\n", e.GetMember(), e.GetPath())
		} else {
			fmt.Fprintln(w, e.GetPath())
		}
	}
	for p := resp.GetPackedPaths(); len(p) > 0; {
		i := bytes.IndexByte(p, 0)
		if i < 0 {
			i = len(p) - 1 // a server that forgot the last NUL: print what is there
		}
		fmt.Fprintf(w, "%s\n", p[:i])
		p = p[i+1:]
	}
	if resp.GetTruncated() {
		fmt.Fprintf(w, "… truncated: raise --limit\n")
	}
	notReady(c.errOut, resp.GetMeta())
	return w.Flush()
}

func (c *client) stats(ctx context.Context, p string) error {
	resp, err := c.api.GetStats(ctx, &fustorv1.GetStatsRequest{View: c.o.view, Path: p, ForceRealTime: c.force(),
		Member: c.o.member, BestBy: c.bestBy})
	if err != nil {
		return err
	}
	return c.print(resp, func(w io.Writer) {
		if len(resp.GetMembers()) > 0 {
			memberStatsTable(w, resp)
			fmt.Fprintln(w)
		}
		kv(w, "view", resp.GetMeta().GetView())
		if m := resp.GetMeta().GetMember(); m != "" {
			kv(w, "member", m)
		}
		kv(w, "path", p)
		kv(w, "files", resp.GetFileCount())
		kv(w, "dirs", resp.GetDirCount())
		kv(w, "total_size", resp.GetTotalSize())
		kv(w, "latest_mtime", ts(resp.GetLatestMtime()))
		kv(w, "suspects", resp.GetSuspectCount())
		kv(w, "blind_spot_additions", resp.GetBlindSpotAdditions())
		kv(w, "blind_spot_deletions", resp.GetBlindSpotDeletions())
		kv(w, "has_blind_spot", resp.GetMeta().GetHasBlindSpot())
		kv(w, "authoritative_session", resp.GetMeta().GetAuthoritativeSession())
		kv(w, "watermark", ts(resp.GetMeta().GetWatermark()))
		if m := resp.GetMeta(); m.GetRestored() {
			kv(w, "restored", "from Fusion's checkpoint of "+ts(m.GetCheckpointTime())+", not yet confirmed by its agent")
		}
		if m := resp.GetMeta(); m.GetStale() {
			kv(w, "stale", "no agent session since "+ts(m.GetStaleSince())+": answers may be out of date")
		}
	})
}

func (c *client) suspects(ctx context.Context, p string) error {
	resp, err := c.api.ListSuspects(ctx, &fustorv1.ListSuspectsRequest{View: c.o.view, Path: p, Limit: uint32(c.o.limit),
		Member: c.o.member})
	if err != nil {
		return err
	}
	member := false
	for _, s := range resp.GetSuspects() {
		member = member || s.GetEntry().GetMember() != ""
	}
	return c.print(resp, func(w io.Writer) {
		if member {
			fmt.Fprint(w, "MEMBER\t")
		}
		fmt.Fprintln(w, "SIZE\tMTIME\tEXPIRES IN\tPATH")
		for _, s := range resp.GetSuspects() {
			if member {
				fmt.Fprintf(w, "%s\t", s.GetEntry().GetMember())
			}
			fmt.Fprintf(w, "%d\t%s\t%v\t%s\n", s.GetEntry().GetSize(), ts(s.GetEntry().GetMtime()),
				time.Duration(s.GetExpiresInMs())*time.Millisecond, s.GetEntry().GetPath())
		}
		notReady(w, resp.GetMeta())
	})
}

func (c *client) blindSpots(ctx context.Context, p string) error {
	resp, err := c.api.ListBlindSpots(ctx, &fustorv1.ListBlindSpotsRequest{View: c.o.view, Path: p, Limit: uint32(c.o.limit),
		Member: c.o.member})
	if err != nil {
		return err
	}
	member := len(resp.GetDeletionMembers()) > 0 || anyLabelled(resp.GetAdditions())
	return c.print(resp, func(w io.Writer) {
		if member {
			fmt.Fprint(w, "MEMBER\t")
		}
		fmt.Fprintln(w, "KIND\tPATH")
		for _, e := range resp.GetAdditions() {
			if member {
				fmt.Fprintf(w, "%s\t", e.GetMember())
			}
			fmt.Fprintf(w, "added\t%s\n", e.GetPath())
		}
		for i, d := range resp.GetDeletions() {
			if member {
				m := ""
				if i < len(resp.GetDeletionMembers()) {
					m = resp.GetDeletionMembers()[i]
				}
				fmt.Fprintf(w, "%s\t", m)
			}
			fmt.Fprintf(w, "deleted\t%s\n", d)
		}
		notReady(w, resp.GetMeta())
	})
}

// errDiffer makes verify exit with 3 once its answer is printed: the view differs.
var errDiffer = errors.New("the view differs from the storage")

func (c *client) verify(ctx context.Context, p string) error {
	// The server bounds the walk a little inside the call's own deadline, so a slow walk is
	// answered DEADLINE_EXCEEDED by Fusion, with its message, rather than cut by the client.
	walk := c.o.timeout - c.o.timeout/20
	resp, err := c.api.Verify(ctx, &fustorv1.VerifyRequest{View: c.o.view, Path: p, Repair: c.o.repair,
		Timeout: durationpb.New(walk), MaxExamples: uint32(c.o.limit), Member: c.o.member})
	if err != nil {
		return err
	}
	if err := c.print(resp, func(w io.Writer) {
		kv(w, "view", resp.GetMeta().GetView())
		if m := resp.GetMeta().GetMember(); m != "" {
			kv(w, "member", m)
		}
		kv(w, "path", resp.GetPath())
		kv(w, "agent", resp.GetAgentId())
		kv(w, "walked", resp.GetWalked())
		kv(w, "missing", resp.GetMissing())
		kv(w, "extra", resp.GetExtra())
		kv(w, "different", resp.GetDifferent())
		kv(w, "changed_during_walk", resp.GetChangedDuringWalk())
		kv(w, "repaired", resp.GetRepaired())
		kv(w, "took", resp.GetTook().AsDuration().Round(time.Millisecond))
		if len(resp.GetExamples()) > 0 {
			fmt.Fprintln(w, "KIND\tSTORAGE\tVIEW\tPATH")
			for _, d := range resp.GetExamples() {
				kind := strings.ToLower(strings.TrimPrefix(d.GetKind().String(), "VERIFY_DIFFERENCE_KIND_"))
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", kind, side(d.GetStorage()), side(d.GetView()), d.GetPath())
			}
		}
	}); err != nil {
		return err
	}
	if resp.GetMissing()+resp.GetExtra()+resp.GetDifferent() > 0 {
		return errDiffer
	}
	return nil
}

func side(e *fustorv1.VerifyEntry) string {
	switch {
	case e == nil:
		return "-"
	case e.GetIsDir():
		return "dir"
	}
	return fmt.Sprintf("%dB@%s", e.GetSize(), time.Unix(0, e.GetMtimeNs()).UTC().Format(time.RFC3339Nano))
}

func (c *client) sessions(ctx context.Context) error {
	resp, err := c.api.Admin().ListSessions(ctx, &fustorv1.ListSessionsRequest{View: c.o.view})
	if err != nil {
		return err
	}
	return c.print(resp, func(w io.Writer) {
		fmt.Fprintln(w, "SESSION\tPIPE\tAGENT\tROLE\tREALTIME\tLAST HEARTBEAT\tROWS\tWATCHES\tLEFT TO AUDIT\tSKIPPED\tOVERFLOWS")
		for _, s := range resp.GetSessions() {
			role := strings.ToLower(strings.TrimPrefix(s.GetRole().String(), "ROLE_"))
			pr := s.GetProgress()
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%v\t%s\t%d\t%d\t%d\t%d\t%d\n", s.GetSessionId(), s.GetPipeId(), s.GetAgentId(), role,
				s.GetCanRealtime(), ts(s.GetLastHeartbeat()), s.GetCounters()["rows"], pr.GetWatches(),
				pr.GetCounters()["dirs_left_to_audit"], pr.GetErrorsSkipped(), pr.GetCounters()["overflows"])
		}
		fmt.Fprintln(w, "(every agent counter: fustorctl sessions --json, under progress)")
	})
}

func (c *client) checkpoint(ctx context.Context, args []string) error {
	if len(args) > 1 {
		return fmt.Errorf("%w: checkpoint takes an optional VIEW", errUsage)
	}
	req := &fustorv1.CheckpointRequest{}
	if len(args) == 1 {
		req.View = args[0]
	}
	resp, err := c.api.Admin().Checkpoint(ctx, req)
	if err != nil {
		return err
	}
	failed := 0
	if err := c.print(resp, func(w io.Writer) {
		fmt.Fprintln(w, "VIEW\tMEMBER\tNODES\tBYTES\tMS\tLOCK MS\tPATH / WHY NOT")
		for _, r := range resp.GetCheckpoints() {
			what := r.GetPath()
			switch {
			case r.GetError() != "":
				what, failed = "failed: "+r.GetError(), failed+1
			case r.GetSkipped() != "":
				what = "skipped: " + r.GetSkipped()
			}
			fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%.1f\t%.1f\t%s\n", r.GetView(), cmp.Or(r.GetMember(), "-"), r.GetNodes(), r.GetBytes(),
				r.GetDurationMs(), r.GetEncodeMs(), what)
		}
	}); err != nil {
		return err
	}
	if failed > 0 {
		return fmt.Errorf("%d checkpoints failed", failed)
	}
	return nil
}

func (c *client) pipes(ctx context.Context) error {
	resp, err := c.api.Admin().ListPipes(ctx)
	if err != nil {
		return err
	}
	return c.print(resp, func(w io.Writer) {
		fmt.Fprintln(w, "PIPE\tVIEWS\tSESSIONS\tQUEUE\tROWS APPLIED\tREJECTED\tCOMMITTED")
		for _, p := range resp.GetPipes() {
			views := append([]string(nil), p.GetViews()...)
			sort.Strings(views)
			fmt.Fprintf(w, "%s\t%s\t%d\t%d/%d\t%d\t%d\t%d\n", p.GetId(), strings.Join(views, ","), p.GetSessions(),
				p.GetQueueLen(), p.GetQueueCap(), p.GetRowsApplied(), p.GetRowsRejected(), p.GetCommittedIndex())
		}
	})
}
