package app

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/fustor/fustor/fusion/internal/pipe"
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
			info, err = m.Checkpointer().LoadCheckpoint(data)
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

// all checkpoints every member of views (only the one named, when set), then the committed
// index of every pipe whose members were all written: read before them, it is never ahead of
// what they hold (a replayable source resumes from it after a restart of Fusion).
func (c *checkpoints) all(views []*view.View, pipes []*pipe.Pipe, only string) *fustorv1.CheckpointResponse {
	c.mu.Lock()
	defer c.mu.Unlock()
	committed := map[string]uint64{}
	for _, p := range pipes {
		committed[p.ID] = p.Committed()
	}
	out := &fustorv1.CheckpointResponse{}
	written := map[*view.Member]bool{}
	for _, v := range views {
		if only != "" && v.Name != only {
			continue
		}
		for _, m := range v.Members() {
			res := c.write(m)
			written[m] = res.GetError() == "" && res.GetSkipped() == ""
			out.Checkpoints = append(out.Checkpoints, res)
		}
	}
	if only != "" {
		return out // a partial pass says nothing of the other views' pipes
	}
	st := pipeState{Version: pipeStateVersion, Committed: map[string]uint64{}}
	for _, p := range pipes {
		all := len(p.Members) > 0
		for _, m := range p.Members {
			all = all && written[m]
		}
		if all {
			st.Committed[p.ID] = committed[p.ID]
		}
	}
	if err := c.writePipes(st); err != nil {
		c.failed.Add(1)
		c.log.Error("checkpoint of the pipes' committed indexes failed", zap.Error(err))
	}
	return out
}

// pipeState is pipes.json: each pipe's committed index when its views were last checkpointed.
type pipeState struct {
	Version   int               `json:"version"`
	Committed map[string]uint64 `json:"committed"`
}

const pipeStateVersion = 1

func (c *checkpoints) pipesFile() string { return filepath.Join(c.dir, "pipes.json") }

func (c *checkpoints) writePipes(st pipeState) error {
	data, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encode pipes state: %w", err)
	}
	return c.atomicWrite(c.pipesFile(), func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// restorePipes sets the committed index of each pipe whose members were all restored.
func (c *checkpoints) restorePipes(pipes []*pipe.Pipe) {
	data, err := os.ReadFile(c.pipesFile())
	if os.IsNotExist(err) {
		return
	}
	var st pipeState
	if err == nil {
		err = json.Unmarshal(data, &st)
	}
	if err == nil && st.Version != pipeStateVersion {
		err = fmt.Errorf("format version %d, this build reads %d", st.Version, pipeStateVersion)
	}
	if err != nil {
		c.refused.Add(1)
		aside := fmt.Sprintf("%s.refused-%s", c.pipesFile(), c.now().UTC().Format("20060102T150405Z"))
		_ = os.Rename(c.pipesFile(), aside)
		c.log.Warn("pipes state refused: sources resume from a snapshot", zap.Error(err), zap.String("moved_to", aside))
		return
	}
	for _, p := range pipes {
		idx, ok := st.Committed[p.ID]
		all := ok && len(p.Members) > 0
		for _, m := range p.Members {
			all = all && !m.State().RestoredAt.IsZero()
		}
		if all {
			p.RestoreCommitted(idx)
			c.log.Info("pipe resumes from its restored committed index", zap.String("pipe", p.ID), zap.Uint64("committed_index", idx))
		}
	}
}

// write checkpoints one member; a member that cannot answer is skipped (its last checkpoint,
// if any, stays: a tree half rebuilt must not replace it).
func (c *checkpoints) write(m *view.Member) *fustorv1.CheckpointResult {
	path := c.file(m)
	res := &fustorv1.CheckpointResult{View: m.View, Member: m.Name, Path: path}
	inst := m.Instance()
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

// writeFile writes the member's checkpoint atomically; keep says, once it is encoded,
// whether it may replace the last one.
func (c *checkpoints) writeFile(m *view.Member, path string, keep func(view.CheckpointInfo) bool) (view.CheckpointInfo, error) {
	var info view.CheckpointInfo
	err := c.atomicWrite(path, func(w io.Writer) error {
		var err error
		if info, err = m.Checkpointer().WriteCheckpoint(w); err != nil {
			return err
		}
		if !keep(info) {
			return errReset
		}
		return nil
	})
	return info, err
}

// atomicWrite writes path through write: a temp file in the same directory, fsync, rename
// over path, fsync of the directory. On an error the temp file goes and path is untouched.
func (c *checkpoints) atomicWrite(path string, write func(io.Writer) error) error {
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		return fmt.Errorf("create state dir: %w", err)
	}
	tmp, err := os.CreateTemp(c.dir, filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("create %s: %w", filepath.Base(path), err)
	}
	done := false
	defer func() {
		if !done {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	bw := bufio.NewWriterSize(tmp, 1<<20)
	if err := write(bw); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", filepath.Base(path), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close %s: %w", filepath.Base(path), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("rename %s: %w", filepath.Base(path), err)
	}
	done = true
	d, err := os.Open(c.dir)
	if err != nil {
		return fmt.Errorf("open state dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync state dir: %w", err)
	}
	return nil
}

// run checkpoints every member periodically until ctx is done.
func (c *checkpoints) run(ctx context.Context, views func() []*view.View, pipes func() []*pipe.Pipe) error {
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
			c.all(views(), pipes(), "")
		}
	}
}

// Checkpoint writes the checkpoints of view ("" = all) now (AdminService.Checkpoint).
func (f *Fusion) Checkpoint(_ context.Context, v string) (*fustorv1.CheckpointResponse, error) {
	return f.ckpt.all(f.views.All(), f.rt.pipeList(), v), nil
}
