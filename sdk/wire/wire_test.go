package wire

import (
	"encoding/binary"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestReader(t *testing.T) {
	b := binary.AppendUvarint(nil, 7)
	b = binary.AppendVarint(b, -3)
	b = binary.AppendUvarint(b, 2)
	b = append(b, "hi"...)
	b = binary.AppendUvarint(b, 100) // a string longer than what is left
	r := Reader{B: b}
	if r.Uvarint() != 7 || r.Varint() != -3 || string(r.Bytes(0)) != "hi" || r.Err != nil {
		t.Fatalf("read back wrong: %v", r.Err)
	}
	if r.Bytes(0) != nil || r.Err == nil {
		t.Fatal("an overlong string was read")
	}
	if r.Uvarint() != 0 || r.Varint() != 0 {
		t.Fatal("a read after the error returned data")
	}
	r = Reader{B: binary.AppendUvarint(nil, 5)}
	if r.Bytes(4) != nil || r.Err == nil {
		t.Fatal("a string over its limit was read")
	}
	r = Reader{B: binary.AppendUvarint(nil, 9)}
	if r.Count() != 0 || r.Err == nil {
		t.Fatal("a table longer than its bytes was accepted")
	}
}
