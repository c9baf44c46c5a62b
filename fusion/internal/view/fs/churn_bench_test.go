package fs

import (
	"testing"

	"github.com/fustor/fustor/sdk/fsbatch"
)

// BenchmarkApplyRealtimeChurn reports realtime rows per second into a 1M-file view when files
// are deleted as fast as they are written (a scratch directory, a build tree): every file row
// is followed by the delete of the file before it, so tombstones exist and every row touches a
// path-keyed table.
func BenchmarkApplyRealtimeChurn(b *testing.B) {
	rows := benchRows(1_000_000)
	v := New(nil, Options{})
	applyAll(b, v, OriginSnapshot, rows)
	churn := make([]fsbatch.Row, 0, 2*len(rows))
	for i := range rows {
		churn = append(churn, rows[i])
		if i > 0 {
			del := rows[i-1]
			del.Flags |= fsbatch.FlagDelete
			churn = append(churn, del)
		}
	}
	b.ResetTimer()
	for b.Loop() {
		applyAll(b, v, OriginRealtime, churn)
	}
	b.ReportMetric(float64(len(churn))*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}
