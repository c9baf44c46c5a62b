package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
)

// Query names, also the keys of their figures.
const (
	qLs           = "ls"
	qStatsSub     = "stats_submission"
	qStatsRoot    = "stats_root"
	qFindName     = "find_name"
	qFindNameFull = "find_name_full"
	qFindGlob     = "find_glob"
	qFindSub      = "find_submission"
	qGlobSub      = "glob_submission"
	findName      = "data_0042.dat"
	findGlob      = "data_00[0-4]?.dat"
	// globLimit is Fusion's default Find limit; find(1) is stopped at the same count.
	globLimit = 1000
	// nameLimit is Fusion's largest Find limit: the exact-name answer is complete, like find's.
	nameLimit = 100_000

	mList  = "/fustor.v1.ViewService/ListDirectory"
	mStats = "/fustor.v1.ViewService/GetStats"
	mFind  = "/fustor.v1.ViewService/Find"
)

// queryKind is one P4 query: how to ask Fusion, and the equivalent find.
type queryKind struct {
	name, label string
	method      string  // the gRPC method, for Fusion's own handling time
	target      float64 // p99 bound, ms
	ask         func(ctx context.Context, c fustorv1.ViewServiceClient, rnd *rand.Rand) error
	find        func(ctx context.Context, rnd *rand.Rand) (time.Duration, error)
}

