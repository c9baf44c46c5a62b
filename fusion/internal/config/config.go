// Package config holds Fusion's configuration (DESIGN.md §7): the server, receivers (ingest
// API keys routed to pipes), pipes (receiver → views) and views (driver, schema, query keys).
package config

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Config is Fusion's whole configuration.
type Config struct {
	Server    Server              `koanf:"server"`
	Log       Log                 `koanf:"log"`
	Receivers map[string]Receiver `koanf:"receivers"`
	Pipes     map[string]Pipe     `koanf:"pipes"`
	Views     map[string]View     `koanf:"views"`
}

// Server is the one gRPC server every service is served on.
type Server struct {
	// Listen is the gRPC listen address.
	Listen string `koanf:"listen"`
	// TLS secures the listener, and may ask clients for certificates (tls.go); plaintext when
	// its cert_file is empty.
	TLS TLS `koanf:"tls"`
	// MaxConcurrentStreams bounds the calls open at once on one client connection (0 = 1024).
	MaxConcurrentStreams int `koanf:"max_concurrent_streams"`
	// KeepaliveTime, KeepaliveTimeout and MaxConnectionIdle are the server's keepalive
	// (tls.go; 0 = 2m, 20s, 30m).
	KeepaliveTime     time.Duration `koanf:"keepalive_time"`
	KeepaliveTimeout  time.Duration `koanf:"keepalive_timeout"`
	MaxConnectionIdle time.Duration `koanf:"max_connection_idle"`
	// AdminKeys are API keys accepted by AdminService: key settings (keys.go), so a key, its
	// sha256:, env: or file:.
	AdminKeys []string `koanf:"admin_keys"`
	// ShutdownTimeout bounds the graceful stop before connections are cut.
	ShutdownTimeout time.Duration `koanf:"shutdown_timeout"`
	// MaxSessions bounds live sessions across all pipes.
	MaxSessions int `koanf:"max_sessions"`
	// MaxRecvMsgBytes bounds one incoming gRPC message.
	MaxRecvMsgBytes int `koanf:"max_recv_msg_bytes"`
	// DebugListen, when set, serves /debug/pprof/ and /debug/memstats over plain HTTP on this
	// address (keep it on loopback): profiles and heap figures for operators and benchmarks.
	DebugListen string `koanf:"debug_listen"`
	// MetricsListen, when set, serves Prometheus metrics at /metrics over plain HTTP on this
	// address. The debug endpoint serves them too.
	MetricsListen string `koanf:"metrics_listen"`
	// HTTPListen, when set, serves the JSON/HTTP gateway (/v1/..., every ViewService and
	// AdminService call, the same API keys), its OpenAPI document (/openapi.json) and the web
	// console (/) on this address: over HTTPS with server.tls's certificate when server.tls is
	// set (unless HTTPPlaintext), else plain HTTP. The gateway calls this server's own gRPC
	// listener over loopback, so every call passes the same auth, metrics and error mapping.
	HTTPListen string `koanf:"http_listen"`
	// HTTPPlaintext keeps the HTTP listener plain HTTP although server.tls is set: for a
	// listener behind a TLS-terminating proxy.
	HTTPPlaintext bool `koanf:"http_plaintext"`
	// StateDir holds the views' checkpoints (default $FUSTOR_HOME/state; FUSTOR_HOME defaults
	// to ~/.fustor): a restarted Fusion answers from them at once.
	StateDir string `koanf:"state_dir"`
	// CheckpointInterval is how often every view is checkpointed (they are also on a graceful
	// stop and on AdminService.Checkpoint); a negative value turns checkpoints off.
	CheckpointInterval time.Duration `koanf:"checkpoint_interval"`
	// PushFirstMessageTimeout bounds the wait for a push stream's first message (the one that
	// names its session); MaxPushStreamsPerKey the push streams one ingest key holds open.
	// 0 = the defaults (10s, 64).
	PushFirstMessageTimeout time.Duration `koanf:"push_first_message_timeout"`
	MaxPushStreamsPerKey    int           `koanf:"max_push_streams_per_key"`
	// MaxPathBytes, MaxPathDepth and MaxNameBytes bound an ingested row's path and name; rows
	// beyond them are rejected and counted. 0 = the defaults (4096, 1024, 1024).
	MaxPathBytes int `koanf:"max_path_bytes"`
	MaxPathDepth int `koanf:"max_path_depth"`
	MaxNameBytes int `koanf:"max_name_bytes"`
	// MaxPushDirs and MaxPushDirBytes bound one push stream's directory declarations (count,
	// bytes of names); a batch beyond ends the stream, RESOURCE_EXHAUSTED. Agents start their
	// table over at half the defaults: keep them at least that. 0 = the defaults (262,144,
	// 16 MiB).
	MaxPushDirs     int `koanf:"max_push_dirs"`
	MaxPushDirBytes int `koanf:"max_push_dir_bytes"`
	// PushIdleTimeout ends a session that has no push stream open for that long (one that
	// never pushes); MaxSessionTimeout caps the timeout an agent asks for (timeout_hint).
	// 0 = the defaults (1m, 10m). Both, and the bounds above, apply on a reload.
	PushIdleTimeout   time.Duration `koanf:"push_idle_timeout"`
	MaxSessionTimeout time.Duration `koanf:"max_session_timeout"`
}

