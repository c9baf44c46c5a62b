// Package receiver implements the ingest side of Fusion: SessionService and PushService
// (DESIGN.md §3, §5.1–§5.2). An ingest key routes a caller to exactly one Fusion pipe.
//
// It turns wire messages into pipe items: batches decoded to fsbatch rows with their
// view.Origin (the wire's MessageSource), control messages, sentinel feedback as
// view.SentinelItem, command results and verify walks routed by the command tracker. It knows
// no view driver: the pipe applies what it queues.
package receiver

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/fustor/fustor/fusion/internal/errs"
	"github.com/fustor/fustor/fusion/internal/pipe"
	"github.com/fustor/fustor/fusion/internal/server"
	"github.com/fustor/fustor/fusion/internal/session"
	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
	"github.com/fustor/fustor/sdk/fsbatch"
)

// PipeInfo is what the receiver needs to know of a pipe.
type PipeInfo struct {
	Pipe    *pipe.Pipe
	Session session.Pipe
	// Schema is the schema the pipe's sessions send (pipes.<id>.schema).
	Schema string
}

// Pipes is where the receiver finds the pipe an ingest key routes to. It is read on every
// CreateSession, Heartbeat, CloseSession and Push, so a runtime registry (hot reload) can add
// and remove pipes without the receiver being rebuilt; an implementation must be safe for
// concurrent use.
type Pipes interface {
	// Pipe returns the running pipe of that id, false when there is none.
	Pipe(id string) (PipeInfo, bool)
}

// StaticPipes is a fixed set of pipes by id, for tests and for a composition that never
// changes its pipes. It must not be written once the receiver reads it.
type StaticPipes map[string]PipeInfo

// Pipe implements Pipes.
func (p StaticPipes) Pipe(id string) (PipeInfo, bool) {
	pi, ok := p[id]
	return pi, ok
}

// Receiver serves SessionService and PushService.
type Receiver struct {
	fustorv1.UnimplementedSessionServiceServer
	fustorv1.UnimplementedPushServiceServer

	log      *zap.Logger
	sessions *session.Manager
	pipes    Pipes
	// maxInflight bounds batches of one stream queued but not yet acknowledged.
	maxInflight int
	lim         atomic.Pointer[Limits]
	// open counts the push streams open per ingest key (Principal.KeyID), for Limits.
	openMu sync.Mutex
	open   map[uint64]int
	// recvLoops and sendLoops count each running stream goroutine, slotMisuse every
	// in-flight slot passed or released out of turn (a bug): what a test checks of Push's
	// ownership, and what a status page can show.
	recvLoops, sendLoops, slotMisuse atomic.Int64
	// badMessages counts the push streams ended for what the client sent: undecodable bytes,
	// malformed batches, protocol errors, a declaration table past its bound.
	badMessages atomic.Uint64
}

// New returns a receiver over the given pipes.
func New(log *zap.Logger, sessions *session.Manager, pipes Pipes) *Receiver {
	if log == nil {
		log = zap.NewNop()
	}
	r := &Receiver{log: log, sessions: sessions, pipes: pipes, maxInflight: 32, open: map[uint64]int{}}
	r.SetLimits(Limits{})
	return r
}

// Limits bound what a client holding a valid ingest key can keep open (issue 22): a push
// stream must name its session in its first message within FirstMessage, and one key holds at
// most StreamsPerKey push streams at once.
type Limits struct {
	FirstMessage  time.Duration
	StreamsPerKey int
	// Rows bounds each row's path and name, and each stream's declaration table
	// (fsbatch.Limits; zero fields: its defaults).
	Rows fsbatch.Limits
}

// Defaults of Limits' zero fields.
const (
	DefaultFirstMessage  = 10 * time.Second
	DefaultStreamsPerKey = 64
)

func (l Limits) orDefaults() Limits {
	if l.FirstMessage <= 0 {
		l.FirstMessage = DefaultFirstMessage
	}
	if l.StreamsPerKey <= 0 {
		l.StreamsPerKey = DefaultStreamsPerKey
	}
	return l
}

// SetLimits sets the push streams' bounds (zero fields: the defaults). Safe while streams run
// (a reload): streams opened from now on get them; a lower StreamsPerKey refuses new streams
// until a key is under it again.
func (r *Receiver) SetLimits(l Limits) {
	l = l.orDefaults()
	r.lim.Store(&l)
}

func (r *Receiver) limits() Limits { return *r.lim.Load() }

// BadMessages returns how many push streams ended for what their client sent.
func (r *Receiver) BadMessages() uint64 { return r.badMessages.Load() }

func (r *Receiver) pipeOf(ctx context.Context) (PipeInfo, error) {
	p := server.PrincipalFrom(ctx)
	if p == nil || p.Kind != server.KindIngest {
		return PipeInfo{}, fmt.Errorf("%w: an ingest API key is required", errs.ErrPermission)
	}
	pi, ok := r.pipes.Pipe(p.Pipe)
	if !ok {
		return PipeInfo{}, fmt.Errorf("%w: the key routes to pipe %q, which is not running", errs.ErrPrecondition, p.Pipe)
	}
	return pi, nil
}

