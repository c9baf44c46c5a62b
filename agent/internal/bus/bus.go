// Package bus is the agent's event bus (DESIGN.md §4.2): a bounded ring of events from one
// source, read by any number of subscribers, each at its own position.
//
// The publisher never blocks: a realtime source must keep draining the kernel's queue. Events
// are numbered by a sequence; the shared ring keeps the last capacity of them, and the lowest
// position of its subscribers (the low watermark) frees the slots below it, so the ring never
// pins events nobody will read.
//
// When the fastest subscriber of the shared ring leads the slowest by ≥ 95% of capacity, the
// slow one is split off into its own lane (a private ring that starts with a copy of what it
// has not read yet and receives every later event): the shared ring then tracks only the
// subscribers that keep up, and its low watermark releases what they have read. A lane whose
// subscriber catches up is merged back. Because publishing never blocks, a slow subscriber
// cannot stall the fast ones in any case; the split bounds what the slow one costs them. A subscriber
// whose next event was overwritten (in the shared ring or its lane) is told ErrPositionLost on
// its next read, which its pipe answers with a snapshot.
//
// With an index function the bus also rejects index regression: an event whose index is lower
// than the last one published is refused and counted. Realtime events get their index from the
// source's monotonic corrected clock (package eventtime), so a legitimate event never regresses.
//
// The bus is generic over its events and knows no source: the agent runs it on source.Event
// (agent/internal/source), fed by a source.Watcher in agent/internal/app and read by the
// pipes. agent/internal/app/layers_test.go keeps it free of any source driver.
package bus

import (
	"context"
	"errors"
	"sync"
)

// ErrPositionLost is returned to a subscriber whose next event was overwritten.
var ErrPositionLost = errors.New("bus position lost")

// splitPercent is the lead (in % of capacity) of the fastest over the slowest shared
// subscriber at which the slowest is split off.
const splitPercent = 95

// Bus is a bounded multi-subscriber ring.
type Bus[T any] struct {
	mu     sync.Mutex
	index  func(T) uint64 // nil: no regression check
	shared []T            // slot of sequence s: s % len
	head   uint64         // sequence number of the next event published
	low    uint64         // every shared slot below low has been released
	subs   map[*Subscriber[T]]struct{}
	notify chan struct{}
	last   uint64 // highest index published
	stats  Stats
}

// Stats are the bus's counters.
type Stats struct {
	// Published counts events accepted; Rejected those refused for index regression.
	Published, Rejected uint64
	// Lost counts reads answered ErrPositionLost.
	Lost uint64
	// Splits counts subscribers moved to their own lane; Merges those moved back.
	Splits, Merges uint64
	// Lanes is the number of split lanes now; Subscribers the number of open subscribers.
	Lanes, Subscribers int
}

// New returns a bus holding at most capacity events per ring. index, if not nil, gives an
// event's index for the regression check.
func New[T any](capacity int, index func(T) uint64) *Bus[T] {
	return &Bus[T]{index: index, shared: buf[T](capacity), subs: map[*Subscriber[T]]struct{}{}, notify: make(chan struct{})}
}

func buf[T any](capacity int) []T { return make([]T, max(capacity, 1)) }

// Publish appends events, overwriting the oldest when full. Events whose index regresses are
// refused; Publish returns how many were.
func (b *Bus[T]) Publish(evs ...T) (rejected int) {
	if len(evs) == 0 {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	capa := uint64(len(b.shared))
	accepted := 0
	for _, ev := range evs {
		if b.index != nil {
			i := b.index(ev)
			if i < b.last {
				rejected++
				continue
			}
			b.last = i
		}
		b.shared[b.head%capa] = ev
		for s := range b.subs {
			if s.lane != nil {
				s.lane[b.head%capa] = ev
			}
		}
		b.head++
		accepted++
	}
	b.stats.Published += uint64(accepted)
	b.stats.Rejected += uint64(rejected)
	if b.head-b.low > capa {
		b.low = b.head - capa // overwritten slots hold current events
	}
	if accepted > 0 {
		b.split()
		close(b.notify)
		b.notify = make(chan struct{})
	}
	return rejected
}

// split moves the shared subscribers that lag the fastest by ≥ 95% of capacity to their own
// lanes. It runs whenever the lead can grow: after a publish and after a shared read.
func (b *Bus[T]) split() {
	capa := uint64(len(b.shared))
	var fastest uint64
	n := 0
	for s := range b.subs {
		if s.lane == nil {
			fastest = max(fastest, s.pos)
			n++
		}
	}
	if n < 2 {
		return
	}
	for s := range b.subs {
		if s.lane != nil || (fastest-s.pos)*100 < capa*splitPercent || b.head-s.pos > capa {
			continue
		}
		s.lane = buf[T](int(capa))
		for q := s.pos; q < b.head; q++ {
			s.lane[q%capa] = b.shared[q%capa]
		}
		b.stats.Splits++
	}
	b.release()
}

// release frees the shared slots below the lowest shared position (the low watermark).
func (b *Bus[T]) release() {
	low := b.head
	for s := range b.subs {
		if s.lane == nil {
			low = min(low, s.pos)
		}
	}
	capa := uint64(len(b.shared))
	var zero T
	for ; b.low < low; b.low++ {
		b.shared[b.low%capa] = zero
	}
}

// Head returns the sequence number the next event will get.
func (b *Bus[T]) Head() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.head
}

