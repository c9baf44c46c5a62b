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
				if !sleep(ctx, time.Until(next)) {
					return
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

// sleep waits d (nothing when d <= 0); false if ctx ended first.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// idleLoad is the rate of idleClient as a fraction of one client's back-to-back rate, and
// idleFor bounds its run.
const (
	idleLoad = 0.1
	idleFor  = 5 * time.Second
)

// idleClient runs one client on a Poisson schedule at idleLoad of its own back-to-back rate
// (1/p50), up to soloQueries or idleFor: the machine is idle between queries, so each one pays
// for waking it. Against the back-to-back p99 of the same client this separates the cost of
// this machine's wake-ups from the server's.
func idleClient(ctx context.Context, c fustorv1.ViewServiceClient, k queryKind, rnd *rand.Rand, p50ms float64) Latencies {
	if p50ms <= 0 {
		return Latencies{}
	}
	gap := time.Duration(p50ms / idleLoad * float64(time.Millisecond))
	n := min(soloQueries, int(idleFor/gap))
	lat := make([]time.Duration, 0, n)
	for range n {
		if !sleep(ctx, time.Duration(rnd.ExpFloat64()*float64(gap))) {
			break
		}
		start := time.Now()
		if err := k.ask(ctx, c, rnd); err == nil {
			lat = append(lat, time.Since(start))
		}
	}
	return Summarise(lat)
}
