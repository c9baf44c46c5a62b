// Package view holds Fusion's views and their readiness (DESIGN.md §5.1): which views exist,
// the members (trees) each holds, whether an authoritative (leader) session feeds each member,
// and whether the leader's first snapshot since the last reset has been applied.
//
// An fs view has one member; a forest-fs view (DESIGN.md §6) one per pipe feeding it, each
// with its own tree, arbitration, readiness and leader (Member.Key). Pipes apply to members;
// the query service asks one member, or fans out over a forest's members and merges.
//
// It is also the boundary between Fusion and its view drivers. Each Member holds its driver
// behind the Driver interface (driver.go), and the types the interface exchanges are
// re-exported from view/viewapi, so pipe, receiver, query, admin and app import view alone.
// NewRegistry is the only place that constructs a driver: adding one means a package under
// view/ and a case there, nothing elsewhere. Layout:
//
//	view           View, Member, Registry, readiness, the Driver interface
//	view/viewapi   the contract's plain types (Entry, Stats, Origin, VerifyResult, ...)
//	view/fs        the fs driver (DESIGN.md §5.3–§5.6), also each forest member's tree
//	view/rows      the rows driver: a keyed row store for a schema other than fs
//
// A rows view has one member, which holds its data in Member.Rows (the RowsDriver contract)
// and no Driver: Member.FS refuses the fs queries on it, and the pipe, checkpoints, metrics
// and readiness go through the Member methods that serve both (Len, MemoryBytes, Reset,
// Checkpointer, Instance).
//
// Only packages under view/ may import a driver; fusion/internal/app's layers test enforces it.
package view

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/fustor/fustor/fusion/internal/config"
	"github.com/fustor/fustor/fusion/internal/errs"
	"github.com/fustor/fustor/fusion/internal/view/fs"
	"github.com/fustor/fustor/fusion/internal/view/rows"
)

// ErrNotFound is returned for an unknown view.
var ErrNotFound = errs.New(errs.ErrNotFound, "view not found")

// ErrNotReady is returned while a view cannot answer authoritatively.
var ErrNotReady = errs.New(errs.ErrNotReady, "view not ready")

// ErrPathNotFound is returned when a path is in no member a fan-out asked.
var ErrPathNotFound = errs.New(errs.ErrNotFound, "path not found")

// ErrMemberNotFound is returned for a member a forest view does not have.
var ErrMemberNotFound = errs.New(errs.ErrNotFound, "member not found")

// ErrNotForest is returned when a member is named on a view that has none.
var ErrNotForest = errs.New(errs.ErrInvalidArgument, "not a forest view")

// Member is one tree of a view: the only one of an fs view (named ""), one per storage of a
// forest view (named after its pipe, or its label). Readiness and leadership are the member's:
// one member's agent gone or its snapshot running leaves the others answering.
type Member struct {
	// View is the view's name, Name the member's ("" for an fs view).
	View, Name string
	// schema is the view's schema (for messages).
	schema string
	// Driver holds an fs or forest member's data; callers reach it through the interface
	// only. It is nil for a rows view's member, whose data Rows holds (nil otherwise): code
	// that may meet either checks Rows, or asks FS.
	Driver Driver
	Rows   RowsDriver

	mu           sync.Mutex
	leader       string
	snapshotDone bool
	// restoredAt is when the checkpoint the member was loaded from was written; zero once a
	// leader's snapshot confirmed the tree (or when it was not restored).
	restoredAt time.Time
	// staleSince is when the member's last session ended (zero: not stale); it keeps its tree
	// and answers, flagged, until a leader's snapshot reconciles it (DESIGN.md §5.1).
	staleSince time.Time
}

// Key is the member's leadership key: the sessions of the pipes feeding it elect one leader
// per key (the view's name for an fs view, "view/member" for a forest's member).
func (m *Member) Key() string {
	if m.Name == "" {
		return m.View
	}
	return m.View + "/" + m.Name
}

// State is a member's readiness.
type State struct {
	Leader           string
	SnapshotComplete bool
	// RestoredAt is set while the member answers from a checkpoint (its time) that no
	// agent's snapshot has confirmed yet.
	RestoredAt time.Time
	// StaleSince is set while the member answers with no session feeding it since then (or a
	// new leader's snapshot has not ended yet).
	StaleSince time.Time
}

