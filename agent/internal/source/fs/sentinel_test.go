package fs

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/fustor/fustor/agent/internal/source"
)

func TestSentinel(t *testing.T) {
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "here"), []byte("abc"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := New(nil, Config{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	got := s.Sentinel([]string{"/here", "/gone", "/here/below", "../escape"})
	st, _ := os.Lstat(filepath.Join(root, "here"))
	want := []source.SentinelItem{
		{Path: "/here", Exists: true, Size: 3, MtimeNs: st.ModTime().UnixNano()},
		{Path: "/gone"},
		{Path: "/here/below"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("item %d = %+v; want %+v", i, got[i], want[i])
		}
	}
}
