package fs

type fileType uint8

const (
	typeOther fileType = iota
	typeRegular
	typeDir
	typeSymlink
)

// fileStat is the part of an lstat the source needs.
type fileStat struct {
	size    uint64
	mtimeNs int64
	nlink   uint64
	dev     uint64 // st_dev: which file system the entry lives on (0 where unknown)
	typ     fileType
}

// dirName is a listed entry: its name and, where the platform's listing says, its type
// (a DT_ value; 0, DT_UNKNOWN, when it does not).
type dirName struct {
	name string
	typ  uint8
}
