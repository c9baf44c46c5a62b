package source

import (
	"context"
	"maps"
	"math"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRollBuckets(t *testing.T) {
	for _, tt := range []struct {
		share float64
		want  uint64
	}{
		{0, 0}, {-1, 0}, {math.NaN(), 0}, {0.5, 2}, {0.1, 10}, {0.3, 4}, {0.25, 4}, {1, 1}, {2, 1},
		{1e-30, MaxRollBuckets},
	} {
		if got := (AuditOptions{Share: tt.share}).RollBuckets(); got != tt.want {
			t.Errorf("share %v: %d buckets, want %d", tt.share, got, tt.want)
		}
	}
}

func TestAuditCache(t *testing.T) {
	c := NewAuditCache()
	if c.Silent("/a", 1) {
		t.Fatal("an empty cache calls a directory silent")
	}
	c.Set("/a", 1)
	if !c.Silent("/a", 1) || c.Silent("/a", 2) || c.Len() != 1 {
		t.Fatalf("after Set: silent(1)=%v silent(2)=%v len=%d", c.Silent("/a", 1), c.Silent("/a", 2), c.Len())
	}
	c.Reset()
	if c.Silent("/a", 1) || c.Len() != 0 {
		t.Fatal("Reset kept a directory")
	}
}

func TestOrigin(t *testing.T) {
	for o, want := range map[Origin]string{OriginRealtime: "realtime", OriginSnapshot: "snapshot", OriginAudit: "audit",
		OriginOnDemand: "on_demand", Origin(9): "origin(9)"} {
		if o.String() != want {
			t.Errorf("%d: %q, want %q", int(o), o.String(), want)
		}
	}
	if OriginRealtime.IsWalk() || !OriginSnapshot.IsWalk() || !OriginAudit.IsWalk() || !OriginOnDemand.IsWalk() {
		t.Error("IsWalk: only snapshot, audit and on-demand are walks")
	}
}

type snap struct{}

func (snap) Snapshot(context.Context, string, Origin, func([]Event) error) (WalkStats, error) {
	return WalkStats{}, nil
}

type watching struct{ snap }

func (watching) Watch(context.Context, func(Event)) error { return nil }

type log struct{ snap }

func (log) Follow(context.Context, uint64, int, func([]Event) error) error { return nil }
func (log) LastIndex() (uint64, error)                                     { return 0, nil }
func (log) Audit(context.Context, *AuditCache, AuditOptions, func([]Event) error) (WalkStats, error) {
	return WalkStats{}, nil
}
func (log) Sentinel([]string) []SentinelItem { return nil }

func TestDescribe(t *testing.T) {
	for name, tt := range map[string]struct {
		src  Snapshotter
		want Capabilities
	}{
		"walk only": {snap{}, Capabilities{}},
		"watcher":   {watching{}, Capabilities{Realtime: true}},
		"log":       {log{}, Capabilities{Realtime: true, Resume: true, Audit: true, Sentinel: true}},
	} {
		if got := Describe(tt.src); got != tt.want {
			t.Errorf("%s: %+v, want %+v", name, got, tt.want)
		}
	}
}

// TestAuditCacheCompleted: after a completed audit the cache keeps, and returns, only the
// directories that audit set; those of earlier audits it did not reach are dropped.
func TestAuditCacheCompleted(t *testing.T) {
	c := NewAuditCacheFrom(map[string]int64{"/": 1, "/gone": 2})
	if !c.Silent("/gone", 2) || c.Len() != 2 {
		t.Fatal("a restored cache does not hold its directories")
	}
	c.Begin()
	c.Set("/", 1)
	c.Set("/new", 3)
	got := c.Completed()
	if want := map[string]int64{"/": 1, "/new": 3}; !maps.Equal(got, want) {
		t.Fatalf("Completed = %v; want %v", got, want)
	}
	if c.Silent("/gone", 2) || c.Len() != 2 {
		t.Fatal("a directory the completed audit did not reach is still cached")
	}
	got["/"] = 99 // a copy: the cache is not changed through it
	if !c.Silent("/", 1) {
		t.Fatal("Completed returned the cache's own map")
	}
}
