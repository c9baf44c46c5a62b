//go:build !linux

package fs

import (
	"os"
	"path/filepath"
	"syscall"
)

var errLoop error = syscall.ELOOP

// dirHandle is one open directory; off Linux entries are lstat-ed by full path.
type dirHandle struct {
	f   *os.File
	abs string
}

// openDir opens abs as a directory. Without O_NOFOLLOW the symlink check is an lstat first,
// which leaves a tiny race that Linux closes.
func openDir(abs string, follow bool) (*dirHandle, error) {
	if !follow {
		fi, err := os.Lstat(abs)
		if err != nil {
			return nil, err
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			return nil, &os.PathError{Op: "open", Path: abs, Err: errLoop}
		}
	}
	f, err := os.Open(abs)
	if err != nil {
		return nil, err
	}
	return &dirHandle{f: f, abs: abs}, nil
}

func (d *dirHandle) names(dst []dirName, n int) ([]dirName, error) {
	names, err := d.f.Readdirnames(n)
	for _, name := range names {
		dst = append(dst, dirName{name: name})
	}
	return dst, err
}

func (d *dirHandle) entries(n int) ([]os.DirEntry, error) { return d.f.ReadDir(n) }

func (d *dirHandle) lstatEntry(e dirName) (fileStat, error) { return d.lstat(e.name) }

func (d *dirHandle) lstat(name string) (fileStat, error) {
	return lstatPath(filepath.Join(d.abs, name), false)
}

func (d *dirHandle) close() { _ = d.f.Close() }

func lstatPath(abs string, follow bool) (fileStat, error) {
	var fi os.FileInfo
	var err error
	if follow {
		fi, err = os.Stat(abs)
	} else {
		fi, err = os.Lstat(abs)
	}
	if err != nil {
		return fileStat{}, err
	}
	fs := fileStat{size: uint64(max(fi.Size(), 0)), mtimeNs: fi.ModTime().UnixNano(), nlink: 1}
	switch m := fi.Mode(); {
	case m.IsDir():
		fs.typ = typeDir
	case m.IsRegular():
		fs.typ = typeRegular
	case m&os.ModeSymlink != 0:
		fs.typ = typeSymlink
	default:
		fs.typ = typeOther
	}
	return fs, nil
}

// localDevs is Linux's raw-call choice; elsewhere every call is an ordinary one.
type localDevs struct{}

func (*localDevs) mark(uint64, *dirHandle) {}
