// Package ctl is fustorctl: a command-line client of Fusion's ViewService and AdminService.
package ctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
	"unicode"

	"github.com/spf13/pflag"
	"google.golang.org/grpc/status"

	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
	sdkclient "github.com/fustor/fustor/sdk/client"
	"github.com/fustor/fustor/sdk/dial"
	"github.com/fustor/fustor/sdk/tlsfiles"
)

const usage = `fustorctl: query Fustor's Fusion server.

Usage: fustorctl [global flags] COMMAND [ARGS] [flags]

Commands:
  views                          list the views the key may query
  ls PATH [--depth N] [--page-size N] [--all]
                                 list a directory (one page, or every page with --all; a
                                 forest asked without --member: each member's first page)
  tree PATH [--depth N] [--limit N] [--best file_count|total_size|latest_mtime]
                                 stream a whole subtree (a forest: every member's, labelled;
                                 --best: only the tree of the member best by that figure)
  stat PATH                      describe one path (a forest: one block per member)
  find PATH (--name NAME | --glob GLOB) [--limit N] [--member-limit N] [--type f|d] [--paths]
                                 find entries by basename (--paths: one path per line, or
                                 "MEMBER<TAB>PATH" lines from a forest asked without --member;
                                 --member-limit: at most N matches from each forest member)
  where NAME|GLOB [PATH] [--limit N] [--member-limit N] [--type f|d]
                                 on which storage is it? find NAME (or GLOB, if it holds one
                                 of *?[) under PATH (default /) in every forest view the key
                                 can read (or --view) and print, per member, its matches, their
                                 size, newest mtime and first path; members without a match
                                 show 0 and members not ready their reason. Exit 4 when it
                                 matched in no member
  stats [PATH] [--best file_count|total_size|latest_mtime]
                                 subtree figures (default /); a forest: a table per member and
                                 the best member by --best (default file_count)
  suspects [PATH] [--limit N]    files that may still be being written
  blind-spots [PATH] [--limit N] changes found by audits only
  verify [PATH] [--repair] [--limit N]
                                 have the leader agent walk PATH deeply and compare it with
                                 the view (query or admin key); exit 3 when they differ.
                                 --repair applies the walk; --limit bounds the examples.
                                 A forest needs --member: one member is one storage
  sessions                       live agent sessions (admin key)
  pipes                          Fusion pipes (admin key)
  checkpoint [VIEW]              write the views' checkpoints now, into Fusion's state_dir
                                 (admin key; Fusion also does every checkpoint_interval)
  status [--watch]               each view's state (admin key): ready, or not and why; the
                                 leader agent; its running snapshot or audit with a progress
                                 bar on a terminal, rate and ETA once a total is known (the
                                 last walk's, else the view's nodes); --watch redraws while a
                                 walk runs or a view with an agent is not ready yet; a
                                 forest: one line per member
  watch PATH [--since CURSOR] [--glob GLOB]
                                 stream the changes under PATH as they are applied, from
                                 CURSOR or from now, one line each: SEQ KIND SOURCE TYPE SIZE
                                 MTIME FLAGS [MEMBER] PATH (--json: one object a line). Resets
                                 (fresh instance, cursor lost, lagged) are told on stderr with
                                 the cursor going on; ctrl-C ends it (exit 0) and prints the
                                 cursor to resume from. No deadline unless --timeout is given
  changes [PATH] --since CURSOR [--glob GLOB] [--limit N] [--all]
                                 the changes since CURSOR (default PATH /), one page of --limit
                                 (server default 1000) or every page with --all, then
                                 "cursor: C" to go on from; --since now: no changes, the
                                 current cursor
  rows [VIEW] [--prefix P] [--where FIELD=VALUE] [--limit N] [--all]
                                 a rows view's rows (driver rows: a database table's), in key
                                 order: those whose key starts with P, whose FIELD equals
                                 VALUE; at most N (default 1000) or every one with --all:
                                 KEY INDEX ORIGIN FIELDS (name=value ...)
  row [VIEW] KEY                 one row of a rows view: its index, origin, time applied and
                                 fields; exit 1 (NOT_FOUND) when the view holds none
  wait-stable PATH [--quiet D] [--min-files N] [--timeout D]
                                 wait until PATH holds no suspect file and has had no change
                                 for --quiet (default: the view's hot threshold), and with
                                 --min-files holds at least N files; exit 0 stable, 1 not by
                                 --timeout (default 10m), with the reason and the suspects

Global flags:
  --server ADDR      Fusion address, or several replicas' separated by commas (queries go to
                     the healthy ones and fail over; default 127.0.0.1:7070, env FUSTOR_SERVER)
  --key KEY          API key (env FUSTOR_KEY)
  --key-file PATH    read the API key from PATH (trailing newline trimmed); --key wins over
                     it, it wins over FUSTOR_KEY
  --view VIEW        view to query (env FUSTOR_VIEW; default: the only view the key can read)
  --member NAME      ask one member (storage) of a forest view alone (env FUSTOR_MEMBER);
                     without it a forest's members answer together, each part labelled
  --timeout D        per-call timeout (default 10s; verify, wait-stable: 10m; watch: none)
  --json             print one JSON document
  --force-real-time  ask the leader agent to re-scan the path first
  --tls              use TLS, verifying Fusion with the system roots
  --ca-file PATH     use TLS, verifying Fusion with this PEM CA bundle (env FUSTOR_CA_FILE)
  --cert PATH        use TLS and present this client certificate (mutual TLS; env FUSTOR_CERT)
  --cert-key PATH    the client certificate's private key (env FUSTOR_CERT_KEY); --key is
                     the API key
  --server-name NAME use TLS; the name Fusion's certificate must carry (default: the host of
                     --server; env FUSTOR_SERVER_NAME)

Members that are not ready (no agent, snapshot running) are always listed with the reason:
an answer without them is not an answer about their storage.

Exit codes: 0 ok, 1 error (RPC, server) or wait-stable not stable, 2 usage, 3 verify
found differences, 4 where matched in no member.

Examples:
  fustorctl --key demo-key stats /
  fustorctl --key demo-key ls /upload --depth 2
  fustorctl --key demo-key find / --glob '*.dat' --json
  fustorctl --key demo-key where data_0001.dat
  fustorctl --key demo-key --view all stats /upload --best total_size
  fustorctl --key demo-key --view all --member storage-1 ls /upload --all
  fustorctl --key demo-key watch /upload --glob '*.dat' --json
  fustorctl --key demo-key wait-stable /upload/sub-1 --quiet 30s && start-processing
  fustorctl --key demo-key rows submissions --prefix 2026/ --where state=open --limit 20
  fustorctl --key demo-key row submissions 2026/0042
`

