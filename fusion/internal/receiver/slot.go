package receiver

import (
	"sync/atomic"

	"go.uber.org/zap"

	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
)

// slot is one message's place in its stream's in-flight window (stream.slots). It is taken
// before a message is looked at, so a stream never has more than maxInflight messages
// unanswered and acks always has room for the answer of every held slot: the pipe loop
// queues answers from Item.Done, which must never block.
//
// One party holds a slot at a time, and the slot is given back exactly once, by whoever holds
// it last. handle holds it first and defers drop, which gives it back unless it was handed on
// with pass: to a pipe item (its Done queues the Ack) or straight to a queued Ack. The sender
// releases a slot it was handed once the Ack is on the wire. The state makes a second release,
// or a release by the wrong party, a logged no-op instead of a stolen or blocked window.
type slot struct {
	st    *stream
	state atomic.Int32
}

const (
	slotHeld   int32 = iota // by handle
	slotPassed              // to a pipe item or a queued Ack
	slotFree                // given back
)

// answer is an Ack on its way to the sender, with the slot of the message it answers.
type answer struct {
	resp *fustorv1.PushResponse
	slot *slot
}

// pass hands the slot on: handle's deferred drop leaves it alone, and the new owner releases it.
func (s *slot) pass() *slot {
	if !s.state.CompareAndSwap(slotHeld, slotPassed) {
		s.misuse("pass")
	}
	return s
}

// reclaim takes back a slot that was passed to a pipe item the pipe refused: Done will never
// run, so handle's deferred drop gives the slot back.
func (s *slot) reclaim() {
	if !s.state.CompareAndSwap(slotPassed, slotHeld) {
		s.misuse("reclaim")
	}
}

// drop is handle's deferred release: it gives the slot back unless it was passed on.
func (s *slot) drop() {
	if s.state.CompareAndSwap(slotHeld, slotFree) {
		<-s.st.slots
	}
}

// release is the last owner's release of a slot that was passed to it.
func (s *slot) release() {
	if !s.state.CompareAndSwap(slotPassed, slotFree) {
		s.misuse("release")
		return
	}
	<-s.st.slots
}

func (s *slot) misuse(what string) {
	s.st.r.slotMisuse.Add(1)
	s.st.r.log.Error("in-flight slot misused", zap.String("op", what), zap.Int32("state", s.state.Load()),
		zap.String("session", s.st.s.ID))
}
