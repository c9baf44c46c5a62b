package fs

import (
	"errors"
	"io/fs"
	"syscall"

	"github.com/fustor/fustor/agent/internal/source"
	"github.com/fustor/fustor/agent/internal/source/fs/internal/dirio"
	"github.com/fustor/fustor/sdk/fspath"
)

// Sentinel lstat()s suspect paths for Fusion (DESIGN.md §4.3). A path that is gone is reported
// missing (Exists=false); one that cannot be checked (permission, I/O error, invalid path) is
// left out rather than reported missing, so a transient error never deletes a file.
func (s *Source) Sentinel(paths []string) []source.SentinelItem {
	out := make([]source.SentinelItem, 0, len(paths))
	for _, p := range paths {
		rel, err := fspath.Clean(p)
		if err != nil {
			continue
		}
		st, err := dirio.Lstat(s.abs(rel), rel == fspath.Root)
		switch {
		case err == nil:
			out = append(out, source.SentinelItem{Path: rel, Exists: true, Size: st.Size, MtimeNs: st.MtimeNs})
		case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
			out = append(out, source.SentinelItem{Path: rel})
		}
	}
	return out
}
