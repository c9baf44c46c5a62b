//go:build linux && (amd64 || arm64 || riscv64 || ppc64 || ppc64le || s390x || mips64 || mips64le || loong64)

package fs

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// rawFstatat is fstatat(fd, name, st, AT_SYMLINK_NOFOLLOW) without the scheduler's
// entersyscall/exitsyscall; see dirHandle.
func rawFstatat(fd int, name string, st *unix.Stat_t) error {
	p, err := unix.BytePtrFromString(name)
	if err != nil {
		return err
	}
	_, _, e := unix.RawSyscall6(unix.SYS_NEWFSTATAT, uintptr(fd), uintptr(unsafe.Pointer(p)), uintptr(unsafe.Pointer(st)),
		unix.AT_SYMLINK_NOFOLLOW, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}
