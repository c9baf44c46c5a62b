package fs

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/fustor/fustor/fusion/internal/view/fs/internal/store"
	"github.com/fustor/fustor/fusion/internal/view/viewapi"

	"github.com/fustor/fustor/sdk/fsbatch"
	"github.com/fustor/fustor/sdk/fspath"
)

// dump is everything a checkpoint must keep, as comparable values.
func dump(t *testing.T, v *View) map[string]any {
	t.Helper()
	var entries []string
	if err := v.Walk(context.Background(), fspath.Root, 0, func(e Entry) bool {
		entries = append(entries, fmt.Sprintf("%s dir=%v size=%d mtime=%d suspect=%v known=%v skipped=%v updated=%d children=%d",
			e.Path, e.IsDir, e.Size, e.MtimeNs, e.Suspect, e.KnownByAgent, e.AuditSkipped, e.LastUpdatedAtNs, e.ChildCount))
		return true
	}); err != nil {
		t.Fatal(err)
	}
	st, err := v.Stats(fspath.Root)
	if err != nil {
		t.Fatal(err)
	}
	cs := v.Consistency()
	cs.AuditRunning = false
	suspects, _ := v.Suspects(fspath.Root, 1<<20)
	v.mu.RLock()
	tombs := map[string]tombstone{}
	for p, tb := range v.c.tombs {
		tombs[p] = tb
	}
	v.mu.RUnlock()
	return map[string]any{"entries": entries, "stats": st, "consistency": cs, "suspects": suspects,
		"blind": v.BlindSpots(fspath.Root, 1<<20), "tombs": tombs, "skews": v.clock.Skews(), "len": v.Len()}
}

func checkpointOf(t *testing.T, v *View) []byte {
	t.Helper()
	var buf bytes.Buffer
	info, err := v.WriteCheckpoint(&buf)
	if err != nil {
		t.Fatal(err)
	}
	// Nodes counts the walk, which equals the view's size unless it was written to meanwhile.
	if info.Bytes != buf.Len() || (info.Nodes != v.Len() && v.checkpointHook == nil) {
		t.Fatalf("info %+v for %d bytes, %d nodes", info, buf.Len(), v.Len())
	}
	return buf.Bytes()
}

func TestCheckpointRoundTrip(t *testing.T) {
	for seed := range uint64(4) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 7))
			v, c := newClockedView(t)
			c.dirs = map[string]*fsbatch.Dir{}
			for range 5000 {
				randomOp(t, r, v, c)
			}
			// Open audits and snapshots are not kept: a restored view has none.
			v.AuditEnd(false)
			v.SnapshotEnd("s1", false)
			want := dump(t, v)
			data := checkpointOf(t, v)

			w, _ := newClockedView(t)
			w.opts.Now, w.opts.Mono = v.opts.Now, v.opts.Mono
			info, err := w.LoadCheckpoint(data)
			if err != nil {
				t.Fatal(err)
			}
			if got := dump(t, w); !reflect.DeepEqual(got, want) {
				for k := range want {
					if !reflect.DeepEqual(got[k], want[k]) {
						t.Errorf("%s differs after restore:\n got %v\nwant %v", k, got[k], want[k])
					}
				}
			}
			checkInvariants(t, w)
			// The change log continues the instance: a cursor of before is still good.
			inst, seq := w.ChangeCursor()
			if inst != info.Instance || seq != info.Seq {
				t.Fatalf("change cursor %d/%d, checkpoint %d/%d", inst, seq, info.Instance, info.Seq)
			}
			// And the restored view keeps working.
			for range 2000 {
				randomOp(t, r, w, c)
			}
			checkInvariants(t, w)
		})
	}
}

