package dirio

// FileType is what an lstat found at a path.
type FileType uint8

// File types.
const (
	TypeOther FileType = iota
	TypeRegular
	TypeDir
	TypeSymlink
)

// Stat is the part of an lstat the source needs.
type Stat struct {
	Size    uint64
	MtimeNs int64
	// Nlink of a directory is, on POSIX file systems, 2 + its number of subdirectories
	// (< 2 = unknown, e.g. btrfs).
	Nlink uint64
	Dev   uint64 // st_dev: which file system the entry lives on (0 where unknown)
	Type  FileType
}

// Name is a listed entry: its name and, where the platform's listing says, its type
// (a DT_ value; 0, DT_UNKNOWN, when it does not).
type Name struct {
	Name string
	// DType is the entry's DT_ value from getdents (0, DT_UNKNOWN, where the listing does
	// not say); it decides whether the entry may be lstat-ed with a raw call.
	DType uint8
}
