package dirio

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"
)

// Dir is one open directory. On Linux entries are lstat-ed relative to the directory's
// descriptor (fstatat), which spares the kernel a full path walk per entry.
//
// On a local file system (localFS) the listing's getdents64, and the lstat of every entry that
// getdents says is not a directory, are raw system calls, which the Go scheduler
// does not track: a million of them, each a few microseconds, otherwise keep its monitor
// thread waking every 20 µs to hand the walkers' processors to other threads and back, CPU
// the agent's snapshot pays for nothing (fustor-bench's p1_agent_cpu_s; docs/benchmarks.md,
// "End to end with fustor-bench", stop 11). A raw call holds its processor and delays a
// garbage collection's stop-the-world until it returns, so it is kept off file systems whose
// lookups can wait on a network or a server for as long as the server takes: NFS, SMB, FUSE
// and everything not listed stay ordinary calls. So are directories and entries of unknown type
// even on a local file system: an lstat of a mount point answers from the file system mounted
// there, which may be NFS.
type Dir struct {
	name string // the directory's path, for errors
	fd   int    // a bare descriptor: os.NewFile would cost an fcntl per directory
	raw  bool
	cbuf []byte // rawFstatat's name buffer

	// The listing: getdents64 records in buf[pos:end]; eof once a read returned nothing.
	buf      *[]byte
	pos, end int
	eof      bool
}

// direntBuf is one getdents64 read: a 250-file directory fits in one (os.File reads 8 KiB).
const direntBuf = 32 << 10

var direntPool = sync.Pool{New: func() any { b := make([]byte, direntBuf); return &b }}

// nameScratch is where names gathers one call's names before they become one string.
type nameScratch struct {
	buf  []byte
	ends []int
}

var scratchPool = sync.Pool{New: func() any { return new(nameScratch) }}

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

// Open opens abs as a directory. Unless follow is set, a symlink is refused (ELOOP), so a
// directory swapped for a link after its lstat can never lead the walk out of the tree.
func Open(abs string, follow bool) (*Dir, error) {
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
	return &Dir{name: abs, fd: fd}, nil
}

// LocalDevs remembers, per device (st_dev), whether its file system is local: one fstatfs
// per file system met, not per directory (on NFS each statfs is a round trip to the server).
type LocalDevs struct {
	mu sync.Mutex
	m  map[uint64]bool
}

// maxDevs bounds the map; past it a device is looked up each time.
const maxDevs = 4096

// mark lets d, a directory on device dev, make raw calls when its file system is local.
func (l *LocalDevs) Mark(dev uint64, d *Dir) { d.raw = l.local(dev, d) }

// local tells whether d, a directory on device dev, is on a local file system.
func (l *LocalDevs) local(dev uint64, d *Dir) bool {
	if dev != 0 {
		l.mu.Lock()
		v, ok := l.m[dev]
		l.mu.Unlock()
		if ok {
			return v
		}
	}
	var sfs unix.Statfs_t
	if unix.Fstatfs(d.fd, &sfs) != nil {
		return false
	}
	v := localFS(int64(sfs.Type))
	if dev != 0 {
		l.mu.Lock()
		if l.m == nil {
			l.m = map[uint64]bool{}
		}
		if len(l.m) < maxDevs {
			l.m[dev] = v
		}
		l.mu.Unlock()
	}
	return v
}

// next returns the next entry's name and d_type, "." and ".." left out; io.EOF at the end.
// The name is valid until the next call.
func (d *Dir) next() (name []byte, typ uint8, err error) {
	for {
		if d.pos >= d.end {
			if d.eof {
				return nil, 0, io.EOF
			}
			if err := d.fill(); err != nil {
				return nil, 0, err
			}
			continue
		}
		// struct linux_dirent64: u64 d_ino, s64 d_off, u16 d_reclen, u8 d_type, name NUL-ended.
		b := (*d.buf)[d.pos:d.end]
		if len(b) < 19 {
			return nil, 0, d.corrupt()
		}
		reclen := int(binary.NativeEndian.Uint16(b[16:18]))
		if reclen < 19 || reclen > len(b) {
			return nil, 0, d.corrupt()
		}
		d.pos += reclen
		name, typ = b[19:reclen], b[18]
		if i := bytes.IndexByte(name, 0); i >= 0 {
			name = name[:i]
		}
		if binary.NativeEndian.Uint64(b[0:8]) == 0 || string(name) == "." || string(name) == ".." {
			continue // ino 0: an entry being deleted, which os.File skips too
		}
		return name, typ, nil
	}
}

// fill reads the next records; a raw call on a local file system (see Dir).
func (d *Dir) fill() error {
	if d.buf == nil {
		d.buf = direntPool.Get().(*[]byte)
	}
	for {
		n, err := getdents(d.fd, *d.buf, d.raw)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			d.eof = true
			return &os.PathError{Op: "readdirent", Path: d.name, Err: err}
		}
		if n <= 0 {
			d.eof = true
			return io.EOF
		}
		d.pos, d.end = 0, n
		return nil
	}
}