// State returns the member's readiness.
func (m *Member) State() State {
	m.mu.Lock()
	defer m.mu.Unlock()
	return State{Leader: m.leader, SnapshotComplete: m.snapshotDone, RestoredAt: m.restoredAt, StaleSince: m.staleSince}
}

// Resumed records that leader id continues the member's tree from the pipe's committed index
// (a replayable source): no snapshot will come, and none is needed, so the tree is confirmed
// as a leader's snapshot end would confirm it.
func (m *Member) Resumed(id string) {
	m.mu.Lock()
	if id == m.leader {
		m.snapshotDone = true
		m.restoredAt, m.staleSince = time.Time{}, time.Time{}
	}
	m.mu.Unlock()
}

// MarkStale records that the member's last session ended at: it keeps its tree and answers,
// flagged stale, until a leader's snapshot ends. A member that never completed a snapshot
// stays not ready: no empty tree is ever presented as ready (DESIGN.md §9.8).
func (m *Member) MarkStale(at time.Time) {
	m.mu.Lock()
	if m.staleSince.IsZero() {
		m.staleSince = at
	}
	m.mu.Unlock()
}

// Restored records that the member was loaded from a checkpoint written at: it answers at
// once, flagged, until its leader's snapshot ends.
func (m *Member) Restored(at time.Time) {
	m.mu.Lock()
	m.restoredAt = at
	m.mu.Unlock()
}

// Ready returns nil when the member can answer, else an error wrapping ErrNotReady that says
// why and when to retry.
func (m *Member) Ready() error {
	st := m.State()
	switch {
	case !st.RestoredAt.IsZero():
		return nil // a checkpoint's tree answers, flagged restored
	case st.SnapshotComplete:
		return nil // a complete tree answers; with no leader, flagged stale
	case st.Leader == "":
		return fmt.Errorf("%w: %s has no leader session (no agent connected); retry after an agent connects", ErrNotReady, m.what())
	case !st.SnapshotComplete:
		return fmt.Errorf("%w: %s is waiting for its leader's first snapshot to complete; retry in a few seconds", ErrNotReady, m.what())
	}
	return nil
}

// what names the member in messages (formatted only for an error: Ready is on every query).
func (m *Member) what() string {
	if m.Name != "" {
		return fmt.Sprintf("member %q of view %q", m.Name, m.View)
	}
	return fmt.Sprintf("view %q", m.View)
}

// SetLeader records the member's leader session ("" = none). A member stays complete across a
// failover: the data of the old leader remains until the new one's snapshot refreshes it.
func (m *Member) SetLeader(id string) {
	m.mu.Lock()
	m.leader = id
	m.mu.Unlock()
}

// SnapshotEnded records that a snapshot of session id was fully applied. Only the leader's
// snapshot makes the member ready.
func (m *Member) SnapshotEnded(id string) {
	m.mu.Lock()
	if id == m.leader {
		m.snapshotDone = true
		// Confirmed (and reconciled) by an agent.
		m.restoredAt, m.staleSince = time.Time{}, time.Time{}
	}
	m.mu.Unlock()
}

// Reset drops a live member's state; called when its last session ended.
func (m *Member) Reset() {
	m.mu.Lock()
	m.snapshotDone, m.restoredAt, m.staleSince = false, time.Time{}, time.Time{}
	m.mu.Unlock()
	if m.Rows != nil {
		m.Rows.Reset()
		return
	}
	m.Driver.Reset()
}

// ErrRowsView is returned for an fs query (a path, a tree, the change log) of a rows view.
var ErrRowsView = errs.New(errs.ErrPrecondition, "not an fs view")

// FS returns the member's fs driver, or, for a rows view's member, an error wrapping
// ErrRowsView (FAILED_PRECONDITION) that says which calls read it.
func (m *Member) FS() (Driver, error) {
	if m.Rows != nil {
		return nil, fmt.Errorf("%w: view %q holds rows of schema %q: use GetRow/ListRows", ErrRowsView, m.View, m.schema)
	}
	return m.Driver, nil
}

// Len returns the nodes (rows) the member holds.
func (m *Member) Len() int {
	if m.Rows != nil {
		return m.Rows.Len()
	}
	return m.Driver.Len()
}

