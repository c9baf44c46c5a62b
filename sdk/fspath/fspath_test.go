package fspath

import (
	"errors"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestClean(t *testing.T) {
	tests := []struct {
		in, want string
		bad      bool
	}{
		{in: "/", want: "/"},
		{in: "/a", want: "/a"},
		{in: "/a/b.txt", want: "/a/b.txt"},
		{in: "/a//b/", want: "/a/b"},
		{in: "//", want: "/"},
		{in: "/a/b/", want: "/a/b"},
		{in: "/é/ü", want: "/é/ü"},
		{in: "", bad: true},
		{in: "a/b", bad: true},
		{in: "/a/../b", bad: true},
		{in: "/..", bad: true},
		{in: "/./a", bad: true},
		{in: "/a\x00b", bad: true},
	}
	for _, tt := range tests {
		got, err := Clean(tt.in)
		if tt.bad {
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("Clean(%q) = %q, %v; want ErrInvalid", tt.in, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("Clean(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestSplitJoin(t *testing.T) {
	tests := []struct{ p, dir, name string }{
		{"/a", "/", "a"},
		{"/a/b", "/a", "b"},
		{"/a/b/c.txt", "/a/b", "c.txt"},
		{"/", "/", ""},
	}
	for _, tt := range tests {
		dir, name := Split(tt.p)
		if dir != tt.dir || name != tt.name {
			t.Errorf("Split(%q) = %q, %q; want %q, %q", tt.p, dir, name, tt.dir, tt.name)
		}
		if tt.name != "" && Join(dir, name) != tt.p {
			t.Errorf("Join(%q, %q) = %q; want %q", dir, name, Join(dir, name), tt.p)
		}
	}
}

func TestValidNameAndWithin(t *testing.T) {
	for _, n := range []string{"", ".", "..", "a/b", "a\x00"} {
		if ValidName(n) == nil {
			t.Errorf("ValidName(%q) = nil; want error", n)
		}
	}
	if err := ValidName("data_0001.dat"); err != nil {
		t.Errorf("ValidName: %v", err)
	}
	within := []struct {
		p, root string
		want    bool
	}{
		{"/a/b", "/a", true}, {"/a", "/a", true}, {"/ab", "/a", false}, {"/x", "/", true},
	}
	for _, tt := range within {
		if got := IsWithin(tt.p, tt.root); got != tt.want {
			t.Errorf("IsWithin(%q, %q) = %v", tt.p, tt.root, got)
		}
	}
}
