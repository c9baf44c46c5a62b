// Package fs is the agent's file-system source (DESIGN.md §4.3): a parallel snapshot walker and
// a realtime watcher over one root directory. Every path it emits is normalised (sdk/fspath):
// relative to the root, starting with "/", the root itself being "/".
//
// Nothing found on disk can crash it: unreadable directories, entries that vanish between
// listing and lstat, names the wire cannot carry and symlinks are skipped or reported as files,
// counted by reason (Counters) and logged at debug level.
//
// It implements the agent's source contract (agent/internal/source: Snapshotter, Auditor,
// Sentineler, Counters, Watcher, OverflowNotifier). The walk's logic — parallel workers,
// true silence, hot files, excludes — is here; the directory I/O it runs on (getdents64,
// fstatat, raw calls on local file systems, the listing's path blocks) is internal/dirio.
package fs

import (
	"errors"
	"fmt"
	iofs "io/fs"
	"path"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/fustor/fustor/agent/internal/eventtime"
	"github.com/fustor/fustor/agent/internal/source"
	"github.com/fustor/fustor/agent/internal/source/fs/internal/dirio"
	"github.com/fustor/fustor/sdk/fsbatch"
	"github.com/fustor/fustor/sdk/fspath"
)

// The source contract this driver implements: walks, audits, the sentinel, counters, and
// realtime through the bus (it cannot resume: inotify's position is lost on restart).
var (
	_ source.Snapshotter      = (*Source)(nil)
	_ source.Auditor          = (*Source)(nil)
	_ source.Sentineler       = (*Source)(nil)
	_ source.Counters         = (*Source)(nil)
	_ source.Watcher          = (*Source)(nil)
	_ source.OverflowNotifier = (*Source)(nil)
)

// Defaults.
const (
	DefaultModifyThrottle = time.Second
	DefaultBatchSize      = 1000
	// moveWindow is how long an IN_MOVED_FROM waits for its IN_MOVED_TO: the kernel queues the
	// pair back to back, so anything slower means the target is outside the watched tree.
	moveWindow = 10 * time.Millisecond
)

// Config is one fs source's settings.
type Config struct {
	// Root is the directory to scan and watch. A symlink is followed for the root only.
	Root string
	// Excludes are path.Match patterns, each matched against an entry's basename and against
	// its path relative to the root (without the leading "/"). An excluded directory is neither
	// descended into nor watched.
	Excludes []string
	// ModifyThrottle coalesces IN_MODIFY per path (0 = DefaultModifyThrottle).
	ModifyThrottle time.Duration
	// Workers is the snapshot walk's parallelism (0 = runtime.NumCPU()).
	Workers int
	// HotThreshold: snapshot files with an mtime younger than this are deferred and re-checked
	// after the cold ones are sent (0 = DefaultHotThreshold, negative = never defer).
	HotThreshold time.Duration
	// BatchSize bounds the events of one Snapshot emit (0 = DefaultBatchSize).
	BatchSize int
	// Now is the agent's wall clock (nil = time.Now), read through Clock.
	Now func() time.Time
	// Clock is the one drift-corrected event clock every event's index comes from (nil = a new
	// one on Now). Watch estimates its drift at the pre-scan.
	Clock *eventtime.Clock
	// MaxWatches is the watch budget: at most this many directories are watched, the most
	// recently active first (0 = no budget of our own; the kernel's limit still applies and
	// lowers the budget when hit). Unwatched directories are left to audit.
	MaxWatches int
	// OnOverflow is called (on the watcher's goroutine) when the kernel dropped events; the
	// caller should schedule an audit. See also Source.SetOnOverflow.
	OnOverflow func()
}

