// Package state keeps what an agent pipe remembers across restarts in the agent's own state
// directory: the audit mtime cache of its last completed audit (source.AuditCache) and the
// audit count that numbers its audits. With it, the first audit after a restart is a true-silence
// audit — directories whose mtime did not change are not listed again — instead of a full one.
//
// The cache is only a hint: a file that cannot be trusted is refused whole (never half used),
// and the caller starts with an empty cache, which costs one full audit, never correctness.
//
// The resume position of a replayable source (the journal) is not kept here: it is Fusion's
// committed index, which CreateSession returns. While Fusion runs, that is exactly what the
// agent last sent and had acknowledged; a restarted Fusion answers 0 (its view restored from a
// checkpoint that may be older than any position the agent could have kept), and then only a
// snapshot is right. A copy on the agent would be either redundant or wrong.
//
// One file per pipe, <state_dir>/<pipe, path-escaped>.audit:
//
//	magic   8 bytes  "FUSTORAS"
//	version u32 LE   (Version)
//	length  u64 LE   of the payload
//	payload          uvarint-prefixed source signature, uvarint cycle, varint written-at (Unix
//	                 ns), uvarint count, then count directories sorted by path, each as
//	                 uvarint shared-prefix length with the previous path, uvarint suffix length,
//	                 the suffix, varint mtime (ns)
//	crc     u32 LE   CRC-32C (Castagnoli) of version, length and payload
//
// Binary rather than JSON: the cache holds one entry per directory — millions on a large tree —
// and sorted paths share long prefixes, so the file is a fraction of a JSON one and decodes
// without a parser's garbage; CRC-32C (hardware-accelerated) is the same check Fusion's view
// checkpoints use, and it is enough against torn and flipped bytes, which is what a local state
// file has to fear (no one forges it).
package state

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/fustor/fustor/sdk/wire"
)

// Version is the format this agent writes and the only one it reads.
const Version = 1

// Bounds that refuse absurd files before anything is allocated for them.
const (
	// MaxDirs is the most directories a file may hold (Fusion's views hold at most 2^27 nodes).
	MaxDirs = 1 << 27
	// MaxFileBytes bounds the file: 2^27 directories at ~16 bytes each.
	MaxFileBytes = 2 << 30
	// MaxPathBytes bounds one directory's path.
	MaxPathBytes = 1 << 16
)

