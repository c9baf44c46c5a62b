package ctl

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
	sdkclient "github.com/fustor/fustor/sdk/client"
)

// errNotStable makes wait-stable exit with 1 once its answer is printed: the deadline came
// before the subtree settled.
var errNotStable = errors.New("not stable")

// sinceNow is the --since value that asks for no old changes: a cursor is opaque, so a cron
// job's first run needs a way to get one without a watch.
const sinceNow = "now"

// waitStableTimeout is wait-stable's deadline unless --timeout is given: an upload of
// thousands of files over NFS takes minutes, and the server answers a little before it.
const waitStableTimeout = 10 * time.Minute

// changeCommand runs watch, changes and wait-stable. They make their own contexts, unlike
// the one-shot commands: a watch runs until ctrl-C (no deadline unless --timeout is given),
// wait-stable's deadline is how long it waits, and changes --all bounds each page rather
// than a backlog of unknown size.
func (c *client) changeCommand(parent context.Context, cmd string, args []string) error {
	if c.o.quiet < 0 {
		return fmt.Errorf("%w: --quiet must not be negative (got %v)", errUsage, c.o.quiet)
	}
	if c.o.minFiles < 0 {
		return fmt.Errorf("%w: --min-files must not be negative (got %d)", errUsage, c.o.minFiles)
	}
	if c.o.limit < 0 {
		return fmt.Errorf("%w: --limit must not be negative (got %d)", errUsage, c.o.limit)
	}
	def := ""
	if cmd == "changes" {
		def = "/"
	}
	p, err := pathArg(args, def)
	if err != nil {
		return err
	}
	if cmd == "changes" && c.o.since == "" {
		return fmt.Errorf("%w: changes needs --since CURSOR (from watch, changes or wait-stable; --since %s prints the current cursor)", errUsage, sinceNow)
	}
	ctx, cancel := c.callCtx(parent, c.o.timeout)
	err = c.resolveView(ctx)
	cancel()
	if err != nil {
		return err
	}
	switch cmd {
	case "watch":
		return c.watch(parent, p)
	case "changes":
		return c.changes(parent, p)
	}
	return c.waitStable(parent, p)
}

// callCtx is c.ctx with a choice of deadline: d <= 0 means none.
func (c *client) callCtx(parent context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	var (
		ctx    context.Context
		cancel context.CancelFunc
	)
	if d > 0 {
		ctx, cancel = context.WithTimeout(parent, d)
	} else {
		ctx, cancel = context.WithCancel(parent)
	}
	return ctx, cancel
}

// since is --since as the requests want it ("now" is the empty cursor).
func (c *client) since() string {
	if c.o.since == sinceNow {
		return ""
	}
	return c.o.since
}

func (c *client) watch(parent context.Context, p string) error {
	// fustorctl's main hands Run a plain background context, so without this ctrl-C would
	// kill the process before it could print the cursor to resume from.
	sigCtx, stop := signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
	defer stop()
	var d time.Duration // a watch is meant to outlast the 10s default: only an explicit --timeout cuts it
	if c.o.timeoutSet {
		d = c.o.timeout
	}
	ctx, cancel := c.callCtx(sigCtx, d)
	defer cancel()
	req := &fustorv1.WatchRequest{View: c.o.view, Path: p, Glob: c.o.glob, Since: c.since(), Member: c.o.member}
	cursor := req.GetSince()
	err := c.watchStream(ctx, req, &cursor)
	if cursor != "" {
		fmt.Fprintf(c.errOut, "fustorctl: resume with --since %s\n", cursor)
	}
	// ctrl-C or the --timeout asked for is the end the user chose. The server sees the
	// deadline too (grpc-timeout) and may end the stream with it a moment before ctx does.
	if err != nil && (ctx.Err() != nil || d > 0 && status.Code(err) == codes.DeadlineExceeded) {
		return nil
	}
	return err
}