// Default fills unset fields.
func (c *Config) Default() {
	if c.ModifyThrottle == 0 {
		c.ModifyThrottle = DefaultModifyThrottle
	}
	if c.Workers == 0 {
		c.Workers = runtime.NumCPU()
	}
	if c.HotThreshold == 0 {
		c.HotThreshold = DefaultHotThreshold
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Clock == nil {
		c.Clock = eventtime.New(c.Now)
	}
}

// Validate reports every invalid setting. Zero values are valid (Default fills them).
func (c Config) Validate() error {
	var errs []error
	if c.Root == "" {
		errs = append(errs, errors.New("root is empty"))
	}
	if c.ModifyThrottle < 0 {
		errs = append(errs, fmt.Errorf("modify throttle %v is negative", c.ModifyThrottle))
	}
	if c.Workers < 0 {
		errs = append(errs, fmt.Errorf("workers %d is negative", c.Workers))
	}
	if c.MaxWatches < 0 {
		errs = append(errs, fmt.Errorf("max watches %d is negative", c.MaxWatches))
	}
	if c.BatchSize < 0 {
		errs = append(errs, fmt.Errorf("batch size %d is negative", c.BatchSize))
	}
	for _, p := range c.Excludes {
		if p == "" {
			errs = append(errs, errors.New("exclude pattern is empty"))
			continue
		}
		if _, err := path.Match(p, ""); err != nil {
			errs = append(errs, fmt.Errorf("exclude pattern %q: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// Source is one fs source. Snapshot may run concurrently with itself and with Watch; Watch
// must run at most once at a time.
type Source struct {
	log        *zap.Logger
	cfg        Config
	root       string // absolute and clean
	rootPrefix string // root without a trailing separator: abs = rootPrefix + rel
	excludes   []exclude
	onOverflow atomic.Pointer[func()]
	c          counters
	devs       dirio.LocalDevs // which file systems the walk may use raw calls on (dirio.Dir)

	// writingMu guards writing, the running watcher's set of files with a write in progress:
	// the watcher goroutine changes it under the lock, snapshots read it.
	writingMu sync.RWMutex
	writing   map[string]struct{}
	nWriting  atomic.Int64 // len(writing), stored under writingMu

	// testHookListed runs between listing a directory and lstat-ing its entries, so tests can
	// make entries vanish in that window.
	testHookListed func(abs string)
	// testHookReady runs once Watch has placed its initial watches.
	testHookReady func()
}

// New returns a source; nothing runs until Snapshot or Watch. The root need not exist yet.
func New(logger *zap.Logger, cfg Config) (*Source, error) {
	if logger == nil {
		logger = zap.NewNop()
	}
	cfg.Default()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("fs source config: %w", err)
	}
	root, err := filepath.Abs(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("fs source root %q: %w", cfg.Root, err)
	}
	s := &Source{log: logger, cfg: cfg, root: root, rootPrefix: strings.TrimSuffix(root, string(filepath.Separator))}
	for _, p := range cfg.Excludes {
		s.excludes = append(s.excludes, compileExclude(p))
	}
	if cfg.OnOverflow != nil {
		f := cfg.OnOverflow
		s.onOverflow.Store(&f)
	}
	return s, nil
}

// DefaultHotThreshold is the age below which a snapshot defers a file.
const DefaultHotThreshold = 30 * time.Second

// beingWritten reports whether the watcher saw a write to rel without its close yet.
func (s *Source) beingWritten(rel string) bool {
	// Most walks meet no write in progress: one atomic load per file, not a lock whose reader
	// count every walk worker's core writes in turn.
	if s.nWriting.Load() == 0 {
		return false
	}
	s.writingMu.RLock()
	defer s.writingMu.RUnlock()
	_, ok := s.writing[rel]
	return ok
}

// writingChanged publishes len(writing); callers hold writingMu.
func (s *Source) writingChanged() { s.nWriting.Store(int64(len(s.writing))) }

// Root returns the absolute root directory.
func (s *Source) Root() string { return s.root }

// SetOnOverflow replaces Config.OnOverflow; nil removes it.
func (s *Source) SetOnOverflow(f func()) {
	if f == nil {
		s.onOverflow.Store(nil)
		return
	}
	s.onOverflow.Store(&f)
}

// overflow records a known loss of realtime events.
func (s *Source) overflow() {
	n := s.c.overflows.Add(1)
	s.log.Warn("realtime queue overflowed; events were lost", zap.Uint64("overflows", n))
	if f := s.onOverflow.Load(); f != nil {
		(*f)()
	}
}

func (s *Source) abs(rel string) string {
	if rel == fspath.Root {
		return s.root
	}
	return s.rootPrefix + filepath.FromSlash(rel)
}

func (s *Source) index() uint64 { return s.cfg.Clock.Index() }

// Clock returns the source's event clock.
func (s *Source) Clock() *eventtime.Clock { return s.cfg.Clock }

// excluded reports whether the entry at rel (never the root) matches an exclude pattern,
// against its basename or its relative path. path.Match's "*" and "?" never match "/", so a
// pattern without "/" or a class can match only the basename (for a top-level entry that is
// the whole relative path too) and one with "/" only the relative path; a class ("[^x]") can
// match "/", so such a pattern is tried on both. Literal patterns are compared as strings.
// This runs for every entry of every walk, so each pattern is tried the cheapest way.
func (s *Source) excluded(rel string) bool {
	if len(s.excludes) == 0 || rel == fspath.Root {
		return false
	}
	_, base := fspath.Split(rel)
	for _, p := range s.excludes {
		switch {
		case p.literal:
			if p.slash && p.pattern == rel[1:] || !p.slash && p.pattern == base {
				return true
			}
		case p.class:
			if ok, _ := path.Match(p.pattern, base); ok {
				return true
			}
			if ok, _ := path.Match(p.pattern, rel[1:]); ok {
				return true
			}
		default:
			subject := base
			if p.slash {
				subject = rel[1:]
			}
			if ok, _ := path.Match(p.pattern, subject); ok {
				return true
			}
		}
	}
	return false
}

// exclude is one compiled exclude pattern.
type exclude struct {
	pattern               string
	slash, literal, class bool
}

func compileExclude(p string) exclude {
	p = strings.TrimPrefix(p, "/") // a leading "/" anchors nothing extra
	return exclude{pattern: p, slash: strings.Contains(p, "/"), literal: !strings.ContainsAny(p, `*?[\`),
		class: strings.Contains(p, "[")}
}

// validName reports whether the wire can carry name: the typed fs batch is protobuf, whose
// strings must be UTF-8.
func validName(name string) bool {
	return utf8.ValidString(name) && fspath.ValidName(name) == nil
}

func (s *Source) event(origin source.Origin, rel string, st dirio.Stat, idx uint64) source.Event {
	ev := source.Event{Origin: origin, Path: rel, Size: st.Size, MtimeNs: st.MtimeNs, Index: idx}
	if st.Type == dirio.TypeDir {
		ev.Flags |= fsbatch.FlagDir
	}
	return ev
}

// skipReason names why an entry was left out; the names are stable counter and log keys.
type skipReason int

const (
	skipPermission skipReason = iota
	skipVanished
	skipInvalidName
	skipExcluded
	skipSymlink
	skipError
	numSkipReasons
)

var skipNames = [numSkipReasons]string{"permission", "vanished", "invalid_name", "excluded", "symlink", "error"}

// classify maps a syscall error to a skip reason.
func classify(err error) skipReason {
	switch {
	case errors.Is(err, iofs.ErrPermission):
		return skipPermission
	case errors.Is(err, iofs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		// ENOTDIR: a directory was replaced by a file between lstat and open.
		return skipVanished
	case errors.Is(err, syscall.ELOOP):
		// ELOOP from O_NOFOLLOW or IN_DONT_FOLLOW: a directory was replaced by a symlink.
		return skipSymlink
	}
	return skipError
}

// skip counts and logs one skipped entry. Excluded entries are expected, so they are counted
// but not logged.
func (s *Source) skip(r skipReason, rel string, err error) {
	s.c.skipped[r].Add(1)
	if r == skipExcluded || !s.log.Core().Enabled(zap.DebugLevel) {
		return
	}
	fields := []zap.Field{zap.String("path", strconv.Quote(rel)), zap.String("reason", skipNames[r])}
	if err != nil {
		fields = append(fields, zap.Error(err))
	}
	s.log.Debug("skip entry", fields...)
}

type counters struct {
	skipped                     [numSkipReasons]atomic.Uint64
	symlinks                    atomic.Uint64
	watches                     atomic.Int64
	watchNoSpace, watchErrors   atomic.Uint64
	overflows, events           atomic.Uint64
	modifyCoalesced, unknownWd  atomic.Uint64
	movesPaired, movesUnpaired  atomic.Uint64
	snapshotRows, panics        atomic.Uint64
	watchBudget                 atomic.Int64
	watchesEvicted, leftToAudit atomic.Uint64
	budgetLowered               atomic.Uint64
}

// Counters returns the source's counters; every key is always present.
func (s *Source) Counters() map[string]uint64 {
	m := make(map[string]uint64, 20)
	for r := range numSkipReasons {
		m["skipped_"+skipNames[r]] = s.c.skipped[r].Load()
	}
	m["symlinks"] = s.c.symlinks.Load()
	m["watches"] = uint64(max(s.c.watches.Load(), 0))
	m["watch_nospace"] = s.c.watchNoSpace.Load()
	m["watch_errors"] = s.c.watchErrors.Load()
	m["overflows"] = s.c.overflows.Load()
	m["events"] = s.c.events.Load()
	m["modify_coalesced"] = s.c.modifyCoalesced.Load()
	m["unknown_wd"] = s.c.unknownWd.Load()
	m["moves_paired"] = s.c.movesPaired.Load()
	m["moves_unpaired"] = s.c.movesUnpaired.Load()
	m["snapshot_rows"] = s.c.snapshotRows.Load()
	m["panics"] = s.c.panics.Load()
	m["watch_budget"] = uint64(max(s.c.watchBudget.Load(), 0))
	m["watches_evicted"] = s.c.watchesEvicted.Load()
	m["watch_budget_lowered"] = s.c.budgetLowered.Load()
	m["dirs_left_to_audit"] = s.c.leftToAudit.Load()
	m["clock_drift_ms"] = uint64(max(s.cfg.Clock.Drift().Milliseconds(), 0))
	m["clock_index_held"] = s.cfg.Clock.Held()
	return m
}
