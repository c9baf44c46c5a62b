//go:build linux && !(amd64 || arm64 || riscv64 || ppc64 || ppc64le || s390x || mips64 || mips64le || loong64)

package dirio

import "golang.org/x/sys/unix"

// rawFstatat is an ordinary fstatat where the raw call is not newfstatat (32-bit kernels).
func rawFstatat(fd int, name string, st *unix.Stat_t, _ *[]byte) error {
	return unix.Fstatat(fd, name, st, unix.AT_SYMLINK_NOFOLLOW)
}

// getdents is an ordinary getdents64.
func getdents(fd int, buf []byte, _ bool) (int, error) { return unix.Getdents(fd, buf) }
