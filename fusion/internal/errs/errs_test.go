package errs

import (
	"errors"
	"fmt"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestNewKeepsMessageAndKind(t *testing.T) {
	own := New(ErrNotFound, "view not found")
	err := fmt.Errorf("%w: %q", own, "v")
	if err.Error() != `view not found: "v"` {
		t.Fatalf("message %q", err)
	}
	if !errors.Is(err, own) || !errors.Is(err, ErrNotFound) || errors.Is(err, ErrUnavailable) {
		t.Fatal("errors.Is must match the sentinel and its kind only")
	}
	// Chains of specific sentinels reach the kind too.
	notReady := New(ErrNotReady, "view not ready")
	if !errors.Is(notReady, ErrNotReady) || !errors.Is(notReady, ErrUnavailable) {
		t.Fatal("a sentinel of a sentinel must match both")
	}
	if !errors.Is(ErrNotDir, ErrPrecondition) || !errors.Is(ErrVerifyRunning, ErrAborted) {
		t.Fatal("shared sentinels have the wrong kind")
	}
}

func TestReason(t *testing.T) {
	ownGone := New(ErrSessionNotFound, "stream session gone")
	tests := []struct {
		name string
		err  error
		want string
		of   error
	}{
		{"the sentinel", ErrSessionNotFound, ReasonSessionNotFound, ErrSessionNotFound},
		{"wrapped", fmt.Errorf("heartbeat: %w: %q", ErrSessionNotFound, "s1"), ReasonSessionNotFound, ErrSessionNotFound},
		{"a sentinel of it keeps the reason", fmt.Errorf("x: %w", ownGone), ReasonSessionNotFound, ownGone},
		{"second of two wrapped", fmt.Errorf("%w: %w", ErrPrecondition, ErrSessionNotFound), ReasonSessionNotFound, ErrSessionNotFound},
		{"a kind has none", fmt.Errorf("x: %w", ErrNotFound), "", nil},
		{"a sentinel without one", fmt.Errorf("x: %w", ErrNotReady), "", nil},
		{"not ours", errors.New("boom"), "", nil},
		{"nil", nil, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, of := Reason(tt.err)
			if got != tt.want || of != tt.of {
				t.Errorf("Reason(%v) = %q, %v; want %q, %v", tt.err, got, of, tt.want, tt.of)
			}
		})
	}
	if !errors.Is(ErrSessionNotFound, ErrNotFound) || ErrSessionNotFound.Error() != "session not found" {
		t.Error("ErrSessionNotFound must be a not-found with its own message")
	}
}
