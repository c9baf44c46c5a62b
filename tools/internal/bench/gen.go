package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Layout of the generated tree: each submission is
// upload/submit/<aa>/<bb>/<uuid>/sub_<k>/data_<NNNN>.dat with aa and bb the uuid's first two
// bytes in hex, SubDirs sub-directories of FilesPerSub files each.
const (
	SubDirs       = 4
	FilesPerSub   = 250
	FilesPerSubm  = SubDirs * FilesPerSub
	LayoutName    = "upload/submit/aa/bb/<uuid>/sub_k/data_NNNN.dat"
	MarkerName    = ".fustor-bench.json"
	markerVersion = 1
	// RealtimeDir is where the realtime-latency phase writes; removed after the phase and
	// before each run, so it never counts as part of the tree.
	RealtimeDir = ".fustor-bench-rt"
	// seed makes the same N give the same tree, so a reused tree and a regenerated one match.
	seed = 0x6675_7374_6f72
)

// ErrForeignDir is returned when the target directory is non-empty and was not created by the
// bench (no marker): the bench never writes into it.
var ErrForeignDir = errors.New("directory is not empty and was not created by fustor-bench")

// Marker is the JSON file at the tree root that says the bench created the tree.
type Marker struct {
	Version  int    `json:"version"`
	Files    int    `json:"files"`
	Layout   string `json:"layout"`
	Complete bool   `json:"complete"`
	Created  string `json:"created"`
}

// Tree describes a generated tree.
type Tree struct {
	Root string
	// Files is N, the regular files of the layout (the marker file excluded).
	Files int
	// Dirs is the number of directories below Root (Root excluded).
	Dirs int
	// Submissions are the submission directories, relative to Root with a leading slash.
	Submissions []string
	// Reused is true when an existing complete tree was found and not regenerated.
	Reused bool
}

// submission is one generated submission: its uuid, decided by the seeded generator.
type submission struct {
	uuid  string
	files int
}

// plan returns the submissions of an N-file tree: N/1000 full ones, plus a partial one
// holding the remainder (files fill sub_0 first).
func plan(n int) []submission {
	r := rand.New(rand.NewPCG(seed, uint64(n)))
	var subs []submission
	for left := n; left > 0; left -= FilesPerSubm {
		var b [16]byte
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		b[6] = b[6]&0x0f | 0x40 // version 4
		b[8] = b[8]&0x3f | 0x80 // RFC 4122 variant
		u := fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
		subs = append(subs, submission{uuid: u, files: min(left, FilesPerSubm)})
	}
	return subs
}

// dir returns the submission's directory relative to the tree root.
func (s submission) dir() string {
	return filepath.Join("upload", "submit", s.uuid[0:2], s.uuid[2:4], s.uuid)
}

// fileSize is the size of file i of a submission: 0–4 KiB, varied but reproducible.
func fileSize(sub, i int) int { return (sub*7919 + i*104729) % 4097 }

// Prepare makes sure root holds the N-file tree: it reuses a complete tree of the same N,
// regenerates a tree the bench created for another N (or left incomplete), creates the tree
// in a missing or empty directory, and refuses anything else with ErrForeignDir.
func Prepare(ctx context.Context, root string, n int, prog *Progress) (*Tree, error) {
	if n <= 0 {
		return nil, fmt.Errorf("prepare tree: file count %d must be positive", n)
	}
	subs := plan(n)
	t := &Tree{Root: root, Files: n, Dirs: countDirs(subs)}
	for _, s := range subs {
		t.Submissions = append(t.Submissions, "/"+filepath.ToSlash(s.dir()))
	}
	m, empty, err := inspect(root)
	if err != nil {
		return nil, err
	}
	switch {
	case m != nil && m.Complete && m.Files == n && m.Version == markerVersion && m.Layout == LayoutName:
		// A realtime phase cut short may have left its directory behind.
		if err := os.RemoveAll(filepath.Join(root, RealtimeDir)); err != nil {
			return nil, fmt.Errorf("remove %s: %w", RealtimeDir, err)
		}
		t.Reused = true
		return t, nil
	case m != nil:
		// Ours, but for another N or unfinished: start over.
		if err := clearTree(root); err != nil {
			return nil, err
		}
	case !empty:
		return nil, fmt.Errorf("prepare %s: %w (no %s in it); choose another --dir", root, ErrForeignDir, MarkerName)
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, fmt.Errorf("create tree root: %w", err)
	}
	if err := writeMarker(root, Marker{Version: markerVersion, Files: n, Layout: LayoutName,
		Created: time.Now().UTC().Format(time.RFC3339)}); err != nil {
		return nil, err
	}
	if err := generate(ctx, root, subs, prog); err != nil {
		return nil, err
	}
	if err := writeMarker(root, Marker{Version: markerVersion, Files: n, Layout: LayoutName, Complete: true,
		Created: time.Now().UTC().Format(time.RFC3339)}); err != nil {
		return nil, err
	}
	// The marker made the root young; age it like the rest.
	old := time.Now().Add(-2 * time.Hour)
	if err := os.Chtimes(root, old, old); err != nil {
		return nil, fmt.Errorf("set root mtime: %w", err)
	}
	return t, nil
}

