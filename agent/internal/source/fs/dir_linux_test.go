package fs

import (
	"errors"
	"os"
	"path/filepath"
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
	d, err := openDir(dir, false)
	mustOK(t, err)
	defer d.close()
	var sfs unix.Statfs_t
	mustOK(t, unix.Fstatfs(d.fd, &sfs))
	if d.raw != localFS(int64(sfs.Type)) {
		t.Fatalf("raw %v for file system type %#x", d.raw, sfs.Type)
	}
	for _, tc := range []struct {
		name string
		typ  fileType
		err  error
	}{
		{"file", typeRegular, nil},
		{"sub", typeDir, nil},
		{"link", typeSymlink, nil},
		{"fifo", typeOther, nil},
		{"absent", 0, unix.ENOENT},
		{"file/below", 0, unix.ENOTDIR},
		{"bad\x00name", 0, unix.EINVAL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, raw := range []bool{false, true} {
				d.raw = raw
				st, err := d.lstat(tc.name)
				if !errors.Is(err, tc.err) {
					t.Fatalf("raw %v: err %v, want %v", raw, err, tc.err)
				}
				if err != nil {
					continue
				}
				fi, err := os.Lstat(filepath.Join(dir, tc.name))
				mustOK(t, err)
				if st.typ != tc.typ || st.size != uint64(fi.Size()) || st.mtimeNs != fi.ModTime().UnixNano() {
					t.Fatalf("raw %v: %+v, want type %d size %d mtime %d", raw, st, tc.typ, fi.Size(), fi.ModTime().UnixNano())
				}
			}
		})
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