// MemoryBytes estimates the heap the member's data takes.
func (m *Member) MemoryBytes() uint64 {
	if m.Rows != nil {
		return m.Rows.MemoryBytes()
	}
	return m.Driver.MemoryBytes()
}

// Checkpointer writes and loads the member's data, whichever driver holds it.
func (m *Member) Checkpointer() Checkpointer {
	if m.Rows != nil {
		return m.Rows
	}
	return m.Driver
}

// Instance numbers the member's data since it was built or last reset (the change log's
// instance for an fs driver): a checkpoint taken across a reset must not replace the last.
func (m *Member) Instance() uint64 {
	if m.Rows != nil {
		return m.Rows.Instance()
	}
	inst, _ := m.Driver.ChangeCursor()
	return inst
}

// Tick lets the member's driver expire what it holds for a while (suspects, tombstones).
func (m *Member) Tick() {
	if m.Rows != nil {
		m.Rows.Tick()
		return
	}
	m.Driver.Tick()
}

// Configure takes a reloaded view's limits in place.
func (m *Member) Configure(vc config.View) {
	if m.Rows != nil {
		m.Rows.Configure(vc.MaxNodes, vc.TombstoneTTL)
		return
	}
	m.Driver.Configure(vc.MaxNodes, vc.HotThreshold, vc.TombstoneTTL)
}

// View is one configured view: one member (fs) or one per pipe feeding it (forest-fs).
type View struct {
	Name string
	Cfg  config.View

	members []*Member // sorted by name
	byName  map[string]*Member
	byPipe  map[string]*Member
}

// IsForest reports whether the view is a forest (members have names).
func (v *View) IsForest() bool { return v.Cfg.Driver == config.DriverForestFS }

// IsRows reports whether the view is a rows view (its member holds Rows, no Driver).
func (v *View) IsRows() bool { return v.Cfg.Driver == config.DriverRows }

// Members returns the view's members sorted by name.
func (v *View) Members() []*Member { return v.members }

// Member returns the member a request names: "" for an fs view's only one; a forest's by
// name. A name on an fs view is ErrNotForest, an unknown one ErrMemberNotFound, and "" on a
// forest an ErrInvalidArgument (the caller fans out instead).
func (v *View) Member(name string) (*Member, error) {
	switch {
	case !v.IsForest() && name == "":
		return v.members[0], nil
	case !v.IsForest():
		return nil, fmt.Errorf("%w: view %q has no members (asked for %q)", ErrNotForest, v.Name, name)
	case name == "":
		return nil, fmt.Errorf("%w: view %q is a forest: name a member (%s)", errs.ErrInvalidArgument, v.Name, strings.Join(v.MemberNames(), ", "))
	}
	m, ok := v.byName[name]
	if !ok {
		return nil, fmt.Errorf("%w: view %q has no member %q (members: %s)", ErrMemberNotFound, v.Name, name, strings.Join(v.MemberNames(), ", "))
	}
	return m, nil
}

// MemberNames returns the members' names, sorted.
func (v *View) MemberNames() []string {
	out := make([]string, len(v.members))
	for i, m := range v.members {
		out[i] = m.Name
	}
	return out
}

// MemberOf returns the member pipe feeds (nil if the pipe is not one of a forest's).
func (v *View) MemberOf(pipe string) *Member {
	if !v.IsForest() {
		return v.members[0]
	}
	return v.byPipe[pipe]
}

// Ready returns nil when the view can answer: its member for an fs view, at least one
// member for a forest (the others are listed as not ready in the answers).
func (v *View) Ready() error {
	var first error
	for _, m := range v.members {
		err := m.Ready()
		if err == nil {
			return nil
		}
		if first == nil {
			first = err
		}
	}
	if first == nil {
		return fmt.Errorf("%w: view %q has no members: no pipe feeds it", ErrNotReady, v.Name)
	}
	if v.IsForest() && len(v.members) > 1 {
		return fmt.Errorf("%w: no member of view %q is ready (first: %v)", ErrNotReady, v.Name, first)
	}
	return first
}

// Len returns the nodes held by all members; MemoryBytes the heap they take.
func (v *View) Len() int {
	n := 0
	for _, m := range v.members {
		n += m.Len()
	}
	return n
}

