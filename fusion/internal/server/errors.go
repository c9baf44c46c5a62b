package server

import (
	"context"
	"errors"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fustor/fustor/fusion/internal/errs"
	"github.com/fustor/fustor/fusion/internal/session"
	"github.com/fustor/fustor/sdk/fsbatch"
	"github.com/fustor/fustor/sdk/fspath"
)

// ToStatus maps a domain error to a gRPC status: the one place where that mapping lives.
// Errors that already are statuses pass through; the message keeps the whole error chain.
// Only the kinds of package errs (and the sdk's path and batch errors, which the sdk cannot
// wrap in Fusion's kinds) are known here, so no view driver is.
//
// An error whose reason (errs.Reason) belongs to the kind that chose the code carries it as
// a google.rpc.ErrorInfo detail: a client tells "your session is gone" from any other
// NOT_FOUND by that, not by the code or the message.
func ToStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	code := codeOf(err)
	st := status.New(code, err.Error())
	if reason := reasonOf(err, code); reason != "" {
		withInfo, derr := st.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: errs.ErrorDomain})
		if derr == nil {
			st = withInfo
		}
	}
	return st.Err()
}

// reasonOf returns err's reason if it is one of the kind that gave code.
func reasonOf(err error, code codes.Code) string {
	if reason, of := errs.Reason(err); reason != "" && codeOf(of) == code {
		return reason
	}
	// session.ErrNotFound predates reasons and is no errs.ErrSessionNotFound yet; once it is
	// (var ErrNotFound = errs.ErrSessionNotFound in session.go), this case goes.
	if code == codes.NotFound && errors.Is(err, session.ErrNotFound) {
		return errs.ReasonSessionNotFound
	}
	return ""
}

// codeOf checks the kinds in a fixed order: an error wrapping two kinds (a precondition
// caused by a session not found) gets the first.
func codeOf(err error) codes.Code {
	switch {
	case errors.Is(err, fspath.ErrInvalid), errors.Is(err, fsbatch.ErrMalformed), errors.Is(err, errs.ErrInvalidArgument):
		return codes.InvalidArgument
	case errors.Is(err, errs.ErrNotFound):
		return codes.NotFound
	case errors.Is(err, errs.ErrPrecondition):
		return codes.FailedPrecondition
	case errors.Is(err, errs.ErrUnavailable):
		return codes.Unavailable
	case errors.Is(err, errs.ErrAborted):
		return codes.Aborted
	case errors.Is(err, errs.ErrFull):
		return codes.ResourceExhausted
	case errors.Is(err, errs.ErrPermission):
		return codes.PermissionDenied
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	}
	return codes.Internal
}

func errorsUnary() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		resp, err := h(ctx, req)
		return resp, ToStatus(err)
	}
}

func errorsStream() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		return ToStatus(h(srv, ss))
	}
}
