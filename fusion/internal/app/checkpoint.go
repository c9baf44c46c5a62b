package app

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/fustor/fustor/fusion/internal/view"
	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
)

// Durable views (issue 16): every member's state is written to server.state_dir periodically,
// when Fusion stops gracefully and on AdminService.Checkpoint, and loaded when Fusion starts,
// so a restarted Fusion answers at once (flagged restored) instead of after a full snapshot.
// A file is written next to its final name, fsynced, renamed over it and the directory fsynced:
// a crash leaves the old checkpoint or the new one, never half of one. A checkpoint that
// cannot be loaded is moved aside (never deleted) and the member starts empty.

var errReset = errors.New("member reset while its checkpoint was taken")

// checkpoints writes and loads the members' checkpoints.
type checkpoints struct {
	log   *zap.Logger
	dir   string
	every time.Duration // <= 0: no periodic checkpoints
	now   func() time.Time

	mu sync.Mutex // one pass at a time

	written, failed, refused atomic.Uint64
	maxEncodeNs              atomic.Int64
}

// file is the checkpoint's path of a member: view[@member].ckpt, escaped.
func (c *checkpoints) file(m *view.Member) string {
	name := url.PathEscape(m.View)
	if m.Name != "" {
		name += "@" + url.PathEscape(m.Name)
	}
	return filepath.Join(c.dir, name+".ckpt")
}

// restore loads the checkpoints of members that have one.
func (c *checkpoints) restore(members []*view.Member) {
	for _, m := range members {
		path := c.file(m)
		data, err := os.ReadFile(path)
		if os.IsNotExist(err) {
			continue
		}
		log := c.log.With(zap.String("view", m.View), zap.String("member", m.Name), zap.String("path", path))
		start := time.Now()
		var info view.CheckpointInfo
		if err == nil {
			info, err = m.Driver.LoadCheckpoint(data)
		}
		if err != nil {
			c.refused.Add(1)
			aside := fmt.Sprintf("%s.refused-%s", path, c.now().UTC().Format("20060102T150405Z"))
			if rerr := os.Rename(path, aside); rerr != nil {
				aside = "(not moved: " + rerr.Error() + ")"
			}
			log.Warn("checkpoint refused: the view starts empty and is rebuilt by its agents",
				zap.Error(err), zap.String("moved_to", aside))
			continue
		}
		m.Restored(info.WrittenAt)
		log.Info("view restored from its checkpoint", zap.Int("nodes", info.Nodes), zap.Int("bytes", info.Bytes),
			zap.Time("written_at", info.WrittenAt), zap.Duration("took", time.Since(start)))
	}
}

// all checkpoints every member of views (only the one named, when set).
func (c *checkpoints) all(views []*view.View, only string) *fustorv1.CheckpointResponse {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := &fustorv1.CheckpointResponse{}
	for _, v := range views {
		if only != "" && v.Name != only {
			continue
		}
		for _, m := range v.Members() {
			out.Checkpoints = append(out.Checkpoints, c.write(m))
		}
	}
	return out
}

// write checkpoints one member; a member that cannot answer is skipped (its last checkpoint,
// if any, stays: a tree half rebuilt must not replace it).
func (c *checkpoints) write(m *view.Member) *fustorv1.CheckpointResult {
	path := c.file(m)
	res := &fustorv1.CheckpointResult{View: m.View, Member: m.Name, Path: path}
	inst, _ := m.Driver.ChangeCursor()
	if err := m.Ready(); err != nil {
		res.Skipped = err.Error()
		return res
	}
	start := time.Now()
	// A member reset meanwhile (its last session ended) has another change-log instance: its
	// empty tree must not replace the checkpoint.
	info, err := c.writeFile(m, path, func(info view.CheckpointInfo) bool { return info.Instance == inst && m.Ready() == nil })
	if errors.Is(err, errReset) {
		res.Skipped = "reset while its checkpoint was taken"
		return res
	}
	res.DurationMs = float64(time.Since(start).Microseconds()) / 1e3
	res.EncodeMs = float64(info.Encode.Microseconds()) / 1e3
	log := c.log.With(zap.String("view", m.View), zap.String("member", m.Name), zap.String("path", path))
	if err != nil {
		c.failed.Add(1)
		res.Error = err.Error()
		log.Error("checkpoint failed", zap.Error(err))
		return res
	}
	c.written.Add(1)
	for {
		old := c.maxEncodeNs.Load()
		if int64(info.Encode) <= old || c.maxEncodeNs.CompareAndSwap(old, int64(info.Encode)) {
			break
		}
	}
	res.Nodes, res.Bytes = uint64(info.Nodes), uint64(info.Bytes)
	log.Debug("checkpoint written", zap.Int("nodes", info.Nodes), zap.Int("bytes", info.Bytes),
		zap.Duration("took", time.Since(start)), zap.Duration("encode", info.Encode))
	return res
}

// writeFile writes the member's checkpoint atomically: temp file, fsync, rename, fsync dir.
func (c *checkpoints) writeFile(m *view.Member, path string, keep func(view.CheckpointInfo) bool) (view.CheckpointInfo, error) {
	var info view.CheckpointInfo
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		return info, fmt.Errorf("create state dir: %w", err)
	}
	tmp, err := os.CreateTemp(c.dir, filepath.Base(path)+".tmp-*")
	if err != nil {
		return info, fmt.Errorf("create checkpoint: %w", err)
	}
	done := false
	defer func() {
		if !done {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	bw := bufio.NewWriterSize(tmp, 1<<20)
	if info, err = m.Driver.WriteCheckpoint(bw); err != nil {
		return info, err
	}
	if err := bw.Flush(); err != nil {
		return info, fmt.Errorf("write checkpoint: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return info, fmt.Errorf("sync checkpoint: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return info, fmt.Errorf("close checkpoint: %w", err)
	}
	if !keep(info) {
		return info, errReset
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return info, fmt.Errorf("rename checkpoint: %w", err)
	}
	done = true
	d, err := os.Open(c.dir)
	if err != nil {
		return info, fmt.Errorf("open state dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return info, fmt.Errorf("sync state dir: %w", err)
	}
	return info, nil
}

// run checkpoints every member periodically until ctx is done.
func (c *checkpoints) run(ctx context.Context, views func() []*view.View) error {
	if c.every <= 0 {
		return nil
	}
	t := time.NewTicker(c.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			c.all(views(), "")
		}
	}
}

// Checkpoint writes the checkpoints of view ("" = all) now (AdminService.Checkpoint).
func (f *Fusion) Checkpoint(_ context.Context, v string) (*fustorv1.CheckpointResponse, error) {
	return f.ckpt.all(f.views.All(), v), nil
}