// MemoryBytes estimates the heap all members hold.
func (v *View) MemoryBytes() uint64 {
	var n uint64
	for _, m := range v.members {
		n += m.MemoryBytes()
	}
	return n
}

// Registry holds every view by name. It is safe for concurrent use: queries read it while a
// reload (Apply) replaces views.
type Registry struct {
	log *zap.Logger
	now func() time.Time

	mu    sync.RWMutex
	views map[string]*View
	byKey map[string]*Member
}

// The drivers satisfy their contracts (checked at compile time, not at start).
var (
	_ Driver     = (*fs.View)(nil)
	_ RowsDriver = (*rows.Store)(nil)
)

// NewRegistry builds the views of cfg (normalised and validated): an fs view gets one member,
// a forest one per pipe feeding it. It is the only place a driver is constructed;
// config.Validate has accepted only the drivers known here.
func NewRegistry(log *zap.Logger, cfg config.Config, now func() time.Time) *Registry {
	if log == nil {
		log = zap.NewNop()
	}
	r := &Registry{log: log, now: now, views: map[string]*View{}, byKey: map[string]*Member{}}
	r.Apply(cfg)
	return r
}

// Changes is what Apply did, by view id.
type Changes struct {
	Added, Removed, Changed []string
	// Details has one line per change, for logs and the Reload answer.
	Details []string
}

// Apply makes the registry hold the views of cfg (normalised and validated), keeping every
// tree it can: a view whose driver is unchanged keeps its members' trees, readiness and
// leaders (a forest's by member name; members of pipes no longer feeding it go, new ones
// start empty), and takes the new limits in place. A view whose driver changed is rebuilt.
func (r *Registry) Apply(cfg config.Config) Changes {
	var ch Changes
	r.mu.Lock()
	defer r.mu.Unlock()
	views := map[string]*View{}
	for _, name := range slices.Sorted(maps.Keys(cfg.Views)) {
		vc := cfg.Views[name]
		old := r.views[name]
		if old != nil && old.Cfg.Driver != vc.Driver {
			ch.Details = append(ch.Details, fmt.Sprintf("view rebuilt: %s (driver %s -> %s)", name, old.Cfg.Driver, vc.Driver))
			ch.Changed = append(ch.Changed, name)
			old = nil
		} else if old != nil && vc.Driver == config.DriverRows && old.Cfg.Schema != vc.Schema {
			// Rows of another schema are another table: none of the old ones belong.
			ch.Details = append(ch.Details, fmt.Sprintf("view rebuilt: %s (schema %s -> %s)", name, old.Cfg.Schema, vc.Schema))
			ch.Changed = append(ch.Changed, name)
			old = nil
		} else if old == nil {
			ch.Added = append(ch.Added, name)
			ch.Details = append(ch.Details, "view added: "+name)
		}
		v := &View{Name: name, Cfg: vc, byName: map[string]*Member{}, byPipe: map[string]*Member{}}
		membersChanged := false
		keep := func(member string) *Member {
			if old == nil {
				return nil
			}
			m := old.byName[member]
			if m != nil {
				m.Configure(vc)
			}
			return m
		}
		if vc.Driver != config.DriverForestFS {
			m := keep("")
			if m == nil {
				m = r.newMember(name, vc)
			}
			v.members = []*Member{m}
		} else {
			for _, pid := range cfg.PipesOf(name) {
				mn := cfg.MemberName(name, pid)
				m := keep(mn)
				if m == nil {
					m = &Member{View: name, Name: mn, schema: vc.Schema, Driver: newDriver(r.log.With(zap.String("view", name), zap.String("member", mn)), name+"/"+mn, vc, r.now)}
					if old != nil {
						ch.Details = append(ch.Details, fmt.Sprintf("member added: %s/%s", name, mn))
						membersChanged = true
					}
				}
				v.members = append(v.members, m)
				v.byPipe[pid] = m
			}
			slices.SortFunc(v.members, func(a, b *Member) int { return strings.Compare(a.Name, b.Name) })
		}
		for _, m := range v.members {
			v.byName[m.Name] = m
		}
		if old != nil {
			for _, m := range old.members {
				if v.byName[m.Name] != m {
					ch.Details = append(ch.Details, fmt.Sprintf("member removed: %s/%s", name, m.Name))
					membersChanged = true
				}
			}
			d := configDiff(old.Cfg, vc)
			if d != "" {
				ch.Details = append(ch.Details, fmt.Sprintf("view changed: %s (%s)", name, d))
			}
			if d != "" || membersChanged {
				ch.Changed = append(ch.Changed, name) // old != nil: not rebuilt, not yet listed
			}
		}
		views[name] = v
	}
	for _, name := range slices.Sorted(maps.Keys(r.views)) {
		if _, ok := views[name]; !ok {
			ch.Removed = append(ch.Removed, name)
			ch.Details = append(ch.Details, "view removed: "+name)
		}
	}
	r.views = views
	r.byKey = map[string]*Member{}
	for _, v := range views {
		for _, m := range v.members {
			r.byKey[m.Key()] = m
		}
	}
	return ch
}

