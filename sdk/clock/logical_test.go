package clock

import (
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var t0 = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func fixed(t time.Time) func() time.Time { return func() time.Time { return t } }

func TestWatermark(t *testing.T) {
	tests := []struct {
		name  string
		skews []time.Duration // Fusion now − mtime of each realtime sample
		want  time.Duration   // watermark − now
	}{
		{"no samples: Fusion now", nil, 0},
		{"agreeing clocks", []time.Duration{0, 0, 0, time.Second}, 0},
		{"NFS server 2 h behind", []time.Duration{2 * time.Hour, 2 * time.Hour, 2*time.Hour + time.Second}, -2 * time.Hour},
		{"a future touch cannot move it", []time.Duration{0, 0, -24 * time.Hour}, 0},
		{"cp -p of a year-old file cannot move it", []time.Duration{5 * time.Second, 5 * time.Second, 365 * 24 * time.Hour}, -5 * time.Second},
		{"ties go to the smaller skew", []time.Duration{10 * time.Second, 3 * time.Second}, -3 * time.Second},
		{"majority wins over skewed agents", []time.Duration{2 * time.Hour, 2 * time.Hour, -time.Hour, -time.Hour, 0, 0, 0}, 0},
		{"sub-second skews truncate to seconds", []time.Duration{1500 * time.Millisecond, 1200 * time.Millisecond}, -time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := NewLogical(fixed(t0), 0)
			for _, s := range tt.skews {
				l.Sample(t0.Add(-s).UnixNano())
			}
			if got := l.Watermark().Sub(t0); got != tt.want {
				t.Fatalf("watermark − now = %v; want %v", got, tt.want)
			}
		})
	}
}

func TestWindowFollowsDrift(t *testing.T) {
	l := NewLogical(fixed(t0), 100)
	for range 100 {
		l.Sample(t0.Add(-10 * time.Second).UnixNano())
	}
	if got := l.Watermark().Sub(t0); got != -10*time.Second {
		t.Fatalf("before drift %v", got)
	}
	for i := range 60 {
		l.Sample(t0.Add(-20 * time.Second).UnixNano())
		if i == 40 && l.Samples() != 100 {
			t.Fatalf("window holds %d samples", l.Samples())
		}
	}
	if got := l.Watermark().Sub(t0); got != -20*time.Second {
		t.Fatalf("after drift %v; want −20s", got)
	}
}

func FuzzWatermarkIsMode(f *testing.F) {
	f.Add([]byte{0, 1, 1, 2, 200, 200, 200})
	f.Fuzz(func(t *testing.T, data []byte) {
		const window = 16
		l := NewLogical(fixed(t0), window)
		for _, b := range data {
			l.Sample(t0.Add(-time.Duration(int8(b)) * time.Second).UnixNano())
		}
		got, ok := l.Skew()
		if len(data) == 0 {
			if ok {
				t.Fatal("skew without samples")
			}
			return
		}
		// Recount the last window samples.
		last := data[max(0, len(data)-window):]
		hist := map[int64]int{}
		for _, b := range last {
			hist[int64(int8(b))]++
		}
		want, wc := int64(0), 0
		for s, c := range hist {
			if c > wc || (c == wc && s < want) {
				want, wc = s, c
			}
		}
		if got != want {
			t.Fatalf("mode %d; recount %d (%v)", got, want, hist)
		}
	})
}
