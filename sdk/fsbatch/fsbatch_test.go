package fsbatch

import (
	"math"
	"strings"
	"unsafe"

	"errors"
	"fmt"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"

	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type in struct {
	path          string
	flags         uint32
	size          uint64
	mtime         int64
	index         uint64
	parentMtimeNs int64
}

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		rows []in
	}{
		{"root row", []in{{path: "/", flags: FlagDir, mtime: 5, index: 9}}},
		{"flat", []in{{path: "/a", size: 1, mtime: 100, index: 10}, {path: "/b", size: 2, mtime: 50, index: 12}}},
		{"nested", []in{
			{path: "/x/y/z/f.dat", size: 10, mtime: 1_700_000_000_000_000_000, index: 1},
			{path: "/x/y", flags: FlagDir, mtime: 1_700_000_000_000_000_001, index: 1},
			{path: "/x/y/z/g.dat", flags: FlagDelete, index: 3},
			{path: "/x/w", flags: FlagPartialWrite, size: 7, mtime: -5, index: 4, parentMtimeNs: 77},
		}},
		{"unicode and spaces", []in{{path: "/dir with space/données é.bin", size: 3, mtime: 1, index: 2}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			enc, dec := NewEncoder(0), NewDecoder(0)
			for _, r := range tt.rows {
				enc.Add(r.path, r.flags, r.size, r.mtime, r.index, r.parentMtimeNs)
			}
			b, index := enc.Flush()
			b = wire(t, b)
			got, rejected, rowErrs, err := dec.Decode(b, index, nil)
			if err != nil || rejected != 0 {
				t.Fatalf("Decode: %v, rejected %d %v", err, rejected, rowErrs)
			}
			if len(got) != len(tt.rows) {
				t.Fatalf("got %d rows, want %d", len(got), len(tt.rows))
			}
			for i, r := range tt.rows {
				g := got[i]
				wantFlags := r.flags
				if r.path == "/" {
					wantFlags |= FlagDir
				}
				if g.Path() != r.path || g.Flags != wantFlags || g.Size != r.size || g.MtimeNs != r.mtime || g.Index != r.index || g.ParentMtimeNs != r.parentMtimeNs {
					t.Errorf("row %d = %+v (path %q); want %+v", i, g, g.Path(), r)
				}
			}
		})
	}
}