// configDiff describes what changed between two configurations of a view ("" = nothing).
func configDiff(a, b config.View) string {
	var d []string
	if a.Schema != b.Schema {
		d = append(d, fmt.Sprintf("schema %s -> %s", a.Schema, b.Schema))
	}
	if a.SchemaVersion != b.SchemaVersion {
		d = append(d, fmt.Sprintf("schema_version %d -> %d", a.SchemaVersion, b.SchemaVersion))
	}
	if a.Live != b.Live {
		d = append(d, fmt.Sprintf("live %v -> %v", a.Live, b.Live))
	}
	if !slices.Equal(a.QueryKeys, b.QueryKeys) {
		d = append(d, "query keys")
	}
	if a.MaxNodes != b.MaxNodes {
		d = append(d, fmt.Sprintf("max_nodes %d -> %d", a.MaxNodes, b.MaxNodes))
	}
	if a.HotThreshold != b.HotThreshold {
		d = append(d, fmt.Sprintf("hot_threshold %v -> %v", a.HotThreshold, b.HotThreshold))
	}
	if a.TombstoneTTL != b.TombstoneTTL {
		d = append(d, fmt.Sprintf("tombstone_ttl %v -> %v", a.TombstoneTTL, b.TombstoneTTL))
	}
	if !maps.Equal(a.Members, b.Members) {
		d = append(d, "member labels")
	}
	if a.MaxExpensiveQueries != b.MaxExpensiveQueries || a.MaxExpensiveQueriesPerKey != b.MaxExpensiveQueriesPerKey ||
		a.ExpensiveQueryWait != b.ExpensiveQueryWait || a.MaxAnswerBytes != b.MaxAnswerBytes {
		d = append(d, "query bounds")
	}
	return strings.Join(d, ", ")
}

// newDriver constructs the tree driver of one member: an fs tree for both drivers (a forest
// is a set of fs trees).
func newDriver(log *zap.Logger, name string, vc config.View, now func() time.Time) Driver {
	return fs.New(log, fs.Options{Name: name, MaxNodes: vc.MaxNodes, Now: now,
		HotThreshold: vc.HotThreshold, TombstoneTTL: vc.TombstoneTTL,
		ChangeLogEntries: vc.ChangeLogEntries, ChangeLogBytes: vc.ChangeLogBytes})
}

// newMember builds the only member of an fs or rows view.
func (r *Registry) newMember(name string, vc config.View) *Member {
	log := r.log.With(zap.String("view", name))
	m := &Member{View: name, schema: vc.Schema}
	if vc.Driver == config.DriverRows {
		m.Rows = rows.New(log, rows.Options{Name: name, MaxRows: vc.MaxNodes, TombstoneTTL: vc.TombstoneTTL, Now: r.now})
		return m
	}
	m.Driver = newDriver(log, name, vc, r.now)
	return m
}

// ByKey returns the member of a leadership key (Member.Key).
func (r *Registry) ByKey(key string) (*Member, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	m, ok := r.byKey[key]
	return m, ok
}

// Get returns a view by name.
func (r *Registry) Get(name string) (*View, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	v, ok := r.views[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	return v, nil
}

// All returns the views sorted by name.
func (r *Registry) All() []*View {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]*View, 0, len(r.views))
	for _, v := range r.views {
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
