// Package store is the fs view's storage: the nodes, their names, the child index, the
// by-name chains, the mark tables of finds, and the memory tricks they need (huge pages,
// prefetch). It holds no semantics — arbitration, aggregates, consistency and queries are
// package fs's — and is kept apart so that the code that decides what a view means does not
// have to be read, or changed, together with the code that decides what it costs.
//
// A view holds tens of millions of nodes, so the layout is chosen for that size:
//
//   - Nodes are 56-byte structs in fixed-size chunks addressed by uint32 ids (0 means none):
//     growth adds a chunk and never copies a huge slice, links between nodes are 4 bytes, and
//     the garbage collector sees a few large pointer-free allocations instead of millions of
//     objects. Freed ids are reused.
//   - Names live in chunked byte arenas, referenced from the node; Compact rewrites them when
//     deleted names outweigh live ones.
//   - Children are found through one open-addressing index keyed by (parent id, name) for the
//     whole tree, instead of a Go map per directory: a slot is 4 bytes (the id and a hash tag),
//     and the key is read from the node itself.
//   - Every named node is on its name's chain, found through a second table of the same kind,
//     so a find by exact name costs its matches rather than a walk of the subtree.
//   - Large tables are advised onto transparent huge pages (fewer page faults while a snapshot
//     grows them), and Apply prefetches the index slot of a row a few rows ahead.
//
// Node's exported fields (sizes, times, tree links, flags) are the caller's to read and write
// directly in its hot loops; the name and the chains are reached through Store, which keeps
// the two tables consistent with them. A Store is not safe for concurrent use: package fs
// guards it with the view's lock, and no read method writes.
package store
