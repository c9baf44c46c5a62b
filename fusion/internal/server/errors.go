package server

import (
	"context"
	"errors"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fustor/fustor/fusion/internal/session"
	"github.com/fustor/fustor/fusion/internal/view"
	"github.com/fustor/fustor/fusion/internal/view/fs"
	"github.com/fustor/fustor/sdk/fsbatch"
	"github.com/fustor/fustor/sdk/fspath"
)

// Domain errors of the API layer itself.
var (
	ErrInvalidArgument = errors.New("invalid argument")
	ErrPermission      = errors.New("permission denied")
	ErrPrecondition    = errors.New("failed precondition")
	ErrAborted         = errors.New("aborted")
	ErrUnavailable     = errors.New("unavailable")
)

// ToStatus maps a domain error to a gRPC status: the one place where that mapping lives.
// Errors that already are statuses pass through; the message keeps the whole error chain.
func ToStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Error(codeOf(err), err.Error())
}

func codeOf(err error) codes.Code {
	switch {
	case errors.Is(err, fspath.ErrInvalid), errors.Is(err, fsbatch.ErrMalformed), errors.Is(err, ErrInvalidArgument):
		return codes.InvalidArgument
	case errors.Is(err, view.ErrNotFound), errors.Is(err, fs.ErrNotFound), errors.Is(err, session.ErrNotFound):
		return codes.NotFound
	case errors.Is(err, fs.ErrNotDir), errors.Is(err, ErrPrecondition):
		return codes.FailedPrecondition
	case errors.Is(err, view.ErrNotReady), errors.Is(err, ErrUnavailable):
		return codes.Unavailable
	case errors.Is(err, ErrAborted):
		return codes.Aborted
	case errors.Is(err, session.ErrTooMany):
		return codes.ResourceExhausted
	case errors.Is(err, ErrPermission):
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
