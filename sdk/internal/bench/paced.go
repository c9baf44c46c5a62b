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

// pacedMinPerClient is the fewest queries each client sends in a paced run.
const pacedMinPerClient = 5

// paced is P4's open-loop run: every client sends its queries on its own Poisson schedule, the
// clients together at rate queries/s, for about r.o.PacedFor, whatever the answers' speed.
// Unlike the back-to-back run, the latency here is what one user sees while the server is
// busy with the others, not the length of a queue the bench itself keeps full. It runs from
// sending to the answer: the bench's own timer wake-up (how late a sleeping client starts,
// reported apart as the machine's wake-up lateness) is not the server's.
func (r *runner) paced(ctx context.Context, conns []*grpc.ClientConn, k queryKind, rate float64, done *atomic.Int64) ([]time.Duration, int64, error) {
	perClient := rate / float64(len(conns))
	per := max(pacedMinPerClient, int(perClient*r.o.PacedFor.Seconds()))
	results := make([][]time.Duration, len(conns))
	var errs atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for i, conn := range conns {
		wg.Go(func() {
			c := fustorv1.NewViewServiceClient(conn)
			rnd := rand.New(rand.NewPCG(uint64(i), 11))
			gap := func() time.Duration { return time.Duration(rnd.ExpFloat64() / perClient * float64(time.Second)) }
			out := make([]time.Duration, 0, per)
			next := start.Add(gap())
			for range per {
				if d := time.Until(next); d > 0 {
					t := time.NewTimer(d)
					select {
					case <-ctx.Done():
						t.Stop()
						return
					case <-t.C:
					}
				}
				sent := time.Now()
				err := k.ask(ctx, c, rnd)
				lat := time.Since(sent)
				next = next.Add(gap())
				if ctx.Err() != nil {
					return
				}
				if err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				out = append(out, lat)
				done.Add(1)
			}
			results[i] = out
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	var all []time.Duration
	for _, rs := range results {
		all = append(all, rs...)
	}
	if len(all) == 0 {
		return nil, errs.Load(), fmt.Errorf("every query failed: %v", firstErr.Load())
	}
	return all, errs.Load(), nil
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