// errUsage marks command-line mistakes (exit 2).
var errUsage = errors.New("usage")

type options struct {
	server, key, view, typ, name, glob string
	tlsFiles                           tlsfiles.Client
	member, best                       string
	timeout                            time.Duration
	json, force, tls, all, paths       bool
	repair, timeoutSet, watch          bool
	depth, pageSize, limit             int
	memberLimit                        int
	since                              string
	prefix, where                      string
	quiet                              time.Duration
	minFiles                           int
}

// Run executes one fustorctl call and returns the exit code: 0 ok, 1 RPC error, 2 usage,
// 3 verify found differences, 4 where matched in no member.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	fs := pflag.NewFlagSet("fustorctl", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.SetInterspersed(true)
	var o options
	fs.StringVar(&o.server, "server", envOr(getenv, "FUSTOR_SERVER", "127.0.0.1:7070"), "")
	fs.StringVar(&o.key, "key", "", "")
	keyFile := fs.String("key-file", "", "")
	fs.StringVar(&o.view, "view", getenv("FUSTOR_VIEW"), "")
	fs.StringVar(&o.member, "member", getenv("FUSTOR_MEMBER"), "")
	fs.StringVar(&o.best, "best", "", "")
	fs.IntVar(&o.memberLimit, "member-limit", 0, "")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "")
	fs.BoolVar(&o.json, "json", false, "")
	fs.BoolVar(&o.force, "force-real-time", false, "")
	fs.BoolVar(&o.tls, "tls", false, "")
	fs.StringVar(&o.tlsFiles.CAFile, "ca-file", getenv("FUSTOR_CA_FILE"), "")
	fs.StringVar(&o.tlsFiles.CertFile, "cert", getenv("FUSTOR_CERT"), "")
	fs.StringVar(&o.tlsFiles.KeyFile, "cert-key", getenv("FUSTOR_CERT_KEY"), "")
	fs.StringVar(&o.tlsFiles.ServerName, "server-name", getenv("FUSTOR_SERVER_NAME"), "")
	fs.BoolVar(&o.all, "all", false, "")
	fs.BoolVar(&o.paths, "paths", false, "")
	fs.IntVar(&o.depth, "depth", 0, "")
	fs.IntVar(&o.pageSize, "page-size", 0, "")
	fs.IntVar(&o.limit, "limit", 0, "")
	fs.StringVar(&o.typ, "type", "", "")
	fs.StringVar(&o.name, "name", "", "")
	fs.StringVar(&o.glob, "glob", "", "")
	fs.BoolVar(&o.repair, "repair", false, "")
	fs.BoolVar(&o.watch, "watch", false, "")
	fs.StringVar(&o.since, "since", "", "")
	fs.StringVar(&o.prefix, "prefix", "", "")
	fs.StringVar(&o.where, "where", "", "")
	fs.DurationVar(&o.quiet, "quiet", 0, "")
	fs.IntVar(&o.minFiles, "min-files", 0, "")
	help := fs.BoolP("help", "h", false, "")
	if err := fs.Parse(args); err != nil {
		fmt.Fprintf(stderr, "fustorctl: %v\n\n%s", err, usage)
		return 2
	}
	o.timeoutSet = fs.Changed("timeout")
	if err := o.readKey(*keyFile, getenv); err != nil {
		fmt.Fprintf(stderr, "fustorctl: %v\n", err)
		return 2
	}
	rest := fs.Args()
	if *help || len(rest) == 0 || rest[0] == "help" {
		fmt.Fprint(stdout, usage)
		if len(rest) == 0 && !*help {
			return 2
		}
		return 0
	}
	c := &client{o: o, out: stdout, errOut: stderr}
	err := c.run(ctx, rest[0], rest[1:])
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errDiffer):
		return 3
	case errors.Is(err, errNowhere):
		fmt.Fprintf(stderr, "fustorctl: %v\n", err)
		return 4
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "fustorctl: %v\n", err)
		return 2
	}
	if st, ok := status.FromError(err); ok {
		fmt.Fprintf(stderr, "fustorctl: %s: %s\n", st.Code(), st.Message())
	} else {
		fmt.Fprintf(stderr, "fustorctl: %v\n", err)
	}
	return 1
}

