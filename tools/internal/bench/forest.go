package bench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
	"github.com/fustor/fustor/sdk/debughttp"
)

// The forest phase (F): --forest N agents walk the same tree, as if one storage were mounted N
// times, each with its own agent id and ingest key routed to its own pipe; the N pipes feed one
// forest view of N members, and member-1's pipe also feeds an fs view (fan-out), so a forest
// and a plain view of the same files are queried from the same Fusion in the same run.
const (
	forestView = "forest"
	// forestFSView is the fs view fed by member-1's pipe.
	forestFSView = "tree"
	// forestAuditInterval keeps the agents' periodic audits out of the phase: N agents
	// re-walking the tree would share the cores with the measured queries.
	forestAuditInterval = time.Hour
)

// Query names of the forest phase, also the keys of their figures.
const (
	qForestFind      = "forest_find_name"
	qForestFindFirst = "forest_find_name_first"
	qForestWhere     = "forest_where_submission"
	qForestStats     = "forest_stats_best"
	qForestFSStats   = "forest_fs_stats_root"
)

// forestPipe, forestMember and forestKey are member i's (1-based) pipe id, label and ingest key.
func forestPipe(i int) string   { return fmt.Sprintf("%s-%d", pipeName, i) }
func forestMember(i int) string { return fmt.Sprintf("member-%d", i) }
func forestKey(i int) string    { return fmt.Sprintf("%s-%d", ingestKey, i) }

// forestFusionConfig is the configuration of a Fusion with n pipes (one ingest key each)
// feeding a forest-fs view of n members labelled member-1..member-n, the first pipe also
// feeding an fs view.
func forestFusionConfig(addr, debug string, n int) string {
	var keys, pipes, members strings.Builder
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&keys, "      - {key: %s, pipe: %s}\n", forestKey(i), forestPipe(i))
		views := forestView
		if i == 1 {
			views = forestFSView + ", " + forestView
		}
		fmt.Fprintf(&pipes, "  %s: {receiver: default, views: [%s], session_timeout: 30s}\n", forestPipe(i), views)
		fmt.Fprintf(&members, "      %s: %s\n", forestPipe(i), forestMember(i))
	}
	return fmt.Sprintf(`server:
  listen: %s
  admin_keys: [%s]
  shutdown_timeout: 5s
  debug_listen: %s
  checkpoint_interval: -1s
log: {level: info, format: json}
receivers:
  default:
    api_keys:
%spipes:
%sviews:
  %s: {driver: fs, schema: fs, live: true, query_keys: [%s]}
  %s:
    driver: forest-fs
    schema: fs
    live: true
    query_keys: [%s]
    members:
%s`, addr, adminKey, debug, keys.String(), pipes.String(), forestFSView, queryKey, forestView, queryKey, members.String())
}

// forestAgentConfig is member i's agent: its own agent id, key and pipe, on the same root.
func forestAgentConfig(i int, root, addr string, auditShare float64) string {
	return agentConfig(fmt.Sprintf("fustor-bench-agent-%d", i), root, addr, forestKey(i), forestPipe(i), forestAuditInterval, auditShare)
}

