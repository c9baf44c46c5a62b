package bench

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
)

// Machine describes where the bench ran.
type Machine struct {
	CPU       string `json:"cpu"`
	Cores     int    `json:"cores"`
	RAMBytes  uint64 `json:"ram_bytes"`
	Kernel    string `json:"kernel"`
	GoVersion string `json:"go_version"`
	Hostname  string `json:"hostname"`
}

func (m Machine) String() string {
	return fmt.Sprintf("%s, %d cores, %.1f GiB RAM, Linux %s, %s", m.CPU, m.Cores,
		float64(m.RAMBytes)/(1<<30), m.Kernel, m.GoVersion)
}

// DescribeMachine reads the CPU model from /proc/cpuinfo, RAM from /proc/meminfo and the
// kernel release from uname; the Go version is the bench's own (the binaries are built by
// the same toolchain with make build).
func DescribeMachine() Machine {
	m := Machine{CPU: "unknown CPU", Cores: runtime.NumCPU(), GoVersion: runtime.Version()}
	m.Hostname, _ = os.Hostname()
	if v := procField("/proc/cpuinfo", "model name", ":"); v != "" {
		m.CPU = v
	}
	if v := procField("/proc/meminfo", "MemTotal", ":"); v != "" {
		kb, _ := strconv.ParseUint(strings.TrimSuffix(v, " kB"), 10, 64)
		m.RAMBytes = kb * 1024
	}
	var u syscall.Utsname
	if err := syscall.Uname(&u); err == nil {
		var b strings.Builder
		for _, c := range u.Release {
			if c == 0 {
				break
			}
			b.WriteByte(byte(c))
		}
		m.Kernel = b.String()
	}
	return m
}

// procField returns the trimmed value of the first "key<sep> value" line of a /proc file.
func procField(path, key, sep string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), sep)
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
