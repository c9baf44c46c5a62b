package bus

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestSubscribersReadIndependently(t *testing.T) {
	b := New[int](8, nil)
	a, c := b.Subscribe(), b.Subscribe()
	b.Publish(1, 2, 3)
	got, err := a.Next(context.Background(), 2, nil)
	if err != nil || len(got) != 2 || got[0] != 1 || got[1] != 2 {
		t.Fatalf("a.Next = %v, %v", got, err)
	}
	got, err = c.Next(context.Background(), 10, nil)
	if err != nil || len(got) != 3 {
		t.Fatalf("c.Next = %v, %v", got, err)
	}
	got, err = a.Next(context.Background(), 10, nil)
	if err != nil || len(got) != 1 || got[0] != 3 {
		t.Fatalf("a.Next = %v, %v", got, err)
	}
}

func TestPositionLostWhenOverwritten(t *testing.T) {
	b := New[int](4, nil)
	s := b.Subscribe()
	b.Publish(1, 2, 3, 4, 5)
	if _, err := s.Next(context.Background(), 10, nil); !errors.Is(err, ErrPositionLost) {
		t.Fatalf("err = %v; want ErrPositionLost", err)
	}
	b.Publish(6)
	got, err := s.Next(context.Background(), 10, nil)
	if err != nil || len(got) != 1 || got[0] != 6 {
		t.Fatalf("after loss Next = %v, %v", got, err)
	}
	if b.Lost() != 1 {
		t.Fatalf("Lost = %d", b.Lost())
	}
}

func TestNextWaitsForPublish(t *testing.T) {
	b := New[int](4, nil)
	s := b.Subscribe()
	done := make(chan []int)
	go func() {
		got, _ := s.Next(context.Background(), 10, nil)
		done <- got
	}()
	b.Publish(7)
	if got := <-done; len(got) != 1 || got[0] != 7 {
		t.Fatalf("got %v", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, err := s.Next(ctx, 1, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
}

func TestIndexRegressionIsRejected(t *testing.T) {
	b := New[int](8, func(i int) uint64 { return uint64(i) })
	s := b.Subscribe()
	defer s.Close()
	if r := b.Publish(5, 5, 3, 6); r != 1 {
		t.Fatalf("rejected %d; want 1 (3 < 5; equal indexes are fine)", r)
	}
	got, err := s.Next(context.Background(), 10, nil)
	if err != nil || len(got) != 3 || got[0] != 5 || got[1] != 5 || got[2] != 6 {
		t.Fatalf("Next = %v, %v; want [5 5 6]", got, err)
	}
	if st := b.Stats(); st.Rejected != 1 || st.Published != 3 {
		t.Fatalf("stats %+v", st)
	}
}

func TestSlowSubscriberIsSplitOffAndMergedBack(t *testing.T) {
	ctx := context.Background()
	b := New[int](100, nil)
	fast, slow := b.Subscribe(), b.Subscribe()
	defer fast.Close()
	defer slow.Close()
	for i := range 94 {
		b.Publish(i)
		if _, err := fast.Next(ctx, 10, nil); err != nil {
			t.Fatal(err)
		}
	}
	if st := b.Stats(); st.Splits != 0 || st.Lanes != 0 {
		t.Fatalf("split at a lead of 94%%: %+v", st)
	}
	b.Publish(94)
	if _, err := fast.Next(ctx, 10, nil); err != nil {
		t.Fatal(err)
	}
	if st := b.Stats(); st.Splits != 1 || st.Lanes != 1 {
		t.Fatalf("no split at a lead of 95%%: %+v", st)
	}
	// The shared ring no longer holds anything for the slow one: its slots are released.
	for i, v := range b.shared[:94] {
		if v != 0 {
			t.Fatalf("shared slot %d = %d after the split; want released", i, v)
		}
	}
	// The fast one runs on; the slow one keeps its unread events in its lane.
	for i := 95; i < 100; i++ {
		b.Publish(i)
		if got, err := fast.Next(ctx, 10, nil); err != nil || got[0] != i {
			t.Fatalf("fast Next = %v, %v; want [%d]", got, err, i)
		}
	}
	var all []int
	for len(all) < 100 {
		got, err := slow.Next(ctx, 50, nil)
		if err != nil {
			t.Fatalf("slow lost its lane after %d events: %v", len(all), err)
		}
		all = append(all, got...)
	}
	for i, v := range all {
		if v != i {
			t.Fatalf("slow event %d = %d", i, v)
		}
	}
	if st := b.Stats(); st.Merges != 1 || st.Lanes != 0 || st.Lost != 0 {
		t.Fatalf("caught up but not merged back: %+v", st)
	}
	b.Publish(100)
	for _, s := range []*Subscriber[int]{fast, slow} {
		if got, err := s.Next(ctx, 10, nil); err != nil || len(got) != 1 || got[0] != 100 {
			t.Fatalf("after merge Next = %v, %v", got, err)
		}
	}
}

func TestSplitLaneOverflowLosesOnlyTheSlowOne(t *testing.T) {
	ctx := context.Background()
	b := New[int](10, nil)
	fast, slow := b.Subscribe(), b.Subscribe()
	defer fast.Close()
	defer slow.Close()
	for i := range 30 {
		b.Publish(i)
		if _, err := fast.Next(ctx, 10, nil); err != nil {
			t.Fatalf("fast: %v", err)
		}
	}
	if _, err := slow.Next(ctx, 10, nil); !errors.Is(err, ErrPositionLost) {
		t.Fatalf("slow err = %v; want ErrPositionLost", err)
	}
	b.Publish(30)
	for _, s := range []*Subscriber[int]{fast, slow} {
		if got, err := s.Next(ctx, 10, nil); err != nil || len(got) != 1 || got[0] != 30 {
			t.Fatalf("Next = %v, %v", got, err)
		}
	}
}

func TestLowWatermarkReleasesReadSlots(t *testing.T) {
	b := New[*int](8, nil)
	s := b.Subscribe()
	v := 1
	b.Publish(&v, &v, &v)
	if _, err := s.Next(context.Background(), 2, nil); err != nil {
		t.Fatal(err)
	}
	if b.shared[0] != nil || b.shared[1] != nil || b.shared[2] == nil {
		t.Fatalf("slots %v: want the two read ones released, the unread one kept", b.shared[:3])
	}
	s.Close()
	if b.shared[2] != nil {
		t.Fatal("closing the last subscriber kept its unread slot")
	}
}

// TestSkipAndClone: an anchor that never reads is moved past committed indexes by Skip, keeps
// what comes after, and a Clone reads exactly that; an anchor overrun reports its loss.
func TestSkipAndClone(t *testing.T) {
	b := New(8, func(v int) uint64 { return uint64(v) })
	anchor := b.Subscribe()
	defer anchor.Close()
	b.Publish(1, 2, 3, 4, 5)
	if anchor.Skip(3) {
		t.Fatal("lost")
	}
	c := anchor.Clone()
	defer c.Close()
	got, err := c.Next(context.Background(), 10, nil)
	if err != nil || fmt.Sprint(got) != "[4 5]" {
		t.Fatalf("clone read %v, %v; want [4 5]", got, err)
	}
	b.Publish(6, 7, 8, 9, 10, 11, 12, 13, 14)
	if !anchor.Skip(5) {
		t.Fatal("an anchor overrun by the ring did not report its loss")
	}
}
