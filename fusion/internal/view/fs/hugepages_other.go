//go:build !linux

package fs

import "unsafe"

func adviseHuge(unsafe.Pointer, uintptr) {}
