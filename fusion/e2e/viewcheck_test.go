package e2e

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// node is one path as the storage or the view describes it: its type and, for files, size and
// mtime.
type node struct {
	dir   bool
	size  uint64
	mtime time.Time
}

func (n node) String() string {
	if n.dir {
		return "dir"
	}
	return fmt.Sprintf("file %d B mtime %s", n.size, n.mtime.UTC().Format(time.RFC3339Nano))
}

// storageDir is the directory the view must equal: the storage itself when the agent watches
// a client mount of it, else the agent's root.
func (c *cluster) storageDir() string {
	if c.storage != "" {
		return c.storage
	}
	return c.root
}

// storageTree walks the real subtree rel (lstat, no symlinks followed) and returns every path
// below it, keyed by its view path ("/a/b").
func (c *cluster) storageTree(rel string) (map[string]node, error) {
	base := c.storageDir()
	top := filepath.Join(base, filepath.FromSlash(rel))
	out := map[string]node{}
	err := filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == top {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		r, err := filepath.Rel(base, p)
		if err != nil {
			return err
		}
		n := node{dir: info.IsDir()}
		if !n.dir {
			n.size, n.mtime = uint64(info.Size()), info.ModTime()
		}
		out["/"+filepath.ToSlash(r)] = n
		return nil
	})
	if err != nil {
		// A file that vanished between the listing and the lstat: the tree is changing.
		return nil, fmt.Errorf("walk %s: %w", top, err)
	}
	return out, nil
}

// viewTree reads the view's subtree rel with fustorctl tree (streamed, unlimited).
func (c *cluster) viewTree(rel string) (map[string]node, error) {
	doc, err := c.ctl("tree", rel)
	if err != nil {
		return nil, err
	}
	entries, _ := doc["entries"].([]any)
	out := make(map[string]node, len(entries))
	for _, x := range entries {
		e, _ := x.(map[string]any)
		p, _ := e["path"].(string)
		if p == rel || p == "" {
			continue
		}
		n := node{dir: e["isDir"] == true}
		if !n.dir {
			n.size = num(e["size"])
			if mt, _ := e["mtime"].(string); mt != "" {
				if n.mtime, err = time.Parse(time.RFC3339Nano, mt); err != nil {
					return nil, fmt.Errorf("%s: mtime %q: %v", p, mt, err)
				}
			} else {
				n.mtime = time.Unix(0, 0)
			}
		}
		out[p] = n
	}
	return out, nil
}

// viewEqualsTree compares the whole view under rel with the real directory: every path, its
// type, and for files size and mtime. It returns nil when they are equal, else a readable
// summary of the differences with the first few of each kind.
func (c *cluster) viewEqualsTree(rel string) error {
	real, err := c.storageTree(rel)
	if err != nil {
		return err
	}
	view, err := c.viewTree(rel)
	if err != nil {
		return err
	}
	var missing, extra, different []string
	for p, r := range real {
		v, ok := view[p]
		switch {
		case !ok:
			missing = append(missing, fmt.Sprintf("%s (%v)", p, r))
		case v.dir != r.dir || (!r.dir && (v.size != r.size || !v.mtime.Equal(r.mtime))):
			different = append(different, fmt.Sprintf("%s: view %v, storage %v", p, v, r))
		}
	}
	for p, v := range view {
		if _, ok := real[p]; !ok {
			extra = append(extra, fmt.Sprintf("%s (%v)", p, v))
		}
	}
	if len(missing)+len(extra)+len(different) == 0 {
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "view %s differs from the storage (%d paths on storage, %d in view): %d missing, %d extra, %d different",
		rel, len(real), len(view), len(missing), len(extra), len(different))
	for _, l := range []struct {
		what  string
		paths []string
	}{{"missing", missing}, {"extra", extra}, {"different", different}} {
		sort.Strings(l.paths)
		for i, p := range l.paths {
			if i == 5 {
				fmt.Fprintf(&b, "\n  … %d more %s", len(l.paths)-5, l.what)
				break
			}
			fmt.Fprintf(&b, "\n  %s %s", l.what, p)
		}
	}
	return errors.New(b.String())
}

// waitViewEqualsTree polls viewEqualsTree until the view equals the storage, and fails the test
// with the last difference when it does not within the bound. It returns how long it took.
func (c *cluster) waitViewEqualsTree(within time.Duration, rel string) time.Duration {
	c.t.Helper()
	start := time.Now()
	lastLog := start
	for {
		err := c.viewEqualsTree(rel)
		if err == nil {
			return time.Since(start)
		}
		if time.Since(start) > within {
			c.t.Fatalf("the view did not converge to the storage within %v: %v", within, err)
		}
		if testing.Verbose() && time.Since(lastLog) > 5*time.Second {
			c.t.Logf("after %v: %v", time.Since(start).Round(time.Millisecond), err)
			lastLog = time.Now()
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// verify runs fustorctl verify rel --json: the leader's deep walk compared with the view
// (protojson of fustor.v1.VerifyResponse; zero counts are omitted, uint64s are strings).
func (c *cluster) verify(rel string) (map[string]any, error) {
	return c.ctl("--timeout", "25s", "verify", rel)
}

// requireVerifyClean runs verify and fails the test unless missing, extra and different are
// all zero.
func (c *cluster) requireVerifyClean(rel string) {
	c.t.Helper()
	doc, err := c.verify(rel)
	if err != nil {
		c.t.Fatalf("verify %s: %v", rel, err)
	}
	if m, e, d := num(doc["missing"]), num(doc["extra"]), num(doc["different"]); m+e+d != 0 {
		c.t.Fatalf("verify %s: walked %d, %d missing, %d extra, %d different; examples %v",
			rel, num(doc["walked"]), m, e, d, doc["examples"])
	}
	c.t.Logf("verify %s: walked %d entries, no difference", rel, num(doc["walked"]))
}

// makeWideTree writes dirs directories of perDir files each (sizes 1..perDir bytes) in a new
// temporary directory.
func makeWideTree(t testing.TB, dirs, perDir int) string {
	t.Helper()
	root := t.TempDir()
	for d := range dirs {
		dir := filepath.Join(root, fmt.Sprintf("d%03d", d))
		must(t, os.Mkdir(dir, 0o755))
		for f := range perDir {
			must(t, os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%03d.dat", f)), make([]byte, f+1), 0o644))
		}
	}
	return root
}

// statsOf returns fustorctl stats / --json.
func (c *cluster) statsOf(path string) (map[string]any, error) { return c.ctl("stats", path) }
