package pipe

import (
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
)

// Walk kinds as Progress.walk names them.
const (
	walkSnapshot = "snapshot"
	walkAudit    = "audit"
)

// walkMeter follows the leader's running walk for heartbeats (Progress.walk). It is fed by
// what the session hands the sender (session.emit): the start and end markers frame a walk and
// its rows count in it, so snapshot and audit are measured alike without the source's help, and
// what is counted is what Fusion is about to receive. Everything is an atomic, because the
// walk counts per batch and the heartbeat reads at its own pace.
type walkMeter struct {
	// cur is the walk running now (nil = none). Each walk has its own run, so a new walk
	// starts from zero and a late end of an older one cannot close it.
	cur atomic.Pointer[walkRun]
	// lastSnapshot, lastAudit are the entries of the last complete walk of each kind (0 =
	// none yet): the next walk's estimated total.
	lastSnapshot, lastAudit atomic.Uint64
}

// walkRun is one walk's counts.
type walkRun struct {
	kind     string
	start    time.Time
	estimate uint64
	// dirs, files count the rows handed on so far.
	dirs, files atomic.Uint64
}

// begin starts counting a new walk of kind at now.
func (m *walkMeter) begin(kind string, now time.Time) {
	m.cur.Store(&walkRun{kind: kind, start: now, estimate: m.estimate(kind)})
}

// estimate is the entry count of the last complete walk of the same kind, else of the other
// kind: an audit after the first snapshot lists what the snapshot listed (its cache is empty),
// and later audits skip about as much as the one before them did.
func (m *walkMeter) estimate(kind string) uint64 {
	same, other := &m.lastSnapshot, &m.lastAudit
	if kind == walkAudit {
		same, other = other, same
	}
	if n := same.Load(); n > 0 {
		return n
	}
	return other.Load()
}

// count adds one batch's rows to the running walk.
func (m *walkMeter) count(dirs, files uint64) {
	if r := m.cur.Load(); r != nil {
		r.dirs.Add(dirs)
		r.files.Add(files)
	}
}

// end closes the running walk; a complete one becomes the estimate of the next of its kind.
func (m *walkMeter) end(complete bool) {
	r := m.cur.Swap(nil)
	if r == nil || !complete {
		return
	}
	total := r.dirs.Load() + r.files.Load()
	if r.kind == walkAudit {
		m.lastAudit.Store(total)
	} else {
		m.lastSnapshot.Store(total)
	}
}

// progress is the running walk's Progress.walk at now (nil when none runs).
func (m *walkMeter) progress(now time.Time) *fustorv1.WalkProgress {
	r := m.cur.Load()
	if r == nil {
		return nil
	}
	dirs, files := r.dirs.Load(), r.files.Load()
	elapsed := max(now.Sub(r.start), 0)
	var rate float64
	if elapsed > 0 {
		rate = float64(dirs+files) / elapsed.Seconds()
	}
	return &fustorv1.WalkProgress{Kind: r.kind, Dirs: dirs, Files: files, Elapsed: durationpb.New(elapsed),
		EntriesPerSecond: rate, EstimatedTotal: r.estimate}
}

// observe feeds the meter with one item on its way to the sender.
func (m *walkMeter) observe(it outItem, now time.Time) {
	if c := it.control; c != nil {
		switch p := c.GetPayload().(type) {
		case *fustorv1.PushRequest_SnapshotStart:
			m.begin(walkSnapshot, now)
		case *fustorv1.PushRequest_AuditStart:
			m.begin(walkAudit, now)
		case *fustorv1.PushRequest_SnapshotEnd:
			m.end(!p.SnapshotEnd.GetFailed())
		case *fustorv1.PushRequest_AuditEnd:
			m.end(!p.AuditEnd.GetFailed())
		}
		return
	}
	if it.origin != fustorv1.MessageSource_MESSAGE_SOURCE_SNAPSHOT && it.origin != fustorv1.MessageSource_MESSAGE_SOURCE_AUDIT {
		return
	}
	if it.rows != nil {
		m.count(0, uint64(len(it.rows))) // a generic schema has no directories
		return
	}
	var dirs uint64
	for i := range it.events {
		if it.events[i].IsDir() {
			dirs++
		}
	}
	m.count(dirs, uint64(len(it.events))-dirs)
}
