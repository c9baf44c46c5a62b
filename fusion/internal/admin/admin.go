// Package admin implements AdminService: what runs in Fusion — pipes, sessions and views
// (the views' figures through view.Member, whatever the driver).
package admin

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/fustor/fustor/fusion/internal/errs"
	"github.com/fustor/fustor/fusion/internal/pipe"
	"github.com/fustor/fustor/fusion/internal/query"
	"github.com/fustor/fustor/fusion/internal/session"
	"github.com/fustor/fustor/fusion/internal/view"
	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
)

// Service serves AdminService.
type Service struct {
	fustorv1.UnimplementedAdminServiceServer
	rt       Runtime
	sessions *session.Manager
	views    *view.Registry
}

// Runtime is what the admin service reads of the running Fusion and asks of it: the pipes
// running now (a reload changes them) and a reload.
type Runtime interface {
	// Pipes returns the running pipes by id, and each pipe's receiver.
	Pipes() (pipes map[string]*pipe.Pipe, receivers map[string]string)
	// Reload re-reads the configuration and applies what changed (errs.ErrInvalidArgument
	// with every error when it is invalid: nothing changes then).
	Reload(ctx context.Context) (*fustorv1.ReloadResponse, error)
	// Checkpoint writes the checkpoints of view ("" = all) now.
	Checkpoint(ctx context.Context, view string) (*fustorv1.CheckpointResponse, error)
}

// Static is a Runtime of fixed pipes that cannot reload (tests, tools).
type Static struct {
	PipeMap   map[string]*pipe.Pipe
	Receivers map[string]string
}

// Pipes returns the fixed pipes.
func (s Static) Pipes() (map[string]*pipe.Pipe, map[string]string) { return s.PipeMap, s.Receivers }

// Reload is not available on fixed pipes.
func (Static) Reload(context.Context) (*fustorv1.ReloadResponse, error) {
	return nil, fmt.Errorf("%w: this server cannot reload its configuration", errs.ErrPrecondition)
}

// Checkpoint is not available on fixed pipes.
func (Static) Checkpoint(context.Context, string) (*fustorv1.CheckpointResponse, error) {
	return nil, fmt.Errorf("%w: this server keeps no checkpoints", errs.ErrPrecondition)
}

// Checkpoint writes checkpoints now.
func (s *Service) Checkpoint(ctx context.Context, req *fustorv1.CheckpointRequest) (*fustorv1.CheckpointResponse, error) {
	if v := req.GetView(); v != "" {
		if _, err := s.views.Get(v); err != nil {
			return nil, err
		}
	}
	return s.rt.Checkpoint(ctx, req.GetView())
}

// New returns the admin service.
func New(rt Runtime, sessions *session.Manager, views *view.Registry) *Service {
	return &Service{rt: rt, sessions: sessions, views: views}
}

// ListPipes lists pipes with their queues and counters.
func (s *Service) ListPipes(context.Context, *fustorv1.ListPipesRequest) (*fustorv1.ListPipesResponse, error) {
	live := map[string]uint32{}
	for _, ss := range s.sessions.List() {
		live[ss.Pipe.ID]++
	}
	pipes, receivers := s.rt.Pipes()
	ids := make([]string, 0, len(pipes))
	for id := range pipes {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	out := &fustorv1.ListPipesResponse{}
	for _, id := range ids {
		p := pipes[id]
		st := p.Stats()
		info := &fustorv1.PipeInfo{Id: id, Receiver: receivers[id], CommittedIndex: st.Committed,
			QueueLen: uint32(st.QueueLen), QueueCap: uint32(st.QueueCap), BatchesApplied: st.Batches,
			RowsApplied: st.RowsApplied, RowsRejected: st.RowsRejected, Sessions: live[id]}
		for _, v := range p.Views {
			info.Views = append(info.Views, v.Name)
		}
		out.Pipes = append(out.Pipes, info)
	}
	return out, nil
}

// ListSessions lists live sessions, oldest first.
func (s *Service) ListSessions(_ context.Context, req *fustorv1.ListSessionsRequest) (*fustorv1.ListSessionsResponse, error) {
	out := &fustorv1.ListSessionsResponse{}
	for _, ss := range s.sessions.List() {
		if req.GetView() != "" && !feeds(ss.Pipe.Views, req.GetView()) {
			continue
		}
		out.Sessions = append(out.Sessions, &fustorv1.SessionInfo{
			SessionId: ss.ID, PipeId: ss.Pipe.ID, Views: ss.Pipe.Views, Role: ss.Role(),
			AgentId: ss.Info.AgentID, TaskId: ss.Info.TaskID, SourceUri: ss.Info.SourceURI,
			CanRealtime: ss.CanRealtime(), CreatedAt: timestamppb.New(ss.Created),
			LastHeartbeat: timestamppb.New(ss.LastSeen()), Counters: ss.Counters(), Progress: ss.Progress(),
		})
	}
	return out, nil
}

// ListViews lists views with their size and memory.
func (s *Service) ListViews(context.Context, *fustorv1.AdminServiceListViewsRequest) (*fustorv1.AdminServiceListViewsResponse, error) {
	out := &fustorv1.AdminServiceListViewsResponse{}
	for _, v := range s.views.All() {
		meta := &fustorv1.ViewMeta{View: v.Name, AuthoritativeSession: len(v.Members()) > 0, SnapshotComplete: len(v.Members()) > 0}
		for _, m := range v.Members() {
			st := m.State()
			meta.AuthoritativeSession = meta.AuthoritativeSession && st.Leader != ""
			meta.SnapshotComplete = meta.SnapshotComplete && st.SnapshotComplete
			if !st.StaleSince.IsZero() {
				meta.Stale = true
				if meta.StaleSince == nil || st.StaleSince.Before(meta.StaleSince.AsTime()) {
					meta.StaleSince = timestamppb.New(st.StaleSince)
				}
			}
			if !st.RestoredAt.IsZero() {
				meta.Restored = true
				if meta.CheckpointTime == nil || st.RestoredAt.Before(meta.CheckpointTime.AsTime()) {
					meta.CheckpointTime = timestamppb.New(st.RestoredAt)
				}
			}
			if v.IsForest() {
				ms := &fustorv1.MemberStatus{Member: m.Name, AuthoritativeSession: st.Leader != "", SnapshotComplete: st.SnapshotComplete, Ready: true,
					Restored: !st.RestoredAt.IsZero(), Stale: !st.StaleSince.IsZero()}
				if err := m.Ready(); err != nil {
					ms.Ready, ms.Reason = false, err.Error()
				}
				meta.Members = append(meta.Members, ms)
			}
		}
		info := &fustorv1.AdminViewInfo{Id: v.Name, Driver: v.Cfg.Driver, Schema: v.Cfg.Schema,
			Nodes: uint64(v.Len()), MemoryBytes: v.MemoryBytes(), Meta: meta}
		if v.IsRows() {
			info.Rows = query.RowStatsOf(v.Members()[0].Rows.Stats())
		}
		out.Views = append(out.Views, info)
	}
	return out, nil
}

// Reload re-reads Fusion's configuration and applies what changed by id (DESIGN.md §7).
func (s *Service) Reload(ctx context.Context, _ *fustorv1.ReloadRequest) (*fustorv1.ReloadResponse, error) {
	return s.rt.Reload(ctx)
}

// feeds reports whether a session's leadership keys (view, or view/member of a forest)
// include view.
func feeds(keys []string, view string) bool {
	for _, k := range keys {
		if k == view || strings.HasPrefix(k, view+"/") {
			return true
		}
	}
	return false
}
