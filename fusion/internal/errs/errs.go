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

// Reasons are the google.rpc.ErrorInfo reasons, in ErrorDomain, that server.ToStatus attaches
// to a status so a client can tell apart causes that share a code. They are part of the API:
// the agent matches the same strings (agent/internal/sender), so a reason is never renamed.
const (
	ErrorDomain = "fustor.v1"
	// ReasonSessionNotFound: Fusion does not know the session of a Heartbeat, Push or
	// CloseSession (expired, closed, or Fusion restarted): the agent creates a new one.
	ReasonSessionNotFound = "SESSION_NOT_FOUND"
)

// Specific sentinels shared by more than one layer.
var (
	// ErrSessionNotFound: the session named is unknown, expired or closed. NOT_FOUND, with
	// ReasonSessionNotFound.
	ErrSessionNotFound = NewReason(ErrNotFound, ReasonSessionNotFound, "session not found")
	// ErrNotDir: a directory operation on a file.
	ErrNotDir = New(ErrPrecondition, "not a directory")
	// ErrNotReady: a view cannot answer authoritatively yet.
	ErrNotReady = New(ErrUnavailable, "not ready")
	// ErrVerifyRunning: a verify of the view is already open.
	ErrVerifyRunning = New(ErrAborted, "a verify of this view is already running")
)

// New returns a sentinel with its own message that errors.Is also matches as kind, so a
// package keeps its message ("view not found") while the server maps it by kind. A sentinel
// of a sentinel with a reason keeps that reason.
func New(kind error, msg string) error {
	reason, _ := Reason(kind)
	return &sentinel{msg: msg, kind: kind, reason: reason}
}

// NewReason is New with a reason (one of the Reason constants) that server.ToStatus sends
// along with the kind's code.
func NewReason(kind error, reason, msg string) error {
	return &sentinel{msg: msg, kind: kind, reason: reason}
}

// Reason returns the reason of the first sentinel in err's chain that has one, and that
// sentinel, so the caller can check the reason belongs to the kind it maps err by. It returns
// "" and nil when no sentinel in the chain has a reason.
func Reason(err error) (string, error) {
	for err != nil {
		if s, ok := err.(*sentinel); ok && s.reason != "" {
			return s.reason, s
		}
		switch u := err.(type) {
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				if r, of := Reason(e); r != "" {
					return r, of
				}
			}
			return "", nil
		case interface{ Unwrap() error }:
			err = u.Unwrap()
		default:
			return "", nil
		}
	}
	return "", nil
}

type sentinel struct {
	msg    string
	kind   error
	reason string
}

func (e *sentinel) Error() string { return e.msg }
func (e *sentinel) Unwrap() error { return e.kind }
