package query

import (
	"testing"

	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"

	"github.com/fustor/fustor/fusion/internal/view"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestToProtosEqualsToProto(t *testing.T) {
	entries := []view.Entry{
		{Path: "/a", Name: "a", IsDir: true, ChildCount: 3, MtimeNs: 1_700_000_000_123_456_789},
		{Path: "/a/b", Name: "b", Size: 42, MtimeNs: 5, LastUpdatedAtNs: 1_700_000_001_000_000_001, Suspect: true},
		{Path: "/old", Name: "old", MtimeNs: -1_500_000_001, KnownByAgent: true, AuditSkipped: true},
		{Path: "/zero", Name: "zero"},
	}
	for _, onlyPaths := range []bool{false, true} {
		got := toProtos(entries, onlyPaths)
		for i, e := range entries {
			if want := toProto(e, onlyPaths); !proto.Equal(got[i], want) {
				t.Errorf("onlyPaths=%v entry %d: %v; want %v", onlyPaths, i, got[i], want)
			}
		}
	}
}
