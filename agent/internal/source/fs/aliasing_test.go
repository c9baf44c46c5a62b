package fs

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"github.com/fustor/fustor/agent/internal/source"
)

// TestKeptPathsDoNotShareTheListingBlock proves the walk's side of the aliasing contract
// (dirio.Scratch) by writing over a listing's block once the walk is done: the file rows'
// paths, which share it by design, change; the directories' paths, which the walk keeps past
// their rows' trip (work queue, watches, audit cache), and the audit cache's keys, do not.
func TestKeptPathsDoNotShareTheListingBlock(t *testing.T) {
	root := t.TempDir()
	for i := range 3 {
		if err := os.Mkdir(filepath.Join(root, fmt.Sprintf("sub%d", i)), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 50 {
		writeFile(t, filepath.Join(root, fmt.Sprintf("f%02d", i)), "x")
	}
	s := newSource(t, root, nil)
	cache := source.NewAuditCache()
	files := map[string]string{} // as emitted (shared) -> a copy
	dirs := map[string]int64{}   // as emitted -> mtime
	if _, err := s.Audit(context.Background(), cache, source.AuditOptions{}, func(evs []source.Event) error {
		for _, e := range evs {
			switch {
			case e.Path == "/":
			case e.IsDir():
				dirs[e.Path] = e.MtimeNs
			default:
				files[e.Path] = strings.Clone(e.Path)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(files) != 50 || len(dirs) != 3 {
		t.Fatalf("%d files and %d dirs, want 50 and 3", len(files), len(dirs))
	}

	// The root's listing block holds "/"+name for every entry, back to back in getdents
	// order, which a second listing of the unchanged directory repeats. Anchored on a file
	// row's path and checked against every one of them, so a wrong guess fails, never writes
	// outside the block.
	f, err := os.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	order, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	offset, total := map[string]int{}, 0
	for _, n := range order {
		offset["/"+n] = total
		total += 1 + len(n)
	}
	var start unsafe.Pointer
	for p := range files {
		start = unsafe.Add(unsafe.Pointer(unsafe.StringData(p)), -offset[p])
		break
	}
	for p := range files {
		if unsafe.Pointer(unsafe.StringData(p)) != unsafe.Add(start, offset[p]) {
			t.Fatalf("file path %q is not where the listing's block would hold it: the test lost its point", p)
		}
	}
	block := unsafe.Slice((*byte)(start), total)
	for i := range block {
		block[i] = 'X'
	}

	for p, was := range files {
		if p == was {
			t.Fatalf("file path %q survived writing over the block: the test lost its point", p)
		}
	}
	want := []string{"/sub0", "/sub1", "/sub2"}
	var got []string
	for p, mtime := range dirs {
		got = append(got, p)
		if !cache.Silent(p, mtime) {
			t.Errorf("the audit cache lost %s: its key shares the listing's block", p)
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("directory paths %q after writing over the block, want %q: they share it", got, want)
	}
	if cache.Len() != 4 {
		t.Errorf("cache holds %d directories, want 4", cache.Len())
	}
}
