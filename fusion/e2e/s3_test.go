package e2e

import (
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// s3Server is fustor-s3d, a real S3-protocol server (gofakes3 over a sorted in-memory store),
// as a process of its own: its listings cost neither the race detector nor this process's
// CPU. The agent talks to its endpoint (addr), which an outage leaves; the test changes and
// lists the bucket through its admin endpoint, which stays up. LastModified comes from a
// clock that advances 1 ms per put, so every object's mtime is its own.
type s3Server struct {
	t           testing.TB
	proc        *proc
	addr, admin string
	hc          *http.Client
}

const s3Bucket = "data"

// newS3Server starts fustor-s3d with a bucket of seed generated objects (s3d's Store.Seed:
// object i is t<i%10>/m<i/10%10>/l<i/100%10>/obj-<i>.dat, i%4096 bytes).
func newS3Server(t testing.TB, seed int) *s3Server {
	t.Helper()
	p := startProc(t, filepath.Join(toolBinaries(t), "fustor-s3d"), "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
		"--bucket", s3Bucket, "--seed", strconv.Itoa(seed), "--access-key", "e2e", "--secret-key", "e2e-secret")
	s := &s3Server{t: t, proc: p, hc: &http.Client{Timeout: 30 * time.Second}}
	line := s.waitLog("listening addr=", 1)
	for f := range strings.FieldsSeq(line) {
		if v, ok := strings.CutPrefix(f, "addr="); ok {
			s.addr = v
		}
		if v, ok := strings.CutPrefix(f, "admin_addr="); ok {
			s.admin = v
		}
	}
	t.Cleanup(s.hc.CloseIdleConnections)
	return s
}

// waitLog waits for the n-th log line of the server holding what, and returns it.
func (s *s3Server) waitLog(what string, n int) string {
	s.t.Helper()
	var line string
	eventually(s.t, 60*time.Second, "fustor-s3d logs "+what, func() error {
		s.proc.mu.Lock()
		log := s.proc.log.String()
		s.proc.mu.Unlock()
		seen := 0
		for l := range strings.Lines(log) {
			if strings.Contains(l, what) {
				if seen++; seen == n {
					line = strings.TrimSpace(l)
					return nil
				}
			}
		}
		select {
		case <-s.proc.done:
			s.t.Fatalf("fustor-s3d exited: %s", log)
		default:
		}
		time.Sleep(20 * time.Millisecond)
		return errNotYet
	})
	return line
}

// stop leaves the agent's endpoint: its connections are closed, new ones refused.
func (s *s3Server) stop() {
	s.t.Helper()
	must(s.t, s.proc.cmd.Process.Signal(syscall.SIGUSR1))
	s.waitLog("down addr="+s.addr, 1)
}

// start takes the endpoint's address back, the data as it was.
func (s *s3Server) start() {
	s.t.Helper()
	must(s.t, s.proc.cmd.Process.Signal(syscall.SIGUSR2))
	s.waitLog("up addr="+s.addr, 1)
}

// do sends one S3 request to the admin endpoint (which checks no credentials; the agent's
// endpoint checks its access key and Signature V4) and fails the test unless it answers with
// a 2xx status.
func (s *s3Server) do(method, key string, query url.Values, body string) []byte {
	s.t.Helper()
	u := url.URL{Scheme: "http", Host: s.admin, Path: "/" + s3Bucket + "/" + key, RawQuery: query.Encode()}
	req, err := http.NewRequest(method, u.String(), strings.NewReader(body))
	must(s.t, err)
	resp, err := s.hc.Do(req)
	must(s.t, err)
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	must(s.t, err)
	if resp.StatusCode/100 != 2 {
		s.t.Fatalf("s3 %s %s: %s: %s", method, key, resp.Status, out)
	}
	return out
}

func (s *s3Server) put(key string, size int) {
	s.t.Helper()
	s.do(http.MethodPut, key, nil, strings.Repeat("x", size))
}

func (s *s3Server) del(key string) {
	s.t.Helper()
	s.do(http.MethodDelete, key, nil, "")
}

// listPage is what the test reads of a ListObjectsV2 page.
type listPage struct {
	Contents []struct {
		Key          string
		LastModified string
		Size         int64
	}
	IsTruncated           bool
	NextContinuationToken string
}

// tree is the bucket's listing over S3 as the fs view must show it: every object a file (size,
// LastModified), every prefix on the way a directory.
func (s *s3Server) tree() map[string]node {
	s.t.Helper()
	out := map[string]node{}
	q := url.Values{"list-type": {"2"}, "max-keys": {"1000"}}
	for {
		var page listPage
		must(s.t, xml.Unmarshal(s.do(http.MethodGet, "", q, ""), &page))
		for _, o := range page.Contents {
			mt, err := time.Parse(time.RFC3339Nano, o.LastModified)
			must(s.t, err)
			p := "/" + o.Key
			// LastModified as S3 lists it: millisecond precision.
			out[p] = node{size: uint64(o.Size), mtime: mt.Truncate(time.Millisecond)}
			for d := filepath.Dir(p); d != "/"; d = filepath.Dir(d) {
				out[d] = node{dir: true}
			}
		}
		if !page.IsTruncated {
			return out
		}
		q.Set("continuation-token", page.NextContinuationToken)
	}
}

// compareTrees reports how view differs from want (files: type, size, mtime).
func compareTrees(want, view map[string]node) error {
	return compareMaps("view", "listing", "paths", want, view, func(v, r node) bool {
		return v.dir == r.dir && (r.dir || v.size == r.size && v.mtime.Equal(r.mtime))
	})
}

// compareMaps reports how got (what the view holds) differs from want (what the storage
// holds): the keys missing from it, extra in it, and those whose values differ (same false),
// the first three of each.
func compareMaps[V any](gotName, wantName, what string, want, got map[string]V, same func(got, want V) bool) error {
	var missing, extra, different []string
	for k, w := range want {
		g, ok := got[k]
		switch {
		case !ok:
			missing = append(missing, k)
		case !same(g, w):
			different = append(different, fmt.Sprintf("%s: %s %v, %s %v", k, gotName, g, wantName, w))
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			extra = append(extra, k)
		}
	}
	if len(missing)+len(extra)+len(different) == 0 {
		return nil
	}
	sort.Strings(missing)
	sort.Strings(extra)
	sort.Strings(different)
	first := func(s []string) []string { return s[:min(len(s), 3)] }
	return fmt.Errorf("%s differs from the %s (%d %s in the %s, %d in the %s): %d missing %v, %d extra %v, %d different %v",
		gotName, wantName, len(want), what, wantName, len(got), gotName, len(missing), first(missing), len(extra), first(extra), len(different), first(different))
}

// listingTimes is how long the agent's completed listings took, from its debug log: "n
// listings, min–max".
func listingTimes(p *proc) string {
	p.mu.Lock()
	log := p.log.String()
	p.mu.Unlock()
	var ds []time.Duration
	for l := range strings.Lines(log) {
		if !strings.Contains(l, "s3 listing done") {
			continue
		}
		_, v, ok := strings.Cut(l, `"took": "`)
		if !ok {
			continue
		}
		v, _, _ = strings.Cut(v, `"`)
		if d, err := time.ParseDuration(v); err == nil {
			ds = append(ds, d)
		}
	}
	if len(ds) == 0 {
		return "none logged"
	}
	return fmt.Sprintf("%d listings, %v–%v", len(ds), slices.Min(ds).Round(time.Millisecond), slices.Max(ds).Round(time.Millisecond))
}

// s3AgentSource is the agent's s3 source settings for srv.
func s3AgentSource(srv *s3Server, interval string) string {
	return fmt.Sprintf(`{driver: s3, scan_workers: 4, s3: {endpoint: "http://%s", bucket: %s, region: us-east-1, path_style: true, access_key: e2e, secret_key: e2e-secret, list_interval: %s, backoff_max: 4s, max_retries: 2}}`,
		srv.addr, s3Bucket, interval)
}

// s3Objects is how many objects TestS3SourceFeedsView starts with: FUSTOR_E2E_S3_OBJECTS, by
// default the 100,000 (docs/benchmarks.md has the runs).
func s3Objects(t *testing.T) int {
	if v := os.Getenv("FUSTOR_E2E_S3_OBJECTS"); v != "" {
		n, err := strconv.Atoi(v)
		must(t, err)
		return n
	}
	return 100_000
}

// TestS3SourceFeedsView: an agent's s3 source feeds an fs view. A bucket of s3Objects objects
// under nested prefixes (10 × 10 × 10 directories) gives a view whose tree equals the
// listing — keys, sizes, mtimes; objects added, overwritten and deleted show within a listing
// cycle, the deletes as blind-spot deletions; with the server gone for 30 s the agent backs
// off while its heartbeats keep the session (reporting can_realtime=false), and converges once
// the server is back.
func TestS3SourceFeedsView(t *testing.T) {
	n := s3Objects(t)
	srv := newS3Server(t, n)
	c := newCluster(t, t.TempDir())
	// A session outlives a few late heartbeats on a loaded machine (race-built daemons busy
	// applying a listing); the 30 s outage is still longer, so an unchanged session proves the
	// heartbeats went on.
	c.sessionTimeout = "20s"
	// A tree of 100,000 paths from race-built daemons on a loaded machine can outlast
	// fustorctl's 10 s default deadline (harness: 30 s per call).
	c.ctlFlags = []string{"--timeout", "25s"}
	c.writeConfigs()
	interval := 2 * time.Second
	agentCfg := fmt.Sprintf(`agent_id: e2e-agent
log: {level: debug}
sources:
  bucket: %s
senders:
  fusion: {address: %s, api_key: ingest-key}
pipes:
  main: {source: bucket, sender: fusion, batch_size: 1000, backoff_min: 100ms, backoff_max: 500ms, audit_interval: 1h, overflow_audit_delay: 0s}
`, s3AgentSource(srv, interval.String()), c.addr)
	must(t, os.WriteFile(filepath.Join(c.cfgDir, "agent.yaml"), []byte(agentCfg), 0o644))
	c.startFusion()
	start := time.Now()
	c.startAgent()
	// waitEqual waits until the view equals the bucket's listing and returns how long that
	// took and when the view's counts first matched it (the change was visible: the tree
	// compared after that costs the test, not the view). Only the test changes the bucket,
	// so one listing serves the whole wait.
	waitEqual := func(within time.Duration, what string) (equal, counted time.Duration) {
		t.Helper()
		t0 := time.Now()
		want := srv.tree()
		var files, size uint64
		for _, n := range want {
			if !n.dir {
				files, size = files+1, size+n.size
			}
		}
		eventually(t, within, what, func() error {
			// Counts and sizes first: a tree of the whole view is not cheap.
			doc, err := c.statsOf("/")
			if err != nil {
				return err
			}
			if num(doc["fileCount"]) != files || num(doc["totalSize"]) != size {
				time.Sleep(200 * time.Millisecond)
				return fmt.Errorf("view has %v files of %v bytes, listing %d of %d", doc["fileCount"], doc["totalSize"], files, size)
			}
			if counted == 0 {
				counted = time.Since(t0)
			}
			view, err := c.viewTree("/")
			if err != nil {
				return err
			}
			if err := compareTrees(want, view); err != nil {
				time.Sleep(time.Second)
				return err
			}
			return nil
		})
		return time.Since(t0), counted
	}
	_, counted := waitEqual(5*time.Minute, fmt.Sprintf("view equals a bucket of %d objects", n))
	first := time.Since(start)
	t.Logf("%d objects: view equals the listing %v after the agent started (its counts at %v; the agent's listings took %s)",
		n, first.Round(time.Millisecond), counted.Round(time.Millisecond), listingTimes(c.agent))
	// A change shows after at most a list_interval and one listing, a delete after the audit
	// that listing asks for (it resends that listing: no second one). A listing takes about as
	// long as the snapshot did — with race-built binaries on a shared machine, tens of seconds
	// for 100k objects — hence the bound.
	cycle := interval + 2*first

	// Changes: added (in a new prefix too), overwritten (new size and LastModified), deleted.
	srv.put("t1/m1/l1/added.dat", 10)
	srv.put("new/prefix/added.dat", 11)
	srv.put("t2/m2/l2/obj-000222.dat", 7777)
	deleted := []string{"t3/m3/l3/obj-000333.dat", "t4/m4/l4/obj-000444.dat"}
	for _, k := range deleted {
		srv.del(k)
	}
	took, counted := waitEqual(cycle, "view shows the added, overwritten and deleted objects")
	t.Logf("added, overwritten and deleted objects visible %v later, the tree equal after %v (list_interval %v; the agent's listings took %s)",
		counted.Round(time.Millisecond), took.Round(time.Millisecond), interval, listingTimes(c.agent))
	eventually(t, 10*time.Second, "the deletes are blind-spot deletions", func() error {
		doc, err := c.ctl("blind-spots", "/")
		if err != nil {
			return err
		}
		dels := fmt.Sprint(doc["deletions"])
		for _, k := range deleted {
			if !strings.Contains(dels, "/"+k) {
				return fmt.Errorf("%s not among the deletions %s", k, dels)
			}
		}
		return nil
	})

	// Outage: the server leaves its port for 30 s, while objects change.
	before, err := c.sessionOf("e2e-agent")
	must(t, err)
	// listingFailures is the agent's count of failed listings, as its last heartbeat said.
	listingFailures := func() (uint64, error) {
		_, counters, err := c.agentProgress()
		if err != nil {
			return 0, err
		}
		return num(counters["s3_listing_failures"]), nil
	}
	failedBefore, err := listingFailures()
	must(t, err)
	srv.stop()
	down := time.Now()
	srv.put("during/outage.dat", 5)
	srv.del("t5/m5/l5/obj-000555.dat")
	eventually(t, 25*time.Second, "failed listings reported by heartbeats", func() error {
		s, err := c.sessionOf("e2e-agent")
		if err != nil {
			return err
		}
		if s.ID != before.ID {
			return fmt.Errorf("session changed from %s to %s: heartbeats stopped", before.ID, s.ID)
		}
		n, err := listingFailures()
		if err != nil {
			return err
		}
		if n < failedBefore+2 || s.CanRealtime {
			time.Sleep(200 * time.Millisecond)
			return fmt.Errorf("%d failed listings, can_realtime %v", n-failedBefore, s.CanRealtime)
		}
		return nil
	})
	time.Sleep(30*time.Second - time.Since(down)) // the rest of the outage: nothing to poll for
	during, err := c.sessionOf("e2e-agent")
	must(t, err)
	if during.ID != before.ID {
		t.Fatalf("session changed during the outage (%s → %s): heartbeats stopped", before.ID, during.ID)
	}
	failed, err := listingFailures()
	must(t, err)
	t.Logf("after 30 s down: same session, heartbeats on, %d failed listings (backoff doubling from 2s to 4s)", failed-failedBefore)
	srv.start()
	back, counted := waitEqual(4*time.Second+cycle, "view converges after the outage")
	t.Logf("converged %v after the server returned, the tree equal after %v (backoff_max 4s; the agent's listings took %s)",
		counted.Round(time.Millisecond), back.Round(time.Millisecond), listingTimes(c.agent))
	eventually(t, 30*time.Second, "realtime reported back", func() error {
		after, err := c.sessionOf("e2e-agent")
		if err != nil {
			return err
		}
		if after.ID != before.ID {
			t.Fatalf("session changed across the outage: %s → %s", before.ID, after.ID)
		}
		if !after.CanRealtime {
			time.Sleep(200 * time.Millisecond)
			return errNotYet
		}
		return nil
	})
}

// TestS3SourceInForest: one agent feeds a forest view from an s3 source and an fs directory,
// each through its own pipe (member); each member equals its storage.
func TestS3SourceInForest(t *testing.T) {
	srv := newS3Server(t, 0)
	for i := range 300 {
		srv.put(fmt.Sprintf("sub/s3-%d/part-%03d.dat", i%3, i), 100+i)
	}
	dir := t.TempDir()
	writeTree(t, dir)
	bin := binaries(t, true)
	addr := freePort(t)
	cfgDir := t.TempDir()
	fusionCfg := fmt.Sprintf(`server: {listen: %s, admin_keys: [admin-key], shutdown_timeout: 2s}
log: {level: debug}
receivers:
  default:
    api_keys:
      - {key: ingest-s3, pipe: objects}
      - {key: ingest-fs, pipe: disk}
pipes:
  objects: {receiver: default, views: [all], session_timeout: 3s}
  disk: {receiver: default, views: [all], session_timeout: 3s}
views:
  all: {driver: forest-fs, live: true, query_keys: [query-key], members: {objects: bucket, disk: nfs}}
`, addr)
	agentCfg := fmt.Sprintf(`agent_id: forest-s3
log: {level: debug}
sources:
  bucket: %s
  disk: {root: %s, modify_throttle: 200ms}
senders:
  s3side: {address: %s, api_key: ingest-s3}
  fsside: {address: %s, api_key: ingest-fs}
pipes:
  objects: {source: bucket, sender: s3side, backoff_min: 100ms, backoff_max: 500ms, audit_interval: 1h, overflow_audit_delay: 0s}
  disk: {source: disk, sender: fsside, backoff_min: 100ms, backoff_max: 500ms, audit_interval: 1s}
`, s3AgentSource(srv, "1s"), dir, addr, addr)
	must(t, os.WriteFile(filepath.Join(cfgDir, "fusion.yaml"), []byte(fusionCfg), 0o644))
	must(t, os.WriteFile(filepath.Join(cfgDir, "agent.yaml"), []byte(agentCfg), 0o644))
	startProc(t, filepath.Join(bin, "fustor-fusion"), "--config", filepath.Join(cfgDir, "fusion.yaml"))
	startProc(t, filepath.Join(bin, "fustor-agent"), "--config", filepath.Join(cfgDir, "agent.yaml"))
	bucket := &cluster{t: t, bin: bin, addr: addr, view: "all", member: "bucket"}
	disk := &cluster{t: t, bin: bin, addr: addr, root: dir, view: "all", member: "nfs"}
	memberEquals := func(what string) {
		t.Helper()
		eventually(t, 60*time.Second, what, func() error {
			view, err := bucket.viewTree("/")
			if err != nil {
				return err
			}
			if err := compareTrees(srv.tree(), view); err != nil {
				time.Sleep(100 * time.Millisecond)
				return fmt.Errorf("member bucket: %w", err)
			}
			if err := disk.viewEqualsTree("/"); err != nil {
				time.Sleep(100 * time.Millisecond)
				return fmt.Errorf("member nfs: %w", err)
			}
			return nil
		})
	}
	memberEquals("both members equal their storage")
	// The agent's endpoint checks the access key and Signature V4: an unsigned request is
	// refused there, so the agent's listings were signed with its keys.
	resp, err := srv.hc.Get("http://" + srv.addr + "/" + s3Bucket + "?list-type=2")
	must(t, err)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("unsigned listing on the agent's endpoint: %s, want 403 Forbidden", resp.Status)
	}
	srv.put("sub/s3-9/late.dat", 42)
	srv.del("sub/s3-0/part-000.dat")
	memberEquals("the bucket member follows the bucket")
	// Which storage holds late.dat: the forest finds it in the bucket's member only.
	ms, err := (&forestCluster{t: t, addr: addr, bin: bin}).whereMembers("late.dat")
	must(t, err)
	if num(ms["bucket"]["matches"]) != 1 || num(ms["nfs"]["matches"]) != 0 {
		t.Errorf("where late.dat: %v, want 1 match in bucket and none in nfs", ms)
	}
}
