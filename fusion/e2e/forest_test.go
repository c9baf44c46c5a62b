package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// forestCluster is one Fusion with three storages: each has its own agent and pipe (s1..s3,
// keys ingest-1..3), feeding its own fs view (fs1..fs3) and one forest view "all" whose
// members are labelled storage-1..3 (DESIGN.md §6). Storage 3's agent watches a client mount
// of it, so a blind host can write into it unseen (or, without FUSE, runs without realtime).
type forestCluster struct {
	t           *testing.T
	bin, addr   string
	cfgDir      string
	storages    [3]string // what each member must equal
	roots       [3]string // what each agent watches
	realtime    [3]bool
	blind       string // where a blind host writes into storage 3
	fusion      *proc
	agents      [3]*proc
	agentsAlive [3]bool
}

func newForestCluster(t *testing.T) *forestCluster {
	f := &forestCluster{t: t, bin: binaries(t, true), addr: freePort(t), cfgDir: t.TempDir()}
	for i := range f.storages {
		f.storages[i] = filepath.Join(t.TempDir(), fmt.Sprintf("storage-%d", i+1))
		must(t, os.MkdirAll(filepath.Join(f.storages[i], "base"), 0o755))
		must(t, os.WriteFile(filepath.Join(f.storages[i], "base", "README"), []byte("storage"), 0o644))
		f.roots[i], f.realtime[i] = f.storages[i], true
	}
	f.roots[2], f.blind, f.realtime[2] = mountClients(t, f.storages[2])
	var keys, pipes, views, members strings.Builder
	for i := 1; i <= 3; i++ {
		fmt.Fprintf(&keys, "      - {key: ingest-%d, pipe: s%d}\n", i, i)
		fmt.Fprintf(&pipes, "  s%d: {receiver: default, views: [fs%d, all], session_timeout: 3s}\n", i, i)
		fmt.Fprintf(&views, "  fs%d: {driver: fs, live: true, query_keys: [query-key]}\n", i)
		fmt.Fprintf(&members, "s%d: storage-%d, ", i, i)
	}
	cfg := fmt.Sprintf(`server: {listen: %s, admin_keys: [admin-key], shutdown_timeout: 2s}
log: {level: debug}
receivers:
  default:
    api_keys:
%spipes:
%sviews:
%s  all: {driver: forest-fs, live: true, query_keys: [query-key], members: {%s}}
`, f.addr, keys.String(), pipes.String(), views.String(), strings.TrimSuffix(members.String(), ", "))
	must(t, os.WriteFile(filepath.Join(f.cfgDir, "fusion.yaml"), []byte(cfg), 0o644))
	for i := range 3 {
		agent := fmt.Sprintf(`agent_id: forest-agent-%d
log: {level: debug}
sources:
  data: {root: %s, modify_throttle: 200ms, disable_realtime: %v}
senders:
  fusion: {address: %s, api_key: ingest-%d}
pipes:
  main: {source: data, sender: fusion, batch_size: 500, backoff_min: 100ms, backoff_max: 500ms, audit_interval: 1s, audit_deep_every: 0}
`, i+1, f.roots[i], !f.realtime[i], f.addr, i+1)
		must(t, os.WriteFile(filepath.Join(f.cfgDir, fmt.Sprintf("agent-%d.yaml", i+1)), []byte(agent), 0o644))
	}
	return f
}

func (f *forestCluster) start() {
	f.fusion = startProc(f.t, filepath.Join(f.bin, "fustor-fusion"), "--config", filepath.Join(f.cfgDir, "fusion.yaml"))
	for i := range 3 {
		f.startAgent(i)
	}
}

func (f *forestCluster) startAgent(i int) {
	f.agents[i] = startProc(f.t, filepath.Join(f.bin, "fustor-agent"), "--config", filepath.Join(f.cfgDir, fmt.Sprintf("agent-%d.yaml", i+1)))
}

// member is storage i's member of the forest as a cluster, for the view checks.
func (f *forestCluster) member(i int) *cluster {
	return &cluster{t: f.t, bin: f.bin, addr: f.addr, root: f.roots[i], storage: f.storages[i], view: "all", member: fmt.Sprintf("storage-%d", i+1)}
}

// fsView is storage i's own fs view as a cluster.
func (f *forestCluster) fsView(i int) *cluster {
	return &cluster{t: f.t, bin: f.bin, addr: f.addr, root: f.roots[i], storage: f.storages[i], view: fmt.Sprintf("fs%d", i+1)}
}

// forest is the forest view asked without a member.
func (f *forestCluster) forest() *cluster {
	return &cluster{t: f.t, bin: f.bin, addr: f.addr, view: "all"}
}

// writeSubmission writes n files of size bytes under sub/<name> of storage i, through the
// agent's own root (seen in real time).
func (f *forestCluster) writeSubmission(i int, name string, n, size int) {
	dir := filepath.Join(f.roots[i], "sub", name)
	must(f.t, os.MkdirAll(dir, 0o755))
	for k := range n {
		must(f.t, os.WriteFile(filepath.Join(dir, fmt.Sprintf("part-%03d.dat", k)), make([]byte, size), 0o644))
	}
}

