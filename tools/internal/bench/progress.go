package bench

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// Progress shows one running step on stderr: done/total, rate and ETA. On a terminal it
// rewrites one line with \r about four times a second; otherwise (a log file, CI) it prints
// a plain line every few seconds so the log stays readable.
type Progress struct {
	w        io.Writer
	tty      bool
	interval time.Duration

	mu    sync.Mutex
	stop  chan struct{}
	done  chan struct{}
	label string
	total int64
	get   func() int64
	start time.Time
}

// NewProgress writes to w; tty selects the one-line display.
func NewProgress(w io.Writer, tty bool) *Progress {
	iv := 3 * time.Second
	if tty {
		iv = 250 * time.Millisecond
	}
	return &Progress{w: w, tty: tty, interval: iv}
}

// IsTerminal reports whether f is a character device (a terminal), without new dependencies.
func IsTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// Start shows a step whose progress is get() out of total (total 0: unknown; get nil: only
// the elapsed time). A step still shown is stopped first.
func (p *Progress) Start(label string, total int64, get func() int64) {
	if p == nil {
		return
	}
	p.Stop()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.label, p.total, p.get, p.start = label, total, get, time.Now()
	p.stop, p.done = make(chan struct{}), make(chan struct{})
	go p.loop(p.stop, p.done)
}

// Stop prints the step's final state and ends the display.
func (p *Progress) Stop() {
	if p == nil {
		return
	}
	p.mu.Lock()
	stop, done := p.stop, p.done
	p.stop = nil
	p.mu.Unlock()
	if stop == nil {
		return
	}
	close(stop)
	<-done
}

// Logf prints a line of its own, keeping the one-line display intact.
func (p *Progress) Logf(format string, args ...any) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty {
		fmt.Fprint(p.w, "\r\033[K")
	}
	fmt.Fprintf(p.w, format+"\n", args...)
}

func (p *Progress) loop(stop, done chan struct{}) {
	defer close(done)
	t := time.NewTicker(p.interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			p.mu.Lock()
			line := p.line()
			if p.tty {
				fmt.Fprintf(p.w, "\r\033[K%s\n", line)
			} else {
				fmt.Fprintln(p.w, line)
			}
			p.mu.Unlock()
			return
		case <-t.C:
			p.mu.Lock()
			line := p.line()
			if p.tty {
				fmt.Fprintf(p.w, "\r\033[K%s", line)
			} else {
				fmt.Fprintln(p.w, line)
			}
			p.mu.Unlock()
		}
	}
}

// line renders the current state; the caller holds mu.
func (p *Progress) line() string {
	el := time.Since(p.start)
	if p.get == nil {
		return fmt.Sprintf("%s: %s elapsed", p.label, el.Round(100*time.Millisecond))
	}
	n := p.get()
	rate := 0.0
	if s := el.Seconds(); s > 0 {
		rate = float64(n) / s
	}
	if p.total <= 0 {
		return fmt.Sprintf("%s: %s, %s elapsed", p.label, commas(n), el.Round(100*time.Millisecond))
	}
	pct := 100 * float64(n) / float64(p.total)
	eta := "?"
	if rate > 0 && n < p.total {
		eta = time.Duration(float64(p.total-n) / rate * float64(time.Second)).Round(time.Second).String()
	} else if n >= p.total {
		eta = "0s"
	}
	return fmt.Sprintf("%s: %s/%s (%.1f%%), %s/s, %s elapsed, ETA %s", p.label, commas(n), commas(p.total),
		pct, commas(int64(rate)), el.Round(100*time.Millisecond), eta)
}

// commas formats n with thousands separators: 1,000,000.
func commas(n int64) string {
	s := fmt.Sprint(n)
	neg := n < 0
	if neg {
		s = s[1:]
	}
	out := make([]byte, 0, len(s)+len(s)/3)
	for i, c := range []byte(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, c)
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}
