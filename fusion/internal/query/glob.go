package query

import (
	"fmt"
	"path"

	"github.com/fustor/fustor/fusion/internal/errs"
)

// validGlob rejects malformed patterns up front, so a bad glob is INVALID_ARGUMENT rather than
// a silent empty answer.
func validGlob(g string) error {
	if len(g) > MaxGlobBytes {
		return fmt.Errorf("%w: the glob has %d bytes, more than %d", errs.ErrInvalidArgument, len(g), MaxGlobBytes)
	}
	if _, err := path.Match(g, ""); err != nil {
		return fmt.Errorf("%w: glob %q: %w", errs.ErrInvalidArgument, g, err)
	}
	return nil
}
