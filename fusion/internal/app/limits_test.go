package app

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/fustor/fustor/fusion/internal/config"
	"github.com/fustor/fustor/fusion/internal/view"
	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
)

// driverOf returns the only member's driver of view name.
func (h *harness) driverOf(name string) view.Driver {
	h.t.Helper()
	v, err := h.f.views.Get(name)
	if err != nil {
		h.t.Fatal(err)
	}
	return v.Members()[0].Driver
}

// pollUntil polls cond until it holds, failing the test after a long while.
func pollUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
	}
}

// retryDelay returns the RetryInfo delay of a RESOURCE_EXHAUSTED refusal, failing the test
// when err is not one or carries none; the message must name the config key.
func retryDelay(t *testing.T, err error, key string) time.Duration {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != codes.ResourceExhausted {
		t.Fatalf("err = %v; want RESOURCE_EXHAUSTED", err)
	}
	if !strings.Contains(st.Message(), key) {
		t.Fatalf("message %q does not name %s", st.Message(), key)
	}
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return ri.GetRetryDelay().AsDuration()
		}
	}
	t.Fatalf("refusal %v carries no RetryInfo", err)
	return 0
}

// TestExpensiveQueriesAreBoundedPerViewAndKey holds two globs in their slots (the view allows
// two, a key one) and checks that a third of the same key and one of a third key are refused
// RESOURCE_EXHAUSTED with a retry hint, that cheap queries are answered meanwhile, that the
// held globs stop walking when their clients cancel, and that the view answers as before.
func TestExpensiveQueriesAreBoundedPerViewAndKey(t *testing.T) {
	h := start(t, func(c *config.Config) {
		v := c.Views["demo"]
		v.QueryKeys = append(v.QueryKeys, "other-key", "third-key")
		v.MaxExpensiveQueries, v.MaxExpensiveQueriesPerKey, v.ExpensiveQueryWait = 2, 1, 20*time.Millisecond
		c.Views["demo"] = v
	})
	const dirs = 3000
	files := map[string]uint64{}
	for i := range dirs {
		files[fmt.Sprintf("/d%04d/f%04d.dat", i, i)] = uint64(i)
	}
	h.connect(t).snapshot(t, files)
	q, drv := h.views(), h.driverOf("demo")

	// A query whose metadata says hold waits in its slot until its client cancels.
	var mu sync.Mutex
	held := map[string]chan struct{}{"a": make(chan struct{}), "c": make(chan struct{})}
	h.f.query.SetAdmitHook(func(ctx context.Context) {
		md, _ := metadata.FromIncomingContext(ctx)
		if v := md.Get("hold"); len(v) == 1 {
			mu.Lock()
			close(held[v[0]])
			mu.Unlock()
			<-ctx.Done()
		}
	})
	t.Cleanup(func() { h.f.query.SetAdmitHook(nil) })
	glob := &fustorv1.FindRequest{View: "demo", Path: "/", Glob: "*nomatch*"}
	before := drv.Visits()
	errs := make(chan error, 2)
	var cancels []context.CancelFunc
	for _, hold := range []struct{ name, key string }{{"a", "demo-key"}, {"c", "other-key"}} {
		ctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(withKey(hold.key), "hold", hold.name))
		cancels = append(cancels, cancel)
		go func() {
			_, err := q.Find(ctx, glob)
			errs <- err
		}()
		<-held[hold.name]
	}

	_, err := q.Find(withKey("demo-key"), glob)
	if d := retryDelay(t, err, "max_expensive_queries_per_key"); d <= 0 {
		t.Fatalf("retry delay %v", d)
	}
	_, err = q.Find(withKey("third-key"), glob)
	if d := retryDelay(t, err, "views.demo.max_expensive_queries"); d <= 0 {
		t.Fatalf("retry delay %v", d)
	}
	// A tree's first chunk needs a slot too.
	tree, err := q.GetTree(withKey("third-key"), &fustorv1.GetTreeRequest{View: "demo", Path: "/"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = tree.Recv()
	retryDelay(t, err, "views.demo.max_expensive_queries")
	// Cheap queries take no slot.
	if _, err := q.Stat(withKey("demo-key"), &fustorv1.StatRequest{View: "demo", Path: "/d0001/f0001.dat"}); err != nil {
		t.Fatalf("Stat while the slots are taken: %v", err)
	}
	if resp, err := q.Find(withKey("third-key"), &fustorv1.FindRequest{View: "demo", Path: "/", Name: "f0002.dat"}); err != nil || len(resp.GetEntries()) != 1 {
		t.Fatalf("exact-name Find while the slots are taken: %v %v", resp, err)
	}
	if st := h.f.query.ExpensiveStats()["demo"]; st.Running != 2 || st.Rejected != 3 {
		t.Fatalf("expensive stats %+v; want 2 running, 3 rejected", st)
	}

	for _, cancel := range cancels {
		cancel()
	}
	for range 2 {
		if err := <-errs; status.Code(err) != codes.Canceled {
			t.Fatalf("held glob: %v; want CANCELED", err)
		}
	}
	pollUntil(t, "the held globs end", func() bool { return h.f.query.ExpensiveStats()["demo"].Running == 0 })
	// Cancelled, the held globs stopped at their walks' first check: not 2 × 3,000 directories.
	if got := drv.Visits() - before; got >= dirs {
		t.Fatalf("the cancelled globs read %d units; a complete one reads %d", got, dirs)
	}

	before = drv.Visits()
	resp, err := q.Find(withKey("third-key"), &fustorv1.FindRequest{View: "demo", Path: "/", Glob: "f000?.dat"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range resp.GetEntries() {
		got = append(got, e.GetPath())
	}
	want := []string{"/d0000/f0000.dat", "/d0001/f0001.dat", "/d0002/f0002.dat", "/d0003/f0003.dat", "/d0004/f0004.dat",
		"/d0005/f0005.dat", "/d0006/f0006.dat", "/d0007/f0007.dat", "/d0008/f0008.dat", "/d0009/f0009.dat"}
	if !slices.Equal(got, want) {
		t.Fatalf("glob after the refusals: %v", got)
	}
	if cost := drv.Visits() - before; cost < dirs {
		t.Fatalf("a complete glob read %d units; want at least %d", cost, dirs)
	}
	// A subtree's glob costs the subtree.
	before = drv.Visits()
	if resp, err := q.Find(withKey("third-key"), &fustorv1.FindRequest{View: "demo", Path: "/d0042", Glob: "*.dat"}); err != nil || len(resp.GetEntries()) != 1 {
		t.Fatalf("subtree glob: %v %v", resp, err)
	}
	if cost := drv.Visits() - before; cost > 10 {
		t.Fatalf("a glob under one directory read %d units", cost)
	}
}

// TestAnswersAreBoundedInBytes fills a view with long names and pages every answer of it by
// bytes: each message within views.demo.max_answer_bytes, the pages together the whole
// answer, once each; a find that would be megabytes is cut, the view's data unchanged.
func TestAnswersAreBoundedInBytes(t *testing.T) {
	const budget = 64 << 10
	h := start(t, func(c *config.Config) {
		v := c.Views["demo"]
		v.MaxAnswerBytes = budget
		c.Views["demo"] = v
	})
	a := h.connect(t)
	q, ctx := h.views(), withKey("demo-key")
	long := strings.Repeat("n", 1000)
	var want []string
	if err := a.send(&fustorv1.PushRequest{Payload: &fustorv1.PushRequest_SnapshotStart{SnapshotStart: &fustorv1.SnapshotStart{}}}); err != nil {
		t.Fatal(err)
	}
	a.ack(t)
	for i := range 400 {
		p := fmt.Sprintf("/long/%s%04d", long, i)
		want = append(want, p)
		// Fresh mtimes: every file is suspect (still being written?), for ListSuspects.
		a.enc.Add(p, 0, 1, time.Now().UnixNano(), 1, 0)
	}
	b, idx := a.enc.Flush()
	a.batch(t, fustorv1.MessageSource_MESSAGE_SOURCE_SNAPSHOT, b, idx)
	if err := a.send(&fustorv1.PushRequest{Payload: &fustorv1.PushRequest_SnapshotEnd{SnapshotEnd: &fustorv1.SnapshotEnd{}}}); err != nil {
		t.Fatal(err)
	}
	a.ack(t)
	lc, err := q.ListChanges(ctx, &fustorv1.ListChangesRequest{View: "demo"})
	if err != nil {
		t.Fatal(err)
	}
	cursor := lc.GetCursor()
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	w, err := q.Watch(watchCtx, &fustorv1.WatchRequest{View: "demo", Since: cursor})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Recv(); err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	heapBefore := ms.HeapAlloc

	// Each page within the budget; together every path, in order, once.
	within := func(what string, m proto.Message) {
		t.Helper()
		if n := proto.Size(m); n > budget {
			t.Fatalf("%s: a message of %d bytes; the budget is %d", what, n, budget)
		}
	}
	whole := func(what string, got []string, pages int) {
		t.Helper()
		if !slices.Equal(got, want) {
			t.Fatalf("%s: the pages hold %d paths; want the %d, in order, once each", what, len(got), len(want))
		}
		if pages < len(want)*2000/budget {
			t.Fatalf("%s: %d pages", what, pages)
		}
	}

	var got []string
	pages := 0
	for tok := ""; pages == 0 || tok != ""; pages++ {
		resp, err := q.ListDirectory(ctx, &fustorv1.ListDirectoryRequest{View: "demo", Path: "/long", PageSize: 10000, PageToken: tok})
		if err != nil {
			t.Fatal(err)
		}
		within("ListDirectory", resp)
		for _, e := range resp.GetEntries() {
			got = append(got, e.GetPath())
		}
		tok = resp.GetNextPageToken()
	}
	whole("ListDirectory", got, pages)

	tree, err := q.GetTree(ctx, &fustorv1.GetTreeRequest{View: "demo", Path: "/long"})
	if err != nil {
		t.Fatal(err)
	}
	got, pages = nil, 0
	for ; ; pages++ {
		chunk, err := tree.Recv()
		if err != nil {
			break
		}
		within("GetTree", chunk)
		for _, e := range chunk.GetEntries() {
			got = append(got, e.GetPath())
		}
	}
	whole("GetTree", got, pages)

	// A find of every file would be 800 KB: it is cut at the budget, truncated.
	for _, packed := range []bool{false, true} {
		find, err := q.Find(ctx, &fustorv1.FindRequest{View: "demo", Path: "/", Glob: "n*", Limit: 100000, PackedPaths: packed})
		if err != nil {
			t.Fatal(err)
		}
		within("Find", find)
		if !find.GetTruncated() || (len(find.GetEntries()) == 0 && len(find.GetPackedPaths()) == 0) {
			t.Fatalf("Find (packed %v): truncated %v; want a truncated answer", packed, find.GetTruncated())
		}
	}
	sus, err := q.ListSuspects(ctx, &fustorv1.ListSuspectsRequest{View: "demo", Limit: 100000})
	if err != nil {
		t.Fatal(err)
	}
	within("ListSuspects", sus)
	if !sus.GetTruncated() || len(sus.GetSuspects()) == 0 {
		t.Fatalf("ListSuspects: %d suspects, truncated %v; want a truncated answer", len(sus.GetSuspects()), sus.GetTruncated())
	}
	bs, err := q.ListBlindSpots(ctx, &fustorv1.ListBlindSpotsRequest{View: "demo", Limit: 100000})
	if err != nil {
		t.Fatal(err)
	}
	within("ListBlindSpots", bs)

	// The same files changed in real time: ListChanges and Watch page the changes by bytes.
	changed := map[string]uint64{}
	for _, p := range want {
		changed[p] = 2
	}
	a.realtime(t, changed, time.Now().Add(-time.Hour))
	// A change's paths may come twice (its attributes and its suspect flag change), its
	// sequence number once: the pages hold every sequence once, in order, and every path.
	changes := func(what string, got []*fustorv1.Change, pages int) []uint64 {
		t.Helper()
		var seqs []uint64
		var paths []string
		for _, c := range got {
			if len(seqs) > 0 && c.GetSequence() != seqs[len(seqs)-1]+1 {
				t.Fatalf("%s: sequence %d after %d", what, c.GetSequence(), seqs[len(seqs)-1])
			}
			seqs = append(seqs, c.GetSequence())
			paths = append(paths, c.GetPath())
		}
		slices.Sort(paths)
		whole(what, slices.Compact(paths), pages)
		return seqs
	}
	var all []*fustorv1.Change
	pages = 0
	for more := true; more; pages++ {
		resp, err := q.ListChanges(ctx, &fustorv1.ListChangesRequest{View: "demo", Since: cursor, Limit: 100000})
		if err != nil {
			t.Fatal(err)
		}
		within("ListChanges", resp)
		all = append(all, resp.GetChanges()...)
		cursor, more = resp.GetCursor(), resp.GetMore()
	}
	listed := changes("ListChanges", all, pages)
	all, pages = nil, 0
	for ; len(all) < len(listed); pages++ {
		m, err := w.Recv()
		if err != nil {
			t.Fatal(err)
		}
		within("Watch", m)
		all = append(all, m.GetChanges()...)
	}
	if watched := changes("Watch", all, pages); !slices.Equal(watched, listed) {
		t.Fatalf("Watch sent sequences %v..., ListChanges %v...", watched[:3], listed[:3])
	}

	runtime.GC()
	runtime.ReadMemStats(&ms)
	if grew := int64(ms.HeapAlloc) - int64(heapBefore); grew > 8<<20 {
		t.Fatalf("the heap grew by %d bytes over the answers", grew)
	}
	st, err := q.Stat(ctx, &fustorv1.StatRequest{View: "demo", Path: want[7]})
	if err != nil || st.GetEntry().GetSize() != 2 {
		t.Fatalf("Stat after the answers: %v %v", st, err)
	}
}
