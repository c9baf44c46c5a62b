package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
	"github.com/fustor/fustor/sdk/debughttp"
)

// Keys and names of the bench's own configuration; loopback only.
const (
	ingestKey = "bench-ingest-key"
	queryKey  = "bench-query-key"
	adminKey  = "bench-admin-key"
	pipeName  = "bench"
)

// fusionProc is a running Fusion with one pipe feeding one view.
type fusionProc struct {
	*proc
	addr, debug, view string
	conn              *grpc.ClientConn
}

// startFusion writes name.yaml into dir and starts Fusion with one view.
func startFusion(ctx context.Context, bin, dir, name, view string) (*fusionProc, error) {
	return launchFusion(ctx, bin, dir, name, view, func(addr, debug string) string { return fusionConfig(addr, debug, view) })
}

// fusionConfig is the configuration of a Fusion with one pipe feeding one fs view.
func fusionConfig(addr, debug, view string) string {
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
      - {key: %s, pipe: %s}
pipes:
  %s: {receiver: default, views: [%s], session_timeout: 30s}
views:
  %s: {driver: fs, schema: fs, live: true, query_keys: [%s]}
`, addr, adminKey, debug, ingestKey, pipeName, pipeName, view, view, queryKey)
}

// launchFusion writes name.yaml (config, given Fusion's listen and debug addresses) into dir
// and starts Fusion; view is the one whose node count drives the progress display.
func launchFusion(ctx context.Context, bin, dir, name, view string, config func(addr, debug string) string) (*fusionProc, error) {
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	debug, err := freePort()
	if err != nil {
		return nil, err
	}
	cfg := config(addr, debug)
	path := filepath.Join(dir, name+".yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return nil, fmt.Errorf("write fusion config: %w", err)
	}
	p, err := startProc(filepath.Join(bin, "fustor-fusion"), name, dir, "--config", path, "--log.format", "json")
	if err != nil {
		return nil, err
	}
	f := &fusionProc{proc: p, addr: addr, debug: debug, view: view}
	if f.conn, err = dial(addr); err != nil {
		_ = f.stop(time.Second)
		return nil, err
	}
	// Ready when it answers; a daemon that dies on start is reported with its log.
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := fustorv1.NewViewServiceClient(f.conn).ListViews(withKey(ctx, queryKey), &fustorv1.ListViewsRequest{})
		if err == nil {
			return f, nil
		}
		if p.exited() || time.Now().After(deadline) || ctx.Err() != nil {
			_ = f.close()
			return nil, fmt.Errorf("start fusion: not answering (%v); see %s", err, p.logPath)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (f *fusionProc) close() error {
	if f == nil {
		return nil
	}
	if f.conn != nil {
		_ = f.conn.Close()
	}
	return f.stop(15 * time.Second)
}

func (f *fusionProc) views() fustorv1.ViewServiceClient { return fustorv1.NewViewServiceClient(f.conn) }

// nodes is the view's node count from the admin API: it answers while the first snapshot is
// still running, when ViewService queries are UNAVAILABLE, so it drives the progress display.
func (f *fusionProc) nodes(ctx context.Context) int64 {
	return int64(f.viewInfo(ctx, f.view).GetNodes())
}

// viewInfo is view's entry in the admin API's list (nil when it cannot be read).
func (f *fusionProc) viewInfo(ctx context.Context, view string) *fustorv1.AdminViewInfo {
	resp, err := fustorv1.NewAdminServiceClient(f.conn).ListViews(withKey(ctx, adminKey), &fustorv1.AdminServiceListViewsRequest{})
	if err != nil {
		return nil
	}
	for _, v := range resp.GetViews() {
		if v.GetId() == view {
			return v
		}
	}
	return nil
}

// memStats reads Fusion's /debug/memstats after a forced GC.
func (f *fusionProc) memStats(ctx context.Context) (debughttp.MemStats, error) {
	var ms debughttp.MemStats
	err := f.debugGet(ctx, "/debug/memstats?gc=1", func(r io.Reader) error { return json.NewDecoder(r).Decode(&ms) })
	return ms, err
}

// memStatsNoGC reads Fusion's /debug/memstats without forcing a GC (for its GC count).
func (f *fusionProc) memStatsNoGC(ctx context.Context) (debughttp.MemStats, error) {
	var ms debughttp.MemStats
	err := f.debugGet(ctx, "/debug/memstats", func(r io.Reader) error { return json.NewDecoder(r).Decode(&ms) })
	return ms, err
}

// debugGet reads path from Fusion's debug endpoint with read. Connections are not kept: the
// bench's own idle connections must not outlive a run.
func (f *fusionProc) debugGet(ctx context.Context, path string, read func(io.Reader) error) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+f.debug+path, nil)
	if err != nil {
		return fmt.Errorf("get fusion %s: %w", path, err)
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("get fusion %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("get fusion %s: %s", path, resp.Status)
	}
	if err := read(resp.Body); err != nil {
		return fmt.Errorf("read fusion %s: %w", path, err)
	}
	return nil
}

// startAgent writes agent.yaml into dir and starts an agent on root sending to addr.
func startAgent(bin, dir, root, addr string, auditInterval time.Duration, auditShare float64) (*proc, error) {
	return launchAgent(bin, dir, "agent", agentConfig("fustor-bench-agent", root, addr, ingestKey, pipeName, auditInterval, auditShare))
}

// agentConfig is the configuration of an agent with one pipe from root to Fusion at addr.
func agentConfig(id, root, addr, key, pipe string, auditInterval time.Duration, auditShare float64) string {
	// The marker is the bench's, not part of the measured tree. Audits are the leader's
	// periodic walks; their interval and rolling share are the bench's to choose, and every
	// third is deep, so the three awaited are full (empty cache), unchanged and deep.
	return fmt.Sprintf(`agent_id: %s
log: {level: info, format: json}
sources:
  tree: {driver: fs, root: %q, excludes: [%q]}
senders:
  fusion: {driver: grpc, address: %s, api_key: %s}
pipes:
  %s: {source: tree, sender: fusion, audit_interval: %s, audit_rolling_share: %g, audit_deep_every: 3, backoff_min: 200ms, backoff_max: 2s}
`, id, root, MarkerName, addr, key, pipe, auditInterval, auditShare)
}

// launchAgent writes name.yaml (cfg) into dir and starts an agent on it.
func launchAgent(bin, dir, name, cfg string) (*proc, error) {
	path := filepath.Join(dir, name+".yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return nil, fmt.Errorf("write agent config: %w", err)
	}
	return startProc(filepath.Join(bin, "fustor-agent"), name, dir, "--config", path, "--log.format", "json")
}

func dial(addr string) (*grpc.ClientConn, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	return conn, nil
}

func withKey(ctx context.Context, key string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+key)
}
