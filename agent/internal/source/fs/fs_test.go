package fs

import (
	"errors"
	"fmt"
	iofs "io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/fustor/fustor/agent/internal/source"
	"github.com/fustor/fustor/sdk/fsbatch"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fixedNow is the event clock of every test source.
var fixedNow = time.UnixMilli(1_700_000_000_123)

func newSource(t testing.TB, root string, mod func(*Config)) *Source {
	t.Helper()
	// Trees made by a test are all "hot"; deferral has its own test (TestSnapshotDefersHotFiles).
	cfg := Config{Root: root, Now: func() time.Time { return fixedNow }, HotThreshold: -1}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(nil, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

func writeFile(t testing.TB, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// mkTree writes files files spread over a nested tree (fan-out 10, up to three levels) and
// returns their normalised paths.
func mkTree(t testing.TB, root string, files int) []string {
	t.Helper()
	var out []string
	for i := range files {
		rel := fmt.Sprintf("/d%d/s%d/f%04d.dat", i%10, (i/10)%10, i)
		if i%7 == 0 {
			rel = fmt.Sprintf("/d%d/f%04d.dat", i%10, i)
		}
		writeFile(t, filepath.Join(root, filepath.FromSlash(rel)), strings.Repeat("x", i%97))
		out = append(out, rel)
	}
	return out
}

func TestConfigDefaultValidate(t *testing.T) {
	var c Config
	c.Root = "/x"
	c.Default()
	if c.ModifyThrottle != time.Second || c.BatchSize != 1000 || c.Workers < 1 || c.Now == nil {
		t.Fatalf("Default: %+v", c)
	}
	tests := []struct {
		name string
		cfg  Config
		bad  bool
	}{
		{"zero values are defaults", Config{Root: "/x"}, false},
		{"no root", Config{}, true},
		{"negative throttle", Config{Root: "/x", ModifyThrottle: -1}, true},
		{"negative workers", Config{Root: "/x", Workers: -1}, true},
		{"negative batch", Config{Root: "/x", BatchSize: -1}, true},
		{"bad pattern", Config{Root: "/x", Excludes: []string{"[a-"}}, true},
		{"empty pattern", Config{Root: "/x", Excludes: []string{""}}, true},
		{"good patterns", Config{Root: "/x", Excludes: []string{"*.tmp", "/a/b", "a/*/c"}}, false},
	}
	for _, tt := range tests {
		err := tt.cfg.Validate()
		if (err != nil) != tt.bad {
			t.Errorf("%s: Validate = %v, want error %v", tt.name, err, tt.bad)
		}
	}
	if _, err := New(nil, Config{}); err == nil {
		t.Error("New accepted an empty root")
	}
}

func TestExcluded(t *testing.T) {
	s := newSource(t, "/r", func(c *Config) {
		c.Excludes = []string{"*.tmp", ".git", "/build/out", "cache/*/x", `lit\*`, "src[^x]y", "[^/]q"}
	})
	tests := []struct {
		rel  string
		want bool
	}{
		{"/", false},
		{"/a.tmp", true},
		{"/deep/down/b.tmp", true},
		{"/a.tmpx", false},
		{"/.git", true},
		{"/sub/.git", true},
		{"/build/out", true},
		{"/build/outside", false},
		{"/x/build/out", false},
		{"/cache/k/x", true},
		{"/cache/k/y", false},
		{"/.gitx", false},
		{"/sub/.git/config", false}, // the directory is excluded, so the walk never gets here
		{"/d/lit*", true},           // an escaped wildcard is matched, not compared
		{"/d/litx", false},
		{"/src/y", true}, // a class can match "/": tried on the relative path too
		{"/d/kq", true},  // a "/" inside a class: still tried on the basename
		{"/d/kk", false},
	}
	for _, tt := range tests {
		if got := s.excluded(tt.rel); got != tt.want {
			t.Errorf("excluded(%q) = %v, want %v", tt.rel, got, tt.want)
		}
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		err  error
		want skipReason
	}{
		{&os.PathError{Op: "open", Path: "/x", Err: syscall.EACCES}, skipPermission},
		{syscall.EPERM, skipPermission},
		{syscall.ENOENT, skipVanished},
		{iofs.ErrNotExist, skipVanished},
		{syscall.ENOTDIR, skipVanished},
		{syscall.ELOOP, skipSymlink},
		{syscall.EIO, skipError},
		{errors.New("other"), skipError},
	}
	for _, tt := range tests {
		if got := classify(tt.err); got != tt.want {
			t.Errorf("classify(%v) = %s, want %s", tt.err, skipNames[got], skipNames[tt.want])
		}
	}
}

func TestCountersKeys(t *testing.T) {
	s := newSource(t, t.TempDir(), nil)
	c := s.Counters()
	for _, k := range []string{"skipped_permission", "skipped_vanished", "skipped_invalid_name", "skipped_excluded",
		"skipped_symlink", "skipped_error", "watches", "overflows", "events", "symlinks", "watch_nospace"} {
		if _, ok := c[k]; !ok {
			t.Errorf("counter %q missing", k)
		}
	}
}

func TestOverflowHandler(t *testing.T) {
	var calls int
	s := newSource(t, t.TempDir(), func(c *Config) { c.OnOverflow = func() { calls++ } })
	s.overflow()
	if calls != 1 || s.Counters()["overflows"] != 1 {
		t.Fatalf("calls %d, overflows %d", calls, s.Counters()["overflows"])
	}
	s.SetOnOverflow(nil)
	s.overflow()
	if calls != 1 || s.Counters()["overflows"] != 2 {
		t.Fatalf("after SetOnOverflow(nil): calls %d, overflows %d", calls, s.Counters()["overflows"])
	}
}

func TestThrottle(t *testing.T) {
	t0 := time.Unix(1000, 0)
	th := throttle{window: time.Second, ents: map[string]*thrEnt{}}
	if !th.modify("/a", t0) {
		t.Fatal("first modify must emit at once")
	}
	for i := range 100 {
		if th.modify("/a", t0.Add(time.Duration(i)*time.Millisecond)) {
			t.Fatal("modify inside the window emitted")
		}
	}
	if !th.modify("/b", t0.Add(500*time.Millisecond)) {
		t.Fatal("another path is not throttled")
	}
	if got := th.due(t0.Add(999 * time.Millisecond)); len(got) != 0 {
		t.Fatalf("due early: %v", got)
	}
	if d, ok := th.next(); !ok || !d.Equal(t0.Add(time.Second)) {
		t.Fatalf("next = %v %v", d, ok)
	}
	if got := th.due(t0.Add(time.Second)); !slices.Equal(got, []string{"/a"}) {
		t.Fatalf("trailing flush = %v, want [/a]", got)
	}
	// /b had nothing pending: its entry just expires, and /a's window was re-armed.
	if got := th.due(t0.Add(1500 * time.Millisecond)); len(got) != 0 {
		t.Fatalf("due = %v", got)
	}
	if th.modify("/b", t0.Add(1600*time.Millisecond)) != true {
		t.Fatal("/b window expired, modify must emit")
	}
	th.modify("/a", t0.Add(1700*time.Millisecond))
	th.cancel("/a")
	if got := th.due(t0.Add(5 * time.Second)); len(got) != 0 {
		t.Fatalf("cancelled entry flushed: %v", got)
	}
	if _, ok := th.next(); ok {
		t.Fatal("throttle not empty")
	}
	th.modify("/d/x", t0)
	th.modify("/d/x", t0)
	th.cancelWithin("/d")
	if got := th.due(t0.Add(5 * time.Second)); len(got) != 0 {
		t.Fatalf("cancelWithin left %v", got)
	}
}

// recorder collects realtime events; waitFor polls it against a deadline, woken by each emit.
type recorder struct {
	mu   sync.Mutex
	evs  []source.Event
	wake chan struct{}
}

func newRecorder() *recorder { return &recorder{wake: make(chan struct{}, 1)} }

func (r *recorder) emit(ev source.Event) {
	r.mu.Lock()
	r.evs = append(r.evs, ev)
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *recorder) events() []source.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.evs)
}

const waitTimeout = 20 * time.Second

func (r *recorder) waitFor(t testing.TB, what string, pred func([]source.Event) bool) []source.Event {
	t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for {
		evs := r.events()
		if pred(evs) {
			return evs
		}
		select {
		case <-r.wake:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s; got %d events:\n%s", what, len(evs), dump(evs))
		}
	}
}

// waitPath waits for an event on rel matching pred and returns its position.
func (r *recorder) waitPath(t testing.TB, rel string, pred func(source.Event) bool) int {
	t.Helper()
	pos := -1
	r.waitFor(t, "an event on "+rel, func(evs []source.Event) bool {
		for i, ev := range evs {
			if ev.Path == rel && (pred == nil || pred(ev)) {
				pos = i
				return true
			}
		}
		return false
	})
	return pos
}

func dump(evs []source.Event) string {
	var b strings.Builder
	for i, ev := range evs {
		if i == 60 {
			fmt.Fprintf(&b, "... %d more\n", len(evs)-i)
			break
		}
		fmt.Fprintf(&b, "  %s\n", fmtEvent(ev))
	}
	return b.String()
}

func fmtEvent(ev source.Event) string {
	var f []string
	for _, x := range []struct {
		bit  uint32
		name string
	}{{fsbatch.FlagDelete, "del"}, {fsbatch.FlagDir, "dir"}, {fsbatch.FlagPartialWrite, "partial"}} {
		if ev.Flags&x.bit != 0 {
			f = append(f, x.name)
		}
	}
	return fmt.Sprintf("%v %q [%s] size=%d", ev.Origin, ev.Path, strings.Join(f, ","), ev.Size)
}

func isPartial(ev source.Event) bool { return ev.Flags&fsbatch.FlagPartialWrite != 0 }
func isDelete(ev source.Event) bool  { return ev.Flags&fsbatch.FlagDelete != 0 }
func isUpsert(ev source.Event) bool  { return ev.Flags&fsbatch.FlagDelete == 0 }