// watchStream prints the watch's messages as they come, keeping *cursor at the last one
// received so the caller can tell where to resume whatever ends the stream.
func (c *client) watchStream(ctx context.Context, req *fustorv1.WatchRequest, cursor *string) error {
	w := bufio.NewWriter(c.out)
	// The watch ends without an error when ctx does (ctrl-C, --timeout); the server ending
	// it is sdkclient.ErrStreamEnded.
	for b, err := range c.api.Watch(ctx, req) {
		if err != nil {
			return err
		}
		if b.Meta != nil {
			notReady(c.errOut, b.Meta)
		}
		// A reset comes before the message's changes: they follow the new cursor.
		if kind := resetKind(b.Reset); kind != "" {
			fmt.Fprintf(c.errOut, "fustorctl: %s; going on from --since %s\n", kind, b.Cursor)
			if c.o.json {
				reset := &fustorv1.WatchResponse{Cursor: b.Cursor, FreshInstance: b.Reset == sdkclient.FreshInstance,
					CursorLost: b.Reset == sdkclient.CursorLost, Lagged: b.Reset == sdkclient.Lagged}
				if err := jsonLine(w, reset); err != nil {
					return err
				}
			}
		}
		if err := c.changeLines(w, b.Changes); err != nil {
			return err
		}
		if b.Cursor != "" {
			*cursor = b.Cursor
		}
		// Flushed per message so a pipe reader sees each change when it happens.
		if err := w.Flush(); err != nil {
			return fmt.Errorf("write changes: %w", err)
		}
	}
	return nil
}

// resetKind names a cursor reset for the stderr line, "" when there is none.
func resetKind(r sdkclient.Reset) string {
	const unknown = "the changes in between are unknown (resync, e.g. with fustorctl tree)"
	switch r {
	case sdkclient.FreshInstance:
		return "fresh instance: the view was reset or rebuilt since the cursor; " + unknown
	case sdkclient.CursorLost:
		return "cursor lost: the cursor is older than the view's change log; " + unknown
	case sdkclient.Lagged:
		return "lagged: this watch read too slowly and the change log moved past it; " + unknown
	}
	return ""
}

// changeLines writes changes one a line (--json: one protojson object a line). Tab-separated
// without a tabwriter: a stream cannot wait for the widest column, and scripts cut fields.
func (c *client) changeLines(w io.Writer, changes []*fustorv1.Change) error {
	for _, ch := range changes {
		if c.o.json {
			if err := jsonLine(w, ch); err != nil {
				return err
			}
			continue
		}
		fmt.Fprintln(w, changeLine(ch))
	}
	return nil
}

// changeLine is SEQ KIND SOURCE TYPE SIZE MTIME FLAGS [MEMBER] PATH; a deletion carries no
// attributes, so they are "-".
func changeLine(ch *fustorv1.Change) string {
	e := ch.GetEntry()
	typ := "f"
	if e.GetIsDir() {
		typ = "d"
	}
	size, mtime, fl := fmt.Sprint(e.GetSize()), ts(e.GetMtime()), flags(e)
	if ch.GetKind() == fustorv1.ChangeKind_CHANGE_KIND_DELETED {
		size, mtime, fl = "-", "-", "-"
	}
	member := ""
	if ch.GetMember() != "" {
		member = ch.GetMember() + "\t"
	}
	return fmt.Sprintf("%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s%s", ch.GetSequence(), kindName(ch.GetKind()),
		sourceName(ch.GetSource()), typ, size, mtime, fl, member, ch.GetPath())
}

func kindName(k fustorv1.ChangeKind) string {
	return strings.ToLower(strings.TrimPrefix(k.String(), "CHANGE_KIND_"))
}

// sourceName is the tier a change came from; UNSPECIFIED is Fusion itself (a suspect that
// expired, say).
func sourceName(s fustorv1.MessageSource) string {
	if s == fustorv1.MessageSource_MESSAGE_SOURCE_UNSPECIFIED {
		return "fusion"
	}
	return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(s.String(), "MESSAGE_SOURCE_")), "_", "-")
}

