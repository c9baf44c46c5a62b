package bench

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
)

// verify times ViewService.Verify of the whole tree (the leader's deep walk, compared with the
// view row by row) against the find walk of P1, and records what it found: on the unchanged
// tree every count of differences must be zero.
func (r *runner) verify(ctx context.Context, fusion *fusionProc) error {
	r.prog.Start("verify / (deep walk compared with the view)", 0, nil)
	defer r.prog.Stop()
	vctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	start := time.Now()
	resp, err := fusion.views().Verify(withKey(vctx, adminKey), &fustorv1.VerifyRequest{View: fusion.view, Path: "/",
		Timeout: durationpb.New(29 * time.Minute)})
	if err != nil {
		return fmt.Errorf("verify /: %w", err)
	}
	took := time.Since(start)
	diffs := resp.GetMissing() + resp.GetExtra() + resp.GetDifferent()
	r.rep.Add("V", "verify_ms", "fustorctl verify / (leader's deep walk compared with the view)", ms(took), "ms", nil,
		fmt.Sprintf("%s entries walked, %d changed during the walk", commas(int64(resp.GetWalked())), resp.GetChangedDuringWalk()))
	if r.findSnapMs > 0 {
		r.rep.Add("V", "verify_ratio", "verify / ÷ find -printf", ms(took)/r.findSnapMs, "x", nil, "")
	}
	r.rep.Add("V", "verify_differences", "missing + extra + different on the unchanged tree", float64(diffs), "", AtMost(0),
		fmt.Sprintf("missing %d, extra %d, different %d", resp.GetMissing(), resp.GetExtra(), resp.GetDifferent()))
	return nil
}
