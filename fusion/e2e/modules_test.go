package e2e

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestModuleDirection enforces gen ← sdk ← agent, fusion, tools: gen and sdk never import agent,
// fusion or tools, agent and fusion never import each other or tools, and tools (the end-to-end
// benchmark, which runs the daemons as binaries) imports neither daemon (tests included).
func TestModuleDirection(t *testing.T) {
	const prefix = "github.com/fustor/fustor/"
	forbidden := map[string][]string{
		"gen":    {"sdk", "agent", "fusion", "tools"},
		"sdk":    {"agent", "fusion", "tools"},
		"agent":  {"fusion", "tools"},
		"fusion": {"agent", "tools"},
		"tools":  {"agent", "fusion"},
	}
	root := repoRoot(t)
	for mod, bad := range forbidden {
		cmd := exec.Command("go", "list", "-deps", "-test", "./...")
		cmd.Dir = filepath.Join(root, mod)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go list in %s: %v", mod, err)
		}
		for _, pkg := range strings.Fields(string(out)) {
			for _, b := range bad {
				if strings.HasPrefix(pkg, prefix+b+"/") || pkg == prefix+b {
					t.Errorf("module %s depends on %s", mod, pkg)
				}
			}
		}
	}
}
