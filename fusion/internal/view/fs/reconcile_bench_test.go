package fs

import (
	"testing"
	"time"

	"github.com/fustor/fustor/sdk/fsbatch"
)

// BenchmarkSnapshotReconcile measures the write-locked work a snapshot adds to the apply loop
// on a view of 1M files: SnapshotStart clearing the seen marks and SnapshotEnd judging the
// whole tree, when the snapshot reported everything (nothing to remove) and when it missed 1 %.
func BenchmarkSnapshotReconcile(b *testing.B) {
	rows := benchRows(1_000_000)
	root := []fsbatch.Row{{Flags: fsbatch.FlagDir}}
	for _, missed := range []int{0, 100} { // every missed-th file is not reported; 0 = none
		name := "complete"
		if missed > 0 {
			name = "missed-1pct"
		}
		b.Run(name, func(b *testing.B) {
			v := New(nil, Options{})
			applyAll(b, v, OriginSnapshot, rows)
			seen := rows
			if missed > 0 {
				seen = make([]fsbatch.Row, 0, len(rows))
				for i, r := range rows {
					if i%missed != 0 {
						seen = append(seen, r)
					}
				}
			}
			var start, end time.Duration
			for b.Loop() {
				b.StopTimer()
				applyAll(b, v, OriginSnapshot, rows) // back to the whole tree
				b.StartTimer()
				t0 := time.Now()
				v.SnapshotStart("s")
				start += time.Since(t0)
				b.StopTimer()
				applyAll(b, v, OriginSnapshot, root)
				applyAll(b, v, OriginSnapshot, seen)
				b.StartTimer()
				t0 = time.Now()
				gone := v.SnapshotEnd("s", false)
				end += time.Since(t0)
				if want := len(rows) - len(seen); len(gone) != want {
					b.Fatalf("removed %d, want %d", len(gone), want)
				}
			}
			b.ReportMetric(float64(start.Microseconds())/1000/float64(b.N), "ms/start")
			b.ReportMetric(float64(end.Microseconds())/1000/float64(b.N), "ms/end")
		})
	}
}
