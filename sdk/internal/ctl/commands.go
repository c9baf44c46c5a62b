package ctl

import (
	"bytes"
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

func entryLines(w io.Writer, entries []*fustorv1.Entry) {
	for _, e := range entries {
		typ := "f"
		if e.GetIsDir() {
			typ = "d"
		}
		fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\n", typ, e.GetSize(), ts(e.GetMtime()), flags(e), e.GetPath())
	}
}

func (c *client) listViews(ctx context.Context) error {
	resp, err := c.views.ListViews(ctx, &fustorv1.ListViewsRequest{})
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
		PageSize: uint32(c.o.pageSize), ForceRealTime: c.force()}
	var all *fustorv1.ListDirectoryResponse
	for {
		resp, err := c.views.ListDirectory(ctx, req)
		if err != nil {
			return err
		}
		if all == nil {
			all = resp
		} else {
			all.Entries = append(all.Entries, resp.GetEntries()...)
			all.NextPageToken = resp.GetNextPageToken()
		}
		if !c.o.all || resp.GetNextPageToken() == "" {
			break
		}
		req.PageToken = resp.GetNextPageToken()
	}
	return c.print(all, func(w io.Writer) {
		entryLines(w, all.GetEntries())
		if all.GetNextPageToken() != "" {
			fmt.Fprintf(w, "… more entries: use --all, or --page-size\n")
		}
	})
}

func (c *client) tree(ctx context.Context, p string) error {
	stream, err := c.views.GetTree(ctx, &fustorv1.GetTreeRequest{View: c.o.view, Path: p, MaxDepth: uint32(c.o.depth),
		Limit: uint64(c.o.limit)})
	if err != nil {
		return err
	}
	all := &fustorv1.GetTreeResponse{}
	for {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
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
		entryLines(w, all.GetEntries())
		if all.GetTruncated() {
			fmt.Fprintf(w, "… truncated at --limit %d\n", c.o.limit)
		}
	})
}

func (c *client) stat(ctx context.Context, p string) error {
	resp, err := c.views.Stat(ctx, &fustorv1.StatRequest{View: c.o.view, Path: p, ForceRealTime: c.force()})
	if err != nil {
		return err
	}
	e := resp.GetEntry()
	return c.print(resp, func(w io.Writer) {
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
		kv(w, "job_pending", resp.GetMeta().GetJobPending())
	})
}

func kv(w io.Writer, k string, v any) { fmt.Fprintf(w, "%s:\t%v\n", k, v) }

func (c *client) find(ctx context.Context, p string) error {
	if (c.o.name == "") == (c.o.glob == "") {
		return fmt.Errorf("%w: find needs exactly one of --name and --glob", errUsage)
	}
	req := &fustorv1.FindRequest{View: c.o.view, Path: p, Name: c.o.name, Glob: c.o.glob, Limit: uint32(c.o.limit),
		ForceRealTime: c.force(), OnlyPaths: c.o.paths}
	// One path per line comes packed (decoded much faster: BenchmarkFindAnswer); --json keeps
	// entries, which read better than a base64 blob.
	req.PackedPaths = c.o.paths && !c.o.json
	switch c.o.typ {
	case "":
	case "f":
		req.FilesOnly = true
	case "d":
		req.DirsOnly = true
	default:
		return fmt.Errorf("%w: --type is f or d, not %q", errUsage, c.o.typ)
	}
	resp, err := c.views.Find(ctx, req)
	if err != nil {
		return err
	}
	return c.print(resp, func(w io.Writer) {
		if c.o.paths {
			for _, e := range resp.GetEntries() {
				fmt.Fprintln(w, e.GetPath())
			}
			for p := resp.GetPackedPaths(); len(p) > 0; {
				i := bytes.IndexByte(p, 0)
				if i < 0 {
					i = len(p) - 1 // a server that forgot the last NUL: print what is there
				}
				fmt.Fprintf(w, "%s\n", p[:i])
				p = p[i+1:]
			}
		} else {
			entryLines(w, resp.GetEntries())
		}
		if resp.GetTruncated() {
			fmt.Fprintf(w, "… truncated: raise --limit\n")
		}
	})
}

func (c *client) stats(ctx context.Context, p string) error {
	resp, err := c.views.GetStats(ctx, &fustorv1.GetStatsRequest{View: c.o.view, Path: p, ForceRealTime: c.force()})
	if err != nil {
		return err
	}
	return c.print(resp, func(w io.Writer) {
		kv(w, "view", resp.GetMeta().GetView())
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
	})
}

func (c *client) suspects(ctx context.Context, p string) error {
	resp, err := c.views.ListSuspects(ctx, &fustorv1.ListSuspectsRequest{View: c.o.view, Path: p, Limit: uint32(c.o.limit)})
	if err != nil {
		return err
	}
	return c.print(resp, func(w io.Writer) {
		fmt.Fprintln(w, "SIZE\tMTIME\tEXPIRES IN\tPATH")
		for _, s := range resp.GetSuspects() {
			fmt.Fprintf(w, "%d\t%s\t%v\t%s\n", s.GetEntry().GetSize(), ts(s.GetEntry().GetMtime()),
				time.Duration(s.GetExpiresInMs())*time.Millisecond, s.GetEntry().GetPath())
		}
	})
}

func (c *client) blindSpots(ctx context.Context, p string) error {
	resp, err := c.views.ListBlindSpots(ctx, &fustorv1.ListBlindSpotsRequest{View: c.o.view, Path: p, Limit: uint32(c.o.limit)})
	if err != nil {
		return err
	}
	return c.print(resp, func(w io.Writer) {
		fmt.Fprintln(w, "KIND\tPATH")
		for _, e := range resp.GetAdditions() {
			fmt.Fprintf(w, "added\t%s\n", e.GetPath())
		}
		for _, d := range resp.GetDeletions() {
			fmt.Fprintf(w, "deleted\t%s\n", d)
		}
	})
}

// errDiffer makes verify exit with 3 once its answer is printed: the view differs.
var errDiffer = errors.New("the view differs from the storage")

func (c *client) verify(ctx context.Context, p string) error {
	// The server bounds the walk a little inside the call's own deadline, so a slow walk is
	// answered DEADLINE_EXCEEDED by Fusion, with its message, rather than cut by the client.
	walk := c.o.timeout - c.o.timeout/20
	resp, err := c.views.Verify(ctx, &fustorv1.VerifyRequest{View: c.o.view, Path: p, Repair: c.o.repair,
		Timeout: durationpb.New(walk), MaxExamples: uint32(c.o.limit)})
	if err != nil {
		return err
	}
	if err := c.print(resp, func(w io.Writer) {
		kv(w, "view", resp.GetMeta().GetView())
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
	resp, err := c.admin.ListSessions(ctx, &fustorv1.ListSessionsRequest{View: c.o.view})
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

func (c *client) pipes(ctx context.Context) error {
	resp, err := c.admin.ListPipes(ctx, &fustorv1.ListPipesRequest{})
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
