// Package bus is the agent's event bus (DESIGN.md §4.2): a bounded ring of events from one
// source, read by any number of subscribers, each at its own position.
//
// The publisher never blocks: a realtime source must keep draining the kernel's queue. When the
// ring is full the oldest event is overwritten, and a subscriber that had not read it is told
// ErrPositionLost on its next read, which its pipe answers with a snapshot.
package bus

import (
	"context"
	"errors"
	"sync"
)

// ErrPositionLost is returned to a subscriber whose next event was overwritten.
var ErrPositionLost = errors.New("bus position lost")

// Bus is a bounded multi-subscriber ring.
type Bus[T any] struct {
	mu     sync.Mutex
	buf    []T
	head   uint64 // sequence number of the next event published
	notify chan struct{}
	lost   uint64
}

// New returns a bus holding at most capacity events.
func New[T any](capacity int) *Bus[T] {
	return &Bus[T]{buf: make([]T, max(capacity, 1)), notify: make(chan struct{})}
}

// Publish appends events, overwriting the oldest when full.
func (b *Bus[T]) Publish(evs ...T) {
	if len(evs) == 0 {
		return
	}
	b.mu.Lock()
	for _, ev := range evs {
		b.buf[b.head%uint64(len(b.buf))] = ev
		b.head++
	}
	close(b.notify)
	b.notify = make(chan struct{})
	b.mu.Unlock()
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
	return b.lost
}

// Subscriber reads the bus from its own position.
type Subscriber[T any] struct {
	b   *Bus[T]
	pos uint64
}

// Subscribe returns a subscriber positioned at the head: it sees events published from now on.
func (b *Bus[T]) Subscribe() *Subscriber[T] {
	return &Subscriber[T]{b: b, pos: b.Head()}
}

// Next waits for at least one event and returns up to maxN of them (it does not wait to fill a
// batch). After ErrPositionLost the subscriber is moved to the head.
func (s *Subscriber[T]) Next(ctx context.Context, maxN int, dst []T) ([]T, error) {
	for {
		s.b.mu.Lock()
		head, capa := s.b.head, uint64(len(s.b.buf))
		if head-s.pos > capa {
			s.pos = head
			s.b.lost++
			s.b.mu.Unlock()
			return dst, ErrPositionLost
		}
		if head > s.pos {
			for s.pos < head && maxN > 0 {
				dst = append(dst, s.b.buf[s.pos%capa])
				s.pos++
				maxN--
			}
			s.b.mu.Unlock()
			return dst, nil
		}
		wait := s.b.notify
		s.b.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return dst, ctx.Err()
		}
	}
}
