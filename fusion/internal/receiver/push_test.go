package receiver

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fustor/fustor/fusion/internal/pipe"
	"github.com/fustor/fustor/fusion/internal/server"
	"github.com/fustor/fustor/fusion/internal/session"
	"github.com/fustor/fustor/fusion/internal/view"
	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
)

// probe serves Push through the receiver and records, the moment the handler returns, which
// of its goroutines still run and whether a Send is under way; its guarded stream counts
// every Send begun after that.
type probe struct {
	*Receiver
	returns chan<- pushReturn
}

type pushReturn struct {
	err                  error
	sendLoops, recvLoops int64
	inSend               int32
	stream               *guarded
}

type guarded struct {
	fustorv1.PushService_PushServer
	returned     atomic.Bool
	inSend, late atomic.Int32
}

func (g *guarded) Send(m *fustorv1.PushResponse) error {
	g.inSend.Add(1)
	defer g.inSend.Add(-1)
	if g.returned.Load() {
		g.late.Add(1)
	}
	return g.PushService_PushServer.Send(m)
}

func (p probe) Push(ps fustorv1.PushService_PushServer) error {
	g := &guarded{PushService_PushServer: ps}
	err := p.Receiver.Push(g)
	g.returned.Store(true)
	r := pushReturn{err: err, sendLoops: p.sendLoops.Load(), recvLoops: p.recvLoops.Load(), inSend: g.inSend.Load(), stream: g}
	select {
	case p.returns <- r:
	default: // a test that does not look
	}
	return err
}

func (h *harness) pushReturned(t *testing.T) pushReturn {
	t.Helper()
	select {
	case r := <-h.returns:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("push did not return")
	}
	return pushReturn{}
}

// eventually polls cond until it holds or the test's patience runs out.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestPushJoinsItsLoops(t *testing.T) {
	realtime := func() *fustorv1.PushRequest {
		return batch(fustorv1.MessageSource_MESSAGE_SOURCE_REALTIME, "fs", "", "/a", "/b")
	}
	for _, tt := range []struct {
		name string
		// end makes the stream end, with messages in flight.
		end func(t *testing.T, h *harness, a *agent)
		// agentEnded: the agent's side is over, so Push joins its receiver as well.
		agentEnded bool
		wantCode   codes.Code
	}{
		{"agent cancels mid-flight", func(t *testing.T, h *harness, a *agent) {
			for range 64 {
				a.send(t, realtime())
			}
			a.cancel()
		}, true, codes.Unknown}, // nil or CANCELED: whichever of ctx and Recv is seen first
		{"agent closes its side", func(t *testing.T, h *harness, a *agent) {
			for range 8 {
				a.send(t, realtime())
			}
			if err := a.stream.CloseSend(); err != nil {
				t.Fatal(err)
			}
			if err := a.end(t); !errors.Is(err, io.EOF) {
				t.Errorf("stream ended with %v; want EOF after every ack", err)
			}
		}, true, codes.OK},
		{"fusion refuses a message", func(t *testing.T, h *harness, a *agent) {
			for range 8 {
				a.send(t, realtime())
			}
			a.send(t, &fustorv1.PushRequest{})
		}, false, codes.InvalidArgument},
		{"session closed under the stream", func(t *testing.T, h *harness, a *agent) {
			for range 8 {
				a.send(t, realtime())
			}
			if err := h.sessions.Close(a.id); err != nil {
				t.Fatal(err)
			}
		}, false, codes.NotFound},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := start(t)
			a := h.connect(t)
			tt.end(t, h, a)
			r := h.pushReturned(t)
			if r.sendLoops != 0 || r.inSend != 0 {
				t.Errorf("when push returned: %d senders running, %d sends under way; want none", r.sendLoops, r.inSend)
			}
			if tt.agentEnded && r.recvLoops != 0 {
				t.Errorf("when push returned: %d receivers running; want none once the agent's side ended", r.recvLoops)
			}
			if got := status.Code(server.ToStatus(r.err)); tt.wantCode != codes.Unknown && got != tt.wantCode {
				t.Errorf("push returned %v; want %v", r.err, tt.wantCode)
			}
			// Whatever Fusion ended, its receiver ends once gRPC finishes the stream.
			eventually(t, "the receiving goroutine to end", func() bool { return h.rcv.recvLoops.Load() == 0 })
			if n := r.stream.late.Load(); n != 0 {
				t.Errorf("%d sends after push returned", n)
			}
			if n := h.rcv.slotMisuse.Load(); n != 0 {
				t.Errorf("%d slots misused", n)
			}
		})
	}
}

