package dirio

import (
	"sync"
	"unsafe"

	"github.com/fustor/fustor/sdk/fspath"
)

// Scratch reads a directory's listing in rounds, each round's names with their paths below
// the directory. It is pooled (GetScratch, Release), as every directory of a walk needs one.
//
// Aliasing: a round's paths are carved out of one allocation (joinAll) and its names out of
// another (Dir.Names). Any one of them keeps its whole block alive, so whatever keeps a path
// longer than its event's trip to the sender — a directory queued for the walk, watched or
// put in the audit cache, a file deferred to the end of a snapshot — must copy it
// (strings.Clone). The blocks themselves are never written again once handed out (each round
// allocates new ones), so sharing one is a matter of memory held, never of a path changing.
type Scratch struct {
	names []Name
	paths []string
	used  int // the most entries a round filled: what Release must clear
}

// GetScratch returns an empty Scratch from the pool.
func GetScratch() *Scratch {
	sc := listPool.Get().(*Scratch)
	sc.used = 0
	return sc
}

var listPool = sync.Pool{New: func() any { return new(Scratch) }}

// Read lists up to n more entries of d, a directory whose path relative to the walk's root is
// rel, and returns their names and their paths (fspath.Join(rel, name)), index for index, with
// io.EOF (possibly beside the last entries) at the end. Both are valid until the next Read or
// Release.
func (sc *Scratch) Read(d *Dir, rel string, n int) ([]Name, []string, error) {
	names, err := d.Names(sc.names[:0], n)
	paths := joinAll(sc.paths[:0], rel, names)
	// Both hold len(names) now: a panic further on (in the caller) still lets Release clear
	// them.
	sc.names, sc.paths, sc.used = names, paths, max(sc.used, len(names))
	return names, paths, err
}

// Release clears what the rounds filled, so a pooled Scratch keeps no listing's strings
// alive, and puts sc back in the pool.
func (sc *Scratch) Release() {
	clear(sc.names[:sc.used])
	clear(sc.paths[:sc.used])
	sc.used = 0
	listPool.Put(sc)
}

// joinAll appends fspath.Join(dir, name) for each of names to dst, carving every path out of
// one allocation: a string allocation per entry was a visible share of the agent's snapshot
// CPU (the fs source's BenchmarkSnapshotDir; fustor-bench's p1_agent_cpu_s). Any one
// path keeps the whole block alive (see Scratch: whatever keeps a path longer than its event's
// trip to the sender must copy it; fsbatch.Encoder copies the directory names it declares).
func joinAll(dst []string, dir string, names []Name) []string {
	prefix := len(dir) + 1
	if dir == fspath.Root {
		prefix = 1
	}
	total := 0
	for _, e := range names {
		total += prefix + len(e.Name)
	}
	if total == 0 {
		return dst
	}
	block := make([]byte, 0, total)
	for _, e := range names {
		start := len(block)
		if prefix > 1 {
			block = append(block, dir...)
		}
		block = append(block, '/')
		block = append(block, e.Name...)
		dst = append(dst, unsafe.String(&block[start], len(block)-start))
	}
	return dst
}
