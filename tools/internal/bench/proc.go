package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// proc is a running fustor binary. Its output goes to a log file in the output directory;
// JSON log lines are also kept in memory so phases can wait for "snapshot sent" and read the
// fields the daemons log.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}

	mu      sync.Mutex
	lines   []map[string]any
	changed chan struct{}
}

// maxKeptLines bounds the in-memory log: the daemons log little at info level, this only
// guards against a chatty failure mode.
const maxKeptLines = 100_000

// startProc starts bin with args, its output in logDir/<name>.log.
func startProc(bin, name, logDir string, args ...string) (*proc, error) {
	logPath := filepath.Join(logDir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("create log: %w", err)
	}
	p := &proc{name: name, logPath: logPath, done: make(chan struct{}), changed: make(chan struct{})}
	pr, pw := io.Pipe()
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = pw, pw
	// Own process group: a Ctrl-C on the terminal reaches only the bench, which then stops
	// the daemons in order. Pdeathsig kills them if the bench itself dies without cleaning up.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		_ = f.Close()
		_ = pw.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		defer f.Close()
		sc := bufio.NewScanner(io.TeeReader(pr, f))
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			p.addLine(sc.Bytes())
		}
		_, _ = io.Copy(f, pr)
	}()
	go func() {
		_ = p.cmd.Wait()
		_ = pw.Close()
		<-scanned
		close(p.done)
	}()
	return p, nil
}

func (p *proc) addLine(b []byte) {
	if len(b) == 0 || b[0] != '{' {
		return
	}
	var m map[string]any
	if json.Unmarshal(b, &m) != nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.lines) < maxKeptLines {
		p.lines = append(p.lines, m)
	}
	close(p.changed)
	p.changed = make(chan struct{})
}

// logged returns the JSON lines whose msg is msg.
func (p *proc) logged(msg string) []map[string]any {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []map[string]any
	for _, l := range p.lines {
		if l["msg"] == msg {
			out = append(out, l)
		}
	}
	return out
}

// waitLogged waits until msg was logged n times and returns those lines.
func (p *proc) waitLogged(ctx context.Context, msg string, n int) ([]map[string]any, error) {
	for {
		p.mu.Lock()
		ch := p.changed
		p.mu.Unlock()
		if ls := p.logged(msg); len(ls) >= n {
			return ls[:n], nil
		}
		select {
		case <-ch:
		case <-p.done:
			if ls := p.logged(msg); len(ls) >= n {
				return ls[:n], nil
			}
			return nil, fmt.Errorf("wait for %q in %s log: process exited (%v); see %s", msg, p.name, p.cmd.ProcessState, p.logPath)
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for %q in %s log: %w", msg, p.name, ctx.Err())
		}
	}
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM and waits for a graceful exit, then kills after grace.
func (p *proc) stop(grace time.Duration) error {
	if p == nil || p.exited() {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("stop %s: no exit within %v of SIGTERM, killed", p.name, grace)
	}
}

// num reads a JSON number field of a log line.
func num(line map[string]any, key string) float64 {
	switch v := line[key].(type) {
	case float64:
		return v
	case string:
		f, _ := strconv.ParseFloat(v, 64)
		return f
	}
	return 0
}

// procStatusKB reads a kB field (VmRSS, VmHWM) of /proc/<pid>/status.
func procStatusKB(pid int, key string) (uint64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read process status: %w", err)
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, key+":"); ok {
			return strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("read process status: no %s", key)
}

// resetHWM resets the process's VmHWM to its current RSS (Linux ≥ 4.0), so the next peak
// belongs to the next phase only.
func resetHWM(pid int) error {
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
		return fmt.Errorf("reset peak RSS: %w", err)
	}
	return nil
}

// rssSampler samples a process's VmRSS every interval and keeps the peak since the last
// take; the kernel's VmHWM is read alongside, as it also catches peaks between samples.
type rssSampler struct {
	pid  int
	peak atomic.Uint64 // kB
	stop chan struct{}
	done chan struct{}
}

func sampleRSS(pid int, every time.Duration) *rssSampler {
	s := &rssSampler{pid: pid, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			if kb, err := procStatusKB(pid, "VmRSS"); err == nil {
				for {
					old := s.peak.Load()
					if kb <= old || s.peak.CompareAndSwap(old, kb) {
						break
					}
				}
			}
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// take returns the peak sampled since the last take (kB) and starts a new window.
func (s *rssSampler) take() uint64 { return s.peak.Swap(0) }

func (s *rssSampler) close() {
	close(s.stop)
	<-s.done
}

// freePort returns a loopback address that was free a moment ago: the daemons bind it
// themselves, so it is released before they start.
func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// cpuTime is the user+system CPU time a process has used so far, from /proc/<pid>/stat
// (clock ticks, 100 per second on Linux).
func cpuTime(pid int) time.Duration {
	f := procStat(pid)
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseUint(f[11], 10, 64)
	st, _ := strconv.ParseUint(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100
}

// minorFaults is the page faults a process has taken so far that needed no I/O, from
// /proc/<pid>/stat: on a VM each is an exit to the hypervisor, dear enough to show in the
// daemons' CPU while they grow.
func minorFaults(pid int) uint64 {
	f := procStat(pid)
	if len(f) < 8 {
		return 0
	}
	n, _ := strconv.ParseUint(f[7], 10, 64)
	return n
}

// procStat returns the fields of /proc/<pid>/stat after the command name (which may hold
// spaces), so f[0] is the state; nil when unreadable.
func procStat(pid int) []string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	s := string(data)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		s = s[i+1:]
	}
	return strings.Fields(s)
}

// selfCPU is the bench process's own user+system CPU time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// machineCPU is the machine's busy and total CPU time so far, all cores, from /proc/stat.
func machineCPU() (busy, total time.Duration) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0
	}
	var idle uint64
	for i, v := range f[1:] {
		n, _ := strconv.ParseUint(v, 10, 64)
		total += time.Duration(n) * time.Second / 100
		if i == 3 || i == 4 { // idle, iowait
			idle += n
		}
	}
	return total - time.Duration(idle)*time.Second/100, total
}