// countDirs counts the layout's directories below the root: upload, submit, each distinct aa
// and aa/bb, each submission and its sub-directories.
func countDirs(subs []submission) int {
	aa, bb := map[string]bool{}, map[string]bool{}
	n := 2
	for _, s := range subs {
		aa[s.uuid[0:2]] = true
		bb[s.uuid[0:4]] = true
		n += 1 + min(SubDirs, (s.files+FilesPerSub-1)/FilesPerSub)
	}
	return n + len(aa) + len(bb)
}

// inspect reads root's marker; empty reports a missing or empty directory.
func inspect(root string) (m *Marker, empty bool, err error) {
	d, err := os.Open(root)
	if errors.Is(err, os.ErrNotExist) {
		return nil, true, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("open tree root: %w", err)
	}
	defer d.Close()
	if _, err := d.Readdirnames(1); errors.Is(err, io.EOF) {
		return nil, true, nil
	} else if err != nil {
		return nil, false, fmt.Errorf("read tree root: %w", err)
	}
	data, err := os.ReadFile(filepath.Join(root, MarkerName))
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read marker: %w", err)
	}
	m = &Marker{}
	if err := json.Unmarshal(data, m); err != nil {
		// A marker we cannot parse is not proof the bench made the tree.
		return nil, false, fmt.Errorf("parse marker %s: %w", filepath.Join(root, MarkerName), err)
	}
	return m, false, nil
}

// clearTree empties a tree the bench created, marker last, so an interruption leaves it ours.
func clearTree(root string) error {
	ents, err := os.ReadDir(root)
	if err != nil {
		return fmt.Errorf("read tree root: %w", err)
	}
	for _, e := range ents {
		if e.Name() == MarkerName {
			continue
		}
		if err := os.RemoveAll(filepath.Join(root, e.Name())); err != nil {
			return fmt.Errorf("clear old tree: %w", err)
		}
	}
	return nil
}

func writeMarker(root string, m Marker) error {
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("encode marker: %w", err)
	}
	tmp := filepath.Join(root, MarkerName+".tmp")
	if err := os.WriteFile(tmp, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("write marker: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(root, MarkerName)); err != nil {
		return fmt.Errorf("write marker: %w", err)
	}
	return nil
}

// generate writes the submissions with parallel workers, then sets every directory's mtime
// into the past, deepest first, after all files exist: creating an entry updates its parent's
// mtime, and the agent defers files and directories younger than its hot threshold.
func generate(ctx context.Context, root string, subs []submission, prog *Progress) error {
	var done atomic.Int64
	total := 0
	for _, s := range subs {
		total += s.files
	}
	if prog != nil {
		prog.Start("generating tree", int64(total), done.Load)
		defer prog.Stop()
	}
	old := time.Now().Add(-2 * time.Hour)
	jobs := make(chan int)
	errc := make(chan error, 1)
	var wg sync.WaitGroup
	// Twice the cores: creating files waits on the file system as much as on the CPU.
	for range 2 * runtime.NumCPU() {
		wg.Go(func() {
			buf := make([]byte, 4096)
			for i := range jobs {
				if err := writeSubmission(root, i, subs[i], old, buf, &done); err != nil {
					select {
					case errc <- err:
					default:
					}
				}
			}
		})
	}
	func() {
		defer close(jobs)
		for i := range subs {
			select {
			case jobs <- i:
			case err := <-errc:
				errc <- err
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("generate tree: %w", err)
	}
	return ageDirs(root, subs, old)
}

func writeSubmission(root string, idx int, s submission, old time.Time, buf []byte, done *atomic.Int64) error {
	base := filepath.Join(root, s.dir())
	for k := 0; k*FilesPerSub < s.files; k++ {
		dir := filepath.Join(base, fmt.Sprintf("sub_%d", k))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("create directory: %w", err)
		}
		for f := 0; f < FilesPerSub && k*FilesPerSub+f < s.files; f++ {
			i := k*FilesPerSub + f
			p := filepath.Join(dir, fmt.Sprintf("data_%04d.dat", f))
			size := fileSize(idx, i)
			for j := range size {
				buf[j] = byte('a' + (i+j)%26)
			}
			if err := os.WriteFile(p, buf[:size], 0o644); err != nil {
				return fmt.Errorf("write file: %w", err)
			}
			mt := old.Add(time.Duration(idx*FilesPerSubm+i) * time.Millisecond)
			if err := os.Chtimes(p, mt, mt); err != nil {
				return fmt.Errorf("set file mtime: %w", err)
			}
			done.Add(1)
		}
	}
	return nil
}

// ageDirs sets the mtime of every directory of the layout, children before parents.
func ageDirs(root string, subs []submission, old time.Time) error {
	seen := map[string]bool{}
	var dirs []string
	add := func(d string) {
		if !seen[d] {
			seen[d] = true
			dirs = append(dirs, d)
		}
	}
	for _, s := range subs {
		for k := 0; k*FilesPerSub < s.files; k++ {
			add(filepath.Join(s.dir(), fmt.Sprintf("sub_%d", k)))
		}
		for d := s.dir(); d != "."; d = filepath.Dir(d) {
			add(d)
		}
	}
	// Deeper paths first, so setting a child's mtime never follows its parent's.
	slices.SortFunc(dirs, func(a, b string) int { return depth(b) - depth(a) })
	for _, d := range dirs {
		if err := os.Chtimes(filepath.Join(root, d), old, old); err != nil {
			return fmt.Errorf("set directory mtime: %w", err)
		}
	}
	return nil
}

func depth(p string) int {
	n := 0
	for _, c := range p {
		if c == filepath.Separator {
			n++
		}
	}
	return n
}
