// Package bench is fustor-bench: it generates (or reuses) a tree of N files laid out like a
// submission store, runs the real fustor-fusion and fustor-agent binaries on it, measures
// snapshot time, ingest rate, memory, query and realtime latency, wire bytes and the agent's
// walks against find(1) on the same tree in the same run, and writes report.txt, report.json
// and report.html.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// Phases, in the order they run. The tree phase (snapshot: P1, P3, P6 and the agent's walk)
// runs whenever any of audit, verify, queries or realtime is asked for, as they need its loaded view.
var allPhases = []string{"snapshot", "audit", "verify", "queries", "realtime", "ingest"}

// forestPhase runs after them, only with --forest N: N agents on the tree into one forest view.
// "all" includes it when --forest is set.
const forestPhase = "forest"

// Options are fustor-bench's flags.
type Options struct {
	Dir            string
	Out            string
	Bin            string
	Files          int
	Phases         []string
	IngestDuration time.Duration
	Clients        int
	Queries        int
	// Load is the paced P4 rate as a fraction of each kind's back-to-back throughput.
	Load          float64
	PacedFor      time.Duration
	RealtimeFiles int
	AuditInterval time.Duration
	// AuditShare is the agent's audit_rolling_share (0 = pure true silence).
	AuditShare float64
	FindRuns   int
	Keep       bool
	// Forest is the number of agents (members) of the forest phase; 0 = no forest phase.
	Forest int
	// Scale is the number of synthetic paths of the scale phase (measured beside ScaleRef);
	// 0 = no scale phase.
	Scale int
	// Command is the command line, printed in the report.
	Command string
	// Stderr receives progress and log lines; TTY selects the one-line progress display.
	Stderr io.Writer
	TTY    bool
}

// DefaultOptions are the flags' defaults.
func DefaultOptions() Options {
	return Options{Dir: "./bench-data/tree", Out: "./bench-out", Bin: "./bin", Files: 1_000_000,
		Phases: allPhases, IngestDuration: 10 * time.Second, Clients: 20, Queries: 2000, Load: 0.25, PacedFor: 10 * time.Second, RealtimeFiles: 1000,
		AuditInterval: 15 * time.Second, AuditShare: 0.5, FindRuns: 3, Stderr: io.Discard}
}

const usage = `fustor-bench: the end-to-end benchmark of Fustor with the real binaries.

Usage: fustor-bench [flags]

Generates (or reuses) a tree of --files files laid out like
upload/submit/aa/bb/<uuid>/sub_k/data_NNNN.dat (1,000 files per submission: 4 x 250),
starts fustor-fusion and fustor-agent from --bin on it, measures, and writes report.txt,
report.json and report.html into --out/<timestamp>/.

It refuses to write into a non-empty --dir it did not create (exit 2).

Flags:
`

