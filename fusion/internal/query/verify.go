package query

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/fustor/fustor/fusion/internal/errs"
	"github.com/fustor/fustor/fusion/internal/server"
	"github.com/fustor/fustor/fusion/internal/view"
	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
	"github.com/fustor/fustor/sdk/fspath"
)

// Bounds of a verify.
const (
	DefaultVerifyTimeout  = 5 * time.Minute
	MaxVerifyTimeout      = time.Hour
	DefaultVerifyExamples = 20
	MaxVerifyExamples     = 1000
)

// Verify asks the view's leader agent for a deep walk of a subtree (an on-demand scan whose
// rows Fusion compares instead of applying) and answers how the view differs from it.
func (s *Service) Verify(ctx context.Context, req *fustorv1.VerifyRequest) (*fustorv1.VerifyResponse, error) {
	began := time.Now()
	name := req.GetView()
	if name == "" {
		return nil, fmt.Errorf("%w: view is required", errs.ErrInvalidArgument)
	}
	v, err := s.views.Get(name)
	if err != nil {
		return nil, err
	}
	if p := server.PrincipalFrom(ctx); p == nil || (p.Kind != server.KindAdmin && !p.CanQuery(name)) {
		return nil, fmt.Errorf("%w: the API key may not verify view %q (a query key of the view or an admin key may)", errs.ErrPermission, name)
	}
	if v.IsRows() {
		_, err := v.Members()[0].FS()
		return nil, err
	}
	path, err := fspath.Clean(req.GetPath())
	if err != nil {
		return nil, err
	}
	// A forest's member is one storage with its own leader: a verify names it.
	m, err := v.Member(req.GetMember())
	if err != nil {
		return nil, err
	}
	if err := m.Ready(); err != nil {
		return nil, err
	}
	timeout := req.GetTimeout().AsDuration()
	if timeout <= 0 {
		timeout = DefaultVerifyTimeout
	}
	timeout = min(timeout, MaxVerifyTimeout)
	examples := int(req.GetMaxExamples())
	if examples == 0 {
		examples = DefaultVerifyExamples
	}
	examples = min(examples, MaxVerifyExamples)

	sess, err := s.sessions.Get(m.State().Leader)
	if err != nil {
		return nil, fmt.Errorf("%w: view %q has no leader agent to walk it: %w", errs.ErrPrecondition, name, err)
	}
	id, result, ok := s.commands.StartVerify(name)
	if !ok {
		return nil, fmt.Errorf("%w: too many commands are waiting for agents; retry later", errs.ErrUnavailable)
	}
	if err := m.Driver.VerifyStart(id, path, examples, req.GetRepair()); err != nil {
		s.commands.Cancel(id)
		if errors.Is(err, errs.ErrVerifyRunning) {
			return nil, fmt.Errorf("%w: %w; retry when it ends", errs.ErrAborted, err)
		}
		return nil, err
	}
	if !sess.Command(&fustorv1.Command{Id: id, Kind: &fustorv1.Command_Scan{Scan: &fustorv1.ScanCommand{Path: path, Recursive: true}}}) {
		s.commands.Cancel(id)
		m.Driver.VerifyAbort(id)
		return nil, fmt.Errorf("%w: the leader agent's session cannot take a command now; retry", errs.ErrUnavailable)
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case r := <-result:
		// A walk whose top is gone from the storage is an answer, not a failure: whatever
		// the view holds there is extra (the agent's error carries the lstat's ENOENT text).
		if !r.OK && !strings.Contains(r.Error, syscall.ENOENT.Error()) {
			m.Driver.VerifyAbort(id)
			return nil, fmt.Errorf("%w: the agent's walk of %s failed: %s", errs.ErrUnavailable, path, r.Error)
		}
	case <-t.C:
		s.commands.Cancel(id)
		m.Driver.VerifyAbort(id)
		return nil, fmt.Errorf("verify %s: the walk did not end within %v: %w", path, timeout, context.DeadlineExceeded)
	case <-ctx.Done():
		s.commands.Cancel(id)
		m.Driver.VerifyAbort(id)
		return nil, ctx.Err()
	}
	res, err := m.Driver.VerifyEnd(id)
	if err != nil {
		return nil, err
	}
	out := &fustorv1.VerifyResponse{Meta: s.meta(scope{v: v, members: []*view.Member{m}}, false), Path: res.Root, Walked: res.Walked, Missing: res.Missing,
		Extra: res.Extra, Different: res.Different, ChangedDuringWalk: res.Changed, Repaired: res.Repaired,
		AgentId: sess.Info.AgentID, Took: durationpb.New(time.Since(began))}
	for _, d := range res.Examples {
		pd := &fustorv1.VerifyDifference{Path: d.Path, Kind: diffKind(d.Kind)}
		if d.Kind != view.DiffExtra {
			pd.Storage = &fustorv1.VerifyEntry{IsDir: d.Storage.IsDir, Size: d.Storage.Size, MtimeNs: d.Storage.MtimeNs}
		}
		if d.Kind != view.DiffMissing {
			pd.View = &fustorv1.VerifyEntry{IsDir: d.View.IsDir, Size: d.View.Size, MtimeNs: d.View.MtimeNs}
		}
		out.Examples = append(out.Examples, pd)
	}
	return out, nil
}

func diffKind(k view.DiffKind) fustorv1.VerifyDifferenceKind {
	switch k {
	case view.DiffMissing:
		return fustorv1.VerifyDifferenceKind_VERIFY_DIFFERENCE_KIND_MISSING
	case view.DiffExtra:
		return fustorv1.VerifyDifferenceKind_VERIFY_DIFFERENCE_KIND_EXTRA
	case view.DiffDifferent:
		return fustorv1.VerifyDifferenceKind_VERIFY_DIFFERENCE_KIND_DIFFERENT
	}
	return fustorv1.VerifyDifferenceKind_VERIFY_DIFFERENCE_KIND_UNSPECIFIED
}