func TestCheckpointRefused(t *testing.T) {
	v := newView(t)
	apply(t, v, OriginSnapshot, row("/a/b/c", 0, 3, 10), row("/a/d", 0, 4, 11))
	good := checkpointOf(t, v)
	future := bytes.Clone(good)
	future[len(checkpointMagic)] = CheckpointVersion + 1 // the version's varint
	// Its checksum is right: only the version is wrong.
	end := len(future) - 12
	binary.LittleEndian.PutUint32(future[end:], crcOf(future[len(checkpointMagic):end]))
	flipped := bytes.Clone(good)
	flipped[len(flipped)/2] ^= 0x10
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"zero length", nil, "empty file"},
		{"truncated at half", good[:len(good)/2], "truncated"},
		{"one flipped byte", flipped, "checksum mismatch"},
		{"a future format version", future, "format version 2"},
		{"not a checkpoint", []byte("hello, this is not a checkpoint at all"), "not a view checkpoint"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newView(t)
			apply(t, w, OriginSnapshot, row("/kept", 0, 1, 1))
			before := dump(t, w)
			_, err := w.LoadCheckpoint(tt.data)
			if !errors.Is(err, ErrCheckpoint) || !bytes.Contains([]byte(err.Error()), []byte(tt.want)) {
				t.Fatalf("err = %v, want ErrCheckpoint saying %q", err, tt.want)
			}
			if !reflect.DeepEqual(dump(t, w), before) {
				t.Fatal("a refused checkpoint changed the view")
			}
		})
	}
}

// FuzzLoadCheckpoint: any bytes are refused or loaded whole, never a panic or a broken tree.
func FuzzLoadCheckpoint(f *testing.F) {
	v := New(nil, Options{})
	if _, rej, _ := v.Apply(OriginSnapshot, 0, []fsbatch.Row{row("/a/b", 0, 1, 2), row("/a/c", fsbatch.FlagDir, 0, 3)}); rej != 0 {
		f.Fatal("rejected")
	}
	var buf bytes.Buffer
	if _, err := v.WriteCheckpoint(&buf); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		// The trailer is made right, so the fuzzer reaches the decoder.
		if len(data) > len(checkpointMagic)+12 {
			data = bytes.Clone(data)
			copy(data, checkpointMagic)
			end := len(data) - 12
			binary.LittleEndian.PutUint32(data[end:], crcOf(data[len(checkpointMagic):end]))
			binary.LittleEndian.PutUint64(data[end+4:], uint64(end))
		}
		w := New(nil, Options{})
		if _, err := w.LoadCheckpoint(data); err != nil {
			return
		}
		checkInvariants(t, w)
	})
}

// BenchmarkCheckpoint writes and loads the checkpoint of a 1M-file view of the product layout:
// write-ms encodes it and writes it to a file with fsync (encode-ms is the longest the view's
// read lock was held: the tree is walked in pieces), load-ms reads the file and loads it, and
// stall-ms is the longest a 100-row realtime Apply, running back to back meanwhile, took during
// a write (an apply waits for the piece being encoded). Run:
//
//	go test -run '^$' -bench Checkpoint -benchtime 5x ./fusion/internal/view/fs
func BenchmarkCheckpoint(b *testing.B) {
	v := bigView(b)
	// A ready view records its changes (the redo a checkpoint in pieces needs): its first
	// snapshot ended. This one reported nothing, so it judges nothing.
	v.SnapshotStart("bench")
	v.SnapshotEnd("bench", false)
	path := filepath.Join(b.TempDir(), "v.ckpt")
	write := func() viewapi.CheckpointInfo {
		f, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		w := bufio.NewWriterSize(f, 1<<20)
		info, err := v.WriteCheckpoint(w)
		if err == nil {
			err = w.Flush()
		}
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			b.Fatal(err)
		}
		return info
	}
	b.Run("write", func(b *testing.B) {
		var info viewapi.CheckpointInfo
		var encode time.Duration
		for b.Loop() {
			info = write()
			encode += info.Encode
		}
		b.ReportMetric(float64(info.Bytes)/float64(info.Nodes), "B/node")
		b.ReportMetric(float64(b.Elapsed().Microseconds())/1e3/float64(b.N), "write-ms")
		b.ReportMetric(float64(encode.Microseconds())/1e3/float64(b.N), "encode-ms")
	})
	b.Run("load", func(b *testing.B) {
		for b.Loop() {
			data, err := os.ReadFile(path)
			if err != nil {
				b.Fatal(err)
			}
			w := New(nil, Options{})
			if _, err := w.LoadCheckpoint(data); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/1e3/float64(b.N), "load-ms")
	})
	b.Run("stall", func(b *testing.B) {
		rows := benchRows(1_000_000)[:100]
		// worst runs 100-row realtime applies back to back while during runs, and returns the
		// longest one.
		worst := func(during func()) time.Duration {
			stop := make(chan struct{})
			done := make(chan time.Duration)
			go func() {
				var w time.Duration
				for {
					select {
					case <-stop:
						done <- w
						return
					default:
					}
					for j := range rows {
						rows[j].MtimeNs++
					}
					t0 := time.Now()
					if _, rej, err := v.Apply(OriginRealtime, 0, rows); rej != 0 {
						panic(err)
					}
					w = max(w, time.Since(t0))
				}
			}()
			during()
			close(stop)
			return <-done
		}
		var with, without time.Duration
		for b.Loop() {
			with = max(with, worst(func() { write() }))
		}
		// The same applies for as long, with no checkpoint: what the machine alone costs.
		per := b.Elapsed() / time.Duration(b.N)
		for range b.N {
			without = max(without, worst(func() { time.Sleep(per) }))
		}
		b.ReportMetric(float64(with.Microseconds())/1e3, "stall-ms")
		b.ReportMetric(float64(without.Microseconds())/1e3, "no-checkpoint-ms")
	})
}

