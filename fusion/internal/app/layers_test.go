package app

import (
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The layers of Fusion, as rules on imports (DESIGN.md §2: views are drivers behind one
// contract). A second view driver must not have to be threaded through the pipe, receiver,
// query, admin or server packages: only packages under view/ may import a driver, the server
// maps errors of package errs and knows no view, and the packages at the bottom import no
// other part of Fusion.
func TestLayers(t *testing.T) {
	const (
		mod      = "github.com/fustor/fustor/fusion"
		internal = mod + "/internal/"
		viewPkg  = internal + "view"
		fsDriver = internal + "view/fs"
		rowsDrv  = internal + "view/rows"
	)
	type pkg struct {
		ImportPath                         string
		Imports, TestImports, XTestImports []string
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to list packages with")
	}
	gomod, err := exec.Command(goBin, "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	cmd := exec.Command(goBin, "list", "-json", "./...")
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(gomod)))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list in %s: %v", cmd.Dir, err)
	}
	under := func(p, dir string) bool { return p == dir || strings.HasPrefix(p, dir+"/") }
	// bottom packages may import nothing of Fusion.
	bottom := map[string]bool{internal + "errs": true, internal + "view/viewapi": true}
	seen := 0
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decode go list: %v", err)
		}
		seen++
		check := func(imports []string, what string) {
			for _, imp := range imports {
				switch {
				case (under(imp, fsDriver) || under(imp, rowsDrv)) && !under(p.ImportPath, viewPkg):
					t.Errorf("%s %s %s: only packages under view/ may import a view driver; use view.Driver and view's types", p.ImportPath, what, imp)
				case under(p.ImportPath, internal+"server") && under(imp, viewPkg):
					t.Errorf("%s %s %s: the server maps errs' kinds and must know no view", p.ImportPath, what, imp)
				case bottom[p.ImportPath] && under(imp, mod):
					t.Errorf("%s %s %s: a bottom package imports nothing of Fusion", p.ImportPath, what, imp)
				}
			}
		}
		check(p.Imports, "imports")
		check(p.TestImports, "(test) imports")
		check(p.XTestImports, "(external test) imports")
	}
	if seen < 10 {
		t.Fatalf("go list found %d packages; the check would prove nothing", seen)
	}
}
