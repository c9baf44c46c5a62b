package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
	"github.com/fustor/fustor/sdk/dial"
)

// TestTwoReplicasServeOneFleet (issue 16, HA): two Fusions, each fed by the same agent (one
// source, two agent pipes, one sender each: the source's bus is shared). A client given both
// addresses keeps answering while one replica is SIGKILLed; the replica started again catches
// up with files written while it was down.
func TestTwoReplicasServeOneFleet(t *testing.T) {
	root := makeTree(t)
	r1, r2 := newCluster(t, root), newCluster(t, root)
	must(t, os.WriteFile(filepath.Join(r1.cfgDir, "agent.yaml"), []byte(fmt.Sprintf(`agent_id: e2e-agent
log: {level: debug}
sources:
  data: {root: %s, modify_throttle: 200ms}
senders:
  r1: {address: %s, api_key: ingest-key}
  r2: {address: %s, api_key: ingest-key}
pipes:
  to-r1: {source: data, sender: r1, batch_size: 500, backoff_min: 100ms, backoff_max: 500ms, audit_interval: 1s}
  to-r2: {source: data, sender: r2, batch_size: 500, backoff_min: 100ms, backoff_max: 500ms, audit_interval: 1s}
`, root, r1.addr, r2.addr)), 0o644))
	r1.startFusion()
	r2.startFusion()
	r1.startAgent()
	r1.waitViewEqualsTree(60*time.Second, "/")
	r2.waitViewEqualsTree(60*time.Second, "/")

	conn, err := dial.Fusion([]string{r1.addr, r2.addr}, insecure.NewCredentials())
	must(t, err)
	defer conn.Close()
	views := fustorv1.NewViewServiceClient(conn)
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer query-key")
	// A steady query load: one Stat every 5 ms, failures recorded with their time.
	type failure struct {
		at  time.Time
		err error
	}
	var mu sync.Mutex
	var failures []failure
	var asked int
	var slowest time.Duration
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			t0 := time.Now()
			_, err := views.Stat(cctx, &fustorv1.StatRequest{View: "files", Path: "/"})
			took := time.Since(t0)
			cancel()
			mu.Lock()
			asked++
			slowest = max(slowest, took)
			if err != nil {
				failures = append(failures, failure{time.Now(), err})
			}
			mu.Unlock()
		}
	})
	more := func(n int) { // let the load run for n more queries
		mu.Lock()
		want := asked + n
		mu.Unlock()
		eventually(t, 30*time.Second, "the query load runs", func() error {
			mu.Lock()
			defer mu.Unlock()
			if asked < want {
				return errNotYet
			}
			return nil
		})
	}
	more(100)
	r1.fusion.stop(t, syscall.SIGKILL)
	killed := time.Now()
	// Files written while r1 is down.
	writeFiles(t, root, "while-r1-down", 20)
	r2.waitViewEqualsTree(60*time.Second, "/")
	more(100) // on r2 alone
	r1.startFusion()
	r1.waitViewEqualsTree(60*time.Second, "/")
	close(stop)
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d queries, %d failed, slowest %v (r1 killed at +0)", asked, len(failures), slowest)
	for _, f := range failures {
		t.Logf("  failed at %+v: %v", f.at.Sub(killed), f.err)
	}
	if len(failures) != 0 {
		t.Errorf("%d queries failed while a replica was down; want none", len(failures))
	}
}
