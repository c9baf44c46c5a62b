package fsbatch

import (
	"testing"

	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
)

func TestDirOf(t *testing.T) {
	for _, tt := range []struct {
		in, want string
		ok       bool
	}{
		{"/", "/", true},
		{"/a", "/a", true},
		{"/a/b/c", "/a/b/c", true},
		{"", "", false},
		{"a/b", "", false},
		{"/a/../b", "", false},
		{"/a//b", "", false},
		{"/a/", "", false},
	} {
		d, err := DirOf(tt.in)
		if (err == nil) != tt.ok {
			t.Errorf("DirOf(%q) error %v; want ok %v", tt.in, err, tt.ok)
			continue
		}
		if err == nil && d.Path() != tt.want {
			t.Errorf("DirOf(%q).Path() = %q; want %q", tt.in, d.Path(), tt.want)
		}
	}
	d, _ := DirOf("/x/y")
	if d.Name() != "y" || d.Parent().Name() != "x" || !d.Parent().Parent().IsRoot() || d.IsRoot() {
		t.Fatalf("chain of /x/y: %q %q", d.Name(), d.Parent().Name())
	}
	if _, err := d.Child("a/b"); err == nil {
		t.Fatal("Child accepted a name with a slash")
	}
	var nilDir *Dir
	if nilDir.Path() != "/" {
		t.Fatal("a nil Dir is the root")
	}
	r := Row{Name: "f"}
	if r.Path() != "/f" {
		t.Fatalf("a row without a Dir is below the root: %q", r.Path())
	}
}

func TestDirSlot(t *testing.T) {
	d := NewRoot()
	if _, ok := d.Slot(0); ok {
		t.Fatal("tag 0 never matches")
	}
	d.SetSlot(7, 42)
	if v, ok := d.Slot(7); !ok || v != 42 {
		t.Fatalf("Slot(7) = %d, %v", v, ok)
	}
	if _, ok := d.Slot(8); ok {
		t.Fatal("another tag matched")
	}
}

// TestDecoderSharesDirs: the rows of one directory point at one Dir, declared once per stream,
// and a reset leaves decoded rows resolving as they were sent.
func TestDecoderSharesDirs(t *testing.T) {
	enc, dec := NewEncoder(0), NewDecoder(0)
	for _, p := range []string{"/a/b/f1", "/a/b/f2", "/a/c", "/top"} {
		enc.Add(p, 0, 1, 1, 1, 0)
	}
	b, idx := enc.Flush()
	rows, rej, _, err := dec.Decode(b, idx, nil)
	if err != nil || rej != 0 || len(rows) != 4 {
		t.Fatalf("Decode = %d rows, %d rejected, %v", len(rows), rej, err)
	}
	if rows[0].Dir != rows[1].Dir || rows[2].Dir != rows[0].Dir.Parent() || !rows[3].Dir.IsRoot() || rows[2].Dir.Parent() != rows[3].Dir {
		t.Fatal("rows of one directory do not share its Dir")
	}
	// The same id redeclared with the same parent and name is the same Dir.
	again := &fustorv1.FsBatch{Dirs: b.GetDirs(), ParentIds: []uint32{b.GetParentIds()[0]}, Names: []string{"f3"}}
	rows2, _, _, err := dec.Decode(again, idx, nil)
	if err != nil || len(rows2) != 1 || rows2[0].Dir != rows[0].Dir {
		t.Fatalf("redeclared dir: %v", err)
	}
	reset := &fustorv1.FsBatch{ResetDirs: true, Dirs: []*fustorv1.FsDir{{Id: b.GetParentIds()[0], ParentId: RootID, Name: "z"}},
		ParentIds: []uint32{b.GetParentIds()[0]}, Names: []string{"g"}}
	rows3, _, _, err := dec.Decode(reset, idx, nil)
	if err != nil || len(rows3) != 1 || rows3[0].Path() != "/z/g" {
		t.Fatalf("after reset: %v %v", rows3, err)
	}
	if rows[0].Path() != "/a/b/f1" {
		t.Fatalf("a row decoded before the reset now reads %q", rows[0].Path())
	}
}
