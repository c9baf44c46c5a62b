// Package clock holds Fustor's logical clock (DESIGN.md §5.5): the watermark, an estimate of
// "now" in the NFS time domain, derived from the skew between Fusion's clock and the mtimes of
// files the kernel just reported written.
//
// Skew samples are int seconds of (Fusion now − mtime), taken from realtime rows only: a file
// written a moment ago has an mtime equal to the NFS server's now, so the most common skew is
// the offset between the two clocks. Future mtimes (touch -d tomorrow) and old ones (cp -p) are
// rare values that cannot move the mode. Samples live in a bounded window, so the watermark
// follows drift.
package clock

import (
	"sync"
	"time"
)

// DefaultWindow is the number of recent samples the mode is taken over.
const DefaultWindow = 10_000

// Logical is the watermark clock. It is safe for concurrent use.
type Logical struct {
	now func() time.Time

	mu        sync.Mutex
	ring      []int64
	next      int
	n         int
	hist      map[int64]int
	mode      int64
	modeCount int
	stale     bool // the mode may have lost a sample; recompute before use
}

// NewLogical returns a clock reading physical time from now (nil = time.Now) with a window of
// samples (<= 0 = DefaultWindow).
func NewLogical(now func() time.Time, window int) *Logical {
	if now == nil {
		now = time.Now
	}
	if window <= 0 {
		window = DefaultWindow
	}
	return &Logical{now: now, ring: make([]int64, window), hist: map[int64]int{}}
}

// Sample records the skew of one realtime row's mtime.
func (l *Logical) Sample(mtimeNs int64) {
	l.sampleSkew((l.now().UnixNano() - mtimeNs) / int64(time.Second))
}

func (l *Logical) sampleSkew(skew int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n == len(l.ring) {
		old := l.ring[l.next]
		if l.hist[old]--; l.hist[old] == 0 {
			delete(l.hist, old)
		}
		if old == l.mode {
			l.stale = true
		}
	} else {
		l.n++
	}
	l.ring[l.next] = skew
	l.next = (l.next + 1) % len(l.ring)
	l.hist[skew]++
	if !l.stale && better(skew, l.hist[skew], l.mode, l.modeCount) {
		l.mode, l.modeCount = skew, l.hist[skew]
	} else if !l.stale && skew == l.mode {
		l.modeCount = l.hist[skew]
	}
}

// better reports whether skew s seen c times beats the current mode: more samples, or as many
// and smaller (ties go to the smaller skew, the later watermark).
func better(s int64, c int, mode int64, modeCount int) bool {
	return c > modeCount || (c == modeCount && s < mode)
}

// Skew returns the mode of the samples in seconds and whether there are samples.
func (l *Logical) Skew() (int64, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n == 0 {
		return 0, false
	}
	if l.stale {
		l.modeCount = 0
		for s, c := range l.hist {
			if better(s, c, l.mode, l.modeCount) || l.modeCount == 0 {
				l.mode, l.modeCount = s, c
			}
		}
		l.stale = false
	}
	return l.mode, true
}

// Watermark returns Fusion now − mode(skew); with no samples, Fusion now.
func (l *Logical) Watermark() time.Time {
	now := l.now()
	skew, ok := l.Skew()
	if !ok {
		return now
	}
	return now.Add(-time.Duration(skew) * time.Second)
}

// Samples returns how many samples the window holds.
func (l *Logical) Samples() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}

// Skews returns the samples' skews, oldest first (a view's checkpoint keeps them).
func (l *Logical) Skews() []int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]int64, 0, l.n)
	start := (l.next - l.n + len(l.ring)) % len(l.ring)
	for i := range l.n {
		out = append(out, l.ring[(start+i)%len(l.ring)])
	}
	return out
}

// Restore records skews, oldest first, as if sampled (a view restored from a checkpoint).
func (l *Logical) Restore(skews []int64) {
	for _, k := range skews {
		l.sampleSkew(k)
	}
}
