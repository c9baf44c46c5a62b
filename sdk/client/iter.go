package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
)

// ListDirectoryPages lists a directory page after page, following next_page_token, and
// yields each answer (the first carries the directory itself). A forest view asked without
// req.Member answers once, with every member's first page in Members: that answer is the
// only one yielded (Entries pages through each member). An error ends the sequence. req is
// not modified.
func (c *Client) ListDirectoryPages(ctx context.Context, req *fustorv1.ListDirectoryRequest, opts ...grpc.CallOption) iter.Seq2[*fustorv1.ListDirectoryResponse, error] {
	return func(yield func(*fustorv1.ListDirectoryResponse, error) bool) {
		r := &fustorv1.ListDirectoryRequest{}
		if req != nil {
			r = proto.Clone(req).(*fustorv1.ListDirectoryRequest)
		}
		for {
			resp, err := c.ListDirectory(ctx, r, opts...)
			if err != nil {
				yield(nil, err)
				return
			}
			if !yield(resp, nil) || resp.GetNextPageToken() == "" || len(resp.GetMembers()) > 0 {
				return
			}
			if resp.GetNextPageToken() == r.GetPageToken() {
				yield(nil, fmt.Errorf("page directory %s %s: the server gave the same page token twice", r.GetView(), r.GetPath()))
				return
			}
			r.PageToken = resp.GetNextPageToken()
		}
	}
}

// Entries yields every entry of a directory listing (to req.MaxDepth), across pages. From a
// forest view asked without req.Member, it yields each ready member's entries in turn, each
// labelled with its member (Entry.Member), paging through each member alone.
func (c *Client) Entries(ctx context.Context, req *fustorv1.ListDirectoryRequest, opts ...grpc.CallOption) iter.Seq2[*fustorv1.Entry, error] {
	return func(yield func(*fustorv1.Entry, error) bool) {
		for resp, err := range c.ListDirectoryPages(ctx, req, opts...) {
			if err != nil {
				yield(nil, err)
				return
			}
			for _, e := range resp.GetEntries() {
				if !yield(e, nil) {
					return
				}
			}
			for _, m := range resp.GetMembers() {
				if !yieldMember(m, m.GetEntries(), yield) {
					return
				}
				if m.GetNextPageToken() == "" {
					continue
				}
				r := &fustorv1.ListDirectoryRequest{}
				if req != nil {
					r = proto.Clone(req).(*fustorv1.ListDirectoryRequest)
				}
				r.Member, r.PageToken = m.GetMember(), m.GetNextPageToken()
				for page, err := range c.ListDirectoryPages(ctx, r, opts...) {
					if err != nil {
						yield(nil, err)
						return
					}
					if !yieldMember(m, page.GetEntries(), yield) {
						return
					}
				}
			}
		}
	}
}

func yieldMember(m *fustorv1.MemberListing, entries []*fustorv1.Entry, yield func(*fustorv1.Entry, error) bool) bool {
	for _, e := range entries {
		if e.GetMember() == "" {
			e.Member = m.GetMember()
		}
		if !yield(e, nil) {
			return false
		}
	}
	return true
}

// GetTree streams a subtree in depth-first order and yields its chunks: the first carries the
// view's state (Meta), the last Truncated when req.Limit was hit. Breaking out of the loop
// cancels the stream.
func (c *Client) GetTree(ctx context.Context, req *fustorv1.GetTreeRequest, opts ...grpc.CallOption) iter.Seq2[*fustorv1.GetTreeResponse, error] {
	return func(yield func(*fustorv1.GetTreeResponse, error) bool) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stream, err := c.views.GetTree(ctx, req, opts...)
		if err != nil {
			yield(nil, wrap(err, "get tree", req.GetView(), req.GetPath()))
			return
		}
		for {
			chunk, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				yield(nil, wrap(err, "get tree", req.GetView(), req.GetPath()))
				return
			}
			if !yield(chunk, nil) {
				return
			}
		}
	}
}

// Tree yields every entry of a subtree in depth-first order (GetTree's chunks flattened;
// GetTree tells whether the limit truncated it).
func (c *Client) Tree(ctx context.Context, req *fustorv1.GetTreeRequest, opts ...grpc.CallOption) iter.Seq2[*fustorv1.Entry, error] {
	return func(yield func(*fustorv1.Entry, error) bool) {
		for chunk, err := range c.GetTree(ctx, req, opts...) {
			if err != nil {
				yield(nil, err)
				return
			}
			for _, e := range chunk.GetEntries() {
				if !yield(e, nil) {
					return
				}
			}
		}
	}
}

// Reset says that the change feed skipped changes: the cursor asked for could not be
// followed, and the changes between it and the batch's cursor are unknown. Resync the subtree
// (Tree or Entries), then go on from the batch's cursor.
type Reset int

// The resets, as WatchResponse and ListChangesResponse flag them.
const (
	// NoReset: the batch follows the cursor asked for.
	NoReset Reset = iota
	// FreshInstance: the cursor belongs to another instance of the view (reset or rebuilt).
	FreshInstance
	// CursorLost: the cursor is older than the view's change log.
	CursorLost
	// Lagged: the watcher read too slowly and the change log moved past it (Watch only).
	Lagged
)

// String names the reset.
func (r Reset) String() string {
	switch r {
	case FreshInstance:
		return "fresh instance"
	case CursorLost:
		return "cursor lost"
	case Lagged:
		return "lagged"
	}
	return "none"
}