// fakePush is the server side of a push stream for a stream driven without gRPC: Send
// records, Recv waits for the end.
type fakePush struct {
	grpc.ServerStream
	ctx  context.Context
	sent chan *fustorv1.PushResponse
}

func (f *fakePush) Send(m *fustorv1.PushResponse) error {
	select {
	case f.sent <- m:
		return nil
	case <-f.ctx.Done():
		return f.ctx.Err()
	}
}

func (f *fakePush) Recv() (*fustorv1.PushRequest, error) {
	<-f.ctx.Done()
	return nil, f.ctx.Err()
}

func (f *fakePush) Context() context.Context { return f.ctx }

func TestSlotsAreReleasedOnce(t *testing.T) {
	h := start(t)
	const window = 4
	h.rcv.maxInflight = window
	s, err := h.sessions.Create(h.info.Session, session.Info{AgentID: "slots"})
	if err != nil {
		t.Fatal(err)
	}
	st := h.rcv.newStream(s, h.info)
	ctx, cancel := context.WithCancel(context.Background())
	ps := &fakePush{ctx: ctx, sent: make(chan *fustorv1.PushResponse, 1024)}
	sendErr := make(chan error, 1)
	sent := make(chan struct{})
	go func() { defer close(sent); st.sendLoop(ctx, ps, sendErr) }()
	t.Cleanup(func() { cancel(); <-sent })

	// A submit the pipe never takes: the slot comes back when the submit gives up.
	stalled := st.pi
	stalled.Pipe = pipe.New(nil, "stalled", []*view.View{h.v}, 0)
	st.pi, stalled = stalled, st.pi
	subCtx, subCancel := context.WithCancel(ctx)
	failed := make(chan error, 1)
	go func() {
		failed <- st.handle(subCtx, batch(fustorv1.MessageSource_MESSAGE_SOURCE_REALTIME, "fs", "", "/f"))
	}()
	eventually(t, "the stalled submit to hold its slot", func() bool { return len(st.slots) == 1 })
	subCancel()
	if err := <-failed; err != nil {
		t.Fatalf("a failed submit ended the stream: %v", err)
	}
	if n := len(st.slots); n != 0 {
		t.Fatalf("%d slots held after a failed submit; want 0", n)
	}
	st.pi = stalled

	malformed := batch(fustorv1.MessageSource_MESSAGE_SOURCE_REALTIME, "fs", "", "/a", "/b")
	malformed.GetBatch().GetFs().ParentIds = malformed.GetBatch().GetFs().GetParentIds()[:1]
	noRows := batch(fustorv1.MessageSource_MESSAGE_SOURCE_REALTIME, "fs", "", "/a")
	noRows.GetBatch().Rows = nil
	mix := []struct {
		name     string
		m        *fustorv1.PushRequest
		answered bool
		wantErr  string
	}{
		{"submitted batch", batch(fustorv1.MessageSource_MESSAGE_SOURCE_REALTIME, "fs", "", "/1"), true, ""},
		{"rejected schema", batch(fustorv1.MessageSource_MESSAGE_SOURCE_REALTIME, "mysql", "", "/x"), true, ""},
		{"malformed batch", malformed, false, "malformed fs batch"},
		{"rejected without rows", noRows, true, ""},
		{"unknown source", batch(fustorv1.MessageSource_MESSAGE_SOURCE_UNSPECIFIED, "fs", "", "/a"), false, "unknown message source"},
		{"submitted sentinel", &fustorv1.PushRequest{Payload: &fustorv1.PushRequest_SentinelFeedback{SentinelFeedback: &fustorv1.SentinelFeedback{}}}, true, ""},
		{"no payload", &fustorv1.PushRequest{}, false, "has no payload"},
		{"submitted snapshot start", &fustorv1.PushRequest{Payload: &fustorv1.PushRequest_SnapshotStart{SnapshotStart: &fustorv1.SnapshotStart{}}}, true, ""},
		{"submitted command result", &fustorv1.PushRequest{Payload: &fustorv1.PushRequest_CommandResult{CommandResult: &fustorv1.CommandResult{CommandId: "none"}}}, true, ""},
		{"another session", &fustorv1.PushRequest{SessionId: "other", Payload: &fustorv1.PushRequest_AuditStart{AuditStart: &fustorv1.AuditStart{}}}, false, "names session"},
		{"submitted snapshot end", &fustorv1.PushRequest{Payload: &fustorv1.PushRequest_SnapshotEnd{SnapshotEnd: &fustorv1.SnapshotEnd{}}}, true, ""},
	}
	// The mix twice over is more messages than the window: a slot lost by any of them would
	// block handle in acquire.
	want := map[uint64]bool{}
	var seq uint64
	// A lost slot blocks handle in acquire: bounded, so the test fails on the missing acks
	// instead of hanging.
	hctx, hcancel := context.WithTimeout(ctx, 10*time.Second)
	defer hcancel()
	for round := range 2 {
		for _, tt := range mix {
			seq++
			tt.m.Seq = seq
			err := st.handle(hctx, tt.m)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("round %d, %s: handle returned %v; want %q", round, tt.name, err, tt.wantErr)
			}
			if tt.answered {
				want[seq] = true
			}
		}
	}
	// Then a full window of batches, twice: the stream still accepts maxInflight messages.
	for range 2 * window {
		seq++
		m := batch(fustorv1.MessageSource_MESSAGE_SOURCE_REALTIME, "fs", "", "/w")
		m.Seq = seq
		if err := st.handle(hctx, m); err != nil {
			t.Fatal(err)
		}
		want[seq] = true
	}
	for len(want) > 0 {
		select {
		case m := <-ps.sent:
			a := m.GetAck()
			if a == nil {
				continue
			}
			if !want[a.GetSeq()] {
				t.Fatalf("unexpected or second ack of seq %d", a.GetSeq())
			}
			delete(want, a.GetSeq())
		case err := <-sendErr:
			t.Fatalf("sender: %v", err)
		case <-time.After(10 * time.Second):
			t.Fatalf("acks of %d messages missing", len(want))
		}
	}
	eventually(t, "every slot back", func() bool { return len(st.slots) == 0 })
	if n := h.rcv.slotMisuse.Load(); n != 0 {
		t.Fatalf("%d slots released twice or out of turn", n)
	}
	// Every slot is free again: exactly the window can be taken.
	for i := range window {
		select {
		case st.slots <- struct{}{}:
		default:
			t.Fatalf("only %d of %d slots free", i, window)
		}
	}
}

func TestSlotMisuseIsANoOp(t *testing.T) {
	h := start(t)
	st := h.rcv.newStream(&session.Session{ID: "s"}, h.info)
	for _, tt := range []struct {
		name string
		use  func(sl *slot)
	}{
		{"released twice", func(sl *slot) { sl.pass(); sl.release(); sl.release() }},
		{"released while handle holds it", func(sl *slot) { sl.release(); sl.drop() }},
		{"passed twice", func(sl *slot) { sl.pass(); sl.pass(); sl.release() }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := h.rcv.slotMisuse.Load()
			sl, err := st.acquire(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			// Another message's slot, which a second release must not steal.
			other, _ := st.acquire(context.Background())
			tt.use(sl)
			if n := len(st.slots); n != 1 {
				t.Errorf("%d slots held; want the other message's only", n)
			}
			if h.rcv.slotMisuse.Load() != before+1 {
				t.Errorf("misuse not counted")
			}
			other.drop()
		})
	}
}