// DefaultCheckpointInterval is server.checkpoint_interval's default.
const DefaultCheckpointInterval = 5 * time.Minute

// DefaultStateDir returns $FUSTOR_HOME/state, FUSTOR_HOME defaulting to ~/.fustor.
func DefaultStateDir() string {
	home := os.Getenv("FUSTOR_HOME")
	if home == "" {
		if h, err := os.UserHomeDir(); err == nil {
			home = filepath.Join(h, ".fustor")
		} else {
			home = ".fustor"
		}
	}
	return filepath.Join(home, "state")
}

// Log configures zap.
type Log struct {
	// Level is debug, info, warn or error.
	Level string `koanf:"level"`
	// Format is json or console.
	Format string `koanf:"format"`
}

// Receiver is a group of ingest API keys. Keys, not messages, route sessions to pipes.
type Receiver struct {
	// APIKeys maps each key to the pipe its sessions join.
	APIKeys []APIKey `koanf:"api_keys"`
}

// APIKey routes one ingest key to one pipe.
type APIKey struct {
	// Key is a key setting (keys.go): the key, its sha256:, env: or file:.
	Key string `koanf:"key"`
	// KeyFile is the file holding the key, instead of Key (the same as key: file:PATH).
	KeyFile string `koanf:"key_file"`
	Pipe    string `koanf:"pipe"`
}

// Pipe is a FusionPipe: sessions of one data stream feeding one or more views.
type Pipe struct {
	// Receiver names the receiver whose keys may open sessions on this pipe.
	Receiver string `koanf:"receiver"`
	// Schema is the event schema the pipe's sessions send ("fs", the default, or a rows
	// view's schema); every view of the pipe must accept it. Batches of another schema are
	// dropped and counted.
	Schema string `koanf:"schema"`
	// Views are the views fed by the pipe.
	Views []string `koanf:"views"`
	// SessionTimeout is the server's default session timeout; sessions get max(hint, this).
	SessionTimeout time.Duration `koanf:"session_timeout"`
	// QueueSize bounds the batches waiting to be applied; a full queue slows the streams.
	QueueSize int `koanf:"queue_size"`
	// SentinelInterval is how often suspect paths are sent to the leader to be checked
	// (0 = 5 min; negative = never).
	SentinelInterval time.Duration `koanf:"sentinel_interval"`
}

