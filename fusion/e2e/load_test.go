package e2e

import (
	"context"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"

	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
)

// queryLoad asks Stat of one path of view files every period, with the query key, until
// stopped, and records what it got: the steady query load of the availability tests.
type queryLoad struct {
	mu       sync.Mutex
	asked    int
	stale    int
	slowest  time.Duration
	failures []loadFailure

	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

type loadFailure struct {
	at  time.Time
	err error
}

func startQueryLoad(t testing.TB, views fustorv1.ViewServiceClient, path string, every time.Duration) *queryLoad {
	l := &queryLoad{stop: make(chan struct{})}
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer query-key")
	l.wg.Go(func() {
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-l.stop:
				return
			case <-tick.C:
			}
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			t0 := time.Now()
			resp, err := views.Stat(cctx, &fustorv1.StatRequest{View: "files", Path: path})
			took := time.Since(t0)
			cancel()
			l.mu.Lock()
			l.asked++
			l.slowest = max(l.slowest, took)
			switch {
			case err != nil:
				l.failures = append(l.failures, loadFailure{time.Now(), err})
			case resp.GetMeta().GetStale():
				l.stale++
			}
			l.mu.Unlock()
		}
	})
	t.Cleanup(l.Stop)
	return l
}

// Stop ends the load and waits for its last query.
func (l *queryLoad) Stop() {
	l.once.Do(func() { close(l.stop) })
	l.wg.Wait()
}

// waitMore waits until n more queries were asked.
func (l *queryLoad) waitMore(t testing.TB, n int) {
	l.mu.Lock()
	want := l.asked + n
	l.mu.Unlock()
	eventually(t, 30*time.Second, "the query load runs", func() error {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.asked < want {
			return errNotYet
		}
		return nil
	})
}
