package bus

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestSubscribersReadIndependently(t *testing.T) {
	b := New[int](8)
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
	b := New[int](4)
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
	b := New[int](4)
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