// View drivers.
const (
	// DriverFS is one tree of one storage (DESIGN.md §5.3).
	DriverFS = "fs"
	// DriverForestFS is one fs tree per member, a member per pipe feeding the view: many
	// storages in one view (DESIGN.md §6).
	DriverForestFS = "forest-fs"
	// DriverRows is a keyed row store for one schema other than fs (a database table's rows):
	// generic rows, queried by key (ViewService.GetRow, ListRows).
	DriverRows = "rows"
)

// View is a queryable state built from events.
type View struct {
	// Driver is the view kind: DriverFS (default), DriverForestFS or DriverRows.
	Driver string `koanf:"driver"`
	// Members names the members of a forest view: pipe id → label. A pipe not listed is a
	// member under its own id.
	Members map[string]string `koanf:"members"`
	// Schema is the event schema the view accepts: fs for the fs drivers (the default), any
	// other name for a rows view (required there).
	Schema string `koanf:"schema"`
	// SchemaVersion is the version of Schema a rows view accepts (0 = any); the fs drivers
	// read fs version SchemaVersionFS and leave it 0.
	SchemaVersion uint32 `koanf:"schema_version"`
	// Live views exist only in memory and reset when their last session ends.
	Live bool `koanf:"live"`
	// QueryKeys are API keys accepted by ViewService for this view: key settings (keys.go).
	QueryKeys []string `koanf:"query_keys"`
	// MaxNodes bounds the nodes the view holds (a rows view: its rows, and apart its
	// tombstones).
	MaxNodes int `koanf:"max_nodes"`
	// HotThreshold is the age below which a scanned file is suspect of being written.
	HotThreshold time.Duration `koanf:"hot_threshold"`
	// TombstoneTTL is how long realtime deletes are remembered against lagging scans.
	TombstoneTTL time.Duration `koanf:"tombstone_ttl"`
	// ChangeLogEntries and ChangeLogBytes bound each member's change log (Watch,
	// ListChanges); a change takes effect when the view is next built.
	ChangeLogEntries int `koanf:"change_log_entries"`
	ChangeLogBytes   int `koanf:"change_log_bytes"`
	// MaxWatchers bounds the watches open on the view, MaxWatchersPerKey those of one key.
	MaxWatchers       int `koanf:"max_watchers"`
	MaxWatchersPerKey int `koanf:"max_watchers_per_key"`
	// WatchMaxHold is how long a watcher may hold the changes of an open snapshot or audit
	// before it sends them (it sends at the pass's end, or at once when a realtime change
	// comes): the change feed yields to the apply loop while a bulk pass runs. <0: never hold.
	WatchMaxHold time.Duration `koanf:"watch_max_hold"`
	// MaxExpensiveQueries bounds the expensive queries (Find with a glob or a limit above
	// the default, GetTree chunks, their forest fan-outs) running on the view at once,
	// MaxExpensiveQueriesPerKey those of one key; a query beyond waits up to
	// ExpensiveQueryWait for a slot, then is refused RESOURCE_EXHAUSTED with a retry hint. The
	// bound keeps cores free for the cheap queries and ingest (BenchmarkStatUnderGlobs).
	MaxExpensiveQueries       int           `koanf:"max_expensive_queries"`
	MaxExpensiveQueriesPerKey int           `koanf:"max_expensive_queries_per_key"`
	ExpensiveQueryWait        time.Duration `koanf:"expensive_query_wait"`
	// MaxAnswerBytes bounds the bytes of one answer or streamed message (ListDirectory, Find,
	// GetTree chunks, ListSuspects, ListBlindSpots, ListChanges, Watch batches), as the entry
	// limits bound their entries; a page cut by it goes on from its page token or cursor.
	MaxAnswerBytes int `koanf:"max_answer_bytes"`
}

