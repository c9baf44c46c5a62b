// Package echosender is the echo implementation of the agent's sender contract
// (agent/internal/sender, DESIGN.md §2): instead of carrying a pipe's sessions to Fusion it
// writes every session event and every pushed message as JSON lines, to stdout or a file, for
// debugging a source without a Fusion. fs batches are decoded as Fusion would decode them, so
// each row's path is re-assembled from the stream's directory declarations.
//
// It answers like a Fusion that accepts everything: every session is the leader, every
// message is acknowledged with the highest index seen, no command is ever sent.
//
// Output lines (one JSON object each, "event" first):
//
//	{"event":"create_session","session":"echo-1","agent_id":..,"task_id":..,"schema":"fs","schema_version":1,"source_uri":..,"can_realtime":..}
//	{"event":"heartbeat","session":..,"can_realtime":..,"events_sent":..}
//	{"event":"close_session","session":..}
//	{"event":"snapshot_start"|"snapshot_end"|"audit_start"|"audit_end"|"command_result"|"sentinel_feedback","session":..,"seq":..,...}
//	{"event":"batch","session":..,"seq":..,"origin":"snapshot","schema":"fs","index":..,"rows":N}
//	{"event":"row","session":..,"seq":..,"path":"/a/b","dir":true,"delete":true,"size":..,"mtime_ns":..,"index":..}
//	{"event":"row","session":..,"seq":..,"key":..,"delete":..,"fields":{..},"index":..}   (generic schema)
//
// Booleans that are false are left out. A batch line is followed by its rows' lines.
package echosender

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/fustor/fustor/agent/internal/sender"
	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
	"github.com/fustor/fustor/sdk/fsbatch"
)

// The contract this package implements.
var _ sender.Sender = (*Echo)(nil)

// DefaultTimeout is the session timeout the echo sender negotiates when the pipe gives no hint.
const DefaultTimeout = 30 * time.Second

// Echo is the echo sender. Its methods may be called from many goroutines; lines are written
// whole, one at a time.
type Echo struct {
	mu     sync.Mutex
	w      io.Writer
	closer io.Closer // nil for stdout
	werr   error     // the first write error, returned by every later call

	sessions atomic.Uint64
}

// New returns an echo sender writing to path, or to stdout when path is "" or "-". A file is
// appended to, so restarts and reloads keep what was written before.
func New(path string) (*Echo, error) {
	if path == "" || path == "-" {
		return &Echo{w: os.Stdout}, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open echo output: %w", err)
	}
	return &Echo{w: f, closer: f}, nil
}

// NewWriter returns an echo sender writing to w (tests, embedding).
func NewWriter(w io.Writer) *Echo { return &Echo{w: w} }

// line writes one JSON object as a line.
func (e *Echo) line(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode echo line: %w", err)
	}
	b = append(b, '\n')
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.werr != nil {
		return e.werr
	}
	if _, err := e.w.Write(b); err != nil {
		e.werr = fmt.Errorf("write echo output: %w", err)
		return e.werr
	}
	return nil
}

// CreateSession prints the request and answers as the leader with nothing committed.
func (e *Echo) CreateSession(_ context.Context, req *fustorv1.CreateSessionRequest) (*fustorv1.CreateSessionResponse, error) {
	id := fmt.Sprintf("echo-%d", e.sessions.Add(1))
	err := e.line(sessionLine{Event: "create_session", Session: id, AgentID: req.GetAgentId(), TaskID: req.GetTaskId(),
		Schema: req.GetSchemaName(), SchemaVersion: req.GetSchemaVersion(), SourceURI: req.GetSourceUri(),
		CanRealtime: req.GetCapabilities().GetCanRealtime()})
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	timeout := max(req.GetTimeoutHint().AsDuration(), DefaultTimeout)
	return &fustorv1.CreateSessionResponse{SessionId: id, Timeout: durationpb.New(timeout), Role: fustorv1.Role_ROLE_LEADER,
		PipeId: "echo", ViewIds: []string{}}, nil
}

// Heartbeat prints the heartbeat; the session stays the leader.
func (e *Echo) Heartbeat(_ context.Context, req *fustorv1.HeartbeatRequest) (*fustorv1.HeartbeatResponse, error) {
	err := e.line(heartbeatLine{Event: "heartbeat", Session: req.GetSessionId(), CanRealtime: req.GetCanRealtime(),
		EventsSent: req.GetProgress().GetEventsSent()})
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	return &fustorv1.HeartbeatResponse{Role: fustorv1.Role_ROLE_LEADER}, nil
}

// CloseSession prints the close.
func (e *Echo) CloseSession(_ context.Context, id string) error {
	return e.line(sessionLine{Event: "close_session", Session: id})
}

