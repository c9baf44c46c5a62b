package dirio

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestRawLstatMatchesFstatat lstat-s real entries of every kind through the raw call and the
// ordinary one: same answers, same errors. The temporary directory's file system decides
// which one the walk would use; both run here regardless.
func TestRawLstatMatchesFstatat(t *testing.T) {
	dir := t.TempDir()
	mustOK(t, os.WriteFile(filepath.Join(dir, "file"), []byte("12345"), 0o644))
	mustOK(t, os.Mkdir(filepath.Join(dir, "sub"), 0o755))
	mustOK(t, os.Symlink("file", filepath.Join(dir, "link")))
	mustOK(t, syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644))
	d, err := Open(dir, false)
	mustOK(t, err)
	defer d.Close()
	var sfs unix.Statfs_t
	mustOK(t, unix.Fstatfs(d.fd, &sfs))
	top, err := Lstat(dir, false)
	mustOK(t, err)
	var devs LocalDevs
	for range 2 { // the second answer comes from the per-device cache
		if got := devs.local(top.Dev, d); got != localFS(int64(sfs.Type)) {
			t.Fatalf("local %v for file system type %#x", got, sfs.Type)
		}
	}
	if len(devs.m) != 1 {
		t.Fatalf("device cache %v, want the one device", devs.m)
	}
	for _, tc := range []struct {
		name string
		typ  FileType
		err  error
	}{
		{"file", TypeRegular, nil},
		{"sub", TypeDir, nil},
		{"link", TypeSymlink, nil},
		{"fifo", TypeOther, nil},
		{"absent", 0, unix.ENOENT},
		{"file/below", 0, unix.ENOTDIR},
		{"bad\x00name", 0, unix.EINVAL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, raw := range []bool{false, true} {
				// DT_REG takes the raw call whatever the entry is; lstat is the ordinary one.
				st, err := d.Lstat(tc.name)
				if raw {
					d.raw = true
					st, err = d.LstatEntry(Name{tc.name, unix.DT_REG})
				}
				if !errors.Is(err, tc.err) {
					t.Fatalf("raw %v: err %v, want %v", raw, err, tc.err)
				}
				if err != nil {
					continue
				}
				fi, err := os.Lstat(filepath.Join(dir, tc.name))
				mustOK(t, err)
				if st.Type != tc.typ || st.Size != uint64(fi.Size()) || st.MtimeNs != fi.ModTime().UnixNano() {
					t.Fatalf("raw %v: %+v, want type %d size %d mtime %d", raw, st, tc.typ, fi.Size(), fi.ModTime().UnixNano())
				}
			}
		})
	}
}

// TestRawOnlyForListedNonDirectories: a directory entry (a possible mount point of a remote
// file system) and one of unknown type are never lstat-ed raw, nor anything off a local one.
func TestRawOnlyForListedNonDirectories(t *testing.T) {
	for _, tc := range []struct {
		local bool
		typ   uint8
		raw   bool
	}{
		{true, unix.DT_REG, true}, {true, unix.DT_LNK, true}, {true, unix.DT_FIFO, true},
		{true, unix.DT_DIR, false}, {true, unix.DT_UNKNOWN, false},
		{false, unix.DT_REG, false}, {false, unix.DT_DIR, false},
	} {
		d := &Dir{raw: tc.local}
		if got := d.rawFor(tc.typ); got != tc.raw {
			t.Errorf("local %v, d_type %d: raw %v, want %v", tc.local, tc.typ, got, tc.raw)
		}
	}
}

func TestLocalFS(t *testing.T) {
	for _, tc := range []struct {
		typ   int64
		local bool
	}{
		{unix.EXT4_SUPER_MAGIC, true}, {unix.XFS_SUPER_MAGIC, true}, {unix.TMPFS_MAGIC, true},
		{unix.NFS_SUPER_MAGIC, false}, {unix.FUSE_SUPER_MAGIC, false}, {unix.SMB2_SUPER_MAGIC, false},
		{unix.OVERLAYFS_SUPER_MAGIC, false}, {0, false},
	} {
		if got := localFS(tc.typ); got != tc.local {
			t.Errorf("localFS(%#x) = %v, want %v", tc.typ, got, tc.local)
		}
	}
}