// whereMembers runs fustorctl where and returns, per member of the view "all", its entry of
// the JSON document.
func (f *forestCluster) whereMembers(args ...string) (map[string]map[string]any, error) {
	doc, err := f.forest().ctl(append([]string{"where"}, args...)...)
	if err != nil {
		return nil, err
	}
	out := map[string]map[string]any{}
	views, _ := doc["views"].([]any)
	for _, v := range views {
		vm, _ := v.(map[string]any)
		if vm["view"] != "all" {
			continue
		}
		ms, _ := vm["members"].([]any)
		for _, m := range ms {
			mm, _ := m.(map[string]any)
			name, _ := mm["member"].(string)
			out[name] = mm
		}
	}
	return out, nil
}

// metaMembers returns the forest's member states from a stats answer, by member.
func metaMembers(doc map[string]any) map[string]map[string]any {
	out := map[string]map[string]any{}
	meta, _ := doc["meta"].(map[string]any)
	ms, _ := meta["members"].([]any)
	for _, m := range ms {
		mm, _ := m.(map[string]any)
		name, _ := mm["member"].(string)
		out[name] = mm
	}
	return out
}

func (f *forestCluster) waitEqual(within time.Duration) {
	for i := range 3 {
		f.member(i).waitViewEqualsTree(within, "/")
		f.fsView(i).waitViewEqualsTree(within, "/")
	}
}

// TestForestOfThreeStorages: one submission written to storages 1 and 3 in full and half of it
// to storage 2. "Where did it land?" names all three with the right counts, the best copy by
// size is storage 3's, a storage whose agent dies is reported unavailable with the reason while
// the others answer, it comes back, and a blind write into storage 3 is a blind spot of that
// member only. Each member and each storage's own fs view equals its storage throughout.
func TestForestOfThreeStorages(t *testing.T) {
	f := newForestCluster(t)
	f.start()
	f.waitEqual(60 * time.Second)

	const sub = "submission-0042"
	f.writeSubmission(0, sub, 100, 1000)
	f.writeSubmission(1, sub, 50, 1000)
	f.writeSubmission(2, sub, 100, 2000)
	f.waitEqual(60 * time.Second)

	eventually(t, 30*time.Second, "where names every storage with its count", func() error {
		dirs, err := f.whereMembers(sub)
		if err != nil {
			return err
		}
		files, err := f.whereMembers("part-*.dat", "--limit", "1000")
		if err != nil {
			return err
		}
		for i, want := range []uint64{100, 50, 100} {
			m := fmt.Sprintf("storage-%d", i+1)
			if num(dirs[m]["matches"]) != 1 || num(files[m]["matches"]) != want {
				return fmt.Errorf("%s: %v directory matches, %v files (want 1, %d)", m, dirs[m]["matches"], files[m]["matches"], want)
			}
		}
		if size := num(files["storage-3"]["totalSize"]); size != 200_000 {
			return fmt.Errorf("storage-3 matched %d bytes; want 200000", size)
		}
		return nil
	})
	stats, err := f.forest().ctl("stats", "/sub/"+sub, "--best", "total_size")
	must(t, err)
	if stats["best"] != "storage-3" || num(stats["fileCount"]) != 250 {
		t.Fatalf("stats --best total_size: best %v (%v), %v files", stats["best"], stats["bestReason"], stats["fileCount"])
	}
	stats, err = f.forest().ctl("stats", "/sub/"+sub)
	must(t, err)
	if stats["best"] != "storage-1" {
		t.Fatalf("stats by file count: best %v (%v); want storage-1 (a tie with storage-3, first by name)", stats["best"], stats["bestReason"])
	}

	// Storage 2's agent dies: its member keeps answering from the tree it kept, flagged stale
	// with the reason (DESIGN.md §5.1); 1 and 3 answer as before.
	f.agents[1].stop(t, syscall.SIGKILL)
	eventually(t, 30*time.Second, "storage-2 reported stale", func() error {
		members, err := f.whereMembers(sub)
		if err != nil {
			return err
		}
		s2 := members["storage-2"]
		if s2["stale"] != true || !strings.Contains(fmt.Sprint(s2["reason"]), "storage-2") {
			return fmt.Errorf("storage-2: %v", s2)
		}
		if num(members["storage-1"]["matches"]) != 1 || num(members["storage-3"]["matches"]) != 1 {
			return fmt.Errorf("the other members stopped answering: %v", members)
		}
		return nil
	})
	if doc, err := f.member(1).ctl("stat", "/"); err != nil || doc["meta"].(map[string]any)["stale"] != true {
		t.Fatalf("storage-2 asked alone while its agent is gone: %v, %v; want an answer flagged stale", doc, err)
	}
	f.startAgent(1)
	f.member(1).waitViewEqualsTree(60*time.Second, "/")
	eventually(t, 30*time.Second, "storage-2 fresh again", func() error {
		doc, err := f.forest().ctl("stats", "/")
		if err != nil {
			return err
		}
		if s2 := metaMembers(doc)["storage-2"]; s2["ready"] != true || s2["stale"] == true {
			return fmt.Errorf("storage-2: %v", s2)
		}
		return nil
	})

	// A blind write into storage 3 (another client of the storage, or an agent without
	// realtime): an audit finds it, and only storage-3 has a blind spot.
	must(t, os.MkdirAll(filepath.Join(f.blind, "sub", "blind-drop"), 0o755))
	must(t, os.WriteFile(filepath.Join(f.blind, "sub", "blind-drop", "x.dat"), []byte("written by another client"), 0o644))
	f.member(2).waitViewEqualsTree(60*time.Second, "/")
	eventually(t, 30*time.Second, "the blind write is storage-3's blind spot only", func() error {
		doc, err := f.forest().ctl("stats", "/")
		if err != nil {
			return err
		}
		ms := metaMembers(doc)
		if ms["storage-3"]["hasBlindSpot"] != true || ms["storage-1"]["hasBlindSpot"] == true || ms["storage-2"]["hasBlindSpot"] == true {
			return fmt.Errorf("blind spots: %v", ms)
		}
		bs, err := f.member(2).ctl("blind-spots", "/")
		if err != nil {
			return err
		}
		if !strings.Contains(fmt.Sprint(bs["additions"]), "/sub/blind-drop/x.dat") {
			return fmt.Errorf("storage-3 blind spots: %v", bs)
		}
		return nil
	})
	f.waitEqual(30 * time.Second)
}