// Push opens an in-process stream: Send prints each message, Recv returns its Ack.
func (e *Echo) Push(ctx context.Context) (fustorv1.PushService_PushClient, error) {
	ctx, cancel := context.WithCancel(ctx)
	return &stream{e: e, ctx: ctx, cancel: cancel, dec: fsbatch.NewDecoder(0), wake: make(chan struct{}, 1)}, nil
}

// Close closes the output file, if any.
func (e *Echo) Close() error {
	if e.closer != nil {
		return e.closer.Close()
	}
	return nil
}

// stream is one push stream. Send is called by one goroutine and Recv by another (the pipe's
// send and recv loops), as with gRPC.
type stream struct {
	e      *Echo
	ctx    context.Context
	cancel context.CancelFunc
	dec    *fsbatch.Decoder // Send's only
	rows   []fsbatch.Row
	sess   string

	mu        sync.Mutex
	acks      []*fustorv1.Ack
	committed uint64
	wake      chan struct{}
}

// Send prints m (decoding it now: the pipe reuses its memory once Send returns) and queues its Ack.
func (s *stream) Send(m *fustorv1.PushRequest) error {
	if err := s.ctx.Err(); err != nil {
		return status.Error(codes.Canceled, err.Error())
	}
	if m.GetSessionId() != "" {
		s.sess = m.GetSessionId()
	}
	if m.GetPayload() == nil {
		return nil // the binding first message: no Ack, as Fusion does
	}
	ack, err := s.print(m)
	if err != nil {
		return status.Error(codes.Unavailable, err.Error())
	}
	s.mu.Lock()
	s.committed = max(s.committed, ack.GetCommittedIndex())
	ack.CommittedIndex = s.committed
	s.acks = append(s.acks, ack)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return nil
}

// print writes m's lines and returns its Ack (committed index: the highest row index of m).
func (s *stream) print(m *fustorv1.PushRequest) (*fustorv1.Ack, error) {
	ack := &fustorv1.Ack{Seq: m.GetSeq()}
	base := msgLine{Session: s.sess, Seq: m.GetSeq()}
	switch p := m.GetPayload().(type) {
	case *fustorv1.PushRequest_Batch:
		return ack, s.printBatch(base, p.Batch, ack)
	case *fustorv1.PushRequest_SnapshotStart:
		base.Event, base.Index = "snapshot_start", p.SnapshotStart.GetIndex()
	case *fustorv1.PushRequest_SnapshotEnd:
		base.Event, base.Index, base.Failed, base.Error = "snapshot_end", p.SnapshotEnd.GetIndex(), p.SnapshotEnd.GetFailed(), p.SnapshotEnd.GetError()
		base.Rows, base.Skipped = p.SnapshotEnd.GetRows(), p.SnapshotEnd.GetSkipped()
	case *fustorv1.PushRequest_AuditStart:
		base.Event, base.Index = "audit_start", p.AuditStart.GetIndex()
	case *fustorv1.PushRequest_AuditEnd:
		base.Event, base.Index, base.Failed, base.Error = "audit_end", p.AuditEnd.GetIndex(), p.AuditEnd.GetFailed(), p.AuditEnd.GetError()
	case *fustorv1.PushRequest_CommandResult:
		base.Event, base.CommandID, base.Failed, base.Error = "command_result", p.CommandResult.GetCommandId(), !p.CommandResult.GetOk(), p.CommandResult.GetError()
	case *fustorv1.PushRequest_SentinelFeedback:
		base.Event, base.CommandID, base.Rows = "sentinel_feedback", p.SentinelFeedback.GetCommandId(), uint64(len(p.SentinelFeedback.GetItems()))
	default:
		base.Event = "unknown"
	}
	return ack, s.e.line(base)
}

func (s *stream) printBatch(base msgLine, b *fustorv1.EventBatch, ack *fustorv1.Ack) error {
	base.Event, base.Origin, base.Schema, base.Index, base.CommandID = "batch", origin(b.GetSource()), b.GetSchemaName(), b.GetIndex(), b.GetCommandId()
	var lines []any
	switch r := b.GetRows().(type) {
	case *fustorv1.EventBatch_Fs:
		rows, rejected, rowErrs, err := s.dec.Decode(r.Fs, b.GetIndex(), s.rows[:0])
		s.rows = rows
		if err != nil {
			base.Error = err.Error()
			break
		}
		ack.RowsRejected = uint32(rejected)
		if len(rowErrs) > 0 {
			ack.Error = rowErrs[0].Error()
			base.Error = ack.Error
		}
		for i := range rows {
			row := &rows[i]
			lines = append(lines, rowLine{Event: "row", Session: s.sess, Seq: base.Seq, Path: row.Path(), Dir: row.IsDir(), Delete: row.IsDelete(),
				Partial: row.Flags&fsbatch.FlagPartialWrite != 0, AuditSkipped: row.Flags&fsbatch.FlagAuditSkipped != 0,
				Size: row.Size, MtimeNs: row.MtimeNs, Index: row.Index, ParentMtimeNs: row.ParentMtimeNs})
			ack.CommittedIndex = max(ack.CommittedIndex, row.Index)
		}
	case *fustorv1.EventBatch_Generic:
		for _, g := range r.Generic.GetRows() {
			lines = append(lines, rowLine{Event: "row", Session: s.sess, Seq: base.Seq, Key: g.GetKey(), Delete: g.GetDelete(), Fields: g.GetFields(), Index: g.GetIndex()})
			ack.CommittedIndex = max(ack.CommittedIndex, g.GetIndex())
		}
	}
	base.Rows = uint64(len(lines))
	ack.RowsApplied = uint32(len(lines))
	if err := s.e.line(base); err != nil {
		return err
	}
	for _, l := range lines {
		if err := s.e.line(l); err != nil {
			return err
		}
	}
	return nil
}

