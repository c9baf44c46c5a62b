package fs

import (
	"os"

	"golang.org/x/sys/unix"
)

// dirHandle is one open directory. On Linux entries are lstat-ed relative to the directory's
// descriptor (fstatat), which spares the kernel a full path walk per entry.
type dirHandle struct {
	f  *os.File
	fd int
}

// openDir opens abs as a directory. Unless follow is set, a symlink is refused (ELOOP), so a
// directory swapped for a link after its lstat can never lead the walk out of the tree.
func openDir(abs string, follow bool) (*dirHandle, error) {
	flags := unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC
	if !follow {
		flags |= unix.O_NOFOLLOW
	}
	var fd int
	var err error
	for {
		fd, err = unix.Open(abs, flags, 0)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: abs, Err: err}
	}
	return &dirHandle{f: os.NewFile(uintptr(fd), abs), fd: fd}, nil
}

func (d *dirHandle) names(n int) ([]string, error) { return d.f.Readdirnames(n) }

func (d *dirHandle) entries(n int) ([]os.DirEntry, error) { return d.f.ReadDir(n) }

func (d *dirHandle) lstat(name string) (fileStat, error) {
	var st unix.Stat_t
	for {
		err := unix.Fstatat(d.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
		if err == nil {
			return statOf(&st), nil
		}
		if err != unix.EINTR {
			return fileStat{}, err
		}
	}
}

func (d *dirHandle) close() { _ = d.f.Close() }

// lstatPath lstat-s abs, or stats it (following a symlink) when follow is set.
func lstatPath(abs string, follow bool) (fileStat, error) {
	var st unix.Stat_t
	for {
		var err error
		if follow {
			err = unix.Stat(abs, &st)
		} else {
			err = unix.Lstat(abs, &st)
		}
		if err == nil {
			return statOf(&st), nil
		}
		if err != unix.EINTR {
			return fileStat{}, &os.PathError{Op: "lstat", Path: abs, Err: err}
		}
	}
}

func statOf(st *unix.Stat_t) fileStat {
	fs := fileStat{size: uint64(max(st.Size, 0)), mtimeNs: st.Mtim.Nano(), nlink: uint64(st.Nlink)}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		fs.typ = typeDir
	case unix.S_IFREG:
		fs.typ = typeRegular
	case unix.S_IFLNK:
		fs.typ = typeSymlink
	default:
		fs.typ = typeOther
	}
	return fs
}
