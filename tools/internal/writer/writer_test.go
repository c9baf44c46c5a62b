package writer

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestSubmitAndPrune: submissions hold 1..Files files, and a storage keeps the newest Keep.
func TestSubmitAndPrune(t *testing.T) {
	root := t.TempDir()
	cfg := Default()
	cfg.Roots, cfg.Append, cfg.Keep, cfg.Files = []string{root}, 0, 3, 5
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	w := New(nil, cfg)
	for range 5 {
		if err := w.Submit(context.Background(), root); err != nil {
			t.Fatal(err)
		}
		if err := w.prune(root); err != nil {
			t.Fatal(err)
		}
	}
	subs, _ := filepath.Glob(filepath.Join(root, "upload", "*", "sub-*"))
	if len(subs) != 3 || filepath.Base(subs[0]) != "sub-000003" {
		t.Fatalf("kept %v, want sub-000003..5", subs)
	}
	for _, s := range subs {
		files, _ := os.ReadDir(s)
		if len(files) < 1 || len(files) > 5 {
			t.Fatalf("%s holds %d files", s, len(files))
		}
	}
}

func TestValidate(t *testing.T) {
	for name, c := range map[string]Config{"no roots": Default(), "no keep": {Roots: []string{"/x"}, Every: 1, Files: 1}} {
		if c.Validate() == nil {
			t.Errorf("%s: valid", name)
		}
	}
}