func (r *runner) queryKinds(view string) []queryKind {
	t := r.tree
	root := t.Root
	subm := func(rnd *rand.Rand) string { return t.Submissions[rnd.IntN(len(t.Submissions))] }
	leaf := func(rnd *rand.Rand) string {
		return fmt.Sprintf("%s/sub_0", subm(rnd)) // sub_0 is full in every submission
	}
	local := func(p string) string { return filepath.Join(root, filepath.FromSlash(p)) }
	runs := r.o.FindRuns
	return []queryKind{
		{name: qLs, label: "list a 250-entry directory", method: mList, target: 1,
			ask: func(ctx context.Context, c fustorv1.ViewServiceClient, rnd *rand.Rand) error {
				resp, err := c.ListDirectory(ctx, &fustorv1.ListDirectoryRequest{View: view, Path: leaf(rnd)})
				if err == nil && len(resp.GetEntries()) == 0 {
					err = errors.New("empty listing")
				}
				return err
			},
			find: func(ctx context.Context, rnd *rand.Rand) (time.Duration, error) {
				return timeFindLines(ctx, runs, 0, nil, local(leaf(rnd)), "-mindepth", "1", "-maxdepth", "1", "-printf", `%P|%y|%s|%T@\n`)
			}},
		{name: qStatsSub, label: "subtree stats of one submission", method: mStats, target: 1,
			ask: func(ctx context.Context, c fustorv1.ViewServiceClient, rnd *rand.Rand) error {
				resp, err := c.GetStats(ctx, &fustorv1.GetStatsRequest{View: view, Path: subm(rnd)})
				if err == nil && resp.GetFileCount() == 0 {
					err = errors.New("no files")
				}
				return err
			},
			find: func(ctx context.Context, rnd *rand.Rand) (time.Duration, error) {
				var total uint64
				return timeFindLines(ctx, runs, 0, sumSizes(&total), local(subm(rnd)), "-printf", `%s\n`)
			}},
		{name: qStatsRoot, label: "subtree stats of the root", method: mStats, target: 1,
			ask: func(ctx context.Context, c fustorv1.ViewServiceClient, _ *rand.Rand) error {
				resp, err := c.GetStats(ctx, &fustorv1.GetStatsRequest{View: view, Path: "/"})
				if err == nil && resp.GetFileCount() < uint64(t.Files) {
					err = fmt.Errorf("root stats say %d files", resp.GetFileCount())
				}
				return err
			},
			find: func(ctx context.Context, _ *rand.Rand) (time.Duration, error) {
				var total uint64
				return timeFindLines(ctx, runs, 0, sumSizes(&total), root, "-printf", `%s\n`)
			}},
		// find(1) prints paths, so the finds ask for paths only, packed as fustorctl find --paths
		// asks for them (packed_paths), except the next one, which takes every field of the
		// 4,000 entries: the largest answer of P4.
		{name: qFindName, label: "find by exact name under the root (complete answer, paths)", method: mFind, target: 20,
			ask: func(ctx context.Context, c fustorv1.ViewServiceClient, _ *rand.Rand) error {
				resp, err := c.Find(ctx, &fustorv1.FindRequest{View: view, Path: "/", Name: findName, Limit: nameLimit, PackedPaths: true})
				if err == nil && packedCount(resp) == 0 {
					err = errors.New("no match")
				}
				return err
			},
			find: func(ctx context.Context, _ *rand.Rand) (time.Duration, error) {
				return timeFindLines(ctx, runs, 0, nil, root, "-name", findName)
			}},
		{name: qFindNameFull, label: "find by exact name under the root (complete answer, full entries)", method: mFind, target: 20,
			ask: func(ctx context.Context, c fustorv1.ViewServiceClient, _ *rand.Rand) error {
				resp, err := c.Find(ctx, &fustorv1.FindRequest{View: view, Path: "/", Name: findName, Limit: nameLimit})
				if err == nil && (len(resp.GetEntries()) == 0 || resp.GetEntries()[0].GetMtime() == nil) {
					err = errors.New("no match, or entries without their fields")
				}
				return err
			},
			find: func(ctx context.Context, _ *rand.Rand) (time.Duration, error) {
				return timeFindLines(ctx, runs, 0, nil, root, "-name", findName, "-printf", `%P|%y|%s|%T@\n`)
			}},
		// The product's question, "where did submission X land": its directory's name, exactly
		// and by the first 8 characters of its uuid.
		{name: qFindSub, label: "find a submission by exact name under the root", method: mFind, target: 20,
			ask: func(ctx context.Context, c fustorv1.ViewServiceClient, rnd *rand.Rand) error {
				resp, err := c.Find(ctx, &fustorv1.FindRequest{View: view, Path: "/", Name: path.Base(subm(rnd)), PackedPaths: true})
				if n := packedCount(resp); err == nil && n != 1 {
					err = fmt.Errorf("%d matches; want 1", n)
				}
				return err
			},
			find: func(ctx context.Context, rnd *rand.Rand) (time.Duration, error) {
				return timeFindLines(ctx, runs, 0, nil, root, "-name", path.Base(subm(rnd)))
			}},
		{name: qGlobSub, label: "find a submission by glob (uuid prefix*) under the root", method: mFind, target: 20,
			ask: func(ctx context.Context, c fustorv1.ViewServiceClient, rnd *rand.Rand) error {
				resp, err := c.Find(ctx, &fustorv1.FindRequest{View: view, Path: "/", Glob: path.Base(subm(rnd))[:8] + "*", PackedPaths: true})
				if err == nil && packedCount(resp) == 0 {
					err = errors.New("no match")
				}
				return err
			},
			find: func(ctx context.Context, rnd *rand.Rand) (time.Duration, error) {
				return timeFindLines(ctx, runs, 0, nil, root, "-name", path.Base(subm(rnd))[:8]+"*")
			}},
		{name: qFindGlob, label: fmt.Sprintf("find by glob under the root (first %d)", globLimit), method: mFind, target: 20,
			ask: func(ctx context.Context, c fustorv1.ViewServiceClient, _ *rand.Rand) error {
				resp, err := c.Find(ctx, &fustorv1.FindRequest{View: view, Path: "/", Glob: findGlob, Limit: globLimit, PackedPaths: true})
				if err == nil && packedCount(resp) == 0 {
					err = errors.New("no match")
				}
				return err
			},
			find: func(ctx context.Context, _ *rand.Rand) (time.Duration, error) {
				return timeFindLines(ctx, runs, globLimit, nil, root, "-name", findGlob)
			}},
	}
}

// packedCount is the number of matches in a packed_paths answer.
func packedCount(resp *fustorv1.FindResponse) int {
	return bytes.Count(resp.GetPackedPaths(), []byte{0})
}

// dialClients opens n connections to addr, one per query client (as separate client
// processes would have them); on an error the ones opened are closed.
func dialClients(addr string, n int) ([]*grpc.ClientConn, error) {
	conns := make([]*grpc.ClientConn, 0, n)
	for range n {
		c, err := dial(addr)
		if err != nil {
			closeAll(conns)
			return nil, err
		}
		conns = append(conns, c)
	}
	return conns, nil
}

func closeAll(conns []*grpc.ClientConn) {
	for _, c := range conns {
		_ = c.Close()
	}
}