// Default returns a configuration with every default filled and no pipes or views.
func Default() Config {
	return Config{
		Server: Server{
			Listen:          "127.0.0.1:7070",
			ShutdownTimeout: 10 * time.Second,
			MaxSessions:     1024,
			MaxRecvMsgBytes: 16 << 20,
		},
		Log:       Log{Level: "info", Format: "console"},
		Receivers: map[string]Receiver{},
		Pipes:     map[string]Pipe{},
		Views:     map[string]View{},
	}
}

// Pipe and view defaults, applied by Normalize to entries that leave them zero.
const (
	DefaultSessionTimeout   = 30 * time.Second
	DefaultQueueSize        = 256
	DefaultSentinelInterval = 5 * time.Minute
	DefaultMaxNodes         = 100_000_000
	// MaxNodesLimit is the most nodes an fs view can index (27-bit ids; fs.MaxIndexedNodes-1,
	// checked by a test there).
	MaxNodesLimit       = 1<<27 - 3
	DefaultHotThreshold = 30 * time.Second
	DefaultTombstoneTTL = time.Hour
	// DefaultChangeLogEntries and DefaultChangeLogBytes hold at least 1M changes of typical
	// paths (BenchmarkChangeLogMemory).
	DefaultChangeLogEntries  = 1 << 20
	DefaultChangeLogBytes    = 64 << 20
	DefaultMaxWatchers       = 256
	DefaultMaxWatchersPerKey = 64
	DefaultWatchMaxHold      = time.Second
	// DefaultMaxExpensiveQueriesPerKey lets one key use two slots, so one client cannot take
	// every slot of a view with more.
	DefaultMaxExpensiveQueriesPerKey = 2
	DefaultExpensiveQueryWait        = time.Second
	// DefaultMaxAnswerBytes keeps an answer under gRPC clients' default 4 MiB receive limit
	// with room for its meta (a forest's lists every member).
	DefaultMaxAnswerBytes = 3 << 20
	// MinMaxAnswerBytes is the smallest budget: one entry of the longest path fits.
	MinMaxAnswerBytes = 16 << 10
)

// DefaultMaxExpensiveQueries is half the cores Go schedules on (at least 1): expensive
// queries are CPU-bound walks, and a core left free is one a cheap query finds at once.
func DefaultMaxExpensiveQueries() int { return max(1, runtime.GOMAXPROCS(0)/2) }

// Normalize fills per-entry defaults of pipes and views.
func (c *Config) Normalize() {
	if c.Server.StateDir == "" {
		c.Server.StateDir = DefaultStateDir()
	}
	if c.Server.CheckpointInterval == 0 {
		c.Server.CheckpointInterval = DefaultCheckpointInterval
	}
	c.Server.normalizeServerConn()
	for id, p := range c.Pipes {
		if p.SessionTimeout == 0 {
			p.SessionTimeout = DefaultSessionTimeout
		}
		if p.QueueSize == 0 {
			p.QueueSize = DefaultQueueSize
		}
		if p.SentinelInterval == 0 {
			p.SentinelInterval = DefaultSentinelInterval
		}
		if p.Schema == "" {
			p.Schema = "fs"
		}
		c.Pipes[id] = p
	}
	for id, v := range c.Views {
		if v.Driver == "" {
			v.Driver = DriverFS
		}
		if v.Schema == "" && v.Driver != DriverRows {
			v.Schema = "fs"
		}
		if v.MaxNodes == 0 {
			v.MaxNodes = DefaultMaxNodes
		}
		if v.HotThreshold == 0 {
			v.HotThreshold = DefaultHotThreshold
		}
		if v.TombstoneTTL == 0 {
			v.TombstoneTTL = DefaultTombstoneTTL
		}
		v.ChangeLogEntries = cmp.Or(v.ChangeLogEntries, DefaultChangeLogEntries)
		v.ChangeLogBytes = cmp.Or(v.ChangeLogBytes, DefaultChangeLogBytes)
		v.MaxWatchers = cmp.Or(v.MaxWatchers, DefaultMaxWatchers)
		v.MaxWatchersPerKey = cmp.Or(v.MaxWatchersPerKey, DefaultMaxWatchersPerKey)
		v.WatchMaxHold = cmp.Or(v.WatchMaxHold, DefaultWatchMaxHold)
		v.MaxExpensiveQueries = cmp.Or(v.MaxExpensiveQueries, DefaultMaxExpensiveQueries())
		v.MaxExpensiveQueriesPerKey = cmp.Or(v.MaxExpensiveQueriesPerKey, DefaultMaxExpensiveQueriesPerKey)
		v.ExpensiveQueryWait = cmp.Or(v.ExpensiveQueryWait, DefaultExpensiveQueryWait)
		v.MaxAnswerBytes = cmp.Or(v.MaxAnswerBytes, DefaultMaxAnswerBytes)
		c.Views[id] = v
	}
}

