package query

import (
	"fmt"
	"path"

	"github.com/fustor/fustor/fusion/internal/errs"
)

// validGlob rejects malformed patterns up front, so a bad glob is INVALID_ARGUMENT rather than
// a silent empty answer.
func validGlob(g string) error {
	if _, err := path.Match(g, ""); err != nil {
		return fmt.Errorf("%w: glob %q: %w", errs.ErrInvalidArgument, g, err)
	}
	return nil
}
