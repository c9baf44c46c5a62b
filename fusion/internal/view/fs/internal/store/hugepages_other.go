//go:build !linux

package store

import "unsafe"

func adviseHuge(unsafe.Pointer, uintptr) {}
