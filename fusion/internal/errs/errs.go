// Package errs holds Fusion's domain errors: one sentinel per kind of failure a caller can act
// on. Every layer (views, sessions, the services) wraps these, and the server maps them — and
// only them, plus the sdk's path and batch errors — to gRPC codes, so the API layer needs to
// know no view driver. A package that wants its own message (view "view not found", fs "path
// not found") declares its sentinel with New, which errors.Is matches both as itself and as
// its kind.
//
// The package imports nothing of Fusion: every other package may use it.
package errs

import "errors"

// Kinds. Each maps to one gRPC code (server.ToStatus).
var (
	// ErrInvalidArgument: the request (or a pushed message) is malformed. INVALID_ARGUMENT.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrNotFound: a named view, path or session does not exist. NOT_FOUND.
	ErrNotFound = errors.New("not found")
	// ErrPrecondition: the request is valid but the state does not allow it. FAILED_PRECONDITION.
	ErrPrecondition = errors.New("failed precondition")
	// ErrUnavailable: retry later (no leader, snapshot running, agent busy). UNAVAILABLE.
	ErrUnavailable = errors.New("unavailable")
	// ErrAborted: a conflicting operation is running. ABORTED.
	ErrAborted = errors.New("aborted")
	// ErrFull: a bound is reached (sessions, nodes). RESOURCE_EXHAUSTED.
	ErrFull = errors.New("resource exhausted")
	// ErrPermission: the caller's key may not do this. PERMISSION_DENIED.
	ErrPermission = errors.New("permission denied")
)

// Specific sentinels shared by more than one layer.
var (
	// ErrNotDir: a directory operation on a file.
	ErrNotDir = New(ErrPrecondition, "not a directory")
	// ErrNotReady: a view cannot answer authoritatively yet.
	ErrNotReady = New(ErrUnavailable, "not ready")
	// ErrVerifyRunning: a verify of the view is already open.
	ErrVerifyRunning = New(ErrAborted, "a verify of this view is already running")
)

// New returns a sentinel with its own message that errors.Is also matches as kind, so a
// package keeps its message ("view not found") while the server maps it by kind.
func New(kind error, msg string) error { return &sentinel{msg: msg, kind: kind} }

type sentinel struct {
	msg  string
	kind error
}

func (e *sentinel) Error() string { return e.msg }
func (e *sentinel) Unwrap() error { return e.kind }