const (
	magic      = "FUSTORAS"
	headerSize = len(magic) + 4 + 8
	// minEntryBytes is the smallest encoded directory: three one-byte varints.
	minEntryBytes = 3
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// State is what one pipe keeps.
type State struct {
	// Source is the signature of the source the cache was built on (driver://root): a cache
	// is only valid for the tree its paths are relative to.
	Source string
	// Cycle is the number of audits the pipe had started, so the rolling verification's
	// cursor and the deep-audit count continue instead of starting over.
	Cycle uint64
	// WrittenAt is when the state was saved.
	WrittenAt time.Time
	// Dirs is each directory's mtime (ns) at the last completed audit that listed it or found it
	// silent, by path relative to the source's root.
	Dirs map[string]int64
}

// File returns the state file of a pipe in dir; the pipe id is path-escaped, so any id names
// one file inside dir.
func File(dir, pipe string) string {
	return filepath.Join(dir, url.PathEscape(pipe)+".audit")
}

// Encode returns st in the file format.
func Encode(st State) []byte {
	var p []byte
	p = binary.AppendUvarint(p, uint64(len(st.Source)))
	p = append(p, st.Source...)
	p = binary.AppendUvarint(p, st.Cycle)
	var at int64
	if !st.WrittenAt.IsZero() {
		at = st.WrittenAt.UnixNano()
	}
	p = binary.AppendVarint(p, at)
	paths := make([]string, 0, len(st.Dirs))
	for k := range st.Dirs {
		paths = append(paths, k)
	}
	slices.Sort(paths)
	p = binary.AppendUvarint(p, uint64(len(paths)))
	prev := ""
	for _, k := range paths {
		n := commonPrefix(prev, k)
		p = binary.AppendUvarint(p, uint64(n))
		p = binary.AppendUvarint(p, uint64(len(k)-n))
		p = append(p, k[n:]...)
		p = binary.AppendVarint(p, st.Dirs[k])
		prev = k
	}
	out := make([]byte, 0, headerSize+len(p)+4)
	out = append(out, magic...)
	out = binary.LittleEndian.AppendUint32(out, Version)
	out = binary.LittleEndian.AppendUint64(out, uint64(len(p)))
	out = append(out, p...)
	return binary.LittleEndian.AppendUint32(out, crc32.Checksum(out[len(magic):], castagnoli))
}

func commonPrefix(a, b string) int {
	n := min(len(a), len(b))
	for i := range n {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}

// Decode parses a file's content; anything but a whole, intact file of this Version is an
// error saying what is wrong.
func Decode(b []byte) (State, error) {
	var st State
	if len(b) < headerSize+4 {
		return st, fmt.Errorf("decode audit state: %d bytes, shorter than a header", len(b))
	}
	if string(b[:len(magic)]) != magic {
		return st, errors.New("decode audit state: not an agent state file (bad magic)")
	}
	if v := binary.LittleEndian.Uint32(b[len(magic):]); v != Version {
		return st, fmt.Errorf("decode audit state: format version %d, this agent reads %d", v, Version)
	}
	n := binary.LittleEndian.Uint64(b[len(magic)+4:])
	if have := uint64(len(b) - headerSize - 4); n != have {
		return st, fmt.Errorf("decode audit state: payload of %d bytes announced, %d present (truncated or extended)", n, have)
	}
	end := headerSize + int(n)
	if sum := binary.LittleEndian.Uint32(b[end:]); sum != crc32.Checksum(b[len(magic):end], castagnoli) {
		return st, errors.New("decode audit state: checksum mismatch")
	}
	r := wire.Reader{B: b[headerSize:end]}
	st.Source = string(r.Bytes(MaxPathBytes))
	st.Cycle = r.Uvarint()
	if at := r.Varint(); at != 0 {
		st.WrittenAt = time.Unix(0, at)
	}
	count := r.Uvarint()
	if r.Err == nil && (count > MaxDirs || count > uint64(len(r.B))/minEntryBytes) {
		r.Fail(fmt.Errorf("%d directories announced", count))
	}
	if r.Err == nil {
		st.Dirs = make(map[string]int64, count)
	}
	prev := ""
	for i := uint64(0); i < count && r.Err == nil; i++ {
		shared := r.Uvarint()
		if shared > uint64(len(prev)) {
			r.Fail(fmt.Errorf("directory %d shares %d bytes with a %d-byte path", i, shared, len(prev)))
			break
		}
		suffix := r.Bytes(MaxPathBytes - int(shared))
		k := prev[:shared] + string(suffix)
		mtime := r.Varint()
		if r.Err != nil {
			break
		}
		if i > 0 && k <= prev {
			r.Fail(fmt.Errorf("directory %d out of order", i))
			break
		}
		st.Dirs[k] = mtime
		prev = k
	}
	if r.Err == nil && len(r.B) != 0 {
		r.Fail(fmt.Errorf("%d bytes after the last directory", len(r.B)))
	}
	if r.Err != nil {
		return State{}, fmt.Errorf("decode audit state: %w", r.Err)
	}
	return st, nil
}

// Read reads and decodes the file at path. A missing file is an error wrapping os.ErrNotExist
// (no state yet, nothing to refuse); a file larger than MaxFileBytes is refused unread.
func Read(path string) (State, error) {
	f, err := os.Open(path)
	if err != nil {
		return State{}, fmt.Errorf("open audit state: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return State{}, fmt.Errorf("stat audit state: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return State{}, fmt.Errorf("read audit state: %s is not a regular file", path)
	}
	if fi.Size() > MaxFileBytes {
		return State{}, fmt.Errorf("read audit state: %d bytes, more than the %d allowed", fi.Size(), MaxFileBytes)
	}
	var buf bytes.Buffer
	buf.Grow(int(fi.Size()) + 1)
	// One byte past the bound, so a file grown since the Stat is caught too.
	if _, err := buf.ReadFrom(io.LimitReader(f, MaxFileBytes+1)); err != nil {
		return State{}, fmt.Errorf("read audit state: %w", err)
	}
	if buf.Len() > MaxFileBytes {
		return State{}, fmt.Errorf("read audit state: more than the %d bytes allowed", MaxFileBytes)
	}
	return Decode(buf.Bytes())
}

// Write saves st at path atomically: a temporary file in the same directory (created if
// missing), fsynced, renamed over path, then the directory fsynced, so a crash leaves either
// the old file or the new one, never a mix.
func Write(path string, st State) error {
	data := Encode(st)
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create state dir: %w", err)
	}
	tmp, err := os.CreateTemp(dir, filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("create audit state: %w", err)
	}
	done := false
	defer func() {
		if !done {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("write audit state: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("sync audit state: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close audit state: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("rename audit state: %w", err)
	}
	done = true
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open state dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync state dir: %w", err)
	}
	return nil
}

// Refuse moves a file that was refused aside, to <path>.refused-<UTC time>, keeping it for a
// post-mortem (it is never deleted) and out of the next start's way. It returns the new path.
func Refuse(path string, now time.Time) (string, error) {
	aside := fmt.Sprintf("%s.refused-%s", path, now.UTC().Format("20060102T150405.000000000Z"))
	if err := os.Rename(path, aside); err != nil {
		return "", fmt.Errorf("move refused audit state aside: %w", err)
	}
	return aside, nil
}
