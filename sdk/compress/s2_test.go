package compress

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/klauspost/compress/s2"
	"go.uber.org/goleak"
	"google.golang.org/grpc/encoding"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func roundTrip(t testing.TB, in []byte) []byte {
	t.Helper()
	c := encoding.GetCompressor(Name)
	if c == nil {
		t.Fatal("s2 is not registered")
	}
	var wire bytes.Buffer
	w, err := c.Compress(&wire)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(in); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if n := c.(interface{ DecompressedSize([]byte) int }).DecompressedSize(wire.Bytes()); n != len(in) {
		t.Fatalf("DecompressedSize %d, want %d", n, len(in))
	}
	r, err := c.Decompress(&wire)
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestRoundTrip(t *testing.T) {
	paths := strings.Repeat("/upload/submit/0a/run-000010/sub_0/data_0042.dat", 2000)
	for _, tc := range []struct {
		name string
		in   []byte
	}{{"empty", nil}, {"one byte", []byte{7}}, {"paths", []byte(paths)}, {"again", []byte(paths[:999])}} {
		t.Run(tc.name, func(t *testing.T) {
			if out := roundTrip(t, tc.in); !bytes.Equal(out, tc.in) {
				t.Fatalf("got %d bytes back, want %d", len(out), len(tc.in))
			}
		})
	}
}

func TestBadBlocksAreErrors(t *testing.T) {
	c := encoding.GetCompressor(Name)
	huge := s2.Encode(nil, make([]byte, 1<<20))
	// A header claiming more than maxDecoded: refused before any allocation.
	claim := append([]byte{0x80, 0x80, 0x80, 0x80, 0x0f}, huge[3:]...)
	for name, in := range map[string][]byte{"garbage": []byte("not s2 at all"), "truncated": huge[:len(huge)/2], "claims too much": claim} {
		t.Run(name, func(t *testing.T) {
			if _, err := c.Decompress(bytes.NewReader(in)); err == nil {
				t.Fatal("no error")
			}
		})
	}
}

func FuzzDecompress(f *testing.F) {
	f.Add(s2.Encode(nil, []byte("/a/b/c")))
	f.Add([]byte{0xff, 0xff})
	c := encoding.GetCompressor(Name)
	f.Fuzz(func(t *testing.T, in []byte) {
		r, err := c.Decompress(bytes.NewReader(in))
		if err != nil {
			return
		}
		if _, err := io.ReadAll(r); err != nil {
			t.Fatal(err)
		}
	})
}
