package fs

import (
	"os"

	"golang.org/x/sys/unix"
)

// dirHandle is one open directory. On Linux entries are lstat-ed relative to the directory's
// descriptor (fstatat), which spares the kernel a full path walk per entry.
//
// On a local file system (localFS) that lstat is a raw system call, which the Go scheduler
// does not track: a million of them, each a few microseconds, otherwise keep its monitor
// thread waking every 20 µs to hand the walkers' processors to other threads and back (on this
// VM 0.7–1.1 CPU-s of a 1M-file snapshot; the agent's whole snapshot CPU fell 7.9–9.4 →
// 7.2–7.5 CPU-s, docs/benchmarks.md). A raw call holds its processor and delays a garbage
// collection's stop-the-world until it returns, so it is kept off file systems whose lookups
// can wait on a network or a server for as long as the server takes: NFS, SMB, FUSE and
// everything not listed stay ordinary calls.
type dirHandle struct {
	f    *os.File
	fd   int
	raw  bool
	cbuf []byte // rawFstatat's name buffer
}

// localFS tells whether a file system type (statfs f_type) answers lookups from local
// memory or a local disk only.
func localFS(t int64) bool {
	switch t {
	case unix.EXT4_SUPER_MAGIC, unix.XFS_SUPER_MAGIC, unix.BTRFS_SUPER_MAGIC, unix.F2FS_SUPER_MAGIC,
		unix.TMPFS_MAGIC, unix.RAMFS_MAGIC:
		return true
	}
	return false
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
	d := &dirHandle{f: os.NewFile(uintptr(fd), abs), fd: fd}
	var sfs unix.Statfs_t
	if unix.Fstatfs(fd, &sfs) == nil {
		d.raw = localFS(int64(sfs.Type))
	}
	return d, nil
}

func (d *dirHandle) names(n int) ([]string, error) { return d.f.Readdirnames(n) }

func (d *dirHandle) entries(n int) ([]os.DirEntry, error) { return d.f.ReadDir(n) }

func (d *dirHandle) lstat(name string) (fileStat, error) {
	var st unix.Stat_t
	for {
		var err error
		if d.raw {
			err = rawFstatat(d.fd, name, &st, &d.cbuf)
		} else {
			err = unix.Fstatat(d.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
		}
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
