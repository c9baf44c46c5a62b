package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// newBlindCluster gives an agent on client mount A of a storage directory and returns the
// directory a "blind host" writes through: client mount B of the same storage, whose writes
// inotify on A never sees (another NFS client, DESIGN.md §1). populate fills the storage
// before anything starts. Audits run every second with the default rolling share and never
// deep, so a change in a silent directory can only be found by the rolling re-check.
//
// When FUSE is not usable here (multiclient.sh exits 2) the agent runs without realtime on the
// storage itself and the blind host writes there directly: the agent is blind to every write,
// which is the same situation for the audit.
func newBlindCluster(t *testing.T, populate func(storage string)) (*cluster, string) {
	t.Helper()
	bin := binaries(t, true)
	storage := filepath.Join(t.TempDir(), "storage")
	must(t, os.Mkdir(storage, 0o755))
	populate(storage)
	root, blind, realtime := mountClients(t, storage)
	c := newClusterOpts(t, root, bin, realtime)
	if root != storage {
		c.storage = storage
	}
	c.auditEvery, c.auditDeepEvery = "1s", "0"
	c.writeConfigs()
	return c, blind
}

// mountClients mounts two client views of storage with multiclient.sh and returns the one an
// agent watches, the one a blind host writes through, and whether the agent can watch in real
// time. Where FUSE is not usable (the script exits 2) both are storage itself and realtime is
// false: an agent without realtime is blind to every write, the same situation for audits.
func mountClients(t *testing.T, storage string) (agentRoot, blind string, realtime bool) {
	t.Helper()
	base := t.TempDir()
	a, b := filepath.Join(base, "client-a"), filepath.Join(base, "client-b")
	script := filepath.Join(repoRoot(t), "..", "shared", "tools", "multiclient.sh")
	var out []byte
	_, err := os.Stat(script)
	if err == nil {
		out, err = exec.Command("bash", script, "up", storage, a, b).CombinedOutput()
	}
	var exit *exec.ExitError
	switch {
	case err == nil:
	case os.IsNotExist(err) || errors.As(err, &exit) && exit.ExitCode() == 2:
		t.Logf("FUSE clients are not usable here (%v %s): falling back to an agent without realtime on the storage, "+
			"the blind host writing into the storage directly", err, bytes.TrimSpace(out))
		return storage, storage, false
	default:
		t.Fatalf("multiclient.sh up: %v\n%s", err, out)
	}
	// Registered before the daemons start, so it runs after they stop and before the
	// temporary directories are removed.
	t.Cleanup(func() {
		if out, err := exec.Command("bash", script, "down", a, b).CombinedOutput(); err != nil {
			t.Errorf("multiclient.sh down: %v\n%s", err, out)
		}
	})
	return a, b, true
}

// startBlindCluster runs Fusion and an agent on a blind cluster over makeTree's layout and
// waits until the view equals the storage and two audits passed, so every directory is in the
// audit's mtime cache (silent from now on).
func startBlindCluster(t *testing.T) (*cluster, string) {
	t.Helper()
	c, blind := newBlindCluster(t, func(storage string) { writeTree(t, storage) })
	c.startFusion()
	c.startAgent()
	c.waitFiles(60*time.Second, "/", 1000)
	c.waitViewEqualsTree(10*time.Second, "/")
	waitAuditCycles(c, 2)
	return c, blind
}

// rewriteInPlace overwrites a file's bytes without truncating it: same size, other content.
func rewriteInPlace(t *testing.T, p string, fill byte) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	must(t, err)
	st, err := f.Stat()
	must(t, err)
	_, err = f.WriteAt(bytes.Repeat([]byte{fill}, int(st.Size())), 0)
	must(t, err)
	must(t, f.Close())
}

func appendTo(t *testing.T, p string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	must(t, err)
	_, err = f.Write(b)
	must(t, err)
	must(t, f.Close())
}

// keepDirSilent restores each directory's mtime (and atime) to what it was before do, so the
// directories look untouched to an audit's mtime cache.
func keepDirSilent(t *testing.T, dirs []string, do func()) {
	t.Helper()
	type times struct{ a, m time.Time }
	before := map[string]times{}
	for _, d := range dirs {
		st, err := os.Stat(d)
		must(t, err)
		sys := st.Sys().(*syscall.Stat_t)
		before[d] = times{time.Unix(sys.Atim.Sec, sys.Atim.Nsec), st.ModTime()}
	}
	do()
	for d, tm := range before {
		if st, err := os.Stat(d); err == nil && !st.ModTime().Equal(tm.m) {
			must(t, os.Chtimes(d, tm.a, tm.m))
		}
	}
}