// readKey sets the key from, in this order, --key, --key-file and FUSTOR_KEY: a key file keeps
// the key out of the process list and the shell's history. The file's trailing newline is not
// part of the key.
func (o *options) readKey(keyFile string, getenv func(string) string) error {
	switch {
	case o.key != "":
	case keyFile != "":
		b, err := os.ReadFile(keyFile)
		if err != nil {
			return fmt.Errorf("read --key-file: %w", err)
		}
		if o.key = strings.TrimRightFunc(string(b), unicode.IsSpace); o.key == "" {
			return fmt.Errorf("--key-file %s is empty", keyFile)
		}
	default:
		o.key = getenv("FUSTOR_KEY")
	}
	return nil
}

func envOr(getenv func(string) string, k, def string) string {
	if v := getenv(k); v != "" {
		return v
	}
	return def
}

type client struct {
	o      options
	out    io.Writer
	errOut io.Writer
	// api is the connection: every call goes through sdk/client.
	api *sdkclient.Client
	// bestBy is --best parsed.
	bestBy fustorv1.StatsBest
	// listed holds ListViews' answer once asked (resolveView, driver), so it is asked once.
	listed []*fustorv1.ViewInfo
	asked  bool
}

func (c *client) dial() error {
	// Any TLS file or name means TLS; --tls alone, TLS with the system roots.
	creds, err := dial.TLS{Enabled: c.o.tls, Client: c.o.tlsFiles}.Credentials(nil)
	if err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	// Several addresses are replicas: round-robin over the healthy ones, failing over. The
	// call timeout bounds each page of changes --all, whose context has no deadline.
	api, err := sdkclient.New(c.o.server, sdkclient.WithTransportCredentials(creds), sdkclient.WithKey(c.o.key),
		sdkclient.WithCallTimeout(c.o.timeout))
	if err != nil {
		return fmt.Errorf("connect to %s: %w", c.o.server, err)
	}
	c.api = api
	return nil
}

func (c *client) ctx(parent context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(parent, c.o.timeout)
}

