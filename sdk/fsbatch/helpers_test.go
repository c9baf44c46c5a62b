package fsbatch

import (
	"fmt"

	"github.com/fustor/fustor/sdk/fspath"
)

func validRowPath(p string) error {
	c, err := fspath.Clean(p)
	if err != nil {
		return err
	}
	if c != p {
		return fmt.Errorf("not normalised (%q)", c)
	}
	return nil
}