// Main runs fustor-bench with command-line args and returns the exit code: 0 done (targets
// may have failed: see the report), 1 a phase or the run failed, 2 usage or a foreign --dir.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer, tty bool) int {
	o := DefaultOptions()
	fs := pflag.NewFlagSet("fustor-bench", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage+fs.FlagUsages()) }
	phases := strings.Join(allPhases, ",")
	fs.StringVar(&o.Dir, "dir", o.Dir, "tree directory (created; reused when it holds the same N)")
	fs.StringVar(&o.Out, "out", o.Out, "report directory; each run writes a <timestamp> directory in it")
	fs.StringVar(&o.Bin, "bin", o.Bin, "directory holding fustor-fusion and fustor-agent (make build)")
	fs.IntVar(&o.Files, "files", o.Files, "N, the number of files in the tree (1,000 per submission)")
	fs.StringVar(&phases, "phases", "all", "comma-separated phases: all or "+phases+","+forestPhase+","+scalePhase+" (forest needs --forest N, scale --scale N; all includes them then)")
	fs.DurationVar(&o.IngestDuration, "ingest-duration", o.IngestDuration, "how long P2 pushes rows")
	fs.IntVar(&o.Clients, "clients", o.Clients, "concurrent query clients (P4)")
	fs.IntVar(&o.Queries, "queries", o.Queries, "measured queries per kind, clients back to back (P4)")
	fs.Float64Var(&o.Load, "load", o.Load, "paced P4 rate, as a fraction of each kind's back-to-back throughput (0 < load <= 1)")
	fs.DurationVar(&o.PacedFor, "paced-for", o.PacedFor, "how long each paced P4 run lasts")
	fs.IntVar(&o.RealtimeFiles, "realtime-files", o.RealtimeFiles, "files written for the realtime latency (P5)")
	fs.DurationVar(&o.AuditInterval, "audit-interval", o.AuditInterval, "the agent's audit interval (three audits are awaited: full, unchanged, deep)")
	fs.Float64Var(&o.AuditShare, "audit-share", o.AuditShare, "the agent's audit_rolling_share: the part of silent directories each audit re-lists (0 = pure true silence)")
	fs.IntVar(&o.FindRuns, "find-runs", o.FindRuns, "timed runs of each find baseline, after one warm-up (best is reported)")
	fs.BoolVar(&o.Keep, "keep", false, "keep the daemons' configs and logs in the report directory")
	fs.IntVar(&o.Forest, "forest", 0, "N > 0 adds the forest phase (F): N agents on the same tree (one storage mounted N times), N pipes into a forest view of N members, member-1's pipe also feeding an fs view; 0 = off")
	fs.IntVar(&o.Scale, "scale", 0, "N > 0 adds the scale phase (S): a synthetic N-path tree of the layout (nothing on disk) pushed into one Fusion, measured beside 1M; 0 = off")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "fustor-bench: unexpected arguments %q\n", fs.Args())
		return 2
	}
	if phases != "all" {
		o.Phases = nil
		for p := range strings.SplitSeq(phases, ",") {
			if p = strings.TrimSpace(p); !slices.Contains(allPhases, p) && p != forestPhase && p != scalePhase {
				fmt.Fprintf(stderr, "fustor-bench: unknown phase %q (want all or %s,%s,%s)\n", p, strings.Join(allPhases, ","), forestPhase, scalePhase)
				return 2
			}
			o.Phases = append(o.Phases, p)
		}
	} else {
		o.Phases = slices.Clone(o.Phases)
		if o.Forest > 0 {
			o.Phases = append(o.Phases, forestPhase)
		}
		if o.Scale > 0 {
			o.Phases = append(o.Phases, scalePhase)
		}
	}
	o.Command = "fustor-bench " + strings.Join(args, " ")
	o.Stderr, o.TTY = stderr, tty
	rep, dir, err := Run(ctx, o)
	if errors.Is(err, ErrForeignDir) || errors.Is(err, errUsage) {
		fmt.Fprintf(stderr, "fustor-bench: %v\n", err)
		return 2
	}
	if rep != nil {
		_ = rep.WriteText(stdout)
		fmt.Fprintf(stdout, "\nreport: %s\n", filepath.Join(dir, "report.html"))
	}
	if err != nil {
		fmt.Fprintf(stderr, "fustor-bench: %v\n", err)
		return 1
	}
	if len(rep.Errors) > 0 {
		return 1
	}
	return 0
}

var errUsage = errors.New("usage")

// Run runs the phases of o and writes the report into a new directory under o.Out, which it
// returns. A phase that fails is recorded in Report.Errors and the others still run; the
// error is for failures that leave no report (bad options, a foreign --dir, Ctrl-C).
func Run(ctx context.Context, o Options) (*Report, string, error) {
	if o.Files <= 0 || o.Clients <= 0 || o.Queries <= 0 || o.RealtimeFiles < 0 || o.FindRuns <= 0 || o.AuditInterval <= 0 || o.AuditShare < 0 || o.AuditShare > 1 ||
		o.Load <= 0 || o.Load > 1 || o.PacedFor <= 0 {
		return nil, "", fmt.Errorf("check options: %w: --files, --clients, --queries, --find-runs, --audit-interval and --paced-for must be positive, --load and --audit-share in (0, 1] and [0, 1]", errUsage)
	}
	if o.Forest < 0 || (o.Forest == 0 && slices.Contains(o.Phases, forestPhase)) {
		return nil, "", fmt.Errorf("check options: %w: the forest phase needs --forest N with N > 0", errUsage)
	}
	if o.Scale < 0 || (o.Scale == 0 && slices.Contains(o.Phases, scalePhase)) {
		return nil, "", fmt.Errorf("check options: %w: the scale phase needs --scale N with N > 0", errUsage)
	}
	if o.Stderr == nil {
		o.Stderr = io.Discard
	}
	r := &runner{o: o, prog: NewProgress(o.Stderr, o.TTY)}
	for _, name := range []string{"fustor-fusion", "fustor-agent"} {
		if st, err := os.Stat(filepath.Join(o.Bin, name)); err != nil || st.IsDir() {
			return nil, "", fmt.Errorf("find %s in --bin %s (run make build): %w", name, o.Bin, errUsage)
		}
	}
	var err error
	if r.o.Bin, err = filepath.Abs(o.Bin); err != nil {
		return nil, "", fmt.Errorf("resolve --bin: %w", err)
	}
	if r.o.Dir, err = filepath.Abs(o.Dir); err != nil {
		return nil, "", fmt.Errorf("resolve --dir: %w", err)
	}
	if r.out, err = newRunDir(o.Out); err != nil {
		return nil, "", err
	}
	r.logs = filepath.Join(r.out, "logs")
	if err := os.MkdirAll(r.logs, 0o755); err != nil {
		return nil, "", fmt.Errorf("create report directory: %w", err)
	}
	r.rep = &Report{Title: "fustor-bench report", Date: time.Now().Format(time.RFC3339), Command: o.Command,
		Machine: DescribeMachine()}
	err = r.run(ctx)
	if errors.Is(err, ErrForeignDir) {
		// Nothing was measured or written: leave no report directory behind either.
		_ = os.RemoveAll(r.out)
		return nil, "", err
	}
	// A partial report (Ctrl-C, a failed step) is still written: it says what was measured.
	if werr := r.rep.WriteFiles(r.out); werr != nil && err == nil {
		err = werr
	}
	if !o.Keep && err == nil && len(r.rep.Errors) == 0 {
		_ = os.RemoveAll(r.logs)
	}
	return r.rep, r.out, err
}