func mustOK(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestDirHandleListsLikeReadDir lists real directories, one larger than a getdents buffer,
// through names and entries, raw and ordinary, in small and large rounds, against os.ReadDir.
func TestDirHandleListsLikeReadDir(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files int
		round int
	}{
		{"empty", 0, 10},
		{"one buffer", 250, 1024},
		{"several buffers", 3000, 1024},
		{"small rounds", 300, 7},
	} {
		dir := t.TempDir()
		for i := range tc.files {
			// Long names, so 3,000 entries take several reads.
			mustOK(t, os.WriteFile(filepath.Join(dir, fmt.Sprintf("file-%04d-0123456789abcdef0123456789.dat", i)), nil, 0o644))
		}
		mustOK(t, os.Mkdir(filepath.Join(dir, "sub"), 0o755))
		mustOK(t, os.Symlink("sub", filepath.Join(dir, "link")))
		mustOK(t, syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644))
		want, err := os.ReadDir(dir)
		mustOK(t, err)
		for _, raw := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/raw=%v", tc.name, raw), func(t *testing.T) {
				d, err := Open(dir, false)
				mustOK(t, err)
				d.raw = raw
				var names []string
				for {
					chunk, err := d.Names(nil, tc.round)
					if len(chunk) > tc.round {
						t.Fatalf("a round of %d names, asked for %d", len(chunk), tc.round)
					}
					for _, e := range chunk {
						names = append(names, e.Name)
					}
					if err == io.EOF {
						break
					}
					mustOK(t, err)
				}
				d.Close()
				sort.Strings(names)
				if !slices.EqualFunc(names, want, func(n string, e os.DirEntry) bool { return n == e.Name() }) {
					t.Fatalf("names: %d, want %d", len(names), len(want))
				}
				d, err = Open(dir, false)
				mustOK(t, err)
				defer d.Close()
				d.raw = raw
				var got []os.DirEntry
				for {
					chunk, err := d.Entries(tc.round)
					got = append(got, chunk...)
					if err == io.EOF {
						break
					}
					mustOK(t, err)
				}
				sort.Slice(got, func(i, j int) bool { return got[i].Name() < got[j].Name() })
				if len(got) != len(want) {
					t.Fatalf("entries: %d, want %d", len(got), len(want))
				}
				for i := range got {
					if got[i].Name() != want[i].Name() || got[i].Type() != want[i].Type() || got[i].IsDir() != want[i].IsDir() {
						t.Fatalf("entry %d: %s %v, want %s %v", i, got[i].Name(), got[i].Type(), want[i].Name(), want[i].Type())
					}
				}
				link := got[slices.IndexFunc(got, func(e os.DirEntry) bool { return e.Name() == "link" })]
				if fi, err := link.Info(); err != nil || fi.Mode()&os.ModeSymlink == 0 {
					t.Fatalf("link Info: %v, %v", fi, err)
				}
			})
		}
	}
}

// TestDirHandleRefusesMalformedRecords feeds next records whose lengths lie: it reports an
// error and stops, never reading past the buffer.
func TestDirHandleRefusesMalformedRecords(t *testing.T) {
	rec := func(reclen uint16, name string) []byte {
		b := make([]byte, 19, 20+len(name))
		binary.NativeEndian.PutUint64(b[0:8], 1)
		binary.NativeEndian.PutUint16(b[16:18], reclen)
		return append(append(b, name...), 0)
	}
	good := rec(24, "ok.d")
	for _, tc := range []struct {
		name string
		buf  []byte
	}{
		{"record past the end", append(slices.Clone(good), rec(500, "x")...)},
		{"record shorter than its header", append(slices.Clone(good), rec(3, "x")...)},
		{"truncated header", append(slices.Clone(good), 1, 2, 3)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := Open(t.TempDir(), false)
			mustOK(t, err)
			defer d.Close()
			buf := slices.Clone(tc.buf)
			d.buf, d.pos, d.end, d.eof = &buf, 0, len(buf), true
			if name, _, err := d.next(); err != nil || string(name) != "ok.d" {
				t.Fatalf("first record: %q, %v", name, err)
			}
			if _, _, err := d.next(); err == nil || errors.Is(err, io.EOF) {
				t.Fatalf("malformed record: %v, want a readdirent error", err)
			}
			if _, _, err := d.next(); !errors.Is(err, io.EOF) {
				t.Fatalf("after the error: %v, want io.EOF", err)
			}
			d.buf = nil // not the pool's
		})
	}
}