// queries is P4: for each kind, Clients goroutines, each with its own connection (as separate
// client processes would have), run Queries queries in all after a warm-up; then the
// equivalent find is timed.
func (r *runner) queries(ctx context.Context, fusion *fusionProc) error {
	conns, err := dialClients(fusion.addr, r.o.Clients)
	if err != nil {
		return err
	}
	defer closeAll(conns)
	qctx := withKey(ctx, queryKey)
	w := wakeLateness(ctx, 500)
	r.rep.Add("M", "wake_lateness_p50_ms", "machine: a goroutine sleeping 1 ms wakes this late, p50", w.P50, "ms", nil, "500 sleeps")
	r.rep.Add("M", "wake_lateness_p99_ms", "machine: a goroutine sleeping 1 ms wakes this late, p99", w.P99, "ms", nil, "")
	r.rpcFloor(qctx, fustorv1.NewViewServiceClient(conns[0]))
	for _, k := range r.queryKinds(fusion.view) {
		var done atomic.Int64
		r.prog.Start("queries back to back: "+k.name, int64(r.o.Queries), done.Load)
		h, err := r.hammer(qctx, conns, k, &done, fusion.pid())
		r.prog.Stop()
		if err != nil {
			return fmt.Errorf("query %s: %w", k.name, err)
		}
		rate := r.o.Load * h.qps
		var pdone atomic.Int64
		before, herr := fusion.handling(ctx, k.method)
		r.prog.Start(fmt.Sprintf("queries paced at %.0f/s: %s", rate, k.name), 0, pdone.Load)
		plat, perrs, err := r.paced(qctx, conns, k, rate, &pdone)
		r.prog.Stop()
		if err != nil {
			return fmt.Errorf("query %s paced: %w", k.name, err)
		}
		var server histogram
		if herr == nil {
			var after histogram
			if after, herr = fusion.handling(ctx, k.method); herr == nil {
				server = after.since(before)
			}
		}
		// One client alone: the service time without queueing behind the others.
		c, rnd := fustorv1.NewViewServiceClient(conns[0]), rand.New(rand.NewPCG(3, 4))
		solo := soloClient(qctx, c, k, rnd)
		soloP50, soloP99 := ms(Percentile(sorted(solo), 50)), ms(Percentile(solo, 99))
		idle := idleClient(qctx, c, k, rnd, soloP50)
		findD, err := k.find(ctx, rand.New(rand.NewPCG(1, 2)))
		if err != nil {
			return err
		}
		p, sat := Summarise(plat), Summarise(h.lat)
		findMs := ms(findD)
		r.rep.Latency = append(r.rep.Latency, Series{Name: k.name, Lat: p, FindMs: findMs, Target: k.target},
			Series{Name: k.name + " (back to back)", Lat: sat, ServerCPUus: h.cpu.server, ClientCPUus: h.cpu.client})
		paced := fmt.Sprintf("%d clients, Poisson arrivals at %.0f queries/s (%.0f%% of the back-to-back throughput)", r.o.Clients, rate, 100*r.o.Load)
		r.rep.Add("P4", k.name+"_p50_ms", k.label+" p50", p.P50, "ms", nil, paced)
		r.rep.Add("P4", k.name+"_p99_ms", k.label+" p99", p.P99, "ms", Below(k.target), fmt.Sprintf("%d queries", p.Count))
		if herr != nil || server.count() == 0 {
			r.rep.Errors = append(r.rep.Errors, fmt.Sprintf("P4 %s: Fusion's handling time: %v", k.name, herr))
		} else {
			note := fmt.Sprintf("Fusion's own metrics (%s), the same paced run: from authentication to the answer built, its encoding and sending excluded; %.0f calls", k.method, server.count())
			r.rep.Add("P4", k.name+"_server_p50_ms", k.label+": Fusion's handling time p50", 1000*server.quantile(0.5), "ms", nil, note)
			r.rep.Add("P4", k.name+"_server_p99_ms", k.label+": Fusion's handling time p99", 1000*server.quantile(0.99), "ms", nil, "bucket-interpolated")
		}
		r.rep.Add("P4", k.name+"_sat_qps", k.label+": throughput, clients back to back", h.qps, "q/s", nil,
			fmt.Sprintf("%d clients; CPU per query: Fusion %.0f µs, bench client %.0f µs", r.o.Clients, h.cpu.server, h.cpu.client))
		r.rep.Add("P4", k.name+"_sat_p50_ms", k.label+" p50, clients back to back", sat.P50, "ms", nil, "")
		r.rep.Add("P4", k.name+"_sat_p99_ms", k.label+" p99, clients back to back", sat.P99, "ms", nil, "")
		r.rep.Add("P4", k.name+"_solo_p50_ms", k.label+" p50, one client alone", soloP50, "ms", nil, fmt.Sprintf("%d queries, back to back", len(solo)))
		r.rep.Add("P4", k.name+"_solo_p99_ms", k.label+" p99, one client alone", soloP99, "ms", nil, "")
		if idle.Count > 0 {
			r.rep.Add("P4", k.name+"_idle_p99_ms", k.label+" p99, one client alone, mostly idle", idle.P99, "ms", nil,
				fmt.Sprintf("%d queries, Poisson arrivals at %.0f%% of its back-to-back rate: the machine wakes for each", idle.Count, 100*idleLoad))
		}
		r.rep.Add("P4", k.name+"_find_ms", k.label+": find equivalent", findMs, "ms", nil, fmt.Sprintf("best of %d", r.o.FindRuns))
		r.rep.Add("P4", k.name+"_speedup", k.label+": find ÷ Fusion p50", findMs/p.P50, "x", AtLeast(100),
			fmt.Sprintf("÷ p99: %s×", trimFloat(findMs/p.P99, 1)))
		if errs := h.errs + perrs; errs > 0 {
			r.rep.Add("P4", k.name+"_errors", k.label+": failed queries", float64(errs), "", AtMost(0), "")
		}
	}
	return nil
}