// TestBlindInPlaceEditsConverge: files are rewritten in place (same size) and appended to
// through another client; their directories' mtimes do not change, so the audit's "true
// silence" skips them. The rolling re-stat of files in silent directories must still bring
// the view to the storage's state.
func TestBlindInPlaceEditsConverge(t *testing.T) {
	c, blind := startBlindCluster(t)

	var dirs, edited []string
	for a := range 10 {
		dirs = append(dirs, filepath.Join(blind, fmt.Sprintf("d%02d/s%02d", a, a)))
	}
	keepDirSilent(t, dirs, func() {
		for a := range 10 {
			dir := filepath.Join(blind, fmt.Sprintf("d%02d/s%02d", a, a))
			for f := 1; f < 10; f += 3 {
				p := filepath.Join(dir, fmt.Sprintf("f%02d.dat", f))
				rewriteInPlace(t, p, 'y')
				edited = append(edited, p)
			}
			for f := 2; f < 10; f += 3 {
				p := filepath.Join(dir, fmt.Sprintf("f%02d.dat", f))
				appendTo(t, p, []byte("appended by another client"))
				edited = append(edited, p)
			}
		}
	})
	t.Logf("rewrote or appended to %d files through the blind client", len(edited))
	took := c.waitViewEqualsTree(60*time.Second, "/")
	t.Logf("view equals the storage %v after the blind in-place edits", took)
	c.requireVerifyClean("/")
}

// TestBlindMtimeMovesBackConverges: through another client a file's mtime is set two days into
// the past (touch -d), and files are restored cp -p style (new content, an old mtime). The
// audit's row is the freshest evidence and must replace the node although its mtime is older.
// Half the directories stay silent (only the rolling re-stat reaches them); in the other half
// a new file changes the directory's mtime, so the audit lists them and judges the old mtimes.
func TestBlindMtimeMovesBackConverges(t *testing.T) {
	c, blind := startBlindCluster(t)

	past := time.Now().Add(-48 * time.Hour)
	var silent, listed []string
	for a := range 10 {
		d := filepath.Join(blind, fmt.Sprintf("d%02d/s%02d", a, 9-a))
		if a%2 == 0 {
			silent = append(silent, d)
		} else {
			listed = append(listed, d)
		}
	}
	moveBack := func(i int, dir string) {
		// touch -d two days ago.
		p := filepath.Join(dir, "f03.dat")
		mt := past.Add(time.Duration(i) * time.Second)
		must(t, os.Chtimes(p, mt, mt))
		// cp -p from a backup: other content and size, the backup's older mtime.
		p = filepath.Join(dir, "f06.dat")
		must(t, os.WriteFile(p, []byte(fmt.Sprintf("restored from backup %d", i)), 0o644))
		mt = past.Add(-24*time.Hour + time.Duration(i)*time.Millisecond)
		must(t, os.Chtimes(p, mt, mt))
	}
	keepDirSilent(t, silent, func() {
		for i, d := range silent {
			moveBack(i, d)
		}
	})
	for i, d := range listed {
		moveBack(len(silent)+i, d)
		must(t, os.WriteFile(filepath.Join(d, "marker.new"), []byte("lists the directory"), 0o644))
	}
	took := c.waitViewEqualsTree(60*time.Second, "/")
	t.Logf("view equals the storage %v after mtimes moved back", took)
	c.requireVerifyClean("/")
}

// TestBlindCreatesAndDeletesConverge: through another client files and directories are
// created (one cp -p style, with an old mtime) and files and a whole directory are deleted.
// Their directories' mtimes change, so audits list them; the view must equal the storage.
func TestBlindCreatesAndDeletesConverge(t *testing.T) {
	c, blind := startBlindCluster(t)

	must(t, os.MkdirAll(filepath.Join(blind, "new/deeper"), 0o755))
	for i := range 5 {
		must(t, os.WriteFile(filepath.Join(blind, fmt.Sprintf("new/deeper/n%d.dat", i)), []byte("blind"), 0o644))
		must(t, os.WriteFile(filepath.Join(blind, fmt.Sprintf("d01/s02/blind-%d.dat", i)), []byte("blind create"), 0o644))
	}
	old := filepath.Join(blind, "d03/s04/restored.dat")
	must(t, os.WriteFile(old, []byte("cp -p of an old file"), 0o644))
	mt := time.Now().Add(-72 * time.Hour)
	must(t, os.Chtimes(old, mt, mt))
	for f := range 5 {
		must(t, os.Remove(filepath.Join(blind, fmt.Sprintf("d05/s06/f%02d.dat", f))))
	}
	must(t, os.RemoveAll(filepath.Join(blind, "d09/s09")))
	took := c.waitViewEqualsTree(60*time.Second, "/")
	t.Logf("view equals the storage %v after blind creates and deletes", took)
	c.requireVerifyClean("/")
}

// writeTree writes makeTree's layout (10 × 10 directories of 10 files, sizes 0..999) into dir.
func writeTree(t *testing.T, dir string) {
	t.Helper()
	n := 0
	for a := range 10 {
		for b := range 10 {
			d := filepath.Join(dir, fmt.Sprintf("d%02d", a), fmt.Sprintf("s%02d", b))
			must(t, os.MkdirAll(d, 0o755))
			for f := range 10 {
				must(t, os.WriteFile(filepath.Join(d, fmt.Sprintf("f%02d.dat", f)), bytes.Repeat([]byte{'x'}, n), 0o644))
				n++
			}
		}
	}
}

// waitAuditCycles waits until the view counts at least n completed audits.
func waitAuditCycles(c *cluster, n uint64) {
	c.t.Helper()
	eventually(c.t, 30*time.Second, fmt.Sprintf("%d audit cycles", n), func() error {
		doc, err := c.statsOf("/")
		if err != nil {
			return err
		}
		if got := num(doc["auditCycles"]); got < n {
			time.Sleep(100 * time.Millisecond)
			return fmt.Errorf("%d audit cycles", got)
		}
		return nil
	})
}