// wire sends b through the protobuf encoding, as the stream does.
func wire(t testing.TB, b *fustorv1.FsBatch) *fustorv1.FsBatch {
	t.Helper()
	raw, err := proto.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	out := &fustorv1.FsBatch{}
	if err := proto.Unmarshal(raw, out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestDirsDeclaredOncePerStream(t *testing.T) {
	enc, dec := NewEncoder(0), NewDecoder(0)
	enc.Add("/a/b/c1", 0, 1, 1, 1, 0)
	b1, i1 := enc.Flush()
	if len(b1.Dirs) != 2 {
		t.Fatalf("first batch declares %d dirs, want 2", len(b1.Dirs))
	}
	enc.Add("/a/b/c2", 0, 1, 1, 2, 0)
	b2, i2 := enc.Flush()
	if len(b2.Dirs) != 0 {
		t.Fatalf("second batch declares %d dirs, want 0", len(b2.Dirs))
	}
	for _, x := range []struct {
		b *fustorv1.FsBatch
		i uint64
	}{{b1, i1}, {b2, i2}} {
		rows, _, _, err := dec.Decode(x.b, x.i, nil)
		if err != nil || len(rows) != 1 || rows[0].Dir.Path() != "/a/b" {
			t.Fatalf("Decode = %+v, %v", rows, err)
		}
	}
}

func TestEncoderResetBoundsTable(t *testing.T) {
	enc, dec := NewEncoder(4), NewDecoder(8)
	for i := range 20 {
		enc.Add(fmt.Sprintf("/d%d/f", i), 0, 0, 0, uint64(i), 0)
		b, idx := enc.Flush()
		rows, _, rowErrs, err := dec.Decode(wire(t, b), idx, nil)
		if err != nil || len(rows) != 1 || rows[0].Path() != fmt.Sprintf("/d%d/f", i) {
			t.Fatalf("batch %d: %+v %v %v", i, rows, rowErrs, err)
		}
		if len(enc.ids) > 5 || dec.Dirs() > 8 {
			t.Fatalf("tables grew: encoder %d decoder %d", len(enc.ids), dec.Dirs())
		}
	}
}

func TestDecodeMalformed(t *testing.T) {
	tests := []struct {
		name string
		b    *fustorv1.FsBatch
	}{
		{"column mismatch", &fustorv1.FsBatch{ParentIds: []uint32{1}, Names: []string{"a", "b"}}},
		{"sizes mismatch", &fustorv1.FsBatch{ParentIds: []uint32{1}, Names: []string{"a"}, Sizes: []uint64{1, 2}}},
		{"reserved dir id", &fustorv1.FsBatch{Dirs: []*fustorv1.FsDir{{Id: 1, ParentId: 1, Name: "x"}}}},
		{"unknown dir parent", &fustorv1.FsBatch{Dirs: []*fustorv1.FsDir{{Id: 5, ParentId: 4, Name: "x"}}}},
		{"bad dir name", &fustorv1.FsBatch{Dirs: []*fustorv1.FsDir{{Id: 5, ParentId: 1, Name: ".."}}}},
		{"redeclared", &fustorv1.FsBatch{Dirs: []*fustorv1.FsDir{{Id: 5, ParentId: 1, Name: "x"}, {Id: 5, ParentId: 1, Name: "y"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, _, err := NewDecoder(0).Decode(tt.b, 0, nil)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("err = %v; want ErrMalformed", err)
			}
		})
	}
}

func TestDecodeRejectsBadRowsKeepsGood(t *testing.T) {
	b := &fustorv1.FsBatch{
		ParentIds: []uint32{1, 9, 1, 1, 0, 1},
		Names:     []string{"ok", "orphan", "a/b", "..", "root-with-name", "bad-flag"},
		Flags:     []uint32{0, 0, 0, 0, FlagDir, 1 << 20},
	}
	rows, rejected, rowErrs, err := NewDecoder(0).Decode(b, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0].Path() != "/ok" || rejected != 5 || len(rowErrs) != 5 {
		t.Fatalf("rows %+v rejected %d errs %v", rows, rejected, rowErrs)
	}
}

func FuzzDecode(f *testing.F) {
	enc := NewEncoder(0)
	enc.Add("/a/b/c.dat", 0, 10, 1e18, 5, 0)
	enc.Add("/a/d", FlagDir|FlagAuditSkipped, 0, 1e18, 6, 9)
	b, _ := enc.Flush()
	seed, _ := proto.Marshal(b)
	f.Add(seed, uint64(5))
	f.Add([]byte{0x12, 0x01, 0x61}, uint64(0))
	f.Fuzz(func(t *testing.T, raw []byte, index uint64) {
		msg := &fustorv1.FsBatch{}
		if proto.Unmarshal(raw, msg) != nil {
			return
		}
		dec := NewDecoder(64)
		rows, rejected, _, err := dec.Decode(msg, index, nil)
		if err != nil {
			if !errors.Is(err, ErrMalformed) || len(rows) != 0 {
				t.Fatalf("error %v with %d rows", err, len(rows))
			}
			return
		}
		if len(rows)+rejected != len(msg.GetNames()) {
			t.Fatalf("%d rows + %d rejected != %d names", len(rows), rejected, len(msg.GetNames()))
		}
		for _, r := range rows {
			if r.Name == "" && r.Dir != nil {
				t.Fatalf("row without name below the root: %+v", r)
			}
			if r.Name != "" {
				if err := validRowPath(r.Path()); err != nil {
					t.Fatalf("row path %q: %v", r.Path(), err)
				}
			}
		}
		if dec.Dirs() > 64+len(msg.GetDirs()) {
			t.Fatalf("decoder table %d over bound", dec.Dirs())
		}
	})
}

// TestEncoderCopiesDirectoryKeys: the agent cuts many paths out of one block, so a
// declaration table keyed by slices of them would keep every block alive. The table must
// hold its own copies: rewriting the bytes behind a path the encoder saw changes nothing.
func TestEncoderCopiesDirectoryKeys(t *testing.T) {
	buf := []byte("/a/b/c1")
	enc := NewEncoder(0)
	enc.Add(unsafe.String(&buf[0], len(buf)), 0, 1, 1, 1, 0)
	enc.Flush()
	copy(buf, "/x/y/c1")
	for dir := range enc.ids {
		if dir != "/" && dir != "/a" && dir != "/a/b" {
			t.Fatalf("declaration table holds %q: it aliases the caller's path", dir)
		}
	}
	enc.Add("/a/b/c2", 0, 1, 1, 2, 0)
	if b, _ := enc.Flush(); len(b.Dirs) != 0 {
		t.Fatalf("second batch declares %d dirs, want 0", len(b.Dirs))
	}
}

// TestEncoderRecycleReusesColumns: a recycled batch's columns carry the next batch, whose
// rows decode the same as from fresh columns, and a batch not the last flushed is ignored.
func TestEncoderRecycleReusesColumns(t *testing.T) {
	enc, dec := NewEncoder(0), NewDecoder(0)
	for i := range 100 {
		enc.Add(fmt.Sprintf("/d/f%03d", i), 0, uint64(i), int64(1000+i), uint64(10+i), 0)
	}
	b1, i1 := enc.Flush()
	rows1, _, _, err := dec.Decode(b1, i1, nil)
	if err != nil || len(rows1) != 100 {
		t.Fatalf("first batch: %d rows, %v", len(rows1), err)
	}
	names := &b1.Names[:1][0]
	enc.Recycle(b1)
	enc.Recycle(b1) // twice: ignored
	for i := range 3 {
		enc.Add(fmt.Sprintf("/d/g%d", i), FlagPartialWrite, 7, 5, uint64(500+i), 0)
	}
	b2, i2 := enc.Flush()
	if &b2.Names[:1][0] != names {
		t.Fatal("the second batch did not reuse the first one's names column")
	}
	rows2, _, _, err := dec.Decode(b2, i2, nil)
	if err != nil || len(rows2) != 3 {
		t.Fatalf("second batch: %d rows, %v", len(rows2), err)
	}
	for i, r := range rows2 {
		if r.Path() != fmt.Sprintf("/d/g%d", i) || r.Flags != FlagPartialWrite || r.Size != 7 || r.MtimeNs != 5 || r.Index != uint64(500+i) {
			t.Fatalf("row %d = %+v", i, r)
		}
	}
	enc.Recycle(b1) // not the last flushed: ignored
	enc.Add("/d/h", 0, 1, 1, 1, 0)
	if b3, _ := enc.Flush(); &b3.Names[:1][0] == &b2.Names[:1][0] {
		t.Fatal("a stale Recycle handed out the columns of a batch still in use")
	}
}

// TestDecodeLimits (issue 22): rows beyond the limits — a path too deep or too long, a name
// too long, a size over 2^63-1, an mtime whose delta overflows, anything under a directory
// declared beyond the limits — are rejected with a short reason; the rows within them stay; a
// hostile chain of deep long directories costs no path per declaration.
func TestDecodeLimits(t *testing.T) {
	long := strings.Repeat("n", 1000)
	// A chain of 600 directories of 1,000-byte names: beyond the path bound from the fifth.
	var dirs []*fustorv1.FsDir
	for i := range 600 {
		dirs = append(dirs, &fustorv1.FsDir{Id: uint32(2 + i), ParentId: uint32(1 + i), Name: long})
	}
	b := &fustorv1.FsBatch{
		Dirs:      dirs,
		ParentIds: []uint32{1, 4, 5, 601, 1, 1, 1, 1},
		Names:     []string{"ok", "depth-3-ok", strings.Repeat("o", 100), "deep-down", strings.Repeat("x", 2000), "huge", "fine", "wrap"},
		Sizes:     []uint64{1, 1, 1, 1, 1, 1 << 63, 1, 1},
		MtimeBase: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano(),
		// Each delta is applied to the running mtime: the last row's wraps it.
		MtimeDeltas: []int64{0, 0, 0, 0, 0, 0, -5, math.MaxInt64},
	}
	dec := NewDecoder(0)
	rows, rejected, rowErrs, err := dec.Decode(b, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	var kept []string
	for _, r := range rows {
		kept = append(kept, r.Name)
	}
	if strings.Join(kept, ",") != "ok,depth-3-ok,fine" || rejected != 5 {
		t.Fatalf("kept %v, rejected %d: %v", kept, rejected, rowErrs)
	}
	for _, re := range rowErrs {
		if len(re.Error()) > 200 {
			t.Errorf("a reason echoes its input: %d bytes", len(re.Error()))
		}
	}
	wants := []string{"a path of 4105 bytes", "under a directory beyond the limits", "a name of 2000 bytes", "over 2^63-1", "mtime out of range"}
	for i, w := range wants {
		if !strings.Contains(rowErrs[i].Error(), w) {
			t.Errorf("reason %d %q; want %q", i, rowErrs[i].Error(), w)
		}
	}
	// Only the declarations within the limits hold a name: the rest share one Dir.
	within := 0
	for _, d := range dec.dirs {
		if !d.bad {
			within++
		}
	}
	if within != 1+4 { // the root and 4 levels of 1,001 bytes (4,004 < 4,096)
		t.Fatalf("%d declarations hold a name; want 5", within)
	}
	// Depth: 1,100 levels of one-byte names, rows at every level.
	dirs, b = nil, &fustorv1.FsBatch{}
	for i := range 1100 {
		dirs = append(dirs, &fustorv1.FsDir{Id: uint32(2 + i), ParentId: uint32(1 + i), Name: "d"})
		b.ParentIds, b.Names = append(b.ParentIds, uint32(2+i)), append(b.Names, "f")
	}
	b.Dirs = dirs
	rows, rejected, _, err = NewDecoder(0).Decode(b, 0, nil)
	if err != nil || len(rows) != DefaultMaxDepth-1 || rejected != 1100-(DefaultMaxDepth-1) {
		t.Fatalf("1,100 levels: %d rows kept, %d rejected, %v; want %d kept", len(rows), rejected, err, DefaultMaxDepth-1)
	}
}