// sessionOf returns the session of that id and its pipe if the caller's key routes to the
// session's pipe. The pipe is returned rather than looked up again by the caller: with a
// runtime registry a second lookup could find the pipe gone (or replaced) in between.
func (r *Receiver) sessionOf(ctx context.Context, id string) (*session.Session, PipeInfo, error) {
	if id == "" {
		return nil, PipeInfo{}, fmt.Errorf("%w: session_id is required", errs.ErrInvalidArgument)
	}
	pi, err := r.pipeOf(ctx)
	if err != nil {
		return nil, PipeInfo{}, err
	}
	s, err := r.sessions.Get(id)
	if err != nil {
		return nil, PipeInfo{}, err
	}
	if s.Pipe.ID != pi.Session.ID {
		return nil, PipeInfo{}, fmt.Errorf("%w: session %s belongs to another pipe than the key's", errs.ErrPermission, id)
	}
	return s, pi, nil
}

// CreateSession opens a session on the key's pipe.
func (r *Receiver) CreateSession(ctx context.Context, req *fustorv1.CreateSessionRequest) (*fustorv1.CreateSessionResponse, error) {
	pi, err := r.pipeOf(ctx)
	if err != nil {
		return nil, err
	}
	if req.GetAgentId() == "" {
		return nil, fmt.Errorf("%w: agent_id is required", errs.ErrInvalidArgument)
	}
	if err := checkSchema(pi, req.GetSchemaName(), req.GetSchemaVersion()); err != nil {
		return nil, err
	}
	committed := pi.Pipe.Committed()
	if !complete(pi.Pipe) {
		// Realtime committed while the first snapshot ran, and that snapshot never ended: a
		// source resuming from there would skip the snapshot and leave the tree partial.
		committed = 0
	}
	// An agent that kept its realtime position may continue without a snapshot when the
	// pipe's views were restored from the checkpoint and hold what it had seen committed.
	resumable := req.GetResumeAfter() > 0 && req.GetCapabilities().GetCanResume() && committed >= req.GetResumeAfter() && restored(pi.Pipe)
	s, err := r.sessions.Create(pi.Session, session.Info{
		AgentID: req.GetAgentId(), TaskID: req.GetTaskId(), SourceURI: req.GetSourceUri(),
		TimeoutHint: req.GetTimeoutHint().AsDuration(), CanRealtime: req.GetCapabilities().GetCanRealtime(),
		Resumes: resumable || req.GetResumeAfter() == 0 && req.GetCapabilities().GetCanResume() && committed > 0,
	})
	if err != nil {
		return nil, err
	}
	return &fustorv1.CreateSessionResponse{
		SessionId: s.ID, Timeout: durationpb.New(s.Timeout), ViewIds: s.Pipe.Views,
		Role: s.Role(), CommittedIndex: committed, PipeId: s.Pipe.ID, Resumable: resumable,
	}, nil
}

// checkSchema routes by schema (DESIGN.md §2): a session's declared schema must be its pipe's
// and one every view of the pipe reads, at that version. A missing name is a malformed request
// (INVALID_ARGUMENT); a schema the configuration does not route here is FAILED_PRECONDITION —
// the request is sound, the agent pipe is sent to the wrong Fusion pipe (its ingest key), and
// no retry helps until one of the two configurations changes.
func checkSchema(pi PipeInfo, name string, version uint32) error {
	if name == "" {
		return fmt.Errorf("%w: schema_name is required", errs.ErrInvalidArgument)
	}
	if name != pi.Schema {
		return fmt.Errorf("%w: pipe %q accepts schema %q, not %q: send this agent pipe with the ingest key of a pipe of schema %q",
			errs.ErrPrecondition, pi.Session.ID, pi.Schema, name, name)
	}
	if pi.Pipe == nil {
		return nil
	}
	for _, v := range pi.Pipe.Views {
		if err := v.Cfg.AcceptsSchema(name, version); err != nil {
			return fmt.Errorf("%w: view %q of pipe %q %v (schema %q version %d declared)", errs.ErrPrecondition, v.Name, pi.Session.ID, err, name, version)
		}
	}
	return nil
}

// complete reports whether every member p feeds holds a whole tree: a leader's snapshot ended
// (or a resumed session confirmed it), or it was restored from a checkpoint, which is written
// only of a ready member.
func complete(p *pipe.Pipe) bool {
	for _, m := range p.Members {
		if st := m.State(); !st.SnapshotComplete && st.RestoredAt.IsZero() {
			return false
		}
	}
	return true
}

// restored reports whether every member p feeds answers from a restored checkpoint.
func restored(p *pipe.Pipe) bool {
	for _, m := range p.Members {
		if m.State().RestoredAt.IsZero() {
			return false
		}
	}
	return len(p.Members) > 0
}

// Heartbeat refreshes a session.
func (r *Receiver) Heartbeat(ctx context.Context, req *fustorv1.HeartbeatRequest) (*fustorv1.HeartbeatResponse, error) {
	s, _, err := r.sessionOf(ctx, req.GetSessionId())
	if err != nil {
		return nil, err
	}
	r.sessions.Touch(s)
	if _, err := r.sessions.Heartbeat(s.ID, req.GetCanRealtime(), req.GetProgress()); err != nil {
		return nil, err
	}
	s.Count("heartbeats", 1)
	return &fustorv1.HeartbeatResponse{Role: s.Role()}, nil
}

// CloseSession ends a session.
func (r *Receiver) CloseSession(ctx context.Context, req *fustorv1.CloseSessionRequest) (*fustorv1.CloseSessionResponse, error) {
	s, _, err := r.sessionOf(ctx, req.GetSessionId())
	if err != nil {
		return nil, err
	}
	if err := r.sessions.Close(s.ID); err != nil {
		return nil, err
	}
	return &fustorv1.CloseSessionResponse{}, nil
}
