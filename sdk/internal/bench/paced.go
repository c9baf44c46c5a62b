package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
)

// A paced run lasts --paced-for, or longer — up to pacedMaxFor — until it holds pacedQueries
// queries, so a slow kind's p99 is not read off a few hundred samples; and each client sends
// at least pacedMinPerClient.
const (
	pacedQueries      = 1000
	pacedMaxFor       = time.Minute
	pacedMinPerClient = 5
)

// paced is P4's open-loop run: every client sends its queries on its own Poisson schedule, the
// clients together at rate queries/s, for about r.o.PacedFor, whatever the answers' speed.
// Unlike the back-to-back run, the latency here is what one user sees while the server is
// busy with the others, not the length of a queue the bench itself keeps full. It runs from
// sending to the answer: the bench's own timer wake-up (how late a sleeping client starts,
// reported apart as the machine's wake-up lateness) is not the server's.
func (r *runner) paced(ctx context.Context, conns []*grpc.ClientConn, k queryKind, rate float64, done *atomic.Int64) ([]time.Duration, int64, error) {
	perClient := rate / float64(len(conns))
	total := max(rate*r.o.PacedFor.Seconds(), min(pacedQueries, rate*pacedMaxFor.Seconds()))
	per := max(pacedMinPerClient, int(total/float64(len(conns))))
	t := newTally(len(conns))
	var wg sync.WaitGroup
	start := time.Now()
	for i, conn := range conns {
		wg.Go(func() {
			c := fustorv1.NewViewServiceClient(conn)
			rnd := rand.New(rand.NewPCG(uint64(i), 11))
			gap := func() time.Duration { return time.Duration(rnd.ExpFloat64() / perClient * float64(time.Second)) }
			next := start.Add(gap())
			for range per {
				if d := time.Until(next); d > 0 {
					tm := time.NewTimer(d)
					select {
					case <-ctx.Done():
						tm.Stop()
						return
					case <-tm.C:
					}
				}
				sent := time.Now()
				err := k.ask(ctx, c, rnd)
				next = next.Add(gap())
				if !t.record(ctx, i, time.Since(sent), err, done) {
					return
				}
			}
		})
	}
	wg.Wait()
	return t.merge(ctx)
}

// tally gathers the latencies and failures of a run's clients, one slice per client.
type tally struct {
	results  [][]time.Duration
	errs     atomic.Int64
	firstErr atomic.Value
}

func newTally(clients int) *tally { return &tally{results: make([][]time.Duration, clients)} }

// record notes one query of client i; false once ctx is done (the run is abandoned).
func (t *tally) record(ctx context.Context, i int, d time.Duration, err error, done *atomic.Int64) bool {
	if ctx.Err() != nil {
		return false
	}
	if err != nil {
		t.errs.Add(1)
		t.firstErr.CompareAndSwap(nil, err)
		return true
	}
	t.results[i] = append(t.results[i], d)
	done.Add(1)
	return true
}

// merge returns every latency recorded and the failure count.
func (t *tally) merge(ctx context.Context) ([]time.Duration, int64, error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	var all []time.Duration
	for _, rs := range t.results {
		all = append(all, rs...)
	}
	if len(all) == 0 {
		return nil, t.errs.Load(), fmt.Errorf("every query failed: %v", t.firstErr.Load())
	}
	return all, t.errs.Load(), nil
}

// wakeLateness measures how late a goroutine sleeping 1 ms wakes on this machine: on a VM an
// idle vCPU is descheduled, and every lightly loaded request pays that wake-up on both ends.
func wakeLateness(ctx context.Context, n int) Latencies {
	lat := make([]time.Duration, 0, n)
	for range n {
		if ctx.Err() != nil {
			break
		}
		start := time.Now()
		time.Sleep(time.Millisecond)
		lat = append(lat, time.Since(start)-time.Millisecond)
	}
	return Summarise(lat)
}
