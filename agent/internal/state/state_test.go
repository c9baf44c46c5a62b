package state

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func sample(n int) State {
	st := State{Source: "fs:///mnt/nfs1", Cycle: 41, WrittenAt: time.Unix(1700000000, 123456789), Dirs: map[string]int64{}}
	st.Dirs["/"] = 1
	for i := range n {
		st.Dirs[fmt.Sprintf("/upload/batch-%03d/run-%d", i/10, i)] = int64(1_700_000_000_000_000_000 + i)
		st.Dirs[fmt.Sprintf("/upload/batch-%03d", i/10)] = -int64(i) // any int64, negative too
	}
	return st
}

func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []int{0, 1, 1000} {
		st := sample(n)
		path := File(dir, "p/with spaces")
		if err := Write(path, st); err != nil {
			t.Fatal(err)
		}
		if filepath.Dir(path) != dir {
			t.Fatalf("pipe id escaped out of the state dir: %s", path)
		}
		got, err := Read(path)
		if err != nil {
			t.Fatalf("n=%d: %v", n, err)
		}
		if got.Source != st.Source || got.Cycle != st.Cycle || !got.WrittenAt.Equal(st.WrittenAt) || !maps.Equal(got.Dirs, st.Dirs) {
			t.Fatalf("n=%d: round trip changed the state: %+v", n, got)
		}
	}
	// Only the file itself is left behind: no temporary files.
	names, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(names) != 1 {
		t.Fatalf("files in the state dir: %v", names)
	}
	if fi, _ := os.Stat(names[0]); fi.Size() > 30*1000 {
		t.Fatalf("1,000 directories took %d bytes: prefix compression?", fi.Size())
	}
}

func TestDecodeRefusesDamagedFiles(t *testing.T) {
	good := Encode(sample(100))
	future := append([]byte(nil), good...)
	binary.LittleEndian.PutUint32(future[len(magic):], Version+1)
	flip := func(i int) []byte {
		b := append([]byte(nil), good...)
		b[i] ^= 0x10
		return b
	}
	for _, c := range []struct {
		name, want string
		data       []byte
	}{
		{"zero length", "shorter than a header", nil},
		{"truncated at half", "truncated", good[:len(good)/2]},
		{"one byte short", "truncated", good[:len(good)-1]},
		{"a byte appended", "extended", append(append([]byte(nil), good...), 0)},
		{"flipped byte in the magic", "bad magic", flip(2)},
		{"flipped byte in the payload", "checksum", flip(len(good) / 2)},
		{"flipped byte in the checksum", "checksum", flip(len(good) - 1)},
		{"flipped byte in the length", "truncated", flip(len(magic) + 4)},
		{"future version", "format version 2, this agent reads 1", future},
		{"foreign file", "bad magic", []byte("{\"version\":1,\"dirs\":{}}\n")},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Decode(c.data)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v; want one saying %q", err, c.want)
			}
		})
	}
}

// TestDecodeRefusesAbsurdCounts: an intact checksum over a payload announcing more directories
// than it could hold is refused before anything is allocated for them.
func TestDecodeRefusesAbsurdCounts(t *testing.T) {
	var p []byte
	p = binary.AppendUvarint(p, 0) // source
	p = binary.AppendUvarint(p, 0) // cycle
	p = binary.AppendVarint(p, 0)  // written at
	p = binary.AppendUvarint(p, MaxDirs+1)
	b := append([]byte(magic), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
	binary.LittleEndian.PutUint32(b[len(magic):], Version)
	binary.LittleEndian.PutUint64(b[len(magic)+4:], uint64(len(p)))
	b = append(b, p...)
	b = binary.LittleEndian.AppendUint32(b, crc32Of(b[len(magic):]))
	if _, err := Decode(b); err == nil || !strings.Contains(err.Error(), "directories announced") {
		t.Fatalf("error %v", err)
	}
}

func TestReadMissingAndRefuse(t *testing.T) {
	dir := t.TempDir()
	path := File(dir, "p")
	if _, err := Read(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	if err := os.WriteFile(path, []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	aside, err := Refuse(path, time.Date(2026, 12, 3, 11, 0, 0, 5, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	if want := path + ".refused-20261203T110000.000000005Z"; aside != want {
		t.Fatalf("moved to %s; want %s", aside, want)
	}
	if b, err := os.ReadFile(aside); err != nil || string(b) != "junk" {
		t.Fatalf("refused file not kept: %q %v", b, err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("refused file still in the way: %v", err)
	}
}

func crc32Of(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }
