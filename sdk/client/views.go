package client

import (
	"context"

	"google.golang.org/grpc"

	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
)

// ListViews lists the views the client's key may query.
func (c *Client) ListViews(ctx context.Context, opts ...grpc.CallOption) (*fustorv1.ListViewsResponse, error) {
	ctx, cancel := c.callCtx(ctx)
	defer cancel()
	resp, err := c.views.ListViews(ctx, &fustorv1.ListViewsRequest{}, opts...)
	return resp, wrap(err, "list views", "", "")
}

// ListDirectory returns one page of a directory's listing; ListDirectoryPages and Entries
// follow the pages.
func (c *Client) ListDirectory(ctx context.Context, req *fustorv1.ListDirectoryRequest, opts ...grpc.CallOption) (*fustorv1.ListDirectoryResponse, error) {
	ctx, cancel := c.callCtx(ctx)
	defer cancel()
	resp, err := c.views.ListDirectory(ctx, req, opts...)
	return resp, wrap(err, "list directory", req.GetView(), req.GetPath())
}

// Stat describes one path (NotFound when the view does not hold it).
func (c *Client) Stat(ctx context.Context, req *fustorv1.StatRequest, opts ...grpc.CallOption) (*fustorv1.StatResponse, error) {
	ctx, cancel := c.callCtx(ctx)
	defer cancel()
	resp, err := c.views.Stat(ctx, req, opts...)
	return resp, wrap(err, "stat", req.GetView(), req.GetPath())
}

// Find finds entries whose basename equals req.Name or matches req.Glob under req.Path.
// FindPaths decodes an answer asked with packed_paths.
func (c *Client) Find(ctx context.Context, req *fustorv1.FindRequest, opts ...grpc.CallOption) (*fustorv1.FindResponse, error) {
	ctx, cancel := c.callCtx(ctx)
	defer cancel()
	resp, err := c.views.Find(ctx, req, opts...)
	return resp, wrap(err, "find", req.GetView(), req.GetPath())
}

// GetStats returns a subtree's figures and the view's consistency state.
func (c *Client) GetStats(ctx context.Context, req *fustorv1.GetStatsRequest, opts ...grpc.CallOption) (*fustorv1.GetStatsResponse, error) {
	ctx, cancel := c.callCtx(ctx)
	defer cancel()
	resp, err := c.views.GetStats(ctx, req, opts...)
	return resp, wrap(err, "get stats", req.GetView(), req.GetPath())
}

// ListSuspects lists the files that may still be being written.
func (c *Client) ListSuspects(ctx context.Context, req *fustorv1.ListSuspectsRequest, opts ...grpc.CallOption) (*fustorv1.ListSuspectsResponse, error) {
	ctx, cancel := c.callCtx(ctx)
	defer cancel()
	resp, err := c.views.ListSuspects(ctx, req, opts...)
	return resp, wrap(err, "list suspects", req.GetView(), req.GetPath())
}

// ListBlindSpots lists the changes audits found and no agent saw in real time.
func (c *Client) ListBlindSpots(ctx context.Context, req *fustorv1.ListBlindSpotsRequest, opts ...grpc.CallOption) (*fustorv1.ListBlindSpotsResponse, error) {
	ctx, cancel := c.callCtx(ctx)
	defer cancel()
	resp, err := c.views.ListBlindSpots(ctx, req, opts...)
	return resp, wrap(err, "list blind spots", req.GetView(), req.GetPath())
}

// Verify has the view's leader agent walk a subtree deeply and compares the walk with the
// view. The walk takes as long as the storage needs: give ctx a deadline of minutes (the
// server bounds the walk by req.Timeout, 5 minutes when unset).
func (c *Client) Verify(ctx context.Context, req *fustorv1.VerifyRequest, opts ...grpc.CallOption) (*fustorv1.VerifyResponse, error) {
	ctx, cancel := c.callCtx(ctx)
	defer cancel()
	resp, err := c.views.Verify(ctx, req, opts...)
	return resp, wrap(err, "verify", req.GetView(), req.GetPath())
}