// Validate reports every inconsistency at once.
func (c *Config) Validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(c.Server.Listen); err != nil {
		errs = append(errs, fmt.Errorf("server.listen %q: %w", c.Server.Listen, err))
	}
	if c.Server.DebugListen != "" {
		if _, _, err := net.SplitHostPort(c.Server.DebugListen); err != nil {
			errs = append(errs, fmt.Errorf("server.debug_listen %q: %w", c.Server.DebugListen, err))
		}
	}
	if c.Server.MetricsListen != "" {
		if _, _, err := net.SplitHostPort(c.Server.MetricsListen); err != nil {
			errs = append(errs, fmt.Errorf("server.metrics_listen %q: %w", c.Server.MetricsListen, err))
		}
	}
	if c.Server.HTTPListen != "" {
		if _, _, err := net.SplitHostPort(c.Server.HTTPListen); err != nil {
			errs = append(errs, fmt.Errorf("server.http_listen %q: %w", c.Server.HTTPListen, err))
		}
	}
	if c.Server.ShutdownTimeout <= 0 {
		errs = append(errs, errors.New("server.shutdown_timeout must be positive"))
	}
	if c.Server.MaxSessions <= 0 {
		errs = append(errs, errors.New("server.max_sessions must be positive"))
	}
	if c.Server.MaxRecvMsgBytes < 1<<16 {
		errs = append(errs, errors.New("server.max_recv_msg_bytes must be at least 65536"))
	}
	errs = append(errs, c.Server.validateServerConn()...)
	if c.Server.MaxPushDirs < 0 || c.Server.MaxPushDirBytes < 0 {
		errs = append(errs, errors.New("server.max_push_dirs and max_push_dir_bytes must not be negative (0: the defaults)"))
	}
	if c.Server.PushIdleTimeout < 0 || c.Server.MaxSessionTimeout < 0 || c.Server.MaxSessionTimeout > 0 && c.Server.MaxSessionTimeout < time.Second {
		errs = append(errs, errors.New("server.push_idle_timeout and max_session_timeout must not be negative (0: the defaults), max_session_timeout at least 1s"))
	}
	// Key settings are resolved here, env: and file: read, so that --validate and a reload
	// refuse a key that cannot be read rather than Fusion running without it.
	_, keyErrs := c.resolveKeys()
	errs = append(errs, keyErrs...)
	for _, rid := range slices.Sorted(maps.Keys(c.Receivers)) {
		for i, k := range c.Receivers[rid].APIKeys {
			where := fmt.Sprintf("receivers.%s.api_keys[%d]", rid, i)
			p, ok := c.Pipes[k.Pipe]
			if !ok {
				errs = append(errs, fmt.Errorf("%s: unknown pipe %q", where, k.Pipe))
			} else if p.Receiver != rid {
				errs = append(errs, fmt.Errorf("%s: pipe %q belongs to receiver %q", where, k.Pipe, p.Receiver))
			}
		}
	}
	for _, pid := range slices.Sorted(maps.Keys(c.Pipes)) {
		p := c.Pipes[pid]
		if _, ok := c.Receivers[p.Receiver]; !ok {
			errs = append(errs, fmt.Errorf("pipes.%s: unknown receiver %q", pid, p.Receiver))
		}
		if len(p.Views) == 0 {
			errs = append(errs, fmt.Errorf("pipes.%s: no views", pid))
		}
		for _, v := range p.Views {
			vc, ok := c.Views[v]
			if !ok {
				errs = append(errs, fmt.Errorf("pipes.%s: unknown view %q", pid, v))
				continue
			}
			schema := cmp.Or(p.Schema, "fs")
			switch {
			case (vc.Driver == DriverFS || vc.Driver == DriverForestFS) && schema != "fs":
				errs = append(errs, fmt.Errorf("pipes.%s: schema %q cannot feed view %q: driver %s accepts schema fs only", pid, schema, v, vc.Driver))
			case vc.Driver == DriverRows && schema != vc.Schema:
				errs = append(errs, fmt.Errorf("pipes.%s: schema %q cannot feed view %q: it is a rows view of schema %q (set pipes.%s.schema: %s)", pid, schema, v, vc.Schema, pid, vc.Schema))
			}
		}
		if dup := duplicates(p.Views); len(dup) > 0 {
			errs = append(errs, fmt.Errorf("pipes.%s: views listed twice: %v", pid, dup))
		}
		if p.SessionTimeout < time.Second {
			errs = append(errs, fmt.Errorf("pipes.%s: session_timeout must be at least 1s", pid))
		}
		if p.QueueSize <= 0 {
			errs = append(errs, fmt.Errorf("pipes.%s: queue_size must be positive", pid))
		}
	}
	for _, vid := range slices.Sorted(maps.Keys(c.Views)) {
		v := c.Views[vid]
		switch v.Driver {
		case DriverFS, DriverForestFS:
			if v.Schema != "fs" {
				errs = append(errs, fmt.Errorf("views.%s: driver %s accepts schema fs, not %q", vid, v.Driver, v.Schema))
			}
			if v.SchemaVersion != 0 && v.SchemaVersion != SchemaVersionFS {
				errs = append(errs, fmt.Errorf("views.%s: driver %s reads schema fs version %d, not schema_version %d", vid, v.Driver, SchemaVersionFS, v.SchemaVersion))
			}
		case DriverRows:
			switch {
			case v.Schema == "":
				errs = append(errs, fmt.Errorf("views.%s: driver rows needs schema: the name the agents' pipe sends (e.g. submissions)", vid))
			case v.Schema == "fs":
				errs = append(errs, fmt.Errorf("views.%s: driver rows cannot take schema fs: use driver fs or forest-fs", vid))
			}
		default:
			errs = append(errs, fmt.Errorf("views.%s: unknown driver %q (want %s, %s or %s)", vid, v.Driver, DriverFS, DriverForestFS, DriverRows))
		}
		errs = append(errs, c.validateMembers(vid, v)...)
		if v.MaxNodes <= 0 || v.MaxNodes > MaxNodesLimit {
			errs = append(errs, fmt.Errorf("views.%s: max_nodes must be between 1 and %d", vid, MaxNodesLimit))
		}
		if v.HotThreshold < time.Second || v.TombstoneTTL < time.Second {
			errs = append(errs, fmt.Errorf("views.%s: hot_threshold and tombstone_ttl must be at least 1s", vid))
		}
		if v.ChangeLogEntries < 0 || v.ChangeLogBytes < 0 || v.MaxWatchers < 0 || v.MaxWatchersPerKey < 0 {
			errs = append(errs, fmt.Errorf("views.%s: change_log_entries, change_log_bytes, max_watchers and max_watchers_per_key cannot be negative", vid))
		}
		if v.MaxExpensiveQueries < 0 || v.MaxExpensiveQueriesPerKey < 0 || v.ExpensiveQueryWait < 0 {
			errs = append(errs, fmt.Errorf("views.%s: max_expensive_queries, max_expensive_queries_per_key and expensive_query_wait cannot be negative", vid))
		}
		if v.MaxAnswerBytes != 0 && v.MaxAnswerBytes < MinMaxAnswerBytes {
			errs = append(errs, fmt.Errorf("views.%s: max_answer_bytes must be at least %d (one entry of the longest path)", vid, MinMaxAnswerBytes))
		}
	}
	return errors.Join(errs...)
}