// Recv returns the next Ack, or Canceled once the stream's context ends or CloseSend is called.
func (s *stream) Recv() (*fustorv1.PushResponse, error) {
	for {
		s.mu.Lock()
		if len(s.acks) > 0 {
			a := s.acks[0]
			s.acks = s.acks[1:]
			s.mu.Unlock()
			return &fustorv1.PushResponse{Payload: &fustorv1.PushResponse_Ack{Ack: a}}, nil
		}
		s.mu.Unlock()
		select {
		case <-s.ctx.Done():
			return nil, status.Error(codes.Canceled, "echo push stream closed")
		case <-s.wake:
		}
	}
}

func (s *stream) CloseSend() error             { s.cancel(); return nil }
func (s *stream) Header() (metadata.MD, error) { return metadata.MD{}, nil }
func (s *stream) Trailer() metadata.MD         { return metadata.MD{} }
func (s *stream) Context() context.Context     { return s.ctx }

func (s *stream) SendMsg(m any) error {
	r, ok := m.(*fustorv1.PushRequest)
	if !ok {
		return status.Errorf(codes.Internal, "echo push stream: send %T", m)
	}
	return s.Send(r)
}

func (s *stream) RecvMsg(m any) error {
	r, ok := m.(*fustorv1.PushResponse)
	if !ok {
		return status.Errorf(codes.Internal, "echo push stream: receive into %T", m)
	}
	got, err := s.Recv()
	if err != nil {
		return err
	}
	r.Payload = got.Payload
	return nil
}

// origin names a message source as the echo lines do: "realtime", "snapshot", "audit", "on_demand".
func origin(m fustorv1.MessageSource) string {
	return strings.ToLower(strings.TrimPrefix(m.String(), "MESSAGE_SOURCE_"))
}

type sessionLine struct {
	Event         string `json:"event"`
	Session       string `json:"session"`
	AgentID       string `json:"agent_id,omitempty"`
	TaskID        string `json:"task_id,omitempty"`
	Schema        string `json:"schema,omitempty"`
	SchemaVersion uint32 `json:"schema_version,omitempty"`
	SourceURI     string `json:"source_uri,omitempty"`
	CanRealtime   bool   `json:"can_realtime,omitempty"`
}

type heartbeatLine struct {
	Event       string `json:"event"`
	Session     string `json:"session"`
	CanRealtime bool   `json:"can_realtime,omitempty"`
	EventsSent  uint64 `json:"events_sent"`
}

type msgLine struct {
	Event     string `json:"event"`
	Session   string `json:"session"`
	Seq       uint64 `json:"seq"`
	Origin    string `json:"origin,omitempty"`
	Schema    string `json:"schema,omitempty"`
	Index     uint64 `json:"index,omitempty"`
	CommandID string `json:"command_id,omitempty"`
	Rows      uint64 `json:"rows,omitempty"`
	Skipped   uint64 `json:"skipped,omitempty"`
	Failed    bool   `json:"failed,omitempty"`
	Error     string `json:"error,omitempty"`
}

type rowLine struct {
	Event         string            `json:"event"`
	Session       string            `json:"session"`
	Seq           uint64            `json:"seq"`
	Path          string            `json:"path,omitempty"`
	Key           string            `json:"key,omitempty"`
	Dir           bool              `json:"dir,omitempty"`
	Delete        bool              `json:"delete,omitempty"`
	Partial       bool              `json:"partial,omitempty"`
	AuditSkipped  bool              `json:"audit_skipped,omitempty"`
	Size          uint64            `json:"size,omitempty"`
	MtimeNs       int64             `json:"mtime_ns,omitempty"`
	Index         uint64            `json:"index"`
	ParentMtimeNs int64             `json:"parent_mtime_ns,omitempty"`
	Fields        map[string]string `json:"fields,omitempty"`
}