// hammer runs one query kind on every connection at once and returns the measured latencies.
// soloClient runs soloQueries of k back to back on one connection and returns their latencies.
func soloClient(ctx context.Context, c fustorv1.ViewServiceClient, k queryKind, rnd *rand.Rand) []time.Duration {
	solo := make([]time.Duration, 0, soloQueries)
	for range soloQueries {
		start := time.Now()
		if err := k.ask(ctx, c, rnd); err == nil {
			solo = append(solo, time.Since(start))
		}
	}
	return solo
}

// rpcFloor reports the smallest call Fusion answers (ListViews: no view is read) from one
// client alone, back to back and mostly idle: what any P4 query pays on this machine before
// Fusion does its work, against which the sub-millisecond targets can be read.
func (r *runner) rpcFloor(ctx context.Context, c fustorv1.ViewServiceClient) {
	k := queryKind{ask: func(ctx context.Context, c fustorv1.ViewServiceClient, _ *rand.Rand) error {
		_, err := c.ListViews(ctx, &fustorv1.ListViewsRequest{})
		return err
	}}
	rnd := rand.New(rand.NewPCG(5, 6))
	solo := soloClient(ctx, c, k, rnd)
	if len(solo) == 0 {
		r.rep.Errors = append(r.rep.Errors, "M: ListViews failed on every call")
		return
	}
	p50 := ms(Percentile(sorted(solo), 50))
	idle := idleClient(ctx, c, k, rnd, p50)
	note := fmt.Sprintf("ListViews, one client alone: %d calls back to back", len(solo))
	r.rep.Add("M", "rpc_floor_p50_ms", "machine: the smallest RPC (ListViews), one client, p50", p50, "ms", nil, note)
	r.rep.Add("M", "rpc_floor_p99_ms", "machine: the smallest RPC (ListViews), one client, p99", ms(Percentile(solo, 99)), "ms", nil, "")
	if idle.Count > 0 {
		r.rep.Add("M", "rpc_floor_idle_p99_ms", "machine: the smallest RPC (ListViews), one client mostly idle, p99", idle.P99, "ms", nil,
			fmt.Sprintf("%d calls, Poisson arrivals at %.0f%% of its back-to-back rate", idle.Count, 100*idleLoad))
	}
}

// soloQueries are run by one client alone after the concurrent ones.
const soloQueries = 500

func sorted(ds []time.Duration) []time.Duration {
	slices.Sort(ds)
	return ds
}

// queryCPU is the CPU time per measured query, in µs, of Fusion and of the bench itself
// (the clients share the machine with the server, so their cost shows in the latencies).
type queryCPU struct{ server, client float64 }

// hammered is what a back-to-back run measured.
type hammered struct {
	lat  []time.Duration
	errs int64
	cpu  queryCPU
	qps  float64 // queries completed per second: the saturation throughput
}