// TestRedundantAgentsFeedOneView: two agents on one storage, each through its own pipe, feed
// one fs view; one leads, and when it dies the other takes over and the view keeps equal to
// the storage.
func TestRedundantAgentsFeedOneView(t *testing.T) {
	bin, addr, cfgDir := binaries(t, true), freePort(t), t.TempDir()
	root := makeTree(t)
	cfg := fmt.Sprintf(`server: {listen: %s, admin_keys: [admin-key], shutdown_timeout: 2s}
log: {level: debug}
receivers:
  default:
    api_keys:
      - {key: ingest-a, pipe: a}
      - {key: ingest-b, pipe: b}
pipes:
  a: {receiver: default, views: [files], session_timeout: 3s}
  b: {receiver: default, views: [files], session_timeout: 3s}
views:
  files: {driver: fs, live: true, query_keys: [query-key]}
`, addr)
	must(t, os.WriteFile(filepath.Join(cfgDir, "fusion.yaml"), []byte(cfg), 0o644))
	agents := make([]*proc, 2)
	for _, id := range []string{"a", "b"} {
		agent := fmt.Sprintf(`agent_id: agent-%s
log: {level: debug}
sources:
  data: {root: %s, modify_throttle: 200ms}
senders:
  fusion: {address: %s, api_key: ingest-%s}
pipes:
  main: {source: data, sender: fusion, batch_size: 500, backoff_min: 100ms, backoff_max: 500ms, audit_interval: 1s}
`, id, root, addr, id)
		must(t, os.WriteFile(filepath.Join(cfgDir, "agent-"+id+".yaml"), []byte(agent), 0o644))
	}
	c := &cluster{t: t, bin: bin, addr: addr, root: root, cfgDir: cfgDir}
	c.fusion = startProc(t, filepath.Join(bin, "fustor-fusion"), "--config", filepath.Join(cfgDir, "fusion.yaml"))
	agents[0] = startProc(t, filepath.Join(bin, "fustor-agent"), "--config", filepath.Join(cfgDir, "agent-a.yaml"))
	c.waitViewEqualsTree(60*time.Second, "/")
	agents[1] = startProc(t, filepath.Join(bin, "fustor-agent"), "--config", filepath.Join(cfgDir, "agent-b.yaml"))
	eventually(t, 30*time.Second, "two sessions on two pipes, one leader", func() error {
		ss, err := c.sessions()
		if err != nil {
			return err
		}
		leaders, pipes := 0, map[string]bool{}
		for _, s := range ss {
			pipes[s.Pipe] = true
			if s.Role == "ROLE_LEADER" {
				leaders++
			}
		}
		if len(ss) != 2 || leaders != 1 || !pipes["a"] || !pipes["b"] {
			return fmt.Errorf("sessions %+v", ss)
		}
		return nil
	})
	agents[0].stop(t, syscall.SIGKILL)
	must(t, os.WriteFile(filepath.Join(root, "after-failover.dat"), []byte("seen by agent b"), 0o644))
	eventually(t, 30*time.Second, "agent b leads the view", func() error {
		ss, err := c.sessions()
		if err != nil {
			return err
		}
		if len(ss) != 1 || ss[0].Pipe != "b" || ss[0].Role != "ROLE_LEADER" {
			return fmt.Errorf("sessions %+v", ss)
		}
		return nil
	})
	c.waitViewEqualsTree(60*time.Second, "/")
	c.requireVerifyClean("/")
}