func (d *Dir) corrupt() error {
	d.eof, d.pos, d.end = true, 0, 0
	return &os.PathError{Op: "readdirent", Path: d.name, Err: fmt.Errorf("malformed dirent record")}
}

// names appends up to n names with their d_type to dst, with io.EOF (possibly beside the
// last names) at the end.
//
// The names are carved out of one string per call instead of one each: a string per name
// and a path per entry were most of a walk's allocations (the fs source's
// BenchmarkSnapshotDir, -benchmem).
func (d *Dir) Names(dst []Name, n int) ([]Name, error) {
	out := dst
	var err error
	sc := scratchPool.Get().(*nameScratch)
	defer scratchPool.Put(sc)
	buf, ends := sc.buf[:0], sc.ends[:0]
	for len(out)-len(dst) < n {
		name, typ, e := d.next()
		if e != nil {
			err = e
			break
		}
		buf = append(buf, name...)
		ends = append(ends, len(buf))
		out = append(out, Name{DType: typ})
	}
	all, start := string(buf), 0
	for i, end := range ends {
		out[len(dst)+i].Name = all[start:end]
		start = end
	}
	sc.buf, sc.ends = buf, ends
	return out, err
}

// entries is names with each entry's type, from d_type, or from an lstat where the file
// system reports DT_UNKNOWN (as os.File.ReadDir does).
func (d *Dir) Entries(n int) ([]os.DirEntry, error) {
	var out []os.DirEntry
	for len(out) < n {
		name, typ, err := d.next()
		if err != nil {
			return out, err
		}
		e := dirent{name: string(name), dir: d.name}
		switch typ {
		case unix.DT_DIR:
			e.typ = iofs.ModeDir
		case unix.DT_REG:
		case unix.DT_LNK:
			e.typ = iofs.ModeSymlink
		case unix.DT_FIFO:
			e.typ = iofs.ModeNamedPipe
		case unix.DT_SOCK:
			e.typ = iofs.ModeSocket
		case unix.DT_CHR:
			e.typ = iofs.ModeDevice | iofs.ModeCharDevice
		case unix.DT_BLK:
			e.typ = iofs.ModeDevice
		case unix.DT_UNKNOWN:
			st, err := d.Lstat(e.name)
			if err != nil {
				continue // gone since getdents
			}
			switch st.Type {
			case TypeDir:
				e.typ = iofs.ModeDir
			case TypeSymlink:
				e.typ = iofs.ModeSymlink
			case TypeOther:
				e.typ = iofs.ModeIrregular
			}
		default:
			e.typ = iofs.ModeIrregular
		}
		out = append(out, e)
	}
	return out, nil
}

// dirent is an os.DirEntry from getdents.
type dirent struct {
	name, dir string
	typ       iofs.FileMode
}

func (e dirent) Name() string                 { return e.name }
func (e dirent) IsDir() bool                  { return e.typ.IsDir() }
func (e dirent) Type() iofs.FileMode          { return e.typ }
func (e dirent) Info() (iofs.FileInfo, error) { return os.Lstat(filepath.Join(e.dir, e.name)) }

// rawFor tells whether an entry of d_type typ is lstat-ed with a raw call.
func (d *Dir) rawFor(typ uint8) bool {
	return d.raw && typ != unix.DT_DIR && typ != unix.DT_UNKNOWN
}

// lstat lstat-s a directory's entry with an ordinary call.
func (d *Dir) Lstat(name string) (Stat, error) { return d.LstatEntry(Name{Name: name}) }

// lstatEntry lstat-s a listed entry, with a raw call when the directory is local and getdents
// said the entry is neither a directory nor of unknown type.
func (d *Dir) LstatEntry(e Name) (Stat, error) {
	var st unix.Stat_t
	name := e.Name
	raw := d.rawFor(e.DType)
	for {
		var err error
		if raw {
			err = rawFstatat(d.fd, name, &st, &d.cbuf)
		} else {
			err = unix.Fstatat(d.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
		}
		if err == nil {
			return statOf(&st), nil
		}
		if err != unix.EINTR {
			return Stat{}, err
		}
	}
}

func (d *Dir) Close() {
	if d.buf != nil {
		direntPool.Put(d.buf)
		d.buf = nil
	}
	_ = unix.Close(d.fd)
}

// Lstat lstat-s abs, or stats it (following a symlink) when follow is set.
func Lstat(abs string, follow bool) (Stat, error) {
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
			return Stat{}, &os.PathError{Op: "lstat", Path: abs, Err: err}
		}
	}
}

func statOf(st *unix.Stat_t) Stat {
	fs := Stat{Size: uint64(max(st.Size, 0)), MtimeNs: st.Mtim.Nano(), Nlink: uint64(st.Nlink), Dev: uint64(st.Dev)}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		fs.Type = TypeDir
	case unix.S_IFREG:
		fs.Type = TypeRegular
	case unix.S_IFLNK:
		fs.Type = TypeSymlink
	default:
		fs.Type = TypeOther
	}
	return fs
}
