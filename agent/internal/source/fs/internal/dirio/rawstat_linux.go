//go:build linux && (amd64 || arm64 || riscv64 || ppc64 || ppc64le || s390x || mips64 || mips64le || loong64)

package dirio

import (
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// rawFstatat is fstatat(fd, name, st, AT_SYMLINK_NOFOLLOW) without the scheduler's
// entersyscall/exitsyscall; see Dir. cbuf holds the NUL-ended name, reused across calls
// (one allocation per directory, not per entry).
func rawFstatat(fd int, name string, st *unix.Stat_t, cbuf *[]byte) error {
	if strings.IndexByte(name, 0) >= 0 {
		return unix.EINVAL
	}
	b := append(append((*cbuf)[:0], name...), 0)
	*cbuf = b
	_, _, e := unix.RawSyscall6(unix.SYS_NEWFSTATAT, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(unsafe.Pointer(st)),
		unix.AT_SYMLINK_NOFOLLOW, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

// getdents is getdents64, raw when raw is set; see Dir.
func getdents(fd int, buf []byte, raw bool) (int, error) {
	if !raw {
		return unix.Getdents(fd, buf)
	}
	n, _, e := unix.RawSyscall(unix.SYS_GETDENTS64, uintptr(fd), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}