// ListChanges returns one page of the changes since req.Since; Changes follows the pages.
func (c *Client) ListChanges(ctx context.Context, req *fustorv1.ListChangesRequest, opts ...grpc.CallOption) (*fustorv1.ListChangesResponse, error) {
	ctx, cancel := c.callCtx(ctx)
	defer cancel()
	resp, err := c.views.ListChanges(ctx, req, opts...)
	return resp, wrap(err, "list changes", req.GetView(), req.GetPath())
}

// WaitStable returns when the subtree at req.Path has settled, or a little before ctx's
// deadline with Stable false and the reason: ctx's deadline is how long it waits.
func (c *Client) WaitStable(ctx context.Context, req *fustorv1.WaitStableRequest, opts ...grpc.CallOption) (*fustorv1.WaitStableResponse, error) {
	ctx, cancel := c.callCtx(ctx)
	defer cancel()
	resp, err := c.views.WaitStable(ctx, req, opts...)
	return resp, wrap(err, "wait stable", req.GetView(), req.GetPath())
}

// Admin is the AdminService: it needs an admin key.
type Admin struct{ c *Client }

// Admin returns the client's AdminService calls.
func (c *Client) Admin() Admin { return Admin{c} }

// ListViews lists every view with its sessions and walks (snapshot, audit) in progress.
func (a Admin) ListViews(ctx context.Context, opts ...grpc.CallOption) (*fustorv1.AdminServiceListViewsResponse, error) {
	ctx, cancel := a.c.callCtx(ctx)
	defer cancel()
	resp, err := a.c.admin.ListViews(ctx, &fustorv1.AdminServiceListViewsRequest{}, opts...)
	return resp, wrap(err, "admin list views", "", "")
}

// ListSessions lists the live agent sessions (of req.View when set).
func (a Admin) ListSessions(ctx context.Context, req *fustorv1.ListSessionsRequest, opts ...grpc.CallOption) (*fustorv1.ListSessionsResponse, error) {
	ctx, cancel := a.c.callCtx(ctx)
	defer cancel()
	resp, err := a.c.admin.ListSessions(ctx, req, opts...)
	return resp, wrap(err, "list sessions", req.GetView(), "")
}

// ListPipes lists Fusion's pipes and their queues.
func (a Admin) ListPipes(ctx context.Context, opts ...grpc.CallOption) (*fustorv1.ListPipesResponse, error) {
	ctx, cancel := a.c.callCtx(ctx)
	defer cancel()
	resp, err := a.c.admin.ListPipes(ctx, &fustorv1.ListPipesRequest{}, opts...)
	return resp, wrap(err, "list pipes", "", "")
}

// Checkpoint writes the views' checkpoints (req.View's alone when set) now.
func (a Admin) Checkpoint(ctx context.Context, req *fustorv1.CheckpointRequest, opts ...grpc.CallOption) (*fustorv1.CheckpointResponse, error) {
	ctx, cancel := a.c.callCtx(ctx)
	defer cancel()
	resp, err := a.c.admin.Checkpoint(ctx, req, opts...)
	return resp, wrap(err, "checkpoint", req.GetView(), "")
}

// Reload has Fusion read its configuration again.
func (a Admin) Reload(ctx context.Context, req *fustorv1.ReloadRequest, opts ...grpc.CallOption) (*fustorv1.ReloadResponse, error) {
	ctx, cancel := a.c.callCtx(ctx)
	defer cancel()
	resp, err := a.c.admin.Reload(ctx, req, opts...)
	return resp, wrap(err, "reload", "", "")
}

// GetRow returns one row of a rows view by key (NotFound when the view holds none).
func (c *Client) GetRow(ctx context.Context, req *fustorv1.GetRowRequest, opts ...grpc.CallOption) (*fustorv1.GetRowResponse, error) {
	ctx, cancel := c.callCtx(ctx)
	defer cancel()
	resp, err := c.views.GetRow(ctx, req, opts...)
	return resp, wrap(err, "get row", req.GetView(), req.GetKey())
}

// ListRows returns one page of a rows view's rows in key order; Rows follows the pages.
func (c *Client) ListRows(ctx context.Context, req *fustorv1.ListRowsRequest, opts ...grpc.CallOption) (*fustorv1.ListRowsResponse, error) {
	ctx, cancel := c.callCtx(ctx)
	defer cancel()
	resp, err := c.views.ListRows(ctx, req, opts...)
	return resp, wrap(err, "list rows", req.GetView(), req.GetPrefix())
}
