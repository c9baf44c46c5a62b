package viewapi

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestHasBlindSpot(t *testing.T) {
	for _, tt := range []struct {
		s    ConsistencyStats
		want bool
	}{
		{ConsistencyStats{}, false},
		{ConsistencyStats{Suspects: 3, Tombstones: 2}, false},
		{ConsistencyStats{Additions: 1}, true},
		{ConsistencyStats{Deletions: 1}, true},
	} {
		if got := tt.s.HasBlindSpot(); got != tt.want {
			t.Errorf("%+v.HasBlindSpot() = %v; want %v", tt.s, got, tt.want)
		}
	}
}

// Origins keep the values the fs view's tests and randomised inputs rely on (1..4, realtime
// first): Origin(1+rand.IntN(4)) must cover them all.
func TestOriginValues(t *testing.T) {
	if OriginRealtime != 1 || OriginSnapshot != 2 || OriginAudit != 3 || OriginOnDemand != 4 {
		t.Fatal("origin values changed")
	}
}
