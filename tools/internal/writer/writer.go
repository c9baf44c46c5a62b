// Package writer is the compose demo's writer: it keeps creating submissions in the storages
// it is given, writes their files in several appends (so Fusion shows them suspect while they
// grow), and deletes the oldest once a storage holds more than Keep, so the demo's views
// always have something new, something being written and something gone.
package writer

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Config is the writer's work.
type Config struct {
	// Roots are the storages written to, in turn.
	Roots []string
	// Every is the pause between two submissions; Append the pause between a file's appends.
	Every, Append time.Duration
	// Files bounds the files of a submission (1..Files); Keep the submissions kept per storage.
	Files, Keep int
	// Seed makes a run reproducible.
	Seed uint64
}

// Default returns the demo's settings.
func Default() Config {
	return Config{Every: 3 * time.Second, Append: 200 * time.Millisecond, Files: 12, Keep: 20, Seed: 1}
}

// Validate checks the settings.
func (c Config) Validate() error {
	switch {
	case len(c.Roots) == 0:
		return fmt.Errorf("no storage to write to")
	case c.Every <= 0 || c.Append < 0 || c.Files <= 0 || c.Keep <= 0:
		return fmt.Errorf("every must be > 0, append >= 0, files and keep > 0")
	}
	return nil
}

// Writer writes submissions until its context ends.
type Writer struct {
	cfg Config
	log io.Writer
	rnd *rand.Rand
	n   int
}

// New returns a writer logging a line per submission to log (nil: none).
func New(log io.Writer, cfg Config) *Writer {
	if log == nil {
		log = io.Discard
	}
	return &Writer{cfg: cfg, log: log, rnd: rand.New(rand.NewPCG(cfg.Seed, 0x77))}
}

// Run writes one submission every cfg.Every, storages in turn, until ctx ends (nil then).
func (w *Writer) Run(ctx context.Context) error {
	t := time.NewTicker(w.cfg.Every)
	defer t.Stop()
	for {
		root := w.cfg.Roots[w.n%len(w.cfg.Roots)]
		if err := w.Submit(ctx, root); err != nil && ctx.Err() == nil {
			fmt.Fprintf(w.log, "write %s: %v\n", root, err)
		}
		if err := w.prune(root); err != nil {
			fmt.Fprintf(w.log, "prune %s: %v\n", root, err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Submit writes one submission under root/upload/<day>/sub-<n>: 1..Files files, each written
// in 1..4 appends Append apart.
func (w *Writer) Submit(ctx context.Context, root string) error {
	w.n++
	dir := filepath.Join(root, "upload", time.Now().UTC().Format("2006-01-02"), fmt.Sprintf("sub-%06d", w.n))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create submission: %w", err)
	}
	files := 1 + w.rnd.IntN(w.cfg.Files)
	for i := range files {
		p := filepath.Join(dir, fmt.Sprintf("data_%04d.dat", i))
		f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("create file: %w", err)
		}
		for a := range 1 + w.rnd.IntN(4) {
			if a > 0 && !sleep(ctx, w.cfg.Append) {
				_ = f.Close()
				return ctx.Err()
			}
			if _, err := f.Write(make([]byte, 512+w.rnd.IntN(8192))); err != nil {
				_ = f.Close()
				return fmt.Errorf("append: %w", err)
			}
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("close file: %w", err)
		}
	}
	fmt.Fprintf(w.log, "submitted %s (%d files)\n", dir, files)
	return nil
}

// prune deletes root's oldest submissions beyond Keep.
func (w *Writer) prune(root string) error {
	subs, err := filepath.Glob(filepath.Join(root, "upload", "*", "sub-*"))
	if err != nil {
		return err
	}
	slices.SortFunc(subs, func(a, b string) int { // by number: the oldest first
		switch {
		case filepath.Base(a) < filepath.Base(b):
			return -1
		case filepath.Base(a) > filepath.Base(b):
			return 1
		}
		return 0
	})
	for len(subs) > w.cfg.Keep {
		if err := os.RemoveAll(subs[0]); err != nil {
			return err
		}
		fmt.Fprintf(w.log, "deleted %s\n", subs[0])
		subs = subs[1:]
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
