package client_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"slices"
	"time"

	"google.golang.org/grpc/status"

	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
	"github.com/fustor/fustor/sdk/client"
)

// Connect to Fusion and ask for a subtree's figures. addr is "127.0.0.1:7070" for `make demo`
// (several replicas: "fusion-1:7070,fusion-2:7070").
func Example() {
	c, err := client.New(addr, client.WithKey("demo-key"))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := c.GetStats(ctx, &fustorv1.GetStatsRequest{View: "demo", Path: "/upload"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("files:", st.GetFileCount(), "dirs:", st.GetDirCount(), "bytes:", st.GetTotalSize())
	fmt.Println("newest:", st.GetLatestMtime().AsTime().UTC().Format(time.RFC3339))
	// Output:
	// files: 3 dirs: 2 bytes: 26
	// newest: 2026-01-02T03:04:05Z
}

// Entries follows the listing's pages: here 10 entries a page.
func ExampleClient_Entries() {
	c, err := client.New(addr, client.WithKey("demo-key"))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	n := 0
	req := &fustorv1.ListDirectoryRequest{View: "demo", Path: "/many", PageSize: 10}
	for e, err := range c.Entries(context.Background(), req) {
		if err != nil {
			log.Fatal(err)
		}
		if n < 3 {
			fmt.Println(e.GetPath(), e.GetSize())
		}
		n++
	}
	fmt.Println(n, "entries")
	// Output:
	// /many/f00.txt 1
	// /many/f01.txt 1
	// /many/f02.txt 1
	// 25 entries
}

// Tree streams a subtree depth-first (below its top); breaking out of the loop ends the stream.
func ExampleClient_Tree() {
	c, err := client.New(addr, client.WithKey("demo-key"))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	for e, err := range c.Tree(context.Background(), &fustorv1.GetTreeRequest{View: "demo", Path: "/upload"}) {
		if err != nil {
			log.Fatal(err)
		}
		kind := "f"
		if e.GetIsDir() {
			kind = "d"
		}
		fmt.Println(kind, e.GetPath())
	}
	// Output:
	// d /upload/run-0001
	// f /upload/run-0001/data_0001.dat
	// f /upload/run-0001/data_0002.dat
	// d /upload/run-0002
	// f /upload/run-0002/data_0001.dat
}

// Find by glob; packed paths are the cheapest answer when only the paths matter.
func ExampleClient_Find() {
	c, err := client.New(addr, client.WithKey("demo-key"))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	resp, err := c.Find(context.Background(), &fustorv1.FindRequest{View: "demo", Path: "/", Glob: "data_*.dat", PackedPaths: true})
	if err != nil {
		log.Fatal(err)
	}
	for _, p := range client.FindPaths(resp) {
		fmt.Println(p)
	}
	// Output:
	// /upload/run-0001/data_0001.dat
	// /upload/run-0001/data_0002.dat
	// /upload/run-0002/data_0001.dat
}

// Errors keep their gRPC code: a path the view does not hold is NotFound.
func ExampleClient_Stat() {
	c, err := client.New(addr, client.WithKey("demo-key"))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	st, err := c.Stat(ctx, &fustorv1.StatRequest{View: "demo", Path: "/docs/README.txt"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(st.GetEntry().GetName(), st.GetEntry().GetSize(), st.GetEntry().GetKnownByAgent())
	_, err = c.Stat(ctx, &fustorv1.StatRequest{View: "demo", Path: "/docs/gone.txt"})
	fmt.Println(status.Code(err))
	// Output:
	// README.txt 42 true
	// NotFound
}

// Watch from a cursor: the changes after it come, whenever the watch starts. A cron job does
// the same with Changes, keeping the last cursor between runs.
func ExampleClient_Watch() {
	c, err := client.New(addr, client.WithKey("demo-key"))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// An empty Since answers no changes and the current cursor.
	now, err := c.ListChanges(ctx, &fustorv1.ListChangesRequest{View: "demo", Path: "/"})
	if err != nil {
		log.Fatal(err)
	}
	if err := writeFile(filepath.Join(dataDir, "inbox", "new.dat"), "hello\n"); err != nil {
		log.Fatal(err)
	}
	req := &fustorv1.WatchRequest{View: "demo", Path: "/inbox", Glob: "*.dat", Since: now.GetCursor()}
	for b, err := range c.Watch(ctx, req) {
		if err != nil {
			log.Fatal(err)
		}
		i := slices.IndexFunc(b.Changes, func(ch *fustorv1.Change) bool { return ch.GetKind() == fustorv1.ChangeKind_CHANGE_KIND_CREATED })
		if i >= 0 {
			fmt.Println(b.Changes[i].GetKind(), b.Changes[i].GetPath())
			break
		}
	}
	_ = os.Remove(filepath.Join(dataDir, "inbox", "new.dat"))
	// Output:
	// CHANGE_KIND_CREATED /inbox/new.dat
}

// Changes is the change feed for pollers: a cron job keeps the last cursor between runs and
// reads what happened since, page after page.
func ExampleClient_Changes() {
	c, err := client.New(addr, client.WithKey("demo-key"), client.WithCallTimeout(10*time.Second))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	// The first run has no cursor: an empty Since answers the current one.
	first, err := c.ListChanges(ctx, &fustorv1.ListChangesRequest{View: "demo", Path: "/"})
	if err != nil {
		log.Fatal(err)
	}
	cursor := first.GetCursor()
	dir := filepath.Join(dataDir, "reports")
	for _, name := range []string{"q1.csv", "q2.csv"} {
		if err := writeFile(filepath.Join(dir, name), name); err != nil {
			log.Fatal(err)
		}
	}
	// Wait until both files are in the view and settled (a real cron job runs later).
	st, err := c.WaitStable(ctx, &fustorv1.WaitStableRequest{View: "demo", Path: "/reports", MinFiles: 2})
	if err != nil || !st.GetStable() {
		log.Fatal(err, st.GetReason())
	}
	// The next run: what was created since the cursor.
	var created []string
	for b, err := range c.Changes(ctx, &fustorv1.ListChangesRequest{View: "demo", Path: "/reports", Glob: "*.csv", Since: cursor}) {
		if err != nil {
			log.Fatal(err)
		}
		if b.Reset != client.NoReset {
			log.Fatalf("%v: resync /reports", b.Reset)
		}
		for _, ch := range b.Changes {
			if ch.GetKind() == fustorv1.ChangeKind_CHANGE_KIND_CREATED {
				created = append(created, ch.GetPath())
			}
		}
		cursor = b.Cursor // saved for the run after
	}
	slices.Sort(created)
	fmt.Println(created)
	// Output:
	// [/reports/q1.csv /reports/q2.csv]
}

// The AdminService needs an admin key (the demo's key is one).
func ExampleClient_Admin() {
	c, err := client.New(addr, client.WithKey("demo-key"))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	resp, err := c.Admin().ListSessions(context.Background(), &fustorv1.ListSessionsRequest{View: "demo"})
	if err != nil {
		log.Fatal(err)
	}
	for _, s := range resp.GetSessions() {
		fmt.Println(s.GetPipeId(), s.GetRole())
	}
	// Output:
	// demo ROLE_LEADER
}

// Several replicas: calls go to the healthy ones. Here the second address has no Fusion, and
// every call still finds the first.
func ExampleNew_replicas() {
	c, err := client.New(addr+",127.0.0.1:1", client.WithKey("demo-key"))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	for range 2 {
		resp, err := c.ListViews(context.Background())
		if err != nil {
			log.Fatal(err)
		}
		var views []string
		for _, v := range resp.GetViews() {
			views = append(views, v.GetId()+" ("+v.GetDriver()+")")
		}
		fmt.Println(views)
	}
	// Output:
	// [all (forest-fs) demo (fs)]
	// [all (forest-fs) demo (fs)]
}