// validateMembers checks a view's member labels: only forest views have them, each names a
// pipe feeding the view, and member names (labels, or pipe ids) are unique and valid.
func (c *Config) validateMembers(vid string, v View) []error {
	var errs []error
	if v.Driver != DriverForestFS {
		if len(v.Members) > 0 {
			errs = append(errs, fmt.Errorf("views.%s: members are for driver %s views only", vid, DriverForestFS))
		}
		return errs
	}
	feeding := c.PipesOf(vid)
	for _, pid := range slices.Sorted(maps.Keys(v.Members)) {
		if !slices.Contains(feeding, pid) {
			errs = append(errs, fmt.Errorf("views.%s.members.%s: pipe %q does not feed the view", vid, pid, pid))
		}
	}
	seen := map[string]string{}
	for _, pid := range feeding {
		m := c.MemberName(vid, pid)
		if m == "" || strings.ContainsAny(m, "/\x00") {
			errs = append(errs, fmt.Errorf("views.%s: member name %q of pipe %s must be non-empty, without \"/\" or NUL", vid, m, pid))
		}
		if other, dup := seen[m]; dup {
			errs = append(errs, fmt.Errorf("views.%s: pipes %s and %s are both member %q", vid, other, pid, m))
		}
		seen[m] = pid
	}
	return errs
}