// Lost returns how many reads failed with ErrPositionLost.
func (b *Bus[T]) Lost() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.stats.Lost
}

// Stats returns the bus's counters.
func (b *Bus[T]) Stats() Stats {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := b.stats
	st.Subscribers = len(b.subs)
	for s := range b.subs {
		if s.lane != nil {
			st.Lanes++
		}
	}
	return st
}

// Subscriber reads the bus from its own position.
type Subscriber[T any] struct {
	b    *Bus[T]
	pos  uint64
	lane []T // nil while reading the shared ring
}

// Subscribe returns a subscriber positioned at the head: it sees events published from now on.
// Close it when done, or it holds the low watermark.
func (b *Bus[T]) Subscribe() *Subscriber[T] {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := &Subscriber[T]{b: b, pos: b.head}
	b.subs[s] = struct{}{}
	return s
}

// Skip advances the subscriber past the events at its position whose index is at most idx,
// without waiting (a bus without an index function skips nothing). lost is true when its next
// event was already overwritten.
func (s *Subscriber[T]) Skip(idx uint64) (lost bool) {
	b := s.b
	b.mu.Lock()
	defer b.mu.Unlock()
	head, capa := b.head, uint64(len(b.shared))
	if head-s.pos > capa {
		return true
	}
	if b.index == nil {
		return false
	}
	ring := b.shared
	if s.lane != nil {
		ring = s.lane
	}
	for s.pos < head && b.index(ring[s.pos%capa]) <= idx {
		s.pos++
	}
	if s.lane != nil && s.pos == head {
		s.lane = nil
		b.stats.Merges++
	}
	b.release()
	return false
}

// Clone returns a new subscriber at s's position: it reads what s has not read yet.
func (s *Subscriber[T]) Clone() *Subscriber[T] {
	b := s.b
	b.mu.Lock()
	defer b.mu.Unlock()
	c := &Subscriber[T]{b: b, pos: s.pos}
	if s.lane != nil {
		c.lane = append([]T(nil), s.lane...)
	}
	b.subs[c] = struct{}{}
	return c
}

// Close removes the subscriber; it must not be used afterwards.
func (s *Subscriber[T]) Close() {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	delete(s.b.subs, s)
	s.lane = nil
	s.b.release()
}

// Next waits for at least one event and returns up to maxN of them (it does not wait to fill a
// batch). After ErrPositionLost the subscriber is moved to the head of the shared ring.
func (s *Subscriber[T]) Next(ctx context.Context, maxN int, dst []T) ([]T, error) {
	b := s.b
	for {
		b.mu.Lock()
		head, capa := b.head, uint64(len(b.shared))
		if head-s.pos > capa {
			s.pos, s.lane = head, nil
			b.stats.Lost++
			b.release()
			b.mu.Unlock()
			return dst, ErrPositionLost
		}
		if head > s.pos {
			ring := b.shared
			if s.lane != nil {
				ring = s.lane
			}
			for s.pos < head && maxN > 0 {
				dst = append(dst, ring[s.pos%capa])
				s.pos++
				maxN--
			}
			if s.lane != nil && s.pos == head {
				s.lane = nil // caught up: back on the shared ring
				b.stats.Merges++
			}
			if s.lane == nil {
				b.split() // this read may have made s the fastest by far
			}
			b.release()
			b.mu.Unlock()
			return dst, nil
		}
		wait := b.notify
		b.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return dst, ctx.Err()
		}
	}
}
