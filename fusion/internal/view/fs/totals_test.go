package fs

import (
	"math"
	"strings"
	"testing"

	"github.com/fustor/fustor/sdk/fsbatch"
)

// TestTotalsNeverWrap (issue 22): every size is at most 2^63-1 (the decoder rejects larger),
// but three such files would make a directory's total size wrap. A file that would take the
// view's total past 2^63-1 is rejected, saying so; the totals stay exact, and removing a file
// gives its bytes back.
func TestTotalsNeverWrap(t *testing.T) {
	const big = math.MaxInt64 / 2
	tests := []struct {
		name string
		rows func() (ok, refused []string)
	}{
		{"new files", func() ([]string, []string) { return []string{"/a/1", "/b/2"}, []string{"/a/3"} }},
		{"a file growing", func() ([]string, []string) { return []string{"/a/1", "/b/2"}, []string{"/a/1+"} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := newView(t)
			ok, refused := tt.rows()
			for _, p := range ok {
				apply(t, v, OriginRealtime, row(p, 0, big, 10))
			}
			for _, p := range refused {
				size := uint64(big)
				if strings.HasSuffix(p, "+") {
					p, size = strings.TrimSuffix(p, "+"), big+2
				}
				if _, rej, err := v.Apply(OriginRealtime, 0, []fsbatch.Row{row(p, 0, size, 10)}); rej != 1 || err == nil || !strings.Contains(err.Error(), "would pass 2^63-1 bytes: rejected") {
					t.Fatalf("%s: rejected %d: %v", p, rej, err)
				}
			}
			st, err := v.Stats("/")
			if err != nil || st.TotalSize != 2*big || st.Files != 2 {
				t.Fatalf("stats %+v, %v; want 2 files of %d bytes", st, err, 2*big)
			}
			// A file that fits is still accepted once bytes were given back.
			apply(t, v, OriginRealtime, row("/b/2", fsbatch.FlagDelete, 0, 11))
			apply(t, v, OriginRealtime, row("/a/3", 0, big, 12))
			if st, _ := v.Stats("/a"); st.TotalSize != 2*big {
				t.Fatalf("/a after the delete: %+v", st)
			}
		})
	}
}
