package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/credentials/insecure"

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
	load := startQueryLoad(t, fustorv1.NewViewServiceClient(conn), "/", 5*time.Millisecond)
	load.waitMore(t, 100)
	r1.fusion.stop(t, syscall.SIGKILL)
	killed := time.Now()
	// Files written while r1 is down.
	writeFiles(t, root, "while-r1-down", 20)
	r2.waitViewEqualsTree(60*time.Second, "/")
	load.waitMore(t, 100) // on r2 alone
	r1.startFusion()
	r1.waitViewEqualsTree(60*time.Second, "/")
	load.Stop()

	t.Logf("%d queries, %d failed, slowest %v (r1 killed at +0)", load.asked, len(load.failures), load.slowest)
	for _, f := range load.failures {
		t.Logf("  failed at %+v: %v", f.at.Sub(killed), f.err)
	}
	if len(load.failures) != 0 {
		t.Errorf("%d queries failed while a replica was down; want none", len(load.failures))
	}
}
