package store

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// adviseHuge asks for transparent huge pages on a large allocation not yet touched, where the
// system leaves them to madvise (the Debian default): a 1M-file view then faults its arenas
// and indexes in 2 MiB at a time instead of 4 KiB, and on a VM a page fault is dear (Fusion's
// CPU during a 1M-file snapshot, docs/benchmarks.md). Only whole 2 MiB extents inside the
// allocation can become huge pages; failures are harmless and ignored.
func adviseHuge(p unsafe.Pointer, size uintptr) {
	const page = 4096
	skip := (page - uintptr(p)%page) % page // madvise wants a page-aligned start
	if size <= skip {
		return
	}
	if n := (size - skip) &^ (page - 1); n > 0 {
		_ = unix.Madvise(unsafe.Slice((*byte)(unsafe.Add(p, skip)), n), unix.MADV_HUGEPAGE)
	}
}