// newRunDir creates out/<timestamp>, with a suffix when a run in the same second has it.
func newRunDir(out string) (string, error) {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return "", fmt.Errorf("create report directory: %w", err)
	}
	base := filepath.Join(out, time.Now().Format("20060102-150405"))
	for i := 1; ; i++ {
		dir := base
		if i > 1 {
			dir = fmt.Sprintf("%s-%d", base, i)
		}
		err := os.Mkdir(dir, 0o755)
		if err == nil {
			return dir, nil
		}
		if !errors.Is(err, os.ErrExist) {
			return "", fmt.Errorf("create report directory: %w", err)
		}
	}
}

// runner holds one run's state.
type runner struct {
	o          Options
	prog       *Progress
	out, logs  string
	rep        *Report
	tree       *Tree
	findSnapMs float64
}

func (r *runner) want(phase string) bool { return slices.Contains(r.o.Phases, phase) }

func (r *runner) fail(phase string, err error) {
	r.rep.Errors = append(r.rep.Errors, fmt.Sprintf("%s: %v", phase, err))
	r.prog.Logf("phase %s failed: %v", phase, err)
}

func (r *runner) run(ctx context.Context) error {
	if err := r.runTree(ctx); err != nil {
		return err
	}
	if r.o.Scale > 0 && r.want(scalePhase) {
		if err := r.scale(ctx); err != nil {
			if ctx.Err() != nil {
				return err
			}
			r.fail(scalePhase, err)
		}
	}
	r.rep.Notes = append(r.rep.Notes, notes(r.o)...)
	return ctx.Err()
}

// runTree runs the phases that need the tree on disk (or a Fusion of their own: ingest).
func (r *runner) runTree(ctx context.Context) error {
	onDisk := slices.ContainsFunc(r.o.Phases, func(p string) bool { return p != scalePhase })
	if !onDisk {
		return nil
	}
	start := time.Now()
	r.prog.Logf("tree %s, %s files", r.o.Dir, commas(int64(r.o.Files)))
	t, err := Prepare(ctx, r.o.Dir, r.o.Files, r.prog)
	if err != nil {
		return err
	}
	r.tree = t
	r.rep.Tree = TreeInfo{Root: t.Root, Files: t.Files, Dirs: t.Dirs, Layout: LayoutName, Reused: t.Reused}
	if t.Reused {
		r.prog.Logf("reusing the tree at %s (its %s says %s files)", t.Root, MarkerName, commas(int64(t.Files)))
	} else {
		r.rep.Tree.GenerateSecs = time.Since(start).Seconds()
		r.prog.Logf("generated %s files in %s", commas(int64(t.Files)), time.Since(start).Round(time.Second))
	}
	needTree := r.want("snapshot") || r.want("audit") || r.want("verify") || r.want("queries") || r.want("realtime")
	forest := r.o.Forest > 0 && r.want(forestPhase)
	if needTree || forest {
		// Counting with find checks the tree and warms the page cache for find and the agent
		// alike.
		cstart := time.Now()
		r.prog.Start("counting the tree with find (warms the cache)", 0, nil)
		files, dirs, err := countTree(ctx, t.Root)
		r.prog.Stop()
		if err != nil {
			return err
		}
		r.rep.Tree.FindCountSecs = time.Since(cstart).Seconds()
		if files != t.Files || dirs != t.Dirs {
			return fmt.Errorf("check tree %s: find counts %d files and %d directories, the layout has %d and %d; delete the directory to regenerate it",
				t.Root, files, dirs, t.Files, t.Dirs)
		}
		if needTree {
			if err := r.treePhases(ctx); err != nil {
				if ctx.Err() != nil {
					return err
				}
				r.fail("snapshot", err)
			}
		}
	}
	if r.want("ingest") {
		if err := r.ingest(ctx); err != nil {
			if ctx.Err() != nil {
				return err
			}
			r.fail("ingest", err)
		}
	}
	if forest {
		if err := r.forest(ctx); err != nil {
			if ctx.Err() != nil {
				return err
			}
			r.fail(forestPhase, err)
		}
	}
	return nil
}
