package bench

import (
	"bufio"
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// The baselines run the real find(1): what a person would run without Fustor. Each timing
// includes starting the process, as it does for that person.

// snapshotFindArgs prints the fields a snapshot row carries: path, type, size, mtime.
func snapshotFindArgs(root string) []string {
	return []string{root, "-printf", `%P|%y|%s|%T@\n`}
}

// countTree counts the regular files and the directories below root as find sees them,
// leaving out the bench's marker file; it also warms the page cache for what follows.
func countTree(ctx context.Context, root string) (files, dirs int, err error) {
	cmd := exec.CommandContext(ctx, "find", root, "-mindepth", "1", "-printf", `%y %P\n`)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, 0, fmt.Errorf("count tree: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return 0, 0, fmt.Errorf("count tree: %w", err)
	}
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		typ, rel, _ := strings.Cut(sc.Text(), " ")
		switch {
		case rel == MarkerName:
		case typ == "f":
			files++
		case typ == "d":
			dirs++
		}
	}
	if err := cmd.Wait(); err != nil {
		return 0, 0, fmt.Errorf("count tree: find: %w", err)
	}
	return files, dirs, nil
}

// timeFind runs find with args, output to /dev/null, once to warm the cache and then runs
// times, and returns the best (the fairest to find: least disturbed by other work). With runs
// 0 it runs find once, unwarmed, and returns that time (for a cache already warm).
func timeFind(ctx context.Context, runs int, args ...string) (time.Duration, error) {
	var best time.Duration
	for i := range runs + 1 {
		start := time.Now()
		if err := exec.CommandContext(ctx, "find", args...).Run(); err != nil {
			return 0, fmt.Errorf("run find %s: %w", strings.Join(args, " "), err)
		}
		if d := time.Since(start); runs == 0 || i == 1 || (i > 1 && d < best) {
			best = d
		}
	}
	return best, nil
}

// timeFindLines is timeFind for answers that must be read: it reads find's output until
// limit lines (0 = all) and stops find there, as Fusion stops at a query's limit; reduce
// is given each line (e.g. to sum sizes), so the work of using the output is counted too.
func timeFindLines(ctx context.Context, runs, limit int, reduce func(string), args ...string) (time.Duration, error) {
	var best time.Duration
	for i := range runs + 1 {
		start := time.Now()
		cctx, cancel := context.WithCancel(ctx)
		cmd := exec.CommandContext(cctx, "find", args...)
		out, err := cmd.StdoutPipe()
		if err != nil {
			cancel()
			return 0, fmt.Errorf("run find: %w", err)
		}
		if err := cmd.Start(); err != nil {
			cancel()
			return 0, fmt.Errorf("run find: %w", err)
		}
		sc := bufio.NewScanner(out)
		n := 0
		for sc.Scan() {
			if reduce != nil {
				reduce(sc.Text())
			}
			if n++; limit > 0 && n >= limit {
				break
			}
		}
		d := time.Since(start)
		stopped := limit > 0 && n >= limit
		if stopped {
			cancel() // kills find: the answer is complete at the limit
		}
		werr := cmd.Wait()
		cancel()
		if werr != nil && !stopped {
			return 0, fmt.Errorf("run find %s: %w", strings.Join(args, " "), werr)
		}
		if i == 1 || (i > 1 && d < best) {
			best = d
		}
	}
	return best, nil
}

// sumSizes returns a reducer adding up find -printf '%s\n' lines into total.
func sumSizes(total *uint64) func(string) {
	return func(line string) {
		v, _ := strconv.ParseUint(line, 10, 64)
		*total += v
	}
}