// rawDump is the tree and side tables read without locking (the caller holds the lock): what
// a checkpoint taken while the view is written to must equal once loaded. Last-update times
// and the audit-skipped flag of nodes changed during the walk are not in the change log's
// records, so they are left out.
func rawDump(v *View) map[string]any {
	var nodes []string
	var walk func(id uint32, p string)
	walk = func(id uint32, p string) {
		for c := v.st.Get(id).FirstChild; c != 0; c = v.st.Get(c).NextSib {
			n := v.st.Get(c)
			cp := fspath.Join(p, v.st.NameString(n))
			nodes = append(nodes, fmt.Sprintf("%s flags=%d size=%d mtime=%d", cp,
				n.Flags&(store.FlagDir|store.FlagSuspect|store.FlagKnown|store.FlagBlindAdd), n.Size, n.Mtime))
			if n.IsDir() {
				walk(c, cp)
			}
		}
	}
	walk(v.root, fspath.Root)
	slices.Sort(nodes)
	tombs, suspects := map[string]tombstone{}, map[string]int64{}
	for p, tb := range v.c.tombs {
		tombs[p] = tb
	}
	for p, s := range v.c.suspects {
		suspects[p] = s.mtime
	}
	return map[string]any{"nodes": nodes, "tombs": tombs, "suspects": suspects,
		"additions": maps.Clone(v.c.additions), "deletions": maps.Clone(v.c.deletions)}
}

// TestCheckpointWhileWriting: a checkpoint walked in tiny pieces while another goroutine keeps
// applying rows loads into exactly the view as it was when the checkpoint's last piece ended.
func TestCheckpointWhileWriting(t *testing.T) {
	defer func(n int) { checkpointPiece = n }(checkpointPiece)
	checkpointPiece = 8
	r := rand.New(rand.NewPCG(3, 9))
	v, c := newClockedView(t)
	for range 3000 {
		randomOp(t, r, v, c)
	}
	v.AuditEnd(false)
	v.SnapshotStart("s1")
	v.SnapshotEnd("s1", false) // recording changes from here
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		w := rand.New(rand.NewPCG(4, 9))
		for {
			select {
			case <-stop:
				return
			default:
			}
			rows := make([]fsbatch.Row, 1+w.IntN(4))
			for i := range rows {
				rows[i] = randomRow(w, c)
			}
			_, _, _ = v.Apply([]Origin{OriginRealtime, OriginSnapshot, OriginAudit}[w.IntN(3)], 0, rows)
		}
	}()
	for round := range 20 {
		var want map[string]any
		v.checkpointHook = func() { want = rawDump(v) }
		data := checkpointOf(t, v)
		v.checkpointHook = nil
		w, _ := newClockedView(t)
		w.opts.Now, w.opts.Mono = v.opts.Now, v.opts.Mono
		if _, err := w.LoadCheckpoint(data); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		w.mu.RLock()
		got := rawDump(w)
		w.mu.RUnlock()
		if !reflect.DeepEqual(got, want) {
			for k := range want {
				if !reflect.DeepEqual(got[k], want[k]) {
					t.Errorf("round %d: %s differs:\n got %v\nwant %v", round, k, got[k], want[k])
				}
			}
			t.FailNow()
		}
		checkInvariants(t, w)
	}
	close(stop)
	<-done
}
