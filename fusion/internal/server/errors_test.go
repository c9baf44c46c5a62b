package server

import (
	"errors"
	"fmt"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fustor/fustor/fusion/internal/errs"
	"github.com/fustor/fustor/fusion/internal/session"
)

func TestToStatusReasons(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		code   codes.Code
		reason string
	}{
		{"session not found", fmt.Errorf(`%w: "s1" is unknown, expired or closed`, session.ErrNotFound), codes.NotFound, errs.ReasonSessionNotFound},
		{"errs session not found", fmt.Errorf("heartbeat: %w", errs.ErrSessionNotFound), codes.NotFound, errs.ReasonSessionNotFound},
		{"a precondition caused by a gone session", fmt.Errorf("%w: no leader: %w", errs.ErrPrecondition, session.ErrNotFound), codes.NotFound, errs.ReasonSessionNotFound},
		// The code comes from the first kind; a reason of another kind is not sent with it.
		{"a gone session behind an invalid argument", fmt.Errorf("%w: %w", errs.ErrInvalidArgument, errs.ErrSessionNotFound), codes.InvalidArgument, ""},
		{"another not found", fmt.Errorf("%w: %q", errs.New(errs.ErrNotFound, "view not found"), "v"), codes.NotFound, ""},
		{"the kind alone", errs.ErrNotFound, codes.NotFound, ""},
		{"not ours", errors.New("boom"), codes.Internal, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := status.Convert(ToStatus(tt.err))
			if st.Code() != tt.code || st.Message() != tt.err.Error() {
				t.Fatalf("status %v %q; want %v %q", st.Code(), st.Message(), tt.code, tt.err.Error())
			}
			var infos []*errdetails.ErrorInfo
			for _, d := range st.Details() {
				if info, ok := d.(*errdetails.ErrorInfo); ok {
					infos = append(infos, info)
				}
			}
			switch {
			case tt.reason == "" && len(infos) != 0:
				t.Errorf("details %v; want none", infos)
			case tt.reason != "" && (len(infos) != 1 || infos[0].GetReason() != tt.reason || infos[0].GetDomain() != "fustor.v1"):
				t.Errorf("details %v; want one ErrorInfo %s in fustor.v1", infos, tt.reason)
			}
		})
	}
}
