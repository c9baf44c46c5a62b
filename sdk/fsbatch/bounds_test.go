package fsbatch

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"strings"
	"testing"
	"time"

	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
)

// TestDecodeMtimeRange (issue 22): a row's mtime must lie in [1900-01-01, 2200-01-01); rows
// outside are rejected, saying so, never clamped.
func TestDecodeMtimeRange(t *testing.T) {
	at := func(y int) int64 { return time.Date(y, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano() }
	tests := []struct {
		name  string
		mtime int64
		ok    bool
	}{
		{"epoch", 0, true},
		{"1969 (touch -d)", at(1969), true},
		{"1900, the first kept", MinMtimeNs, true},
		{"just before 1900", MinMtimeNs - 1, false},
		{"2199", at(2199), true},
		{"2200, the first refused", MaxMtimeNs, false},
		{"most negative", math.MinInt64, false},
		{"most positive", math.MaxInt64, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &fustorv1.FsBatch{ParentIds: []uint32{1}, Names: []string{"f"}, MtimeBase: tt.mtime}
			rows, rejected, rowErrs, err := NewDecoder(0).Decode(b, 0, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tt.ok {
				if len(rows) != 1 || rows[0].MtimeNs != tt.mtime {
					t.Fatalf("rows %+v, rejected %d: %v", rows, rejected, rowErrs)
				}
				return
			}
			if len(rows) != 0 || rejected != 1 || !strings.Contains(rowErrs[0].Error(), "outside [1900-01-01, 2200-01-01): rejected") {
				t.Fatalf("rows %+v, rejected %d: %v", rows, rejected, rowErrs)
			}
		})
	}
}

// dirsBatch declares n directories under the root, ids from first on, names of nameLen bytes.
func dirsBatch(first uint32, n, nameLen int) *fustorv1.FsBatch {
	b := &fustorv1.FsBatch{Dirs: make([]*fustorv1.FsDir, n)}
	pad := strings.Repeat("d", max(nameLen-8, 0))
	for i := range n {
		b.Dirs[i] = &fustorv1.FsDir{Id: first + uint32(i), ParentId: RootID, Name: fmt.Sprintf("%s%08d", pad, i)}
	}
	return b
}

// TestDecodeDirTableBounds (issue 22): a stream's declarations are bounded in count and in
// bytes of names; a batch passing either fails whole with ErrDirTable (not ErrMalformed), and
// reset_dirs gives the whole budget back.
func TestDecodeDirTableBounds(t *testing.T) {
	tests := []struct {
		name    string
		lim     Limits
		n, size int // declarations of the second batch, bytes per name
		why     string
	}{
		{"count", Limits{MaxDirs: 1000}, 600, 10, "more than 1000 directories"},
		{"bytes", Limits{MaxDirBytes: 10_000}, 600, 10, "pass 10000 bytes"},
		{"within both", Limits{MaxDirs: 1300, MaxDirBytes: 12_000}, 600, 10, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := NewDecoder(0)
			d.SetLimits(tt.lim)
			if _, _, _, err := d.Decode(dirsBatch(2, 600, tt.size), 0, nil); err != nil {
				t.Fatal(err)
			}
			_, _, _, err := d.Decode(dirsBatch(602, tt.n, tt.size), 0, nil)
			if tt.why == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrDirTable) || errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tt.why) {
				t.Fatalf("err %v; want ErrDirTable saying %q", err, tt.why)
			}
			// reset_dirs: the table starts over, and the same declarations fit again.
			b := dirsBatch(2, 600, tt.size)
			b.ResetDirs = true
			if _, _, _, err := d.Decode(b, 0, nil); err != nil || d.Dirs() != 601 || d.DirBytes() != 600*tt.size {
				t.Fatalf("after reset_dirs: %v, %d dirs, %d bytes", err, d.Dirs(), d.DirBytes())
			}
		})
	}
}

// TestDeclarationsAreLinear (issue 22): a chain of 2,000 levels of 1 KB names (within raised
// path bounds) costs its names once: memory linear in the declarations' bytes, not the
// O(depth²) of a path per level (2,000 paths of up to 2 MB would be 2 GB).
func TestDeclarationsAreLinear(t *testing.T) {
	long := strings.Repeat("n", 1000)
	b := &fustorv1.FsBatch{}
	for i := range 2000 {
		b.Dirs = append(b.Dirs, &fustorv1.FsDir{Id: uint32(2 + i), ParentId: uint32(1 + i), Name: long})
	}
	b.ParentIds, b.Names = []uint32{2001}, []string{"leaf"}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	d := NewDecoder(0)
	d.SetLimits(Limits{MaxPathBytes: 4 << 20, MaxDepth: 4096})
	rows, rejected, _, err := d.Decode(b, 0, nil)
	runtime.GC()
	runtime.ReadMemStats(&after)
	if err != nil || len(rows) != 1 || rejected != 0 || d.Dirs() != 2001 {
		t.Fatalf("%d rows, %d rejected, %d dirs: %v", len(rows), rejected, d.Dirs(), err)
	}
	// The names are the batch's own strings; the table adds a Dir and a map entry a level.
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 1<<20 {
		t.Fatalf("2,000 declarations took %d KB", grew>>10)
	}
	runtime.KeepAlive(b)
	runtime.KeepAlive(d)
}

// TestEncoderResetsOnNameBytes: an encoder starts over before its names reach half the
// decoder's default byte bound, so a default decoder never refuses a real agent's stream.
func TestEncoderResetsOnNameBytes(t *testing.T) {
	e := NewEncoder(0)
	d := NewDecoder(0)
	name := strings.Repeat("x", 1000)
	resets := 0
	// 100 MB of distinct directory names, 1,000 per batch.
	for i := range 100 {
		for j := range 1000 {
			e.Add(fmt.Sprintf("/%s%06d/f", name, i*1000+j), 0, 1, 0, 1, 0)
		}
		b, idx := e.Flush()
		if b.GetResetDirs() {
			resets++
		}
		if _, _, _, err := d.Decode(b, idx, nil); err != nil {
			t.Fatalf("batch %d: %v", i, err)
		}
		if d.DirBytes() > DefaultMaxDirBytes {
			t.Fatalf("batch %d: the decoder holds %d bytes of names", i, d.DirBytes())
		}
	}
	if resets < 2 {
		t.Fatalf("%d resets for 100 MB of names; want at least 2", resets)
	}
}

// BenchmarkDecoderTableAtBound reports the heap one stream's declaration table holds when
// full at the default bounds: DefaultMaxDirs directories of 32-byte names, in batches of 20k
// as a hostile stream would send them (table-MB, B/dir). Run:
//
//	go test -run '^$' -bench DecoderTableAtBound -benchtime 1x ./sdk/fsbatch
func BenchmarkDecoderTableAtBound(b *testing.B) {
	for range b.N {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		d := NewDecoder(0)
		const per = 20_000
		var err error
		n := 0
		for first := uint32(2); err == nil; first += per {
			_, _, _, err = d.Decode(dirsBatch(first, per, 32), 0, nil)
			n++
		}
		if !errors.Is(err, ErrDirTable) {
			b.Fatal(err)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		held := float64(after.HeapAlloc) - float64(before.HeapAlloc)
		b.ReportMetric(held/(1<<20), "table-MB")
		b.ReportMetric(held/float64(d.Dirs()), "B/dir")
		b.ReportMetric(float64(d.Dirs()), "dirs")
		runtime.KeepAlive(d)
	}
}