// pathArg returns the n-th positional argument, or def.
func pathArg(args []string, def string) (string, error) {
	switch len(args) {
	case 0:
		if def == "" {
			return "", fmt.Errorf("%w: a PATH is required (e.g. /)", errUsage)
		}
		return def, nil
	case 1:
		return args[0], nil
	}
	return "", fmt.Errorf("%w: unexpected arguments %s", errUsage, strings.Join(args[1:], " "))
}

func (c *client) run(parent context.Context, cmd string, args []string) error {
	known := map[string]bool{"views": true, "ls": true, "tree": true, "stat": true, "find": true, "stats": true,
		"suspects": true, "blind-spots": true, "sessions": true, "pipes": true, "verify": true, "where": true, "status": true,
		"watch": true, "changes": true, "wait-stable": true, "checkpoint": true, "rows": true, "row": true}
	if !known[cmd] {
		return fmt.Errorf("%w: unknown command %q (see fustorctl help)", errUsage, cmd)
	}
	var err error
	if c.bestBy, err = parseBest(c.o.best); err != nil {
		return err
	}
	if c.o.best != "" && cmd == "tree" && c.o.member != "" {
		return fmt.Errorf("%w: tree --best picks a member itself: drop --member or --best", errUsage)
	}
	if err := c.dial(); err != nil {
		return err
	}
	defer c.api.Close()
	if cmd == "verify" && !c.o.timeoutSet {
		c.o.timeout = 10 * time.Minute // a deep walk of millions of files takes minutes on NFS
	}
	ctx, cancel := c.ctx(parent)
	defer cancel()
	switch cmd {
	case "watch", "changes", "wait-stable":
		return c.changeCommand(parent, cmd, args) // their own deadlines: a watch has none
	case "status":
		return c.status(parent, args) // each call has its own timeout: --watch outlasts one
	case "views":
		return c.listViews(ctx)
	case "sessions":
		return c.sessions(ctx)
	case "pipes":
		return c.pipes(ctx)
	case "checkpoint":
		return c.checkpoint(ctx, args)
	case "where":
		return c.where(ctx, args)
	case "rows", "row":
		return c.rowsCommand(ctx, cmd, args)
	}
	if err := c.resolveView(ctx); err != nil {
		return err
	}
	def := ""
	if cmd == "stats" || cmd == "suspects" || cmd == "blind-spots" || cmd == "verify" {
		def = "/"
	}
	p, err := pathArg(args, def)
	if err != nil {
		return err
	}
	switch cmd {
	case "ls":
		return c.ls(ctx, p)
	case "tree":
		return c.tree(ctx, p)
	case "stat":
		return c.stat(ctx, p)
	case "find":
		return c.find(ctx, p)
	case "stats":
		return c.stats(ctx, p)
	case "suspects":
		return c.suspects(ctx, p)
	case "verify":
		return c.verify(ctx, p)
	default:
		return c.blindSpots(ctx, p)
	}
}

// resolveView picks the only view the key can read when --view is not given.
func (c *client) resolveView(ctx context.Context) error {
	if c.o.view != "" {
		return nil
	}
	views, err := c.viewInfos(ctx)
	if err != nil {
		return err
	}
	if len(views) != 1 {
		ids := make([]string, 0, len(views))
		for _, v := range views {
			ids = append(ids, v.GetId())
		}
		return fmt.Errorf("%w: --view is required: the key can read %d views (%s)", errUsage, len(ids), strings.Join(ids, ", "))
	}
	c.o.view = views[0].GetId()
	return nil
}

// viewInfos returns the views the key can read, asking the server once per call of fustorctl.
func (c *client) viewInfos(ctx context.Context) ([]*fustorv1.ViewInfo, error) {
	if c.asked {
		return c.listed, nil
	}
	resp, err := c.api.ListViews(ctx)
	if err != nil {
		return nil, err
	}
	c.listed, c.asked = resp.GetViews(), true
	return c.listed, nil
}

// isForest tells whether the view queried is a forest (false when the key does not list it:
// the server's answer to the request itself then says why).
func (c *client) isForest(ctx context.Context) (bool, error) {
	views, err := c.viewInfos(ctx)
	if err != nil {
		return false, err
	}
	for _, v := range views {
		if v.GetId() == c.o.view {
			return v.GetDriver() == forestDriver, nil
		}
	}
	return false, nil
}

func (c *client) force() *fustorv1.ForceRealTime {
	if !c.o.force {
		return nil
	}
	return &fustorv1.ForceRealTime{Enabled: true}
}
