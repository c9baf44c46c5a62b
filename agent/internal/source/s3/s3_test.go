package s3

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/fustor/fustor/agent/internal/source"
	"github.com/fustor/fustor/sdk/fsbatch"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeS3 is a real S3-protocol server (gofakes3, in memory) on a loopback port that can be
// stopped and started again on the same port. Objects get LastModified from a clock that
// advances one second per put, so mtimes differ and are known.
type fakeS3 struct {
	t       testing.TB
	backend *s3mem.Backend
	clock   gofakes3.TimeSourceAdvancer
	handler http.Handler
	addr    string
	// throttle answers this many requests with 503 SlowDown before serving again.
	throttle atomic.Int64

	mu  sync.Mutex
	srv *http.Server
}

const bucket = "data"

func newFakeS3(t testing.TB) *fakeS3 {
	t.Helper()
	clock := gofakes3.FixedTimeSource(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	b := s3mem.New(s3mem.WithTimeSource(clock))
	if err := b.CreateBucket(bucket); err != nil {
		t.Fatal(err)
	}
	f := &fakeS3{t: t, backend: b, clock: clock}
	h := gofakes3.New(b, gofakes3.WithTimeSource(clock), gofakes3.WithTimeSkewLimit(0)).Server()
	f.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f.throttle.Add(-1) >= 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>`)
			return
		}
		h.ServeHTTP(w, r)
	})
	f.start("127.0.0.1:0")
	t.Cleanup(f.stop)
	return f
}

func (f *fakeS3) start(addr string) {
	f.t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		f.t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.addr = l.Addr().String()
	f.srv = &http.Server{Handler: f.handler}
	go func() { _ = f.srv.Serve(l) }()
}

func (f *fakeS3) stop() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.srv != nil {
		_ = f.srv.Close()
		f.srv = nil
	}
}

// put stores key with body; its LastModified is the clock's now, then the clock advances.
func (f *fakeS3) put(key, body string) time.Time {
	f.t.Helper()
	at := f.clock.Now()
	if _, err := f.backend.PutObject(bucket, key, map[string]string{}, strings.NewReader(body), int64(len(body)), nil); err != nil {
		f.t.Fatal(err)
	}
	f.clock.Advance(time.Second)
	return at
}

func (f *fakeS3) del(key string) {
	f.t.Helper()
	if _, err := f.backend.DeleteObject(bucket, key); err != nil {
		f.t.Fatal(err)
	}
}

// newSource returns a source on f (prefix as given) whose connections are closed at the end.
func newSource(t testing.TB, f *fakeS3, prefix string, mod func(*Config)) *Source {
	t.Helper()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	cfg := Default()
	cfg.Endpoint, cfg.Bucket, cfg.Prefix, cfg.Region, cfg.PathStyle = "http://"+f.addr, bucket, prefix, "us-east-1", true
	cfg.AccessKey, cfg.SecretKey = "test", "testtest"
	cfg.ListInterval, cfg.BackoffMax, cfg.Transport = 10*time.Millisecond, 50*time.Millisecond, tr
	cfg.PageSize = 2 // several pages even for small trees
	if mod != nil {
		mod(&cfg)
	}
	log := zap.NewNop() // benchmarks: no per-listing debug lines
	if tt, ok := t.(*testing.T); ok {
		log = zaptest.NewLogger(tt)
	}
	s, err := New(log, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// row is what a test compares of an event.
type row struct {
	path  string
	dir   bool
	size  uint64
	mtime int64
}

func rowsOf(evs []source.Event) []row {
	out := make([]row, len(evs))
	for i, e := range evs {
		out[i] = row{e.Path, e.IsDir(), e.Size, e.MtimeNs}
	}
	return out
}

// collect walks s at rel and returns its events, checking that every directory came before
// what it holds and that events carry the origin asked for.
func collect(t *testing.T, s *Source, rel string, origin source.Origin) ([]source.Event, source.WalkStats) {
	t.Helper()
	var evs []source.Event
	st, err := s.Snapshot(context.Background(), rel, origin, func(b []source.Event) error {
		evs = append(evs, b...)
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", rel, err)
	}
	seen := map[string]bool{}
	for _, e := range evs {
		if e.Origin != origin {
			t.Errorf("%s: origin %v, want %v", e.Path, e.Origin, origin)
		}
		if e.Path != rel && !seen[parent(e.Path)] {
			t.Errorf("%s sent before its directory", e.Path)
		}
		if seen[e.Path] {
			t.Errorf("%s sent twice", e.Path)
		}
		seen[e.Path] = true
	}
	return evs, st
}

func sortRows(rs []row) []row {
	slices.SortFunc(rs, func(a, b row) int { return strings.Compare(a.path, b.path) })
	return rs
}

// TestSnapshotMapsKeys checks the mapping of keys to the fs schema, with and without a prefix.
func TestSnapshotMapsKeys(t *testing.T) {
	f := newFakeS3(t)
	mt := map[string]int64{}
	for _, k := range []string{"top.txt", "a/one.txt", "a/b/two.txt", "a/b/c/three.txt", "a/b-x.txt", "z/", "z/q/deep.bin", "bad//name.txt", "other/x.txt"} {
		mt[k] = f.put(k, strings.Repeat("x", len(k))).UnixNano()
	}
	tests := []struct {
		name, prefix, rel string
		want              []row
		files, invalid    uint64
	}{
		{name: "whole bucket", rel: "/", want: []row{
			{path: "/", dir: true}, {path: "/a", dir: true}, {path: "/a/b", dir: true}, {path: "/a/b/c", dir: true},
			{"/a/b/c/three.txt", false, 15, mt["a/b/c/three.txt"]}, {"/a/b/two.txt", false, 11, mt["a/b/two.txt"]},
			{"/a/b-x.txt", false, 9, mt["a/b-x.txt"]}, {"/a/one.txt", false, 9, mt["a/one.txt"]},
			{path: "/other", dir: true}, {"/other/x.txt", false, 11, mt["other/x.txt"]},
			{"/top.txt", false, 7, mt["top.txt"]}, {path: "/bad", dir: true}, // the prefix exists; its key is no path
			{path: "/z", dir: true}, {path: "/z/q", dir: true}, {"/z/q/deep.bin", false, 12, mt["z/q/deep.bin"]},
		}, files: 7, invalid: 1},
		{name: "prefix", prefix: "a/", rel: "/", want: []row{
			{path: "/", dir: true}, {path: "/b", dir: true}, {path: "/b/c", dir: true},
			{"/b/c/three.txt", false, 15, mt["a/b/c/three.txt"]}, {"/b/two.txt", false, 11, mt["a/b/two.txt"]},
			{"/b-x.txt", false, 9, mt["a/b-x.txt"]}, {"/one.txt", false, 9, mt["a/one.txt"]},
		}, files: 4},
		{name: "prefix without slash, subtree", prefix: "a", rel: "/b", want: []row{
			{path: "/b", dir: true}, {path: "/b/c", dir: true},
			{"/b/c/three.txt", false, 15, mt["a/b/c/three.txt"]}, {"/b/two.txt", false, 11, mt["a/b/two.txt"]},
		}, files: 2},
		{name: "one object", rel: "/a/one.txt", want: []row{{"/a/one.txt", false, 9, mt["a/one.txt"]}}, files: 1},
		{name: "nothing there", rel: "/nope"},
		{name: "empty prefix root", prefix: "nothing/", rel: "/", want: []row{{path: "/", dir: true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSource(t, f, tt.prefix, nil)
			evs, st := collect(t, s, tt.rel, source.OriginSnapshot)
			got := sortRows(rowsOf(evs))
			if !slices.Equal(got, sortRows(tt.want)) {
				t.Errorf("rows:\n got %v\nwant %v", got, tt.want)
			}
			if st.Files != tt.files {
				t.Errorf("files = %d, want %d", st.Files, tt.files)
			}
			if c := s.Counters()["skipped_invalid_name"]; c != tt.invalid {
				t.Errorf("skipped_invalid_name = %d, want %d", c, tt.invalid)
			}
		})
	}
}

// TestAuditListsEverything: an audit sends every directory in full (no audit_skipped flag),
// so Fusion can judge missing children, whatever the cache and options say.
func TestAuditListsEverything(t *testing.T) {
	f := newFakeS3(t)
	f.put("a/b/c.txt", "c")
	f.put("d.txt", "d")
	s := newSource(t, f, "", nil)
	var evs []source.Event
	_, err := s.Audit(context.Background(), source.NewAuditCache(), source.AuditOptions{}, func(b []source.Event) error {
		evs = append(evs, b...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, e := range evs {
		if e.Origin != source.OriginAudit || e.Flags&fsbatch.FlagAuditSkipped != 0 {
			t.Errorf("%s: origin %v flags %b", e.Path, e.Origin, e.Flags)
		}
		if e.IsDir() {
			dirs = append(dirs, e.Path)
		}
	}
	if want := []string{"/", "/a", "/a/b"}; !slices.Equal(dirs, want) {
		t.Errorf("directories %v, want %v", dirs, want)
	}
}

// watcher runs s.Watch and collects what it emits.
type watcher struct {
	mu     sync.Mutex
	evs    []source.Event
	audits atomic.Int32
	cancel context.CancelFunc
	done   chan error
}

func watch(t *testing.T, s *Source) *watcher {
	w := &watcher{done: make(chan error, 1)}
	s.SetOnOverflow(func() { w.audits.Add(1) })
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	go func() {
		w.done <- s.Watch(ctx, func(e source.Event) {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.evs = append(w.evs, e)
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-w.done; err != nil {
			t.Errorf("Watch: %v", err)
		}
	})
	return w
}

func (w *watcher) events() []source.Event {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.evs)
}

// waitFor polls cond (the watcher runs every 10 ms) for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestWatchSendsChangesAndAsksAuditForDeletes: after the baseline, objects added or
// overwritten come as realtime upserts with their new size and mtime; a delete is not sent but
// asks for an audit, and is counted.
func TestWatchSendsChangesAndAsksAuditForDeletes(t *testing.T) {
	f := newFakeS3(t)
	f.put("keep.txt", "k")
	f.put("d/old.txt", "o")
	f.put("d/gone.txt", "g")
	s := newSource(t, f, "", nil)
	w := watch(t, s)
	waitFor(t, "the baseline", func() bool { return s.Counters()["s3_listings"] >= 1 })
	newAt := f.put("d/e/new.txt", "new!")
	overAt := f.put("d/old.txt", "overwritten")
	f.del("d/gone.txt")
	waitFor(t, "the audit request", func() bool { return w.audits.Load() >= 1 })
	got := rowsOf(w.events())
	want := []row{{"/d/e/new.txt", false, 4, newAt.UnixNano()}, {"/d/old.txt", false, 11, overAt.UnixNano()}}
	if !slices.Equal(got, want) {
		t.Errorf("realtime rows %v, want %v", got, want)
	}
	for _, e := range w.events() {
		if e.Origin != source.OriginRealtime || e.Flags != 0 || e.Index == 0 {
			t.Errorf("%s: origin %v flags %b index %d", e.Path, e.Origin, e.Flags, e.Index)
		}
	}
	c := s.Counters()
	if c["s3_deletes_found"] != 1 || c["s3_changes_found"] != 2 {
		t.Errorf("counters %v: want 1 delete and 2 changes found", c)
	}
	// Nothing changes: later listings send nothing and ask nothing.
	n := c["s3_listings"]
	waitFor(t, "two more listings", func() bool { return s.Counters()["s3_listings"] >= n+2 })
	if len(w.events()) != 2 || w.audits.Load() != 1 {
		t.Errorf("quiet listings sent %d events and %d audit requests, want 2 and 1", len(w.events()), w.audits.Load())
	}
}

// TestWatchSurvivesOutage: with the server gone, listings fail and are retried with backoff;
// once it is back on the same port, what changed meanwhile is sent.
func TestWatchSurvivesOutage(t *testing.T) {
	f := newFakeS3(t)
	f.put("a.txt", "a")
	s := newSource(t, f, "", func(c *Config) { c.MaxRetries = 1 })
	w := watch(t, s)
	waitFor(t, "the baseline", func() bool { return s.Counters()["s3_listings"] >= 1 })
	addr := f.addr
	f.stop()
	waitFor(t, "failed listings", func() bool { return s.Counters()["s3_listing_failures"] >= 3 })
	if s.Realtime() {
		t.Error("realtime reported working while listings fail")
	}
	at := f.put("b.txt", "bb")
	f.start(addr)
	waitFor(t, "b.txt", func() bool { return len(w.events()) > 0 })
	if got, want := rowsOf(w.events()), []row{{"/b.txt", false, 2, at.UnixNano()}}; !slices.Equal(got, want) {
		t.Errorf("after the outage: %v, want %v", got, want)
	}
	waitFor(t, "realtime back", s.Realtime)
}

// TestThrottlingRetried: 503 SlowDown answers are retried by the client; the walk succeeds
// and the throttled requests are counted.
func TestThrottlingRetried(t *testing.T) {
	f := newFakeS3(t)
	f.put("a/x.txt", "x")
	s := newSource(t, f, "", nil)
	f.throttle.Store(3)
	evs, _ := collect(t, s, "/", source.OriginSnapshot)
	if len(evs) != 3 {
		t.Errorf("got %d events, want 3 (/, /a, /a/x.txt)", len(evs))
	}
	if c := s.Counters()["s3_throttled"]; c != 3 {
		t.Errorf("s3_throttled = %d, want 3", c)
	}
	// Throttled beyond the retries: the walk fails with the server's error.
	s1 := newSource(t, f, "", func(c *Config) { c.MaxRetries = 2 })
	f.throttle.Store(100)
	_, err := s1.Snapshot(context.Background(), "/", source.OriginSnapshot, func([]source.Event) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "reduce your request rate") {
		t.Errorf("walk while throttled: %v, want the SlowDown error", err)
	}
	f.throttle.Store(0)
}

// TestAdoptEarlierWalk: a snapshot that started before the watcher's baseline becomes the
// starting point, so a change made between the two is sent; one that started later does not.
func TestAdoptEarlierWalk(t *testing.T) {
	f := newFakeS3(t)
	f.put("a.txt", "a")
	s := newSource(t, f, "", nil)
	early := &listing{objs: map[string]obj{}, start: time.Now()}
	ctx := context.Background()
	var evs []source.Event
	emit := func(e source.Event) { evs = append(evs, e) }
	if err := s.cycle(ctx, emit); err != nil { // the baseline: a.txt
		t.Fatal(err)
	}
	s.adopt(&listing{objs: map[string]obj{}, start: time.Now()}) // later: ignored
	if err := s.cycle(ctx, emit); err != nil || len(evs) != 0 {
		t.Fatalf("after a later walk: %v, %d events", err, len(evs))
	}
	s.adopt(early) // but it started before the last listing: adopted
	s.mu.Lock()
	s.last = early
	s.mu.Unlock()
	if err := s.cycle(ctx, emit); err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].Path != "/a.txt" {
		t.Errorf("after adopting an earlier, empty walk: %v, want /a.txt", rowsOf(evs))
	}
}

// TestConfig covers the settings: endpoints, validation and the credential chain.
func TestConfig(t *testing.T) {
	eps := []struct {
		in, host string
		secure   bool
		err      bool
	}{
		{"s3.example:9000", "s3.example:9000", true, false},
		{"http://127.0.0.1:9000", "127.0.0.1:9000", false, false},
		{"https://oss-cn-hangzhou.aliyuncs.com", "oss-cn-hangzhou.aliyuncs.com", true, false},
		{"ftp://x", "", false, true},
		{"http://x/path", "", false, true},
	}
	for _, e := range eps {
		host, secure, err := endpoint(e.in)
		if (err != nil) != e.err || host != e.host || secure != e.secure {
			t.Errorf("endpoint(%q) = %q, %v, %v", e.in, host, secure, err)
		}
	}
	bad := []Config{{Bucket: "b", ListInterval: time.Second, BackoffMax: time.Second},
		{Endpoint: "e", Bucket: "b", ListInterval: time.Second, BackoffMax: time.Millisecond},
		{Endpoint: "e", Bucket: "b", ListInterval: time.Second, BackoffMax: time.Second, PageSize: 1001}}
	for _, c := range bad {
		if _, err := New(nil, c); err == nil {
			t.Errorf("New(%+v): no error", c)
		}
	}

	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	t.Setenv("AWS_ACCESS_KEY", "")
	t.Setenv("AWS_SECRET_KEY", "")
	t.Setenv("MINIO_ACCESS_KEY", "")
	t.Setenv("MINIO_SECRET_KEY", "")
	t.Setenv("MINIO_ROOT_USER", "")
	t.Setenv("MINIO_ROOT_PASSWORD", "")
	file := filepath.Join(t.TempDir(), "credentials")
	if err := os.WriteFile(file, []byte("[default]\naws_access_key_id = FILEDEF\naws_secret_access_key = s1\n[ci]\naws_access_key_id = FILECI\naws_secret_access_key = s2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	creds := []struct {
		name string
		cfg  Config
		env  map[string]string
		want string // access key id; "" = anonymous
	}{
		{"static", Config{AccessKey: "STATIC", SecretKey: "x", CredentialsFile: file}, map[string]string{"AWS_ACCESS_KEY_ID": "ENV", "AWS_SECRET_ACCESS_KEY": "y"}, "STATIC"},
		{"aws env", Config{CredentialsFile: file}, map[string]string{"AWS_ACCESS_KEY_ID": "ENV", "AWS_SECRET_ACCESS_KEY": "y"}, "ENV"},
		{"minio env", Config{}, map[string]string{"MINIO_ACCESS_KEY": "MENV", "MINIO_SECRET_KEY": "y"}, "MENV"},
		{"file default profile", Config{CredentialsFile: file}, nil, "FILEDEF"},
		{"file profile", Config{CredentialsFile: file, Profile: "ci"}, nil, "FILECI"},
		{"anonymous", Config{}, nil, ""},
	}
	for _, c := range creds {
		t.Run(c.name, func(t *testing.T) {
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			v, err := credentialsOf(c.cfg).Get()
			if err != nil && c.want != "" {
				t.Fatal(err)
			}
			if v.AccessKeyID != c.want {
				t.Errorf("access key %q, want %q", v.AccessKeyID, c.want)
			}
		})
	}
}

// errEmit stops a walk.
var errEmit = errors.New("emit refused")

// TestEmitErrorStopsWalk: an emit error ends the walk with it, workers and all.
func TestEmitErrorStopsWalk(t *testing.T) {
	f := newFakeS3(t)
	for i := range 20 {
		f.put(fmt.Sprintf("p%d/k%d", i%5, i), "x")
	}
	s := newSource(t, f, "", nil)
	_, err := s.Snapshot(context.Background(), "/", source.OriginSnapshot, func([]source.Event) error { return errEmit })
	if !errors.Is(err, errEmit) {
		t.Errorf("walk: %v, want %v", err, errEmit)
	}
}

// TestAuditFromFreshListing: the audit a listing's deletes ask for sends that listing (no
// request), without the deleted object and with every directory in full; a stale listing is
// listed again.
func TestAuditFromFreshListing(t *testing.T) {
	f := newFakeS3(t)
	f.put("a/keep.txt", "k")
	f.put("a/b/gone.txt", "g")
	s := newSource(t, f, "", func(c *Config) { c.ListInterval, c.BackoffMax = time.Hour, time.Hour })
	ctx := context.Background()
	audits := 0
	s.SetOnOverflow(func() { audits++ })
	emit := func(source.Event) {}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.cycle(ctx, emit))
	f.del("a/b/gone.txt")
	must(s.cycle(ctx, emit))
	if audits != 1 {
		t.Fatalf("%d audit requests after a delete, want 1", audits)
	}
	audit := func() []row {
		var evs []source.Event
		_, err := s.Audit(ctx, source.NewAuditCache(), source.AuditOptions{}, func(b []source.Event) error {
			evs = append(evs, b...)
			return nil
		})
		must(err)
		return rowsOf(evs)
	}
	req := s.Counters()["s3_requests"]
	got := audit()
	want := []row{{path: "/", dir: true}, {path: "/a", dir: true}, {"/a/keep.txt", false, 1, got[len(got)-1].mtime}}
	if !slices.Equal(got, want) {
		t.Errorf("audit rows %v, want %v", got, want)
	}
	if c := s.Counters(); c["s3_requests"] != req || c["s3_audits_from_listing"] != 1 {
		t.Errorf("audit from the listing sent %d requests (counters %v), want none", c["s3_requests"]-req, c)
	}
	// The listing ages past list_interval: the next audit lists.
	s.mu.Lock()
	s.last.done = time.Now().Add(-2 * time.Hour)
	s.mu.Unlock()
	audit()
	if c := s.Counters(); c["s3_requests"] == req || c["s3_audits_from_listing"] != 1 {
		t.Errorf("a stale listing was reused: counters %v", c)
	}
}

// TestExcludes: a pattern hides objects by basename or path, and a directory with what is
// under it; bad patterns are refused.
func TestExcludes(t *testing.T) {
	f := newFakeS3(t)
	for _, k := range []string{"a/keep.txt", "a/skip.tmp", "a/.snapshot/x.txt", "b/c/d.txt", "b/e.txt", ".snapshot/top.txt", ".snapshot/more.txt"} {
		f.put(k, "x")
	}
	s := newSource(t, f, "", func(c *Config) { c.Excludes = []string{"*.tmp", ".snapshot", "b/c"} })
	evs, _ := collect(t, s, "/", source.OriginSnapshot)
	var paths []string
	for _, e := range evs {
		paths = append(paths, e.Path)
	}
	slices.Sort(paths)
	if want := []string{"/", "/a", "/a/keep.txt", "/b", "/b/e.txt"}; !slices.Equal(paths, want) {
		t.Errorf("paths %v, want %v", paths, want)
	}
	// The top-level .snapshot/ is not even listed: one exclusion for it, not one per key.
	if c := s.Counters()["s3_excluded"]; c != 4 {
		t.Errorf("s3_excluded = %d, want 4", c)
	}
	cfg := Default()
	cfg.Endpoint, cfg.Bucket, cfg.Excludes = "e", "b", []string{"[a-"}
	if _, err := New(nil, cfg); err == nil || !strings.Contains(err.Error(), `exclude pattern "[a-"`) {
		t.Errorf("bad pattern: %v", err)
	}
}
