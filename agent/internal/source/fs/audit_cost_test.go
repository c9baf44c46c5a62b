package fs

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/fustor/fustor/agent/internal/source"
)

// BenchmarkAuditCost measures what an audit of the unchanged tree costs with each depth: pure
// true silence (share 0), the default rolling share (0.5: each audit lists one of two buckets of
// the silent directories) and a deep audit (every directory listed, every entry stat'ed), each
// next to a full snapshot walk. The tree is FUSTOR_FS_FIND_DIR when set (e.g. fustor-bench's
// 1M-file tree), else a generated one of 100,000 files.
func BenchmarkAuditCost(b *testing.B) {
	root := os.Getenv("FUSTOR_FS_FIND_DIR")
	if root == "" {
		root = b.TempDir()
		mkTree(b, root, 100_000)
	}
	s := newSource(b, root, nil)
	cache := source.NewAuditCache()
	if _, err := s.Audit(context.Background(), cache, source.AuditOptions{}, func([]source.Event) error { return nil }); err != nil {
		b.Fatal(err) // fills the cache: every later audit meets an unchanged tree
	}
	for _, tc := range []struct {
		name string
		opts func(cycle uint64) source.AuditOptions
	}{
		{"snapshot", nil},
		{"silence", func(c uint64) source.AuditOptions { return source.AuditOptions{Cycle: c} }},
		{"rolling-0.5", func(c uint64) source.AuditOptions { return source.AuditOptions{Cycle: c, Share: 0.5} }},
		{"deep", func(c uint64) source.AuditOptions { return source.AuditOptions{Cycle: c, Deep: true} }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var cycle uint64
			var rows, files, rolled uint64
			var took time.Duration
			for b.Loop() {
				cycle++
				start := time.Now()
				emit := func(evs []source.Event) error { rows += uint64(len(evs)); return nil }
				var st source.WalkStats
				var err error
				if tc.opts == nil {
					st, err = s.Snapshot(context.Background(), "/", source.OriginSnapshot, emit)
				} else {
					st, err = s.Audit(context.Background(), cache, tc.opts(cycle), emit)
				}
				if err != nil {
					b.Fatal(err)
				}
				took += time.Since(start)
				files += st.Files
				rolled += st.Rolled
			}
			n := float64(b.N)
			b.ReportMetric(float64(took.Microseconds())/1000/n, "ms/walk")
			b.ReportMetric(float64(rows)/n, "rows/walk")
			b.ReportMetric(float64(files)/n, "files-statted/walk")
			b.ReportMetric(float64(rolled)/n, "rolled-dirs/walk")
		})
	}
}