// PipesOf returns the pipes feeding view, sorted.
func (c *Config) PipesOf(view string) []string {
	var out []string
	for pid, p := range c.Pipes {
		if slices.Contains(p.Views, view) {
			out = append(out, pid)
		}
	}
	slices.Sort(out)
	return out
}

// MemberName returns the member a pipe is in a forest view: its label, or the pipe id.
func (c *Config) MemberName(view, pipe string) string {
	if l, ok := c.Views[view].Members[pipe]; ok {
		return l
	}
	return pipe
}

func duplicates(xs []string) []string {
	seen := map[string]bool{}
	var dup []string
	for _, x := range xs {
		if seen[x] {
			dup = append(dup, x)
		}
		seen[x] = true
	}
	return dup
}

// SchemaVersionFS is the version of the fs schema the fs and forest-fs drivers read.
const SchemaVersionFS = 1

// AcceptsSchema reports why a view of this configuration cannot take events of the schema
// name at version (0 = unspecified, taken as 1: agents from before versions were checked), or
// nil when it can. The fs drivers read fs, version SchemaVersionFS; a rows view reads its
// schema, at its schema_version (0: any), and never fs.
func (v View) AcceptsSchema(name string, version uint32) error {
	if v.Driver == DriverRows && name == "fs" {
		return fmt.Errorf("is a rows view of schema %q: it holds generic rows, not fs trees", v.Schema)
	}
	if v.Schema != name {
		return fmt.Errorf("accepts schema %q, not %q", v.Schema, name)
	}
	if version == 0 {
		version = 1
	}
	if v.Driver == DriverRows {
		if v.SchemaVersion != 0 && version != v.SchemaVersion {
			return fmt.Errorf("reads schema %q version %d, not version %d", v.Schema, v.SchemaVersion, version)
		}
		return nil
	}
	if (v.Driver == DriverFS || v.Driver == DriverForestFS) && version != SchemaVersionFS {
		return fmt.Errorf("driver %s reads schema fs version %d, not version %d", v.Driver, SchemaVersionFS, version)
	}
	return nil
}