func (r *runner) hammer(ctx context.Context, conns []*grpc.ClientConn, k queryKind, done *atomic.Int64, serverPid int) (hammered, error) {
	per := (r.o.Queries + len(conns) - 1) / len(conns)
	warm := max(10, per/10)
	t := newTally(len(conns))
	var wg sync.WaitGroup
	ready := make(chan struct{})
	var warmed sync.WaitGroup
	warmed.Add(len(conns))
	for i, conn := range conns {
		wg.Go(func() {
			c := fustorv1.NewViewServiceClient(conn)
			rnd := rand.New(rand.NewPCG(uint64(i), 7))
			for range warm {
				_ = k.ask(ctx, c, rnd)
			}
			warmed.Done()
			<-ready
			for range per {
				start := time.Now()
				err := k.ask(ctx, c, rnd)
				if !t.record(ctx, i, time.Since(start), err, done) {
					return
				}
			}
		})
	}
	// Every client starts measuring together, so all of them run concurrently throughout.
	warmed.Wait()
	srv0, cli0 := cpuTime(serverPid), selfCPU()
	began := time.Now()
	close(ready)
	wg.Wait()
	elapsed := time.Since(began)
	srv, cli := cpuTime(serverPid)-srv0, selfCPU()-cli0
	all, errs, err := t.merge(ctx)
	if err != nil {
		return hammered{errs: errs}, err
	}
	n := float64(per * len(conns))
	return hammered{lat: all, errs: errs, qps: float64(len(all)) / elapsed.Seconds(),
		cpu: queryCPU{server: float64(srv.Microseconds()) / n, client: float64(cli.Microseconds()) / n}}, nil
}

