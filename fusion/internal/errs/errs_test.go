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
