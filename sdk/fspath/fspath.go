// Package fspath validates and manipulates the normalised paths of the fs schema.
//
// A normalised path is relative to a source root or view root, starts with "/", has no empty,
// "." or ".." parts, no NUL byte and no trailing "/" (except the root "/" itself). Two agents
// mounting the same export at different local paths produce identical keys (DESIGN.md §2).
package fspath

import (
	"errors"
	"fmt"
	"strings"
)

// Root is the normalised path of a tree's root.
const Root = "/"

// ErrInvalid is wrapped by every validation error, so callers map it to INVALID_ARGUMENT.
var ErrInvalid = errors.New("invalid path")

// Clean validates p and returns its normalised form. Repeated and trailing slashes are folded;
// everything else that is not already normalised is rejected with an error wrapping ErrInvalid.
func Clean(p string) (string, error) {
	switch {
	case p == "":
		return "", fmt.Errorf("%w: empty (use \"/\" for the root)", ErrInvalid)
	case p[0] != '/':
		return "", fmt.Errorf("%w: %q must start with \"/\"", ErrInvalid, p)
	case strings.IndexByte(p, 0) >= 0:
		return "", fmt.Errorf("%w: %q contains a NUL byte", ErrInvalid, p)
	}
	if p == Root {
		return p, nil
	}
	var b strings.Builder
	clean := true
	for part := range strings.SplitSeq(p[1:], "/") {
		switch part {
		case "":
			clean = false
			continue
		case ".", "..":
			return "", fmt.Errorf("%w: %q contains a %q part", ErrInvalid, p, part)
		}
		b.WriteByte('/')
		b.WriteString(part)
	}
	if clean {
		return p, nil
	}
	if b.Len() == 0 {
		return Root, nil
	}
	return b.String(), nil
}

// ValidName reports whether name can be one part of a normalised path.
func ValidName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty name", ErrInvalid)
	case name == "." || name == "..":
		return fmt.Errorf("%w: name %q", ErrInvalid, name)
	case strings.IndexByte(name, '/') >= 0:
		return fmt.Errorf("%w: name %s contains \"/\"", ErrInvalid, Short(name))
	case strings.IndexByte(name, 0) >= 0:
		return fmt.Errorf("%w: name %s contains a NUL byte", ErrInvalid, Short(name))
	}
	return nil
}

// shortLen is how much of a name or path an error message quotes.
const shortLen = 64

// Short quotes s for an error message, cut to its first bytes when long: a hostile input is
// not echoed whole into logs and answers.
func Short(s string) string {
	if len(s) <= shortLen {
		return fmt.Sprintf("%q", s)
	}
	return fmt.Sprintf("%q…(%d bytes)", s[:shortLen], len(s))
}

// Join appends name to a normalised directory path.
func Join(dir, name string) string {
	if dir == Root {
		return Root + name
	}
	return dir + "/" + name
}

// Split splits a normalised path into its parent directory and basename. Split("/") returns
// ("/", "").
func Split(p string) (dir, name string) {
	i := strings.LastIndexByte(p, '/')
	if i <= 0 {
		return Root, p[1:]
	}
	return p[:i], p[i+1:]
}

// IsWithin reports whether p is root or lies below it.
func IsWithin(p, root string) bool {
	if root == Root || p == root {
		return true
	}
	return strings.HasPrefix(p, root) && len(p) > len(root) && p[len(root)] == '/'
}

// Compare orders normalised paths as a depth-first walk visits them with children sorted by
// name: "/" sorts before every other byte, so "/a/b" < "/a.b". It returns -1, 0 or 1.
func Compare(a, b string) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		ca, cb := a[i], b[i]
		switch {
		case ca == cb:
			continue
		case ca == '/':
			return -1
		case cb == '/':
			return 1
		case ca < cb:
			return -1
		}
		return 1
	}
	switch {
	case len(a) < len(b):
		return -1
	case len(a) > len(b):
		return 1
	}
	return 0
}