// realtime is P5: in a directory the agent watches, write and close a small file, then poll
// Stat until Fusion shows it with the right size; latency = visible − close.
func (r *runner) realtime(ctx context.Context, fusion *fusionProc) (err error) {
	if r.o.RealtimeFiles == 0 {
		return nil
	}
	dir := filepath.Join(r.tree.Root, RealtimeDir)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return fmt.Errorf("create realtime directory: %w", err)
	}
	defer func() {
		if rerr := os.RemoveAll(dir); rerr != nil && err == nil {
			err = fmt.Errorf("remove realtime directory: %w", rerr)
		}
	}()
	views := fusion.views()
	qctx := withKey(ctx, queryKey)
	stat := func(p string) (*fustorv1.StatResponse, error) {
		return views.Stat(qctx, &fustorv1.StatRequest{View: fusion.view, Path: p})
	}
	// The agent watches a new directory once it sees it; files are written only after the
	// directory is visible, so none is created before its watch exists.
	if _, err := pollUntil(ctx, 30*time.Second, func() bool { _, err := stat("/" + RealtimeDir); return err == nil }); err != nil {
		return fmt.Errorf("wait for the realtime directory in the view: %w", err)
	}
	// The same writes seen through a watch (issue 15): each file's first change carrying its
	// final size, timed on arrival.
	wctx, stopWatch := context.WithCancel(qctx)
	defer stopWatch()
	w, err := views.Watch(wctx, &fustorv1.WatchRequest{View: fusion.view, Path: "/" + RealtimeDir})
	if err != nil {
		return fmt.Errorf("watch the realtime directory: %w", err)
	}
	// The first message carries the watch's cursor: changes after it are the ones it sends.
	if _, err := w.Recv(); err != nil {
		return fmt.Errorf("watch the realtime directory: %w", err)
	}
	var wmu sync.Mutex
	watched := map[string]time.Time{}
	sizes := map[string]uint64{}
	arrived := map[string]chan struct{}{} // closed when the path's change arrived
	go func() {
		for {
			m, err := w.Recv()
			if err != nil {
				return
			}
			at := time.Now()
			wmu.Lock()
			for _, c := range m.GetChanges() {
				if _, ok := watched[c.GetPath()]; !ok && sizes[c.GetPath()] != 0 && c.GetEntry().GetSize() == sizes[c.GetPath()] {
					watched[c.GetPath()] = at
					if ch := arrived[c.GetPath()]; ch != nil {
						close(ch)
					}
				}
			}
			wmu.Unlock()
		}
	}()
	var wlat []time.Duration
	var done atomic.Int64
	r.prog.Start("realtime: write, close, visible", int64(r.o.RealtimeFiles), done.Load)
	defer r.prog.Stop()
	lat := make([]time.Duration, 0, r.o.RealtimeFiles)
	missed := 0
	buf := make([]byte, 1024)
	for i := range r.o.RealtimeFiles {
		name := fmt.Sprintf("rt_%05d.dat", i)
		size := 1 + i%len(buf)
		wmu.Lock()
		sizes[path.Join("/", RealtimeDir, name)] = uint64(size)
		wmu.Unlock()
		closed, err := writeFile(filepath.Join(dir, name), buf[:size])
		if err != nil {
			return err
		}
		p := path.Join("/", RealtimeDir, name)
		seen, err := pollUntil(ctx, 5*time.Second, func() bool {
			resp, err := stat(p)
			return err == nil && resp.GetEntry().GetSize() == uint64(size)
		})
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			missed++
			continue
		}
		lat = append(lat, seen.Sub(closed))
		if _, err := pollUntil(ctx, 5*time.Second, func() bool {
			wmu.Lock()
			defer wmu.Unlock()
			at, ok := watched[p]
			if ok {
				wlat = append(wlat, at.Sub(closed))
			}
			return ok
		}); err != nil && ctx.Err() == nil {
			missed++
		}
		done.Add(1)
	}
	// A second pass times the watch alone: no Stat polled meanwhile, the client waits on the
	// change's arrival (the polling loop above shares the cores with the watch's goroutines).
	var alone []time.Duration
	for i := range r.o.RealtimeFiles / 2 {
		name := fmt.Sprintf("rtw_%05d.dat", i)
		p := path.Join("/", RealtimeDir, name)
		size := 1 + i%len(buf)
		ch := make(chan struct{})
		wmu.Lock()
		sizes[p], arrived[p] = uint64(size), ch
		wmu.Unlock()
		closed, err := writeFile(filepath.Join(dir, name), buf[:size])
		if err != nil {
			return err
		}
		select {
		case <-ch:
			wmu.Lock()
			alone = append(alone, watched[p].Sub(closed))
			wmu.Unlock()
		case <-time.After(5 * time.Second):
			missed++
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	s := Summarise(lat)
	r.rep.Latency = append(r.rep.Latency, Series{Name: "realtime", Lat: s, Target: 20})
	r.rep.Add("P5", "p5_realtime_p50_ms", "write+close → visible through Stat, p50", s.P50, "ms", nil, fmt.Sprintf("%d files", s.Count))
	r.rep.Add("P5", "p5_realtime_p99_ms", "write+close → visible through Stat, p99", s.P99, "ms", AtMost(20), "")
	r.rep.Add("P5", "p5_realtime_max_ms", "write+close → visible through Stat, max", s.Max, "ms", nil, "")
	if ws := Summarise(wlat); ws.Count > 0 {
		r.rep.Add("P5", "p5_watch_p50_ms", "write+close → its change on a Watch stream, p50", ws.P50, "ms", nil, fmt.Sprintf("%d files, the same writes", ws.Count))
		r.rep.Add("P5", "p5_watch_p99_ms", "write+close → its change on a Watch stream, p99", ws.P99, "ms", AtMost(20), "")
	}
	if wa := Summarise(alone); wa.Count > 0 {
		r.rep.Add("P5", "p5_watch_alone_p50_ms", "write+close → its change on a Watch stream, nothing else polling, p50", wa.P50, "ms", nil, fmt.Sprintf("%d more files", wa.Count))
		r.rep.Add("P5", "p5_watch_alone_p99_ms", "write+close → its change on a Watch stream, nothing else polling, p99", wa.P99, "ms", AtMost(20), "")
		if s.P99 > 0 {
			r.rep.Add("P5", "p5_watch_ratio", "watch p99 (alone) ÷ Stat-visible p99", wa.P99/s.P99, "×", AtMost(1.2), "")
		}
	}
	if missed > 0 {
		r.rep.Add("P5", "p5_realtime_missed", "files not visible within 5 s", float64(missed), "", AtMost(0), "")
	}
	return nil
}

// writeFile creates, writes and closes a file and returns when the close returned.
func writeFile(p string, data []byte) (time.Time, error) {
	f, err := os.Create(p)
	if err != nil {
		return time.Time{}, fmt.Errorf("create file: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return time.Time{}, fmt.Errorf("write file: %w", err)
	}
	if err := f.Close(); err != nil {
		return time.Time{}, fmt.Errorf("close file: %w", err)
	}
	return time.Now(), nil
}

// pollUntil calls cond in a tight loop (each call is a gRPC round trip, so it does not spin
// on the CPU alone) and returns when it first held.
func pollUntil(ctx context.Context, within time.Duration, cond func() bool) (time.Time, error) {
	deadline := time.Now().Add(within)
	for {
		if cond() {
			return time.Now(), nil
		}
		if err := ctx.Err(); err != nil {
			return time.Time{}, err
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("not within %v", within)
		}
	}
}