func resetOf(fresh, lost, lagged bool) Reset {
	switch {
	case fresh:
		return FreshInstance
	case lost:
		return CursorLost
	case lagged:
		return Lagged
	}
	return NoReset
}

// Batch is one step of the change feed: a WatchResponse, or a page of ListChanges.
type Batch struct {
	// Meta is the view's state: on a watch's first batch and on every ListChanges page.
	Meta *fustorv1.ViewMeta
	// Reset, when not NoReset, says the changes before this batch's are unknown; Changes
	// follow the new cursor.
	Reset Reset
	// Changes are in sequence order; none in a watch's heartbeat.
	Changes []*fustorv1.Change
	// Cursor resumes the feed after Changes: keep it, and pass it as Since to go on later.
	Cursor string
	// More is true when ListChanges has more changes already (Changes goes on by itself).
	More bool
}

// Watch subscribes to the changes of a subtree, from req.Since (a cursor) or from now, and
// yields each message as a Batch: changes, heartbeats (no changes, the current cursor) every
// heartbeat interval, and resets. It runs until ctx is done or the loop breaks, then ends
// without an error; the server ending the stream is ErrStreamEnded. To resume after any end,
// Watch again with Since set to the last Batch's Cursor: the changes after it come, none
// twice.
func (c *Client) Watch(ctx context.Context, req *fustorv1.WatchRequest, opts ...grpc.CallOption) iter.Seq2[*Batch, error] {
	return func(yield func(*Batch, error) bool) {
		wctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stream, err := c.views.Watch(wctx, req, opts...)
		if err != nil {
			if ctx.Err() == nil {
				yield(nil, wrap(err, "watch", req.GetView(), req.GetPath()))
			}
			return
		}
		for {
			resp, err := stream.Recv()
			switch {
			case ctx.Err() != nil:
				return
			case errors.Is(err, io.EOF):
				yield(nil, wrap(ErrStreamEnded, "watch", req.GetView(), req.GetPath()))
				return
			case err != nil:
				yield(nil, wrap(err, "watch", req.GetView(), req.GetPath()))
				return
			}
			b := &Batch{Meta: resp.GetMeta(), Changes: resp.GetChanges(), Cursor: resp.GetCursor(),
				Reset: resetOf(resp.GetFreshInstance(), resp.GetCursorLost(), resp.GetLagged())}
			if !yield(b, nil) {
				return
			}
		}
	}
}

// Changes reads the changes since req.Since page after page (each page one ListChanges call,
// bounded by WithCallTimeout) until none are left, and yields each page as a Batch: for cron
// jobs and pollers, which keep the last Cursor for their next run. An empty Since asks for no
// changes: the one batch yielded carries the current cursor.
func (c *Client) Changes(ctx context.Context, req *fustorv1.ListChangesRequest, opts ...grpc.CallOption) iter.Seq2[*Batch, error] {
	return func(yield func(*Batch, error) bool) {
		r := &fustorv1.ListChangesRequest{}
		if req != nil {
			r = proto.Clone(req).(*fustorv1.ListChangesRequest)
		}
		for {
			resp, err := c.ListChanges(ctx, r, opts...)
			if err != nil {
				yield(nil, err)
				return
			}
			b := &Batch{Meta: resp.GetMeta(), Changes: resp.GetChanges(), Cursor: resp.GetCursor(), More: resp.GetMore(),
				Reset: resetOf(resp.GetFreshInstance(), resp.GetCursorLost(), false)}
			if !yield(b, nil) || !resp.GetMore() {
				return
			}
			if resp.GetCursor() == "" || resp.GetCursor() == r.GetSince() {
				yield(nil, fmt.Errorf("page changes %s %s: the server said more but gave no new cursor after %q",
					r.GetView(), r.GetPath(), r.GetSince()))
				return
			}
			r.Since = resp.GetCursor()
		}
	}
}

// FindPaths returns the paths of a Find answer: its packed paths (asked with packed_paths)
// decoded, or its entries' paths.
func FindPaths(resp *fustorv1.FindResponse) []string {
	var out []string
	for _, e := range resp.GetEntries() {
		out = append(out, e.GetPath())
	}
	for p := resp.GetPackedPaths(); len(p) > 0; {
		i := bytes.IndexByte(p, 0)
		if i < 0 {
			out = append(out, string(p)) // a server that forgot the last NUL: take what is there
			break
		}
		out = append(out, string(p[:i]))
		p = p[i+1:]
	}
	return out
}

// Rows yields every row of a rows view listing (req.Prefix, req.WhereField = WhereValue) in
// key order, across pages, following next_page_token. An error ends the sequence. req is not
// modified.
func (c *Client) Rows(ctx context.Context, req *fustorv1.ListRowsRequest, opts ...grpc.CallOption) iter.Seq2[*fustorv1.Row, error] {
	return func(yield func(*fustorv1.Row, error) bool) {
		r := &fustorv1.ListRowsRequest{}
		if req != nil {
			r = proto.Clone(req).(*fustorv1.ListRowsRequest)
		}
		for {
			resp, err := c.ListRows(ctx, r, opts...)
			if err != nil {
				yield(nil, err)
				return
			}
			for _, row := range resp.GetRows() {
				if !yield(row, nil) {
					return
				}
			}
			if resp.GetNextPageToken() == "" {
				return
			}
			if resp.GetNextPageToken() == r.GetPageToken() {
				yield(nil, fmt.Errorf("page rows %s: the server gave the same page token twice", r.GetView()))
				return
			}
			r.PageToken = resp.GetNextPageToken()
		}
	}
}
