// Package dirio is the fs source's fast directory I/O, kept apart from the walk's logic: open
// a directory without following a symlink (Open), list it with getdents64 in rounds (Dir.Names,
// Dir.Entries), lstat its entries relative to its descriptor with fstatat (Dir.Lstat,
// Dir.LstatEntry) — as raw system calls on a local file system (LocalDevs; see Dir) — and
// carve a round's paths out of one allocation (Scratch).
//
// Aliasing: a round's paths share one block, and its names another. Whatever keeps a path
// longer than its event's trip to the sender must copy it (Scratch says more;
// agent/internal/source/fs's TestKeptPathsDoNotShareTheListingBlock and this package's
// TestScratchAliasing prove both sides by writing over a block).
//
// Off Linux the same API is served by os.File (dir_other.go), with ordinary calls only.
package dirio
