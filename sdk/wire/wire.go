// Package wire reads the varint-coded files Fustor writes for itself (Fusion's view
// checkpoints, the agent's saved audit state): a Reader whose first error sticks, so a
// decoder reads field after field and checks once.
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Reader reads varints and length-prefixed bytes from B; after the first error (Err) every
// read returns zero.
type Reader struct {
	B   []byte
	Err error
}

// Fail records err unless an error is already recorded.
func (r *Reader) Fail(err error) {
	if r.Err == nil {
		r.Err = err
	}
}

var errVarint = errors.New("bad or truncated varint")

// Uvarint reads an unsigned varint.
func (r *Reader) Uvarint() uint64 {
	if r.Err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.B)
	if n <= 0 {
		r.Fail(errVarint)
		return 0
	}
	r.B = r.B[n:]
	return v
}

// Varint reads a signed varint.
func (r *Reader) Varint() int64 {
	if r.Err != nil {
		return 0
	}
	v, n := binary.Varint(r.B)
	if n <= 0 {
		r.Fail(errVarint)
		return 0
	}
	r.B = r.B[n:]
	return v
}

// Bytes reads a uvarint length of at most limit (<= 0: what is left) and that many bytes,
// which alias B.
func (r *Reader) Bytes(limit int) []byte {
	n := r.Uvarint()
	if r.Err != nil {
		return nil
	}
	if (limit > 0 && n > uint64(limit)) || n > uint64(len(r.B)) {
		r.Fail(fmt.Errorf("a string of %d bytes (limit %d, %d left)", n, limit, len(r.B)))
		return nil
	}
	out := r.B[:n]
	r.B = r.B[n:]
	return out
}

// Count reads a table's length, bounded by the bytes left (each entry takes one at least).
func (r *Reader) Count() uint64 {
	n := r.Uvarint()
	if n > uint64(len(r.B)) {
		r.Fail(fmt.Errorf("a table of %d entries in %d bytes", n, len(r.B)))
		return 0
	}
	return n
}
