package app

import (
	"testing"

	"google.golang.org/protobuf/proto"

	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
)

// BenchmarkForestStats times GetStats of the root over loopback gRPC: an fs view, and a forest
// of three members asked without member, best by total size (fustor-bench's F3 on small
// trees; Fusion's handling and the answer's size are what differ). Run:
//
//	go test -run '^$' -bench ForestStats ./fusion/internal/app
func BenchmarkForestStats(b *testing.B) {
	h := start(b, forestConfig)
	for _, key := range []string{"ingest-1", "ingest-2", "ingest-3"} {
		h.connectWith(b, key).snapshotB(b, submission(100, 10))
	}
	q, ctx := h.views(), withKey("demo-key")
	for _, c := range []struct {
		name string
		req  *fustorv1.GetStatsRequest
	}{
		{"fs", &fustorv1.GetStatsRequest{View: "fs1", Path: "/"}},
		{"forest-best", &fustorv1.GetStatsRequest{View: "all", Path: "/", BestBy: fustorv1.StatsBest_STATS_BEST_TOTAL_SIZE}},
	} {
		b.Run(c.name, func(b *testing.B) {
			var size int
			for b.Loop() {
				resp, err := q.GetStats(ctx, c.req)
				if err != nil {
					b.Fatal(err)
				}
				size = protoSize(resp)
			}
			b.ReportMetric(float64(size), "B/answer")
		})
	}
}

func protoSize(m proto.Message) int { return proto.Size(m) }