// forest is the forest phase: start Fusion and the N agents, wait until every member and the
// fs view hold the tree, read the heap (F1), then measure the queries (F2, F3).
func (r *runner) forest(ctx context.Context) (err error) {
	n, t := r.o.Forest, r.tree
	fusion, err := launchFusion(ctx, r.o.Bin, r.logs, "fusion-forest", forestView,
		func(addr, debug string) string { return forestFusionConfig(addr, debug, n) })
	if err != nil {
		return err
	}
	defer func() {
		if cerr := fusion.close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	base, err := fusion.memStats(ctx)
	if err != nil {
		return err
	}
	fusionCPU0 := cpuTime(fusion.pid())
	start := time.Now()
	agents := make([]*proc, 0, n)
	defer func() {
		for _, a := range agents {
			if cerr := a.stop(15 * time.Second); cerr != nil && err == nil {
				err = cerr
			}
		}
	}()
	for i := 1; i <= n; i++ {
		a, err := launchAgent(r.o.Bin, r.logs, fmt.Sprintf("agent-%d", i), forestAgentConfig(i, t.Root, fusion.addr, r.o.AuditShare))
		if err != nil {
			return err
		}
		agents = append(agents, a)
	}

	// Every member is asked alone (GetStats with member: UNAVAILABLE until its snapshot
	// ended), and the fs view as P1 asks it.
	want := uint64(t.Files)
	done := make([]time.Duration, n)
	var fsDone time.Duration
	var inView atomic.Int64
	r.prog.Start(fmt.Sprintf("forest: waiting for %d members (nodes)", n), int64(n*(t.Files+t.Dirs+1)), inView.Load)
	pctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	qctx := withKey(pctx, queryKey)
	views := fusion.views()
	var last error
	lastNodes := time.Time{}
	for {
		complete := fsDone > 0
		if fsDone == 0 {
			st, err := views.GetStats(qctx, &fustorv1.GetStatsRequest{View: forestFSView, Path: "/"})
			if err == nil && st.GetFileCount() == want {
				fsDone = time.Since(start)
			} else if err != nil {
				last = err
			}
		}
		for i := range n {
			if done[i] > 0 {
				continue
			}
			complete = false
			st, err := views.GetStats(qctx, &fustorv1.GetStatsRequest{View: forestView, Path: "/", Member: forestMember(i + 1)})
			if err == nil && st.GetFileCount() == want {
				done[i] = time.Since(start)
			} else if err != nil {
				last = err
			}
		}
		if complete {
			break
		}
		exited := fusion.exited()
		for _, a := range agents {
			exited = exited || a.exited()
		}
		if pctx.Err() != nil || exited {
			r.prog.Stop()
			return fmt.Errorf("wait for the %d members and the fs view to hold %d files: %v (last answer: %v); see %s", n, t.Files, pctx.Err(), last, r.logs)
		}
		if time.Since(lastNodes) > 200*time.Millisecond {
			inView.Store(int64(fusion.viewInfo(pctx, forestView).GetNodes()))
			lastNodes = time.Now()
		}
		time.Sleep(20 * time.Millisecond)
	}
	all := slices.Max(append(slices.Clone(done), fsDone))
	fusionCPU := cpuTime(fusion.pid()) - fusionCPU0
	inView.Store(int64(n * (t.Files + t.Dirs + 1)))
	r.prog.Stop()
	// The forest asked without member: every member ready, the sum of their files.
	st, err := views.GetStats(withKey(ctx, queryKey), &fustorv1.GetStatsRequest{View: forestView, Path: "/"})
	if err != nil {
		return fmt.Errorf("forest stats without member: %w", err)
	}
	if st.GetFileCount() != uint64(n)*want || len(st.GetMembers()) != n {
		return fmt.Errorf("forest stats without member: %d files in %d members; want %d in %d", st.GetFileCount(), len(st.GetMembers()), uint64(n)*want, n)
	}
	per := make([]string, n)
	for i, d := range done {
		per[i] = fmt.Sprintf("%s %s ms", forestMember(i+1), commas(int64(ms(d))))
	}
	r.rep.Add("F", "f_snapshot_ms", fmt.Sprintf("forest: %d agents start → every member and the fs view report N files", n), ms(all), "ms", nil,
		fmt.Sprintf("%s; fs view %s ms; %d agents walk the same tree concurrently", strings.Join(per, ", "), commas(int64(ms(fsDone))), n))
	r.rep.Add("F", "f_fusion_cpu_s", "forest: Fusion CPU (user+system), agents start → every member complete", fusionCPU.Seconds(), "s", nil, "")

	full, err := fusion.memStats(ctx)
	if err != nil {
		return err
	}
	r.forestMemory(ctx, fusion, base, full)

	if err := r.forestQueries(ctx, fusion); err != nil {
		if ctx.Err() != nil {
			return err
		}
		r.fail("forest queries", err)
	}
	return nil
}

// forestMemory adds F1: Fusion's heap after a GC per file of the forest, once every member
// holds the tree.
func (r *runner) forestMemory(ctx context.Context, fusion *fusionProc, base, full debughttp.MemStats) {
	n, files := r.o.Forest, r.tree.Files
	nf := float64(n) * float64(files)
	mib := func(b uint64) float64 { return float64(b) / (1 << 20) }
	r.rep.Add("F1", "f1_heap_alloc_per_file", "forest: Fusion heap (HeapAlloc after GC) per file, N members × files", float64(full.HeapAlloc)/nf, "B/file", AtMost(100),
		fmt.Sprintf("%.1f MiB / (%d × %s files); the same heap holds the fs view fed by member-1's pipe (%s files more)", mib(full.HeapAlloc), n, commas(int64(files)), commas(int64(files))))
	r.rep.Add("F1", "f1_heap_alloc_per_file_net", "forest: Fusion heap (HeapAlloc after GC) per file, empty-views baseline subtracted", (float64(full.HeapAlloc)-float64(base.HeapAlloc))/nf, "B/file", nil,
		fmt.Sprintf("baseline %.1f MiB", mib(base.HeapAlloc)))
	r.rep.Add("F1", "f1_heap_alloc_per_held_file", "forest: Fusion heap (HeapAlloc after GC) per file held in any view", float64(full.HeapAlloc)/(nf+float64(files)), "B/file", nil,
		fmt.Sprintf("%.1f MiB / ((%d + 1) × %s files): the forest's members and the fs view", mib(full.HeapAlloc), n, commas(int64(files))))
	r.rep.Add("F1", "f1_heap_inuse_per_file", "forest: Fusion heap in use per file, N members × files", float64(full.HeapInuse)/nf, "B/file", nil,
		fmt.Sprintf("%.1f MiB (P3's measure)", mib(full.HeapInuse)))
	r.rep.Add("F1", "f1_rss_per_file", "forest: Fusion RSS per file, N members × files", float64(full.RSS)/nf, "B/file", nil,
		fmt.Sprintf("%.1f MiB", mib(full.RSS)))
	if fv, tv := fusion.viewInfo(ctx, forestView), fusion.viewInfo(ctx, forestFSView); fv.GetMemoryBytes() > 0 && tv.GetMemoryBytes() > 0 {
		r.rep.Add("F1", "f1_forest_view_bytes_per_file", "forest: the forest view's own memory estimate per file", float64(fv.GetMemoryBytes())/nf, "B/file", nil,
			fmt.Sprintf("admin ListViews memory_bytes %.1f MiB, %s nodes; the fs view's: %.1f B/file", mib(fv.GetMemoryBytes()), commas(int64(fv.GetNodes())),
				float64(tv.GetMemoryBytes())/float64(files)))
	}
}

// forestKinds are the queries of F2 (find across the members) and F3 (stats with best, and
// the fs view's stats of the root).
func (r *runner) forestKinds() (find []queryKind, stats, fsStats queryKind) {
	n, files := r.o.Forest, uint64(r.tree.Files)
	checkMembers := func(resp *fustorv1.FindResponse) error {
		if len(resp.GetEntries()) == 0 {
			return errors.New("no match")
		}
		if len(resp.GetMembers()) != n {
			return fmt.Errorf("matches from %d members; want %d", len(resp.GetMembers()), n)
		}
		return nil
	}
	subs := r.tree.Submissions
	find = []queryKind{
		// The product's question, "on which storage did submission X land": its directory's
		// name, exactly, across the members (one match each here: the members hold one tree).
		{name: qForestWhere, label: fmt.Sprintf("forest: where did a submission land (its directory by exact name under the root, across %d members)", n), method: mFind, target: 20,
			ask: func(ctx context.Context, c fustorv1.ViewServiceClient, rnd *rand.Rand) error {
				resp, err := c.Find(ctx, &fustorv1.FindRequest{View: forestView, Path: "/", Name: path.Base(subs[rnd.IntN(len(subs))])})
				if err == nil && len(resp.GetEntries()) != n {
					err = fmt.Errorf("%d matches; want one per member (%d)", len(resp.GetEntries()), n)
				}
				return err
			}},
		{name: qForestFind, label: fmt.Sprintf("forest: find by exact name under the root, across %d members (complete answer, paths)", n), method: mFind, target: 20,
			ask: func(ctx context.Context, c fustorv1.ViewServiceClient, _ *rand.Rand) error {
				resp, err := c.Find(ctx, &fustorv1.FindRequest{View: forestView, Path: "/", Name: findName, Limit: nameLimit, OnlyPaths: true})
				if err != nil {
					return err
				}
				return checkMembers(resp)
			}},
		{name: qForestFindFirst, label: fmt.Sprintf("forest: find by exact name under the root, across %d members (first %d, full entries)", n, globLimit), method: mFind, target: 20,
			ask: func(ctx context.Context, c fustorv1.ViewServiceClient, _ *rand.Rand) error {
				resp, err := c.Find(ctx, &fustorv1.FindRequest{View: forestView, Path: "/", Name: findName})
				if err != nil {
					return err
				}
				return checkMembers(resp)
			}},
	}
	stats = queryKind{name: qForestStats, label: fmt.Sprintf("forest: stats of the root with best (total size), across %d members", n), method: mStats,
		ask: func(ctx context.Context, c fustorv1.ViewServiceClient, _ *rand.Rand) error {
			resp, err := c.GetStats(ctx, &fustorv1.GetStatsRequest{View: forestView, Path: "/", BestBy: fustorv1.StatsBest_STATS_BEST_TOTAL_SIZE})
			if err == nil && (resp.GetBest() == "" || len(resp.GetMembers()) != n) {
				err = fmt.Errorf("best %q of %d members", resp.GetBest(), len(resp.GetMembers()))
			}
			return err
		}}
	fsStats = queryKind{name: qForestFSStats, label: "forest run: stats of the root of the fs view (member-1's pipe)", method: mStats,
		ask: func(ctx context.Context, c fustorv1.ViewServiceClient, _ *rand.Rand) error {
			resp, err := c.GetStats(ctx, &fustorv1.GetStatsRequest{View: forestFSView, Path: "/"})
			if err == nil && resp.GetFileCount() != files {
				err = fmt.Errorf("root stats say %d files", resp.GetFileCount())
			}
			return err
		}}
	return find, stats, fsStats
}

// checkForest asks each forest query once and checks what the timed runs do not: every
// member's share, the labels, the best member. A wrong answer is an error of the phase.
func (r *runner) checkForest(ctx context.Context, c fustorv1.ViewServiceClient) error {
	n, files := r.o.Forest, uint64(r.tree.Files)
	resp, err := c.Find(ctx, &fustorv1.FindRequest{View: forestView, Path: "/", Name: findName, Limit: nameLimit, OnlyPaths: true})
	if err != nil {
		return fmt.Errorf("forest find: %w", err)
	}
	var sum uint32
	for _, m := range resp.GetMembers() {
		if m.GetMatches() == 0 || m.GetMatches() != resp.GetMembers()[0].GetMatches() || m.GetTruncated() {
			return fmt.Errorf("forest find: member %s has %d matches (truncated %v); want the same complete count in every member", m.GetMember(), m.GetMatches(), m.GetTruncated())
		}
		sum += m.GetMatches()
	}
	if len(resp.GetMembers()) != n || int(sum) != len(resp.GetEntries()) || resp.GetTruncated() {
		return fmt.Errorf("forest find: %d entries from %d members (counts sum to %d, truncated %v); want %d members", len(resp.GetEntries()), len(resp.GetMembers()), sum, resp.GetTruncated(), n)
	}
	labels := map[string]int{}
	for _, e := range resp.GetEntries() {
		labels[e.GetMember()]++
	}
	for i := 1; i <= n; i++ {
		if labels[forestMember(i)] != int(sum)/n {
			return fmt.Errorf("forest find: %d entries labelled %s; want %d (labels %v)", labels[forestMember(i)], forestMember(i), int(sum)/n, labels)
		}
	}
	st, err := c.GetStats(ctx, &fustorv1.GetStatsRequest{View: forestView, Path: "/", BestBy: fustorv1.StatsBest_STATS_BEST_TOTAL_SIZE})
	if err != nil {
		return fmt.Errorf("forest stats: %w", err)
	}
	bests := 0
	for _, m := range st.GetMembers() {
		if !m.GetFound() || m.GetFileCount() != files {
			return fmt.Errorf("forest stats: member %s found %v, %d files; want %d", m.GetMember(), m.GetFound(), m.GetFileCount(), files)
		}
		if m.GetBest() {
			bests++
		}
	}
	// Every member holds the same tree: the sizes tie, and the first by name is best.
	if len(st.GetMembers()) != n || st.GetBest() != forestMember(1) || bests != 1 || st.GetFileCount() != uint64(n)*files {
		return fmt.Errorf("forest stats: best %q (%d flagged) of %d members, %d files; want %s of %d, %d files", st.GetBest(), bests, len(st.GetMembers()), st.GetFileCount(),
			forestMember(1), n, uint64(n)*files)
	}
	return nil
}

// kindRun is what one query kind measured: back to back, paced at rate, and one client alone.
type kindRun struct {
	sat    hammered
	rate   float64
	lat    []time.Duration // every paced pass's latencies
	paced  Latencies
	errs   int64
	server histogram
	herr   error
	gcs    uint32 // Fusion's garbage collections during the paced passes
	solo   Latencies
	idle   Latencies
}

// backToBack runs k with every client back to back (P4's hammer).
func (r *runner) backToBack(qctx context.Context, conns []*grpc.ClientConn, fusion *fusionProc, k queryKind) (hammered, error) {
	var done atomic.Int64
	r.prog.Start("queries back to back: "+k.name, int64(r.o.Queries), done.Load)
	h, err := r.hammer(qctx, conns, k, &done, fusion.pid())
	r.prog.Stop()
	if err != nil {
		return h, fmt.Errorf("query %s: %w", k.name, err)
	}
	return h, nil
}

// pacedPass runs k paced at run.rate (P4's paced run, with Fusion's handling time of the same
// calls and its garbage collections) and adds it to run; passes of one kind accumulate.
func (r *runner) pacedPass(ctx, qctx context.Context, conns []*grpc.ClientConn, fusion *fusionProc, k queryKind, run *kindRun) error {
	var pdone atomic.Int64
	before, herr := fusion.handling(ctx, k.method)
	gc0, gerr := fusion.memStatsNoGC(ctx)
	r.prog.Start(fmt.Sprintf("queries paced at %.0f/s: %s", run.rate, k.name), 0, pdone.Load)
	plat, perrs, err := r.paced(qctx, conns, k, run.rate, &pdone)
	r.prog.Stop()
	if err != nil {
		return fmt.Errorf("query %s paced: %w", k.name, err)
	}
	if gc1, err := fusion.memStatsNoGC(ctx); err == nil && gerr == nil {
		run.gcs += gc1.NumGC - gc0.NumGC
	}
	if herr == nil {
		var after histogram
		if after, herr = fusion.handling(ctx, k.method); herr == nil {
			run.server = after.since(before).plus(run.server)
		}
	}
	run.herr = cmp.Or(run.herr, herr)
	run.lat = append(run.lat, plat...)
	run.paced = Summarise(slices.Clone(run.lat))
	run.errs += perrs
	return nil
}

// soloRuns runs k from one client alone, back to back and mostly idle.
func soloRuns(qctx context.Context, conns []*grpc.ClientConn, k queryKind, run *kindRun) {
	c, rnd := fustorv1.NewViewServiceClient(conns[0]), rand.New(rand.NewPCG(3, 4))
	run.solo = Summarise(soloClient(qctx, c, k, rnd))
	run.idle = idleClient(qctx, c, k, rnd, run.solo.P50)
}

// addRun reports one kind's figures under id, the paced p99 judged against target.
func (r *runner) addRun(id string, k queryKind, run kindRun, target *Target, paced string) {
	p, sat := run.paced, Summarise(run.sat.lat)
	r.rep.Latency = append(r.rep.Latency, Series{Name: k.name, Lat: p, Target: k.target},
		Series{Name: k.name + " (back to back)", Lat: sat, ServerCPUus: run.sat.cpu.server, ClientCPUus: run.sat.cpu.client})
	r.rep.Add(id, k.name+"_p50_ms", k.label+" p50", p.P50, "ms", nil, paced)
	r.rep.Add(id, k.name+"_p99_ms", k.label+" p99", p.P99, "ms", target, fmt.Sprintf("%d queries; Fusion ran %d GCs meanwhile", p.Count, run.gcs))
	if run.herr != nil || run.server.count() == 0 {
		r.rep.Errors = append(r.rep.Errors, fmt.Sprintf("%s %s: Fusion's handling time: %v", id, k.name, run.herr))
	} else {
		r.rep.Add(id, k.name+"_server_p50_ms", k.label+": Fusion's handling time p50", 1000*run.server.quantile(0.5), "ms", nil,
			fmt.Sprintf("Fusion's own metrics (%s), the same paced run; %.0f calls", k.method, run.server.count()))
		r.rep.Add(id, k.name+"_server_p99_ms", k.label+": Fusion's handling time p99", 1000*run.server.quantile(0.99), "ms", nil, "bucket-interpolated")
	}
	r.rep.Add(id, k.name+"_sat_qps", k.label+": throughput, clients back to back", run.sat.qps, "q/s", nil,
		fmt.Sprintf("%d clients; CPU per query: Fusion %.0f µs, bench client %.0f µs", r.o.Clients, run.sat.cpu.server, run.sat.cpu.client))
	r.rep.Add(id, k.name+"_sat_p99_ms", k.label+" p99, clients back to back", sat.P99, "ms", nil, fmt.Sprintf("p50 %s ms", trimFloat(sat.P50, 2)))
	r.rep.Add(id, k.name+"_solo_p50_ms", k.label+" p50, one client alone", run.solo.P50, "ms", nil, fmt.Sprintf("%d queries, back to back", run.solo.Count))
	r.rep.Add(id, k.name+"_solo_p99_ms", k.label+" p99, one client alone", run.solo.P99, "ms", nil, "")
	if run.idle.Count > 0 {
		r.rep.Add(id, k.name+"_idle_p99_ms", k.label+" p99, one client alone, mostly idle", run.idle.P99, "ms", nil,
			fmt.Sprintf("%d queries, Poisson arrivals at %.0f%% of its back-to-back rate", run.idle.Count, 100*idleLoad))
	}
	if errs := run.errs + run.sat.errs; errs > 0 {
		r.rep.Add(id, k.name+"_errors", k.label+": failed queries", float64(errs), "", AtMost(0), "")
	}
}

// forestQueries measures F2 and F3 with P4's clients (and P4's machine rows, M, unless the
// queries phase measured them already in this run).
func (r *runner) forestQueries(ctx context.Context, fusion *fusionProc) error {
	conns, err := dialClients(fusion.addr, r.o.Clients)
	if err != nil {
		return err
	}
	defer closeAll(conns)
	qctx := withKey(ctx, queryKey)
	if err := r.checkForest(qctx, fustorv1.NewViewServiceClient(conns[0])); err != nil {
		return err
	}
	if _, ok := r.rep.Figure("rpc_floor_p50_ms"); !ok {
		w := wakeLateness(ctx, 500)
		r.rep.Add("M", "wake_lateness_p50_ms", "machine: a goroutine sleeping 1 ms wakes this late, p50", w.P50, "ms", nil, "500 sleeps")
		r.rep.Add("M", "wake_lateness_p99_ms", "machine: a goroutine sleeping 1 ms wakes this late, p99", w.P99, "ms", nil, "")
		r.rpcFloor(qctx, fustorv1.NewViewServiceClient(conns[0]))
	}
	find, stats, fsStats := r.forestKinds()
	// F2: each find paced at --load of its own back-to-back throughput, as P4.
	for _, k := range find {
		var run kindRun
		var err error
		if run.sat, err = r.backToBack(qctx, conns, fusion, k); err != nil {
			return err
		}
		run.rate = r.o.Load * run.sat.qps
		if err := r.pacedPass(ctx, qctx, conns, fusion, k, &run); err != nil {
			return err
		}
		soloRuns(qctx, conns, k, &run)
		r.addRun("F2", k, run, Below(k.target), fmt.Sprintf("%d clients, Poisson arrivals at %.0f queries/s (%.0f%% of the back-to-back throughput)", r.o.Clients, run.rate, 100*r.o.Load))
	}
	// F3: the forest's stats with best and the fs view's, both paced at the same rate (--load
	// of the slower one's back-to-back throughput), so their p99s are read under one load, in
	// two passes each, in the order forest, fs, fs, forest: a drift of the machine's speed
	// over the minutes of the runs weighs on both alike.
	var fr, sr kindRun
	if fr.sat, err = r.backToBack(qctx, conns, fusion, stats); err != nil {
		return err
	}
	if sr.sat, err = r.backToBack(qctx, conns, fusion, fsStats); err != nil {
		return err
	}
	fr.rate = r.o.Load * min(fr.sat.qps, sr.sat.qps)
	sr.rate = fr.rate
	for _, step := range []struct {
		k   queryKind
		run *kindRun
	}{{stats, &fr}, {fsStats, &sr}, {fsStats, &sr}, {stats, &fr}} {
		if err := r.pacedPass(ctx, qctx, conns, fusion, step.k, step.run); err != nil {
			return err
		}
	}
	soloRuns(qctx, conns, stats, &fr)
	soloRuns(qctx, conns, fsStats, &sr)
	paced := fmt.Sprintf("%d clients, Poisson arrivals at %.0f queries/s (%.0f%% of the slower one's back-to-back throughput), the same for both; 2 passes each (forest, fs, fs, forest)", r.o.Clients, fr.rate, 100*r.o.Load)
	r.addRun("F3", stats, fr, nil, paced)
	r.addRun("F3", fsStats, sr, nil, paced)
	r.rep.Add("F3", "f3_stats_p99_ratio", "forest stats with best p99 ÷ fs view stats of the root p99", fr.paced.P99/sr.paced.P99, "x", AtMost(1.2),
		fmt.Sprintf("%s ms ÷ %s ms, paced, same rate; p50 ratio %s×", trimFloat(fr.paced.P99, 3), trimFloat(sr.paced.P99, 3), trimFloat(fr.paced.P50/sr.paced.P50, 2)))
	r.rep.Add("F3", "f3_stats_solo_p99_ratio", "forest stats with best ÷ fs view stats of the root, one client alone, p99", fr.solo.P99/sr.solo.P99, "x", nil,
		fmt.Sprintf("%s ms ÷ %s ms; p50 ratio %s×", trimFloat(fr.solo.P99, 3), trimFloat(sr.solo.P99, 3), trimFloat(fr.solo.P50/sr.solo.P50, 2)))
	if fr.server.count() > 0 && sr.server.count() > 0 {
		r.rep.Add("F3", "f3_stats_server_p99_ratio", "forest stats with best ÷ fs view stats of the root, Fusion's handling time p99", fr.server.quantile(0.99)/sr.server.quantile(0.99), "x", nil, "bucket-interpolated")
	}
	return nil
}

// forestNotes say how the forest phase measured.
func forestNotes(o Options) []string {
	return []string{
		fmt.Sprintf("F: --forest %d runs %d fustor-agent processes on the SAME tree (one storage mounted %d times: the members hold identical trees), each with its own agent_id and ingest key routed to its own pipe (%s-1..%s-%d); the pipes feed one forest-fs view %q of %d members labelled member-1..member-%d, and %s-1 also feeds an fs view %q (fan-out), all in one Fusion. The agents' audits are every %s, so none runs during the phase. Ready = GetStats of / with member set reports N files for every member, and the fs view's does.",
			o.Forest, o.Forest, o.Forest, pipeName, pipeName, o.Forest, forestView, o.Forest, o.Forest, pipeName, forestFSView, forestAuditInterval),
		"F1: Fusion's /debug/memstats?gc=1 once every member is complete: HeapAlloc ÷ (N × files), the target's figure; the heap also holds the fs view (files more), hence also per file held in any view. The net figure subtracts the same reading before the agents started.",
		fmt.Sprintf("F2: P4's clients and method (back to back for the throughput, then paced at %.0f%% of it: the judged p50/p99; then one client alone), Find name %q under / of the forest without member: the complete answer (limit %d, only_paths: packed_paths is refused without member) and Fusion's default limit (%d, full entries); every answer must hold matches from all N members. Checked once before: every member's count equal and complete, every entry labelled with its member.", 100*o.Load, findName, nameLimit, globLimit),
		fmt.Sprintf("F3: GetStats of / of the forest without member, best_by TOTAL_SIZE (every member answers; identical trees tie, so best is member-1), and GetStats of / of the fs view, both back to back, then both paced at the same rate, %.0f%% of the slower one's back-to-back throughput, in two passes each in the order forest, fs, fs, forest (pooled); ratio = forest p99 ÷ fs p99. The GCs counted are Fusion's NumGC over the paced passes (/debug/memstats without gc).", 100*o.Load),
	}
}