// jsonLine writes m as single-line protojson: one object a line, for `while read` and jq.
func jsonLine(w io.Writer, m proto.Message) error {
	b, err := protojson.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode json: %w", err)
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

func (c *client) changes(parent context.Context, p string) error {
	req := &fustorv1.ListChangesRequest{View: c.o.view, Path: p, Glob: c.o.glob, Since: c.since(),
		Limit: uint32(c.o.limit), Member: c.o.member}
	w := bufio.NewWriter(c.out)
	var all *fustorv1.ListChangesResponse
	// Each page is one call bounded by --timeout (the client's call timeout: parent has no
	// deadline), not the whole backlog.
	for b, err := range c.api.Changes(parent, req) {
		if err != nil {
			return err
		}
		if all == nil {
			all = &fustorv1.ListChangesResponse{Meta: b.Meta}
			notReady(c.errOut, b.Meta)
		}
		all.Changes = append(all.Changes, b.Changes...)
		all.Cursor, all.More = b.Cursor, b.More
		all.FreshInstance = all.FreshInstance || b.Reset == sdkclient.FreshInstance
		all.CursorLost = all.CursorLost || b.Reset == sdkclient.CursorLost
		if kind := resetKind(b.Reset); kind != "" {
			fmt.Fprintf(c.errOut, "fustorctl: %s; the changes below follow cursor %s\n", kind, b.Cursor)
		}
		// Human output streams page by page, so --all over a large backlog shows progress and
		// holds one page; --json has to gather them into its one document.
		if !c.o.json {
			if err := c.changeLines(w, b.Changes); err != nil {
				return err
			}
			if err := w.Flush(); err != nil {
				return fmt.Errorf("write changes: %w", err)
			}
		}
		if !c.o.all {
			break
		}
	}
	if c.o.json {
		return c.print(all, func(io.Writer) {})
	}
	if all.GetMore() {
		fmt.Fprintf(c.errOut, "fustorctl: more changes after this page: use --all, or go on with --since %s\n", all.GetCursor())
	}
	fmt.Fprintf(w, "cursor: %s\n", all.GetCursor())
	if err := w.Flush(); err != nil {
		return fmt.Errorf("write changes: %w", err)
	}
	return nil
}

func (c *client) waitStable(parent context.Context, p string) error {
	if !c.o.timeoutSet {
		c.o.timeout = waitStableTimeout
	}
	// The RPC deadline is the wait: the server answers stable false a little before it.
	ctx, cancel := c.callCtx(parent, c.o.timeout)
	defer cancel()
	req := &fustorv1.WaitStableRequest{View: c.o.view, Path: p, MinFiles: uint64(c.o.minFiles), Member: c.o.member}
	if c.o.quiet > 0 {
		req.Quiet = durationpb.New(c.o.quiet)
	}
	resp, err := c.api.WaitStable(ctx, req)
	if err != nil {
		return err
	}
	if err := c.print(resp, func(w io.Writer) {
		kv(w, "path", p)
		kv(w, "stable", resp.GetStable())
		if !resp.GetStable() {
			kv(w, "reason", resp.GetReason())
		}
		kv(w, "files", resp.GetFiles())
		last := ts(resp.GetLastChange())
		if lc := resp.GetLastChange(); lc != nil {
			last += fmt.Sprintf(" (%v ago)", time.Since(lc.AsTime()).Round(time.Second))
		}
		kv(w, "last_change", last)
		for _, s := range resp.GetSuspects() {
			kv(w, "suspect", s)
		}
		kv(w, "cursor", resp.GetCursor())
		notReady(w, resp.GetMeta())
	}); err != nil {
		return err
	}
	if !resp.GetStable() {
		return fmt.Errorf("%w: %s", errNotStable, resp.GetReason())
	}
	return nil
}
