package journal

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/fustor/fustor/agent/internal/source"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const lines = `{"index":1,"path":"/a","dir":true}
{"index":2,"path":"/a/x","size":3,"mtime_ns":5}
not json
{"index":2,"path":"/a/regressed"}
{"index":3,"path":"/../bad"}
{"index":4,"path":"/a/y","size":1}
{"index":5,"path":"/a/x","delete":true}
`

func newJournal(t *testing.T) (*Source, string) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "j.jsonl")
	if err := os.WriteFile(p, []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := New(nil, p)
	if err != nil {
		t.Fatal(err)
	}
	return s, p
}

func TestSnapshotIsTheReplayedState(t *testing.T) {
	s, _ := newJournal(t)
	var got []string
	if _, err := s.Snapshot(context.Background(), "/", source.OriginSnapshot, func(evs []source.Event) error {
		for _, e := range evs {
			got = append(got, e.Path)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []string{"/a", "/a/y"}) {
		t.Fatalf("snapshot %v", got)
	}
	if c := s.Counters(); c["skipped_invalid"] != 3 {
		t.Fatalf("counters %v", c)
	}
	if last, _ := s.LastIndex(); last != 5 {
		t.Fatalf("last index %d", last)
	}
	items := s.Sentinel([]string{"/a/y", "/a/x"})
	if len(items) != 2 || !items[0].Exists || items[1].Exists {
		t.Fatalf("sentinel %+v", items)
	}
}

func TestFollowResumesAndTails(t *testing.T) {
	s, p := newJournal(t)
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan source.Event, 16)
	done := make(chan error, 1)
	go func() {
		done <- s.Follow(ctx, 2, 10, func(evs []source.Event) error {
			for _, e := range evs {
				got <- e
			}
			return nil
		})
	}()
	want := []uint64{4, 5}
	for _, idx := range want {
		if e := <-got; e.Index != idx || e.Origin != source.OriginRealtime {
			t.Fatalf("event %+v; want index %d", e, idx)
		}
	}
	f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.WriteString(`{"index":9,"path":"/late"}` + "\n")
	f.Close()
	select {
	case e := <-got:
		if e.Path != "/late" {
			t.Fatalf("tailed %+v", e)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("appended line not followed")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
