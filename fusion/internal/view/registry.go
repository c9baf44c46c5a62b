// Package view holds Fusion's views and their readiness (DESIGN.md §5.1): which views exist,
// whether an authoritative (leader) session feeds each, and whether the leader's first snapshot
// since the last reset has been applied.
//
// It is also the boundary between Fusion and its view drivers. Each View holds its driver
// behind the Driver interface (driver.go), and the types the interface exchanges are
// re-exported from view/viewapi, so pipe, receiver, query, admin and app import view alone.
// NewRegistry is the only place that constructs a driver: adding one (the forest view) means
// a package under view/ and a case there, nothing elsewhere. Layout:
//
//	view           View, Registry, readiness, the Driver interface
//	view/viewapi   the contract's plain types (Entry, Stats, Origin, VerifyResult, ...)
//	view/fs        the fs driver (DESIGN.md §5.3–§5.6)
//
// Only packages under view/ may import a driver; fusion/internal/app's layers test enforces it.
package view

import (
	"fmt"
	"sort"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/fustor/fustor/fusion/internal/config"
	"github.com/fustor/fustor/fusion/internal/errs"
	"github.com/fustor/fustor/fusion/internal/view/fs"
)

// ErrNotFound is returned for an unknown view.
var ErrNotFound = errs.New(errs.ErrNotFound, "view not found")

// ErrNotReady is returned while a view cannot answer authoritatively.
var ErrNotReady = errs.New(errs.ErrNotReady, "view not ready")

// View is one configured view.
type View struct {
	Name string
	Cfg  config.View
	// Driver holds the view's data; callers reach it through the interface only.
	Driver Driver

	mu           sync.Mutex
	leader       string
	snapshotDone bool
}

// State is a view's readiness.
type State struct {
	Leader           string
	SnapshotComplete bool
}

// State returns the view's readiness.
func (v *View) State() State {
	v.mu.Lock()
	defer v.mu.Unlock()
	return State{Leader: v.leader, SnapshotComplete: v.snapshotDone}
}

// Ready returns nil when the view can answer, else an error wrapping ErrNotReady that says why
// and when to retry.
func (v *View) Ready() error {
	st := v.State()
	switch {
	case st.Leader == "":
		return fmt.Errorf("%w: view %q has no leader session (no agent connected); retry after an agent connects", ErrNotReady, v.Name)
	case !st.SnapshotComplete:
		return fmt.Errorf("%w: view %q is waiting for its leader's first snapshot to complete; retry in a few seconds", ErrNotReady, v.Name)
	}
	return nil
}

// SetLeader records the view's leader session ("" = none). A view stays complete across a
// failover: the data of the old leader remains until the new one's snapshot refreshes it.
func (v *View) SetLeader(id string) {
	v.mu.Lock()
	v.leader = id
	v.mu.Unlock()
}

// SnapshotEnded records that a snapshot of session id was fully applied. Only the leader's
// snapshot makes the view ready.
func (v *View) SnapshotEnded(id string) {
	v.mu.Lock()
	if id == v.leader {
		v.snapshotDone = true
	}
	v.mu.Unlock()
}

// Reset drops a live view's state; called when its last session ended.
func (v *View) Reset() {
	v.mu.Lock()
	v.snapshotDone = false
	v.mu.Unlock()
	v.Driver.Reset()
}

// Registry holds every view by name.
type Registry struct {
	views map[string]*View
}

// The fs driver satisfies the contract (checked at compile time, not at start).
var _ Driver = (*fs.View)(nil)

// NewRegistry builds the views of cfg. It is the only place a driver is constructed;
// config.Validate has accepted only the drivers known here.
func NewRegistry(log *zap.Logger, cfg map[string]config.View, now func() time.Time) *Registry {
	if log == nil {
		log = zap.NewNop()
	}
	r := &Registry{views: map[string]*View{}}
	for name, vc := range cfg {
		r.views[name] = &View{Name: name, Cfg: vc, Driver: newDriver(log.With(zap.String("view", name)), name, vc, now)}
	}
	return r
}

// newDriver constructs the driver vc names. fs is the only driver so far (and the default).
func newDriver(log *zap.Logger, name string, vc config.View, now func() time.Time) Driver {
	return fs.New(log, fs.Options{Name: name, MaxNodes: vc.MaxNodes, Now: now,
		HotThreshold: vc.HotThreshold, TombstoneTTL: vc.TombstoneTTL})
}

// Get returns a view by name.
func (r *Registry) Get(name string) (*View, error) {
	v, ok := r.views[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	return v, nil
}

// All returns the views sorted by name.
func (r *Registry) All() []*View {
	out := make([]*View, 0, len(r.views))
	for _, v := range r.views {
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
