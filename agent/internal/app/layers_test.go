package app

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// The agent's layers (package docs of source, sender, pipe and app): the pipe and the bus are
// written against the contracts, and app alone wires the drivers in.
const (
	mod        = "github.com/fustor/fustor/agent"
	contract   = mod + "/internal/source"
	sourceTree = contract + "/"
	grpcSender = mod + "/internal/sender/grpc"
	echoSender = mod + "/internal/sender/echo"
	s3Driver   = mod + "/internal/source/s3"
	sqlDriver  = mod + "/internal/source/sql"
	appPkg     = mod + "/internal/app"
	cmdPrefix  = mod + "/cmd/"
	pipePkg    = mod + "/internal/pipe"
	busPkg     = mod + "/internal/bus"
	fsDriver   = sourceTree + "fs"
	journalDrv = sourceTree + "journal"
)

// drivers are the packages only app (and cmd) may import.
var drivers = []string{fsDriver, journalDrv, s3Driver, sqlDriver, grpcSender, echoSender}

type listed struct {
	ImportPath                         string
	Imports, TestImports, XTestImports []string
	Deps                               []string
	Error                              *struct{ Err string }
}

// listAgent runs go list over the agent module: every package with its direct imports (its
// tests' too) and its transitive non-test dependencies.
func listAgent(t *testing.T) map[string]listed {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command to list packages with: %v", err)
	}
	cmd := exec.Command(goBin, "list", "-e", "-json=ImportPath,Imports,TestImports,XTestImports,Deps,Error", mod+"/...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	pkgs := map[string]listed{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p listed
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decode go list output: %v", err)
		}
		if p.Error != nil {
			t.Fatalf("go list %s: %s", p.ImportPath, p.Error.Err)
		}
		pkgs[p.ImportPath] = p
	}
	// A check over nothing passes vacuously: the packages it is about must be there, and app
	// must be seen importing what it wires.
	for _, want := range []string{pipePkg, busPkg, appPkg, contract, fsDriver, journalDrv, grpcSender} {
		if _, ok := pkgs[want]; !ok {
			t.Fatalf("go list did not list %s (listed %d packages)", want, len(pkgs))
		}
	}
	for _, d := range drivers {
		if !slices.Contains(pkgs[appPkg].Imports, d) {
			t.Fatalf("app does not import %s: is the list right?", d)
		}
	}
	return pkgs
}

// TestLayers fails when the pipe or the bus depends (even indirectly, or from a test) on a
// source driver or the gRPC sender, or when anything but app and cmd imports a driver.
func TestLayers(t *testing.T) {
	pkgs := listAgent(t)
	for _, name := range []string{pipePkg, busPkg} {
		p := pkgs[name]
		for _, d := range slices.Concat(p.Deps, p.TestImports, p.XTestImports) {
			if strings.HasPrefix(d, sourceTree) || d == grpcSender || strings.HasPrefix(d, grpcSender+"/") {
				t.Errorf("%s depends on %s: it may use only the contracts (%s, %s/internal/sender)", name, d, contract, mod)
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(pkgs)) {
		p := pkgs[name]
		if name == appPkg || strings.HasPrefix(name, cmdPrefix) {
			continue
		}
		for _, imp := range slices.Concat(p.Imports, p.TestImports, p.XTestImports) {
			// A driver's own external tests (package x_test) import it; that is not wiring.
			if slices.Contains(drivers, imp) && imp != name {
				t.Errorf("%s imports %s: only %s wires drivers", name, imp, appPkg)
			}
		}
	}
}
