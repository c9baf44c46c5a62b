// Package command tracks commands Fusion sent to agents (on-demand scans, sentinel tasks) until
// their results are applied, so a query with force_real_time can wait for its scan.
package command

import (
	"crypto/rand"
	"encoding/hex"
	"sync"
	"time"
)

// Result is an agent's answer to a command.
type Result struct {
	OK    bool
	Error string
}

// Tracker maps command ids to waiters. Bounded: at most max commands wait at once.
type Tracker struct {
	mu      sync.Mutex
	waiting map[string]*entry
	max     int
	// gone remembers the last verify commands whose waiter gave up, so their late rows are
	// still recognised as a verify walk's (and never applied as a scan).
	gone    [16]string
	goneAt  int
	goneSet map[string]string
}

type entry struct {
	ch      chan Result
	started time.Time
	verify  string // the view a verify walk is compared with; "" for a scan
}

// NewTracker returns a tracker for at most max outstanding commands.
func NewTracker(max int) *Tracker {
	return &Tracker{waiting: map[string]*entry{}, max: max, goneSet: map[string]string{}}
}

// Start registers a new command and returns its id and the channel its result arrives on
// (buffered, so Done never blocks). ok is false when too many commands are outstanding.
func (t *Tracker) Start() (id string, result <-chan Result, ok bool) {
	return t.start("")
}

// StartVerify registers a command whose walk is compared with view, not applied.
func (t *Tracker) StartVerify(view string) (id string, result <-chan Result, ok bool) {
	return t.start(view)
}

func (t *Tracker) start(verify string) (string, <-chan Result, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.waiting) >= t.max {
		return "", nil, false
	}
	var b [12]byte
	_, _ = rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	e := &entry{ch: make(chan Result, 1), started: time.Now(), verify: verify}
	t.waiting[id] = e
	return id, e.ch, true
}

// Lookup returns when a waiting command was started and, for a verify walk, the view it is
// compared with. ok is false for unknown ids; a verify whose waiter gave up is still known.
func (t *Tracker) Lookup(id string) (started time.Time, verifyView string, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.waiting[id]; ok {
		return e.started, e.verify, true
	}
	if v, ok := t.goneSet[id]; ok {
		return time.Time{}, v, true
	}
	return time.Time{}, "", false
}

// Done delivers a result; unknown ids (timed out, or never sent) are ignored.
func (t *Tracker) Done(id string, r Result) {
	t.mu.Lock()
	e, ok := t.waiting[id]
	delete(t.waiting, id)
	t.mu.Unlock()
	if ok {
		e.ch <- r
	}
}

// Cancel forgets a command whose waiter gave up.
func (t *Tracker) Cancel(id string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.waiting[id]
	delete(t.waiting, id)
	if ok && e.verify != "" {
		delete(t.goneSet, t.gone[t.goneAt])
		t.gone[t.goneAt] = id
		t.goneSet[id] = e.verify
		t.goneAt = (t.goneAt + 1) % len(t.gone)
	}
}
