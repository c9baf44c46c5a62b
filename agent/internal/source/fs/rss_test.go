package fs

import (
	"os"
	"strconv"
	"strings"
)

// resetPeakRSS restarts the kernel's peak-RSS count of this process (Linux: writing 5 to
// /proc/self/clear_refs); elsewhere it does nothing and peakRSSMB reports 0.
func resetPeakRSS() { _ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

// peakRSSMB returns VmHWM, the peak resident set since the last reset, in MiB.
func peakRSSMB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}
