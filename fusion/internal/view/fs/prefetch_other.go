//go:build !amd64 && !arm64

package fs

func prefetch(*uint32) {}
