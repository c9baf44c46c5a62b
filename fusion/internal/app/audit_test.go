package app

import (
	"testing"
	"time"

	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
	"github.com/fustor/fustor/sdk/fsbatch"
)

// TestAuditAndSentinelOverTheWire drives the audit lifecycle and sentinel feedback through
// the push stream and reads the result through ViewService.
func TestAuditAndSentinelOverTheWire(t *testing.T) {
	h := start(t, nil)
	a := h.connect(t)
	a.snapshot(t, map[string]uint64{"/d/keep": 1, "/d/gone": 2, "/d/sentinel": 3})
	old := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	for _, m := range []*fustorv1.PushRequest{{Payload: &fustorv1.PushRequest_AuditStart{AuditStart: &fustorv1.AuditStart{}}}} {
		if err := a.send(m); err != nil {
			t.Fatal(err)
		}
		a.ack(t)
	}
	a.enc.Add("/d", fsbatch.FlagDir, 0, old, 2, 0)
	a.enc.Add("/d/keep", 0, 1, old, 2, old)
	a.enc.Add("/d/sentinel", 0, 3, old, 2, old)
	a.enc.Add("/d/found", 0, 9, old, 2, old)
	b, idx := a.enc.Flush()
	if ack := a.batch(t, fustorv1.MessageSource_MESSAGE_SOURCE_AUDIT, b, idx); ack.GetRowsApplied() != 4 {
		t.Fatalf("audit ack %+v", ack)
	}
	if err := a.send(&fustorv1.PushRequest{Payload: &fustorv1.PushRequest_AuditEnd{AuditEnd: &fustorv1.AuditEnd{}}}); err != nil {
		t.Fatal(err)
	}
	a.ack(t)
	if err := a.send(&fustorv1.PushRequest{Payload: &fustorv1.PushRequest_SentinelFeedback{SentinelFeedback: &fustorv1.SentinelFeedback{
		Items: []*fustorv1.SentinelItem{{Path: "/d/sentinel", Exists: false}}}}}); err != nil {
		t.Fatal(err)
	}
	a.ack(t)

	ctx := withKey("demo-key")
	st, err := h.views().GetStats(ctx, &fustorv1.GetStatsRequest{View: "demo", Path: "/"})
	if err != nil {
		t.Fatal(err)
	}
	if st.GetFileCount() != 2 || st.GetAuditCycles() != 1 || st.GetLastAuditEnd() == nil || st.GetBlindSpotAdditions() != 1 ||
		st.GetBlindSpotDeletions() != 2 || !st.GetMeta().GetHasBlindSpot() || st.GetAuditRunning() {
		t.Fatalf("stats %v", st)
	}
	bs, err := h.views().ListBlindSpots(ctx, &fustorv1.ListBlindSpotsRequest{View: "demo"})
	if err != nil {
		t.Fatal(err)
	}
	if len(bs.GetAdditions()) != 1 || bs.GetAdditions()[0].GetPath() != "/d/found" || bs.GetAdditions()[0].GetKnownByAgent() ||
		len(bs.GetDeletions()) != 2 || bs.GetDeletions()[0] != "/d/gone" || bs.GetDeletions()[1] != "/d/sentinel" {
		t.Fatalf("blind spots %v", bs)
	}
}
