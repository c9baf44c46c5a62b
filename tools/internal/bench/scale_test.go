package bench

import (
	"path"
	"testing"
)

// TestSyntheticTree: the scale phase's tree has the layout's shape, and its directory count
// is that of its paths (the per-path figures divide by it).
func TestSyntheticTree(t *testing.T) {
	for _, n := range []int{1, 999, 2500, 10_000} {
		tr := syntheticTree(n)
		dirs := map[string]bool{}
		files := map[string]bool{}
		for i := range n {
			p := syntheticPath(&tr, i)
			if files[p] {
				t.Fatalf("n=%d: path %s twice", n, p)
			}
			files[p] = true
			for d := path.Dir(p); d != "/"; d = path.Dir(d) {
				dirs[d] = true
			}
		}
		if len(dirs) != tr.Dirs || len(tr.Submissions) != (n+FilesPerSubm-1)/FilesPerSubm {
			t.Fatalf("n=%d: %d directories in the paths, the tree says %d; %d submissions", n, len(dirs), tr.Dirs, len(tr.Submissions))
		}
		if again := syntheticTree(n); again.Submissions[0] != tr.Submissions[0] {
			t.Fatalf("n=%d: not reproducible: %s then %s", n, tr.Submissions[0], again.Submissions[0])
		}
	}
}

func TestScaleNeedsN(t *testing.T) {
	o := DefaultOptions()
	o.Phases = []string{scalePhase}
	if _, _, err := Run(t.Context(), o); err == nil {
		t.Fatal("the scale phase ran without --scale")
	}
}
