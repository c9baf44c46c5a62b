//go:build !linux

package dirio

import (
	"os"
	"path/filepath"
	"syscall"
)

var errLoop error = syscall.ELOOP

// Dir is one open directory; off Linux entries are lstat-ed by full path.
type Dir struct {
	f   *os.File
	abs string
}

// Open opens abs as a directory. Without O_NOFOLLOW the symlink check is an lstat first,
// which leaves a tiny race that Linux closes.
func Open(abs string, follow bool) (*Dir, error) {
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
	return &Dir{f: f, abs: abs}, nil
}

func (d *Dir) Names(dst []Name, n int) ([]Name, error) {
	names, err := d.f.Readdirnames(n)
	for _, name := range names {
		dst = append(dst, Name{Name: name})
	}
	return dst, err
}

func (d *Dir) Entries(n int) ([]os.DirEntry, error) { return d.f.ReadDir(n) }

func (d *Dir) LstatEntry(e Name) (Stat, error) { return d.Lstat(e.Name) }

func (d *Dir) Lstat(name string) (Stat, error) {
	return Lstat(filepath.Join(d.abs, name), false)
}

func (d *Dir) Close() { _ = d.f.Close() }

func Lstat(abs string, follow bool) (Stat, error) {
	var fi os.FileInfo
	var err error
	if follow {
		fi, err = os.Stat(abs)
	} else {
		fi, err = os.Lstat(abs)
	}
	if err != nil {
		return Stat{}, err
	}
	fs := Stat{Size: uint64(max(fi.Size(), 0)), MtimeNs: fi.ModTime().UnixNano(), Nlink: 1}
	switch m := fi.Mode(); {
	case m.IsDir():
		fs.Type = TypeDir
	case m.IsRegular():
		fs.Type = TypeRegular
	case m&os.ModeSymlink != 0:
		fs.Type = TypeSymlink
	default:
		fs.Type = TypeOther
	}
	return fs, nil
}

// LocalDevs is Linux's raw-call choice; elsewhere every call is an ordinary one.
type LocalDevs struct{}

func (*LocalDevs) Mark(uint64, *Dir) {}
