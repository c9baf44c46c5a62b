//go:build !amd64 && !arm64

package store

func prefetch(*uint32) {}
