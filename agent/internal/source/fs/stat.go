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
	typ     fileType
}
