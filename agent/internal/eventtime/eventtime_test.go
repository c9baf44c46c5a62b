package eventtime

import (
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type fakeNow struct {
	mu sync.Mutex
	t  time.Time
}

func (f *fakeNow) now() time.Time  { f.mu.Lock(); defer f.mu.Unlock(); return f.t }
func (f *fakeNow) set(t time.Time) { f.mu.Lock(); f.t = t; f.mu.Unlock() }

func TestIndexIsCorrectedAndNeverRegresses(t *testing.T) {
	base := time.Unix(1_700_000_000, 0)
	f := &fakeNow{t: base}
	c := New(f.now)
	if got := c.Index(); got != uint64(base.UnixMilli()) {
		t.Fatalf("Index = %d; want %d", got, base.UnixMilli())
	}
	c.SetDrift(2 * time.Hour)
	want := uint64(base.Add(2 * time.Hour).UnixMilli())
	if got := c.Index(); got != want {
		t.Fatalf("with drift Index = %d; want %d", got, want)
	}
	steps := []struct {
		name  string
		wall  time.Time
		drift time.Duration
	}{
		{"wall clock stepped back 1 min", base.Add(-time.Minute), 2 * time.Hour},
		{"drift re-estimated lower", base, time.Hour},
		{"both", base.Add(-time.Hour), 0},
	}
	for _, s := range steps {
		f.set(s.wall)
		c.SetDrift(s.drift)
		if got := c.Index(); got != want {
			t.Errorf("%s: Index = %d; want it held at %d", s.name, got, want)
		}
	}
	if c.Held() != uint64(len(steps)) {
		t.Errorf("Held = %d; want %d", c.Held(), len(steps))
	}
	f.set(base.Add(3 * time.Hour))
	if got := c.Index(); got <= want {
		t.Errorf("Index = %d after time passed; want > %d", got, want)
	}
}

func TestIndexIsMonotonicUnderConcurrency(t *testing.T) {
	c := New(nil)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			last := uint64(0)
			for range 10_000 {
				i := c.Index()
				if i < last {
					t.Errorf("index went from %d to %d", last, i)
					return
				}
				last = i
			}
		})
	}
	wg.Wait()
}

func TestEstimateDrift(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	ns := func(d time.Duration) int64 { return now.Add(d).UnixNano() }
	spread := func(n int, newest time.Duration) []int64 {
		out := make([]int64, n)
		for i := range out {
			out[i] = ns(newest - time.Duration(n-1-i)*time.Minute)
		}
		return out
	}
	cases := []struct {
		name   string
		mtimes []int64
		want   time.Duration
	}{
		{"no directories", nil, 0},
		{"server clock 2 h ahead", spread(5000, 2*time.Hour), 2*time.Hour - 4*time.Minute},
		{"server clock in step", spread(5000, 0), 0},
		{"idle tree (newest a week old) is not read as a slow clock", spread(5000, -7*24*time.Hour), 0},
		{"a few directories touched a year ahead are ignored", append(spread(5000, 0), ns(365*24*time.Hour), ns(365*24*time.Hour)), 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := EstimateDrift(tc.mtimes, now)
			// the percentile lands within a few minutes of the newest in these spreads
			if d := got - tc.want; d < -5*time.Minute || d > 5*time.Minute {
				t.Errorf("EstimateDrift = %v; want about %v", got, tc.want)
			}
		})
	}
}

func TestNormalizeMapsFileTimeToAgentTime(t *testing.T) {
	c := New(nil)
	c.SetDrift(time.Hour)
	m := time.Now().Add(time.Hour).UnixNano()
	if d := time.Duration(c.Normalize(m) - time.Now().UnixNano()); d > time.Second || d < -time.Second {
		t.Errorf("normalized mtime is %v from agent now; want about 0", d)
	}
}
