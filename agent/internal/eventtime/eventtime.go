// Package eventtime is the agent's one event clock (DESIGN.md §4.3): every event's index is
// the agent's time corrected by the shared file system's clock drift, in ms, and it never goes
// backwards.
//
// Files on NFS get their mtimes from the server's clock, events get their time from the
// agent's. The drift between the two is estimated once, at the pre-scan, from a high
// percentile (P99.9) of the directory mtimes seen: on a tree in use the newest directories
// were modified moments ago, so that percentile is "now" on the server's clock. The index is
// monotonic (a wall clock stepped back or a lowered drift holds it at its last value), which
// is what lets the event bus reject index regression without ever dropping a realtime event.
package eventtime

import (
	"slices"
	"sync/atomic"
	"time"
)

// Clock is safe for concurrent use.
type Clock struct {
	now   func() time.Time
	drift atomic.Int64 // ns; file-system clock − agent clock
	set   atomic.Bool
	last  atomic.Uint64
	held  atomic.Uint64
}

// New returns a clock reading now (nil = time.Now) with no drift.
func New(now func() time.Time) *Clock {
	if now == nil {
		now = time.Now
	}
	return &Clock{now: now}
}

// Index returns the event index: corrected time in ms, never lower than one returned before.
func (c *Clock) Index() uint64 {
	want := uint64(max(c.Now().UnixMilli(), 0))
	for {
		last := c.last.Load()
		if want <= last {
			if want < last {
				c.held.Add(1)
			}
			return last
		}
		if c.last.CompareAndSwap(last, want) {
			return want
		}
	}
}

// Now returns the agent's time corrected to the file system's clock: what a file written
// right now would get as its mtime. Hot thresholds compare mtimes with it.
func (c *Clock) Now() time.Time { return c.now().Add(time.Duration(c.drift.Load())) }

// Wall returns the agent's uncorrected time.
func (c *Clock) Wall() time.Time { return c.now() }

// Drift returns the estimated file-system clock − agent clock.
func (c *Clock) Drift() time.Duration { return time.Duration(c.drift.Load()) }

// Estimated reports whether a drift estimate has been taken.
func (c *Clock) Estimated() bool { return c.set.Load() }

// SetDrift sets the drift.
func (c *Clock) SetDrift(d time.Duration) {
	c.drift.Store(int64(d))
	c.set.Store(true)
}

// Held counts indexes held at the last value because the corrected time went backwards.
func (c *Clock) Held() uint64 { return c.held.Load() }

// Normalize turns a file-system time (an mtime, ns) into agent time (ns), so mtimes and event
// times can be compared, e.g. to rank directories by recent activity.
func (c *Clock) Normalize(mtimeNs int64) int64 { return mtimeNs - c.drift.Load() }

// Percentile is the share of directory mtimes at or below the one taken as "now" on the
// file-system clock.
const Percentile = 0.999

// EstimateDrift returns the drift that the directory mtimes show at agent time now: their
// P99.9 minus now when that is ahead of now, else 0. A percentile below now cannot be told
// apart from a tree nobody wrote to lately, so only a clock running ahead is corrected; the
// 0.1% above the percentile spares the estimate a few directories touched into the future.
func EstimateDrift(mtimesNs []int64, now time.Time) time.Duration {
	if len(mtimesNs) == 0 {
		return 0
	}
	s := slices.Clone(mtimesNs)
	slices.Sort(s)
	p := s[min(int(float64(len(s)-1)*Percentile), len(s)-1)]
	return time.Duration(max(p-now.UnixNano(), 0))
}
