package e2e

import (
	"context"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
)

// BenchmarkSnapshot1000Files measures agent start → the view's stats report all 1,000 files,
// with the real binaries built without the race detector. Run:
// go test -run '^$' -bench Snapshot1000Files -benchtime 5x ./fusion/e2e
func BenchmarkSnapshot1000Files(b *testing.B) {
	root := makeTree(b)
	bin := binaries(b, false)
	var total time.Duration
	for b.Loop() {
		b.StopTimer()
		c := newClusterWith(b, root, bin)
		c.startFusion()
		conn, err := grpc.NewClient(c.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		must(b, err)
		views := fustorv1.NewViewServiceClient(conn)
		ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer query-key")
		eventually(b, 30*time.Second, "fusion answers", func() error {
			_, err := views.ListViews(ctx, &fustorv1.ListViewsRequest{})
			return err
		})
		b.StartTimer()
		start := time.Now()
		c.agent = startProc(b, filepath.Join(c.bin, "fustor-agent"), "--config", filepath.Join(c.cfgDir, "agent.yaml"))
		eventually(b, time.Minute, "view holds 1000 files", func() error {
			st, err := views.GetStats(ctx, &fustorv1.GetStatsRequest{View: "files", Path: "/"})
			if err == nil && st.GetFileCount() == 1000 {
				return nil
			}
			return errNotYet
		})
		total += time.Since(start)
		b.StopTimer()
		_ = conn.Close()
		c.agent.stop(b, syscall.SIGTERM)
		c.fusion.stop(b, syscall.SIGTERM)
		b.StartTimer()
	}
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/snapshot")
}
