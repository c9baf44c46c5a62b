//go:build amd64 || arm64

package store

// prefetch asks the CPU to bring p's cache line in without waiting for it. Go has no prefetch
// intrinsic outside the runtime, and a plain load of a slot the apply loop needs rows later
// stalls retirement like the miss it tries to hide (docs/benchmarks.md, stop 13).
//
//go:noescape
func prefetch(p *uint32)
