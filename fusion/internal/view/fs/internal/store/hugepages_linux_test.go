package store

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"unsafe"
)

// TestAdviseHugeGetsHugePages: an advised allocation is backed by huge pages once touched,
// where the system allows them; odd sizes and offsets are accepted.
func TestAdviseHugeGetsHugePages(t *testing.T) {
	adviseHuge(unsafe.Pointer(new([10]byte)), 10) // under a page: nothing to advise
	mode, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/enabled")
	if err != nil || strings.Contains(string(mode), "[never]") {
		t.Skipf("transparent huge pages are off here (%q, %v)", mode, err)
	}
	const size = 16 << 20
	buf := make([]byte, size)
	adviseHuge(unsafe.Pointer(&buf[0]), size)
	for i := 0; i < size; i += 4096 {
		buf[i] = 1
	}
	kb, err := anonHugeKB(uintptr(unsafe.Pointer(&buf[0])))
	if err != nil {
		t.Fatal(err)
	}
	if kb == 0 {
		t.Errorf("a touched, advised 16 MiB allocation has no huge pages (THP %q)", strings.TrimSpace(string(mode)))
	}
}

// anonHugeKB returns AnonHugePages of the mapping holding addr, from /proc/self/smaps.
func anonHugeKB(addr uintptr) (int, error) {
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if lo, hi, ok := strings.Cut(strings.Fields(line + " ")[0], "-"); ok && !strings.HasSuffix(lo, ":") {
			a, err1 := strconv.ParseUint(lo, 16, 64)
			b, err2 := strconv.ParseUint(hi, 16, 64)
			in = err1 == nil && err2 == nil && uint64(addr) >= a && uint64(addr) < b
			continue
		}
		if v, ok := strings.CutPrefix(line, "AnonHugePages:"); ok && in {
			return strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
		}
	}
	return 0, fmt.Errorf("no mapping holds %#x", addr)
}
