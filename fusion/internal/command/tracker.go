// Package command tracks commands Fusion sent to agents (on-demand scans, sentinel tasks) until
// their results are applied, so a query with force_real_time can wait for its scan.
package command

import (
	"crypto/rand"
	"encoding/hex"
	"sync"
)

// Result is an agent's answer to a command.
type Result struct {
	OK    bool
	Error string
}

// Tracker maps command ids to waiters. Bounded: at most max commands wait at once.
type Tracker struct {
	mu      sync.Mutex
	waiting map[string]chan Result
	max     int
}

// NewTracker returns a tracker for at most max outstanding commands.
func NewTracker(max int) *Tracker { return &Tracker{waiting: map[string]chan Result{}, max: max} }

// Start registers a new command and returns its id and the channel its result arrives on
// (buffered, so Done never blocks). ok is false when too many commands are outstanding.
func (t *Tracker) Start() (id string, result <-chan Result, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.waiting) >= t.max {
		return "", nil, false
	}
	var b [12]byte
	_, _ = rand.Read(b[:])
	id = hex.EncodeToString(b[:])
	ch := make(chan Result, 1)
	t.waiting[id] = ch
	return id, ch, true
}

// Done delivers a result; unknown ids (timed out, or never sent) are ignored.
func (t *Tracker) Done(id string, r Result) {
	t.mu.Lock()
	ch, ok := t.waiting[id]
	delete(t.waiting, id)
	t.mu.Unlock()
	if ok {
		ch <- r
	}
}

// Cancel forgets a command whose waiter gave up.
func (t *Tracker) Cancel(id string) {
	t.mu.Lock()
	delete(t.waiting, id)
	t.mu.Unlock()
}
