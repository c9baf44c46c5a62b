package query

import (
	"math"
	"strings"
	"testing"

	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"

	"github.com/fustor/fustor/fusion/internal/view"
	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
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

// TestEntryBytesBoundsTheWireSize pins the byte budgets' estimate: an Entry and a Change at
// their largest (every number at its widest, both timestamps, a member) never take more on
// the wire than entryBytes says, so a page within its budget is a message within it.
func TestEntryBytesBoundsTheWireSize(t *testing.T) {
	for _, n := range []int{1, 255, 4096} {
		name := strings.Repeat("n", min(n, 1024))
		e := view.Entry{Path: "/" + strings.Repeat("d", n) + "/" + name, Name: name, IsDir: true, Size: math.MaxUint64,
			MtimeNs: math.MinInt64, LastUpdatedAtNs: math.MaxInt64, Suspect: true, KnownByAgent: true, AuditSkipped: true,
			ChildCount: math.MaxInt}
		member := "storage-1"
		pe := toProto(e, false)
		pe.Member = member
		wrapped := &fustorv1.ListDirectoryResponse{Entries: []*fustorv1.Entry{pe}}
		if got, est := proto.Size(wrapped), entryBytes(e, member); got > est {
			t.Errorf("path of %d bytes: an entry takes %d bytes on the wire; entryBytes says %d", len(e.Path), got, est)
		}
		ch := toChange(view.Change{Seq: math.MaxUint64, Kind: view.ChangeModified, Origin: view.OriginOnDemand, Entry: e}, member)
		if got, est := proto.Size(&fustorv1.ListChangesResponse{Changes: []*fustorv1.Change{ch}}), entryBytes(e, member); got > est {
			t.Errorf("path of %d bytes: a change takes %d bytes on the wire; entryBytes says %d", len(e.Path), got, est)
		}
		sus := &fustorv1.ListSuspectsResponse{Suspects: []*fustorv1.Suspect{{Entry: pe, ExpiresInMs: math.MinInt64}}}
		if got, est := proto.Size(sus), entryBytes(e, member)+suspectOverhead; got > est {
			t.Errorf("path of %d bytes: a suspect takes %d bytes on the wire; the budget says %d", len(e.Path), got, est)
		}
	}
}
