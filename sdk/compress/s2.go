// Package compress registers the "s2" gRPC compressor (S2, the Snappy-compatible block format
// of github.com/klauspost/compress) that Fusion answers with when a client asks for it.
//
// Why s2 and not gzip: the answers that are large — GetTree, complete Finds, and above all
// Watch, where one message goes to many watchers — are paths, which compress several times
// over, and S2 inflates an order of magnitude faster than gzip, so a client (often on the same
// cores as Fusion in a test, or a busy storage client) pays little to read them.
// BenchmarkSnapshotWithWatchers measures it.
//
// gRPC keeps compressors in one process-wide registry; importing this package adds s2 to it.
// A client opts in per call or connection with grpc.UseCompressor(compress.Name); Fusion
// answers each stream in the compression of its request, so clients that do not ask (grpcurl,
// generated clients in other languages) get plain messages.
package compress

import (
	"bytes"
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/s2"
	"google.golang.org/grpc/encoding"
)

// Name is the compressor's name on the wire (grpc-encoding).
const Name = "s2"

func init() { encoding.RegisterCompressor(codec{}) }

// maxDecoded bounds what one message may inflate to, as gRPC's receive limit bounds the
// compressed bytes: a hostile peer's small block must not claim gigabytes.
const maxDecoded = 256 << 20

type codec struct{}

func (codec) Name() string { return Name }

// Compress buffers the message and writes it as one S2 block on Close.
func (codec) Compress(w io.Writer) (io.WriteCloser, error) {
	bw := writers.Get().(*blockWriter)
	bw.w = w
	return bw, nil
}

// Decompress reads the whole block and decodes it.
func (codec) Decompress(r io.Reader) (io.Reader, error) {
	in := bufs.Get().(*bytes.Buffer)
	defer func() { in.Reset(); bufs.Put(in) }()
	if _, err := in.ReadFrom(r); err != nil {
		return nil, fmt.Errorf("read s2 block: %w", err)
	}
	n, err := s2.DecodedLen(in.Bytes())
	if err != nil {
		return nil, fmt.Errorf("decode s2 block: %w", err)
	}
	if n > maxDecoded {
		return nil, fmt.Errorf("decode s2 block: it inflates to %d bytes, over %d", n, maxDecoded)
	}
	out, err := s2.Decode(make([]byte, n), in.Bytes())
	if err != nil {
		return nil, fmt.Errorf("decode s2 block: %w", err)
	}
	return bytes.NewReader(out), nil
}

// DecompressedSize lets gRPC check its receive limit before inflating.
func (codec) DecompressedSize(buf []byte) int {
	n, err := s2.DecodedLen(buf)
	if err != nil {
		return -1
	}
	return n
}

var (
	writers = sync.Pool{New: func() any { return &blockWriter{} }}
	bufs    = sync.Pool{New: func() any { return new(bytes.Buffer) }}
)

type blockWriter struct {
	w   io.Writer
	in  []byte
	out []byte
}

func (b *blockWriter) Write(p []byte) (int, error) {
	b.in = append(b.in, p...)
	return len(p), nil
}

func (b *blockWriter) Close() error {
	if need := s2.MaxEncodedLen(len(b.in)); cap(b.out) < need {
		b.out = make([]byte, need)
	}
	enc := s2.Encode(b.out[:cap(b.out)], b.in)
	_, err := b.w.Write(enc)
	b.w, b.in = nil, b.in[:0]
	if cap(b.in) > 4<<20 { // don't keep one huge answer's buffers in the pool
		b.in, b.out = nil, nil
	}
	writers.Put(b)
	if err != nil {
		return fmt.Errorf("write s2 block: %w", err)
	}
	return nil
}
