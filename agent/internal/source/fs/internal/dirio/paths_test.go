package dirio

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"go.uber.org/goleak"

	"github.com/fustor/fustor/sdk/fspath"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func mkfiles(t *testing.T, dir string, n int) {
	t.Helper()
	for i := range n {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%03d", i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// readAll lists dir through sc in rounds of round, calling keep with each round's paths.
func readAll(t *testing.T, sc *Scratch, dir, rel string, round int, keep func(names []Name, paths []string)) {
	t.Helper()
	d, err := Open(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for {
		names, paths, err := sc.Read(d, rel, round)
		if len(names) != len(paths) || len(names) > round {
			t.Fatalf("a round of %d names and %d paths, asked for %d", len(names), len(paths), round)
		}
		keep(names, paths)
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestScratchPathsJoinNames: each path is its name below the listed directory, index for
// index, for the root and for a deeper directory, in one round or many.
func TestScratchPathsJoinNames(t *testing.T) {
	dir := t.TempDir()
	mkfiles(t, dir, 40)
	for _, rel := range []string{fspath.Root, "/a/b"} {
		for _, round := range []int{1, 7, 1024} {
			sc := GetScratch()
			var got []string
			readAll(t, sc, dir, rel, round, func(names []Name, paths []string) {
				for i, n := range names {
					if want := fspath.Join(rel, n.Name); paths[i] != want {
						t.Fatalf("rel %s: path %q for name %q, want %q", rel, paths[i], n.Name, want)
					}
					got = append(got, strings.Clone(paths[i]))
				}
			})
			sc.Release()
			if len(got) != 40 {
				t.Fatalf("rel %s, rounds of %d: %d paths, want 40", rel, round, len(got))
			}
		}
	}
}

// blockOf returns the bytes a round's paths were carved from: joinAll lays them out back to
// back in listing order, so the block runs from the first path's start to the last's end.
func blockOf(t *testing.T, paths []string) []byte {
	t.Helper()
	start := unsafe.StringData(paths[0])
	n := 0
	for _, p := range paths {
		if unsafe.StringData(p) != (*byte)(unsafe.Add(unsafe.Pointer(start), n)) {
			t.Fatalf("path %q is not where joinAll lays it: the test lost its point", p)
		}
		n += len(p)
	}
	return unsafe.Slice(start, n)
}

// TestScratchAliasing is the aliasing contract of Scratch, proven by writing over a round's
// block: a path kept without a copy shares the block (and would pin it), a path kept with
// strings.Clone does not, and no later round, Release or reuse of the pooled Scratch writes
// into a block handed out before — sharing one costs memory, never a path's content.
func TestScratchAliasing(t *testing.T) {
	dir, other := t.TempDir(), t.TempDir()
	mkfiles(t, dir, 30)
	mkfiles(t, other, 30)
	sc := GetScratch()
	var (
		first             []string // round one's paths as handed out: shared
		firstWant, cloned []string
	)
	readAll(t, sc, dir, "/d", 10, func(_ []Name, paths []string) {
		if first == nil {
			first = slices.Clone(paths)
			for _, p := range paths {
				firstWant = append(firstWant, strings.Clone(p))
				cloned = append(cloned, strings.Clone(p))
			}
		}
	})
	sc.Release()
	// Reuse the pooled scratch (most likely the same one) for another directory.
	sc = GetScratch()
	readAll(t, sc, other, "/o", 10, func([]Name, []string) {})
	sc.Release()
	if !slices.Equal(first, firstWant) {
		t.Fatalf("a later round, Release or reuse wrote into a block handed out before: %q, want %q", first, firstWant)
	}
	block := blockOf(t, first)
	for i := range block {
		block[i] = 'X'
	}
	for i, p := range first {
		if strings.Trim(p, "X") != "" {
			t.Fatalf("uncopied path %d %q survived writing over its block: it does not share it", i, p)
		}
	}
	if !slices.Equal(cloned, firstWant) {
		t.Fatalf("cloned paths changed with the block: %q, want %q", cloned, firstWant)
	}
}

// TestScratchReleaseKeepsNoStrings: a pooled Scratch holds no name or path of the listing it
// served, so the pool pins no block.
func TestScratchReleaseKeepsNoStrings(t *testing.T) {
	dir := t.TempDir()
	mkfiles(t, dir, 50)
	sc := GetScratch()
	readAll(t, sc, dir, "/", 20, func([]Name, []string) {})
	names, paths := sc.names[:cap(sc.names)], sc.paths[:cap(sc.paths)]
	sc.Release()
	for i, n := range names {
		if n.Name != "" {
			t.Fatalf("released scratch keeps name %d %q", i, n.Name)
		}
	}
	for i, p := range paths {
		if p != "" {
			t.Fatalf("released scratch keeps path %d %q", i, p)
		}
	}
}
