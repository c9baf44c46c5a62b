// Package config holds the agent's configuration (DESIGN.md §7): its id, sources, senders and
// the pipes binding a source to a sender.
package config

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/fustor/fustor/agent/internal/mapping"
	sdkconfig "github.com/fustor/fustor/sdk/config"
	"github.com/fustor/fustor/sdk/tlsfiles"
)

// Config is the agent's whole configuration.
type Config struct {
	// AgentID is globally unique; default: the host name.
	AgentID string            `koanf:"agent_id"`
	Log     Log               `koanf:"log"`
	Sources map[string]Source `koanf:"sources"`
	Senders map[string]Sender `koanf:"senders"`
	Pipes   map[string]Pipe   `koanf:"pipes"`
	// DebugListen, when set, serves /debug/pprof/, /debug/memstats and /metrics over plain
	// HTTP on this address (keep it on loopback).
	DebugListen string `koanf:"debug_listen"`
	// MetricsListen, when set, serves only the Prometheus /metrics over plain HTTP on this
	// address: unlike the profiles, it is safe to expose to a scraper.
	MetricsListen string `koanf:"metrics_listen"`
	// PIDFile is where the running agent writes its process id, so that `fustor-agent reload`
	// finds whom to send SIGHUP (empty = next to the config: agent.pid beside agent.yaml or in
	// the config directory, else $FUSTOR_HOME/agent.pid).
	PIDFile string `koanf:"pid_file"`
	// StateDir is where the agent keeps what its pipes remember across restarts: each pipe's
	// audit mtime cache, so that the first audit after a restart skips the directories that
	// did not change (default $FUSTOR_HOME/agent-state, FUSTOR_HOME defaulting to ~/.fustor).
	// A journal source's resume position is not kept: it is Fusion's committed index.
	StateDir string `koanf:"state_dir"`
}

// Log configures zap.
type Log struct {
	Level  string `koanf:"level"`
	Format string `koanf:"format"`
}

// Source is where events come from.
type Source struct {
	// Driver is the source kind: "fs" (a directory tree, the default), "journal" (a
	// replayable event log), "s3" (a bucket: settings under s3) or "sql" (a database table,
	// sent as rows of a generic schema: settings under sql).
	Driver string `koanf:"driver"`
	// Root is the directory the fs source watches and scans.
	Root string `koanf:"root"`
	// Path is the journal driver's event log (JSON lines with increasing indexes).
	Path string `koanf:"path"`
	// Excludes are glob patterns matched against basenames and relative paths.
	Excludes []string `koanf:"excludes"`
	// ModifyThrottle coalesces bursts of writes to one file.
	ModifyThrottle time.Duration `koanf:"modify_throttle"`
	// ScanWorkers is the snapshot walk's parallelism (0 = number of cores).
	ScanWorkers int `koanf:"scan_workers"`
	// HotThreshold: snapshot files younger than this are sent last, after a re-check
	// (0 = 30 s, negative = never).
	HotThreshold time.Duration `koanf:"hot_threshold"`
	// BusCapacity bounds the events buffered for slow pipes.
	BusCapacity int `koanf:"bus_capacity"`
	// MaxWatches is the watch budget: at most this many directories are watched in real time,
	// the most recently active first; the rest are left to audit (0 = as many as the kernel's
	// fs.inotify.max_user_watches allows; hitting that limit lowers the budget, never fails).
	MaxWatches int `koanf:"max_watches"`
	// DisableRealtime turns watching off: the pipes run degraded (can_realtime=false), kept
	// consistent by snapshot, audits and on-demand scans. For mounts where watching is useless.
	DisableRealtime bool `koanf:"disable_realtime"`
	// S3 configures the s3 driver (object storage: S3, MinIO, Alibaba OSS, Ceph RGW).
	S3 S3 `koanf:"s3"`
	// SQL configures the sql driver (a PostgreSQL table).
	SQL SQL `koanf:"sql"`
}

// SQL is a database-table source: one table's rows sent as generic rows (key, delete, text
// fields, index) of a schema of their own (agent/internal/source/sql has the details).
type SQL struct {
	// Dialect is the database kind: "postgres" (the default and only one).
	Dialect string `koanf:"dialect"`
	// DSN is the connection, a libpq key=value string or a URL
	// ("postgres://fustor@db:5432/app?sslmode=verify-full"); DSNFile is a file holding it
	// instead (trailing whitespace trimmed, read again at each reload). Exactly one is set.
	DSN     string `koanf:"dsn"`
	DSNFile string `koanf:"dsn_file"`
	// Password and PasswordFile replace the DSN's password (at most one is set). Without
	// any, the password is libpq's: the DSN's, else PGPASSWORD, else PGPASSFILE or ~/.pgpass.
	Password     string `koanf:"password"`
	PasswordFile string `koanf:"password_file"`
	// Table is the table or view, optionally schema-qualified ("sales.orders").
	Table string `koanf:"table"`
	// KeyColumns identify a row (its primary key): the row's key, and the listing's order.
	KeyColumns []string `koanf:"key_columns"`
	// CursorColumn is a monotone version or updated-at column (timestamp, date or integer):
	// realtime polls the rows past it, and it is each row's index (ms for a time).
	CursorColumn string `koanf:"cursor_column"`
	// Columns are the columns sent as fields (empty = all of them).
	Columns []string `koanf:"columns"`
	// SoftDeleteColumn, when set, marks deleted rows (any value but NULL, false or 0): left
	// out of listings, sent as deletes by realtime.
	SoftDeleteColumn string `koanf:"soft_delete_column"`
	// SchemaName and SchemaVersion are the schema the rows are declared as, which Fusion's
	// pipe and views must accept (default: the table's name, version 1).
	SchemaName    string `koanf:"schema_name"`
	SchemaVersion uint32 `koanf:"schema_version"`
	// PollInterval is realtime's period (0 = DefaultSQLPollInterval).
	PollInterval time.Duration `koanf:"poll_interval"`
	// BackoffMax bounds the wait after failed statements, doubling from poll_interval
	// (0 = DefaultSQLBackoffMax).
	BackoffMax time.Duration `koanf:"backoff_max"`
	// QueryTimeout bounds every statement and connection attempt (0 = DefaultSQLQueryTimeout).
	QueryTimeout time.Duration `koanf:"query_timeout"`
	// PageSize is the rows per listing statement (0 = DefaultSQLPageSize).
	PageSize int `koanf:"page_size"`
}

// SQL defaults.
const (
	DefaultSQLPollInterval = 5 * time.Second
	DefaultSQLBackoffMax   = time.Minute
	DefaultSQLQueryTimeout = 30 * time.Second
	DefaultSQLPageSize     = 1000
)

// Credentials returns the DSN and the password override ("" = none), files read now. Errors
// never quote a secret.
func (s SQL) Credentials() (dsn, password string, err error) {
	read := func(what, path string) (string, error) { return readSecret(what, "file", path) }
	switch {
	case s.DSN != "" && s.DSNFile != "":
		return "", "", errors.New("sql.dsn and sql.dsn_file are both set: set one")
	case s.DSN == "" && s.DSNFile == "":
		return "", "", errors.New("sql.dsn or sql.dsn_file is required")
	case s.Password != "" && s.PasswordFile != "":
		return "", "", errors.New("sql.password and sql.password_file are both set: set one")
	}
	dsn, password = s.DSN, s.Password
	if s.DSNFile != "" {
		if dsn, err = read("sql.dsn_file", s.DSNFile); err != nil {
			return "", "", err
		}
	}
	if s.PasswordFile != "" {
		if password, err = read("sql.password_file", s.PasswordFile); err != nil {
			return "", "", err
		}
	}
	return dsn, password, nil
}

// S3 is an object-storage source: a bucket and a key prefix mapped into the fs schema.
type S3 struct {
	// Endpoint is the S3 service: "host:port" (HTTPS) or a URL "http://host:port".
	Endpoint string `koanf:"endpoint"`
	Bucket   string `koanf:"bucket"`
	// Prefix is the key prefix the source covers ("" = the whole bucket); keys are sent
	// relative to it, as paths: prefix "data/" and key "data/a/b.txt" give /a/b.txt.
	Prefix string `koanf:"prefix"`
	Region string `koanf:"region"`
	// PathStyle addresses the bucket in the path (http://host/bucket), as MinIO and most
	// self-hosted stores want; false lets the client choose (virtual hosts on AWS and OSS).
	PathStyle bool `koanf:"path_style"`
	// AccessKey, SecretKey and SessionToken are static credentials. Without them the
	// credentials come from the environment (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY /
	// AWS_SESSION_TOKEN, or MINIO_ACCESS_KEY / MINIO_SECRET_KEY), then from CredentialsFile
	// (an AWS shared credentials file; Profile, default "default"), else the bucket is read
	// anonymously.
	AccessKey       string `koanf:"access_key"`
	SecretKey       string `koanf:"secret_key"`
	SessionToken    string `koanf:"session_token"`
	CredentialsFile string `koanf:"credentials_file"`
	Profile         string `koanf:"profile"`
	// ListInterval is the period of the incremental listing that stands for realtime
	// (0 = DefaultS3ListInterval).
	ListInterval time.Duration `koanf:"list_interval"`
	// BackoffMax bounds the wait after failed listings, which doubles from ListInterval
	// (0 = DefaultS3BackoffMax).
	BackoffMax time.Duration `koanf:"backoff_max"`
	// MaxRetries is how often one request is retried, with the client's exponential backoff,
	// on throttling (503 SlowDown) and other retryable errors (0 = the client's 10).
	MaxRetries int `koanf:"max_retries"`
	// PageSize is the keys per ListObjectsV2 request (0 = 1000, the S3 maximum).
	PageSize int `koanf:"page_size"`
}

// S3 defaults.
const (
	DefaultS3ListInterval = 30 * time.Second
	DefaultS3BackoffMax   = 5 * time.Minute
)

// Sender is where events go.
type Sender struct {
	// Driver is the sender kind: "grpc" (Fusion, the default) or "echo" (JSON lines to stdout
	// or path, for debugging a source without Fusion; address and keys are then unused).
	Driver string `koanf:"driver"`
	// Path is where the echo sender writes ("" or "-" = stdout); appended to.
	Path string `koanf:"path"`
	// Address is Fusion's gRPC address.
	Address string `koanf:"address"`
	// APIKey is the receiver's ingest key; it decides the Fusion pipe.
	APIKey string `koanf:"api_key"`
	// APIKeyFile is the file holding the ingest key instead (trailing whitespace trimmed), so
	// the key can stay out of the configuration; it is read again at each reload.
	APIKeyFile string `koanf:"api_key_file"`
	// TLS secures the connection to Fusion; plaintext unless enabled.
	TLS SenderTLS `koanf:"tls"`
}

// SenderTLS is a sender's TLS: the CA bundle that verifies Fusion (empty: the system roots),
// the agent's client certificate for mutual TLS (Fusion's server.tls.client_ca_file), and the
// name Fusion's certificate must carry (empty: the host of address). The CA bundle is read
// when the sender starts; the client certificate again whenever its files change.
type SenderTLS struct {
	Enabled    bool   `koanf:"enabled"`
	CAFile     string `koanf:"ca_file"`
	CertFile   string `koanf:"cert_file"`
	KeyFile    string `koanf:"key_file"`
	ServerName string `koanf:"server_name"`
}

// Client returns the settings as the sdk's client TLS.
func (t SenderTLS) Client() tlsfiles.Client {
	return tlsfiles.Client{CAFile: t.CAFile, CertFile: t.CertFile, KeyFile: t.KeyFile, ServerName: t.ServerName}
}

// validate checks the settings and loads the files, so that --validate and a reload refuse a
// certificate that cannot be used.
func (t SenderTLS) validate() error {
	if !t.Enabled {
		if t.Client() != (tlsfiles.Client{}) {
			return errors.New("tls: ca_file, cert_file, key_file or server_name is set but tls.enabled is false")
		}
		return nil
	}
	if _, err := t.Client().Config(nil); err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	return nil
}

// Key returns the sender's ingest key: api_key, or api_key_file's content read now. Exactly one
// of them is set. Errors never quote the key.
func (s Sender) Key() (string, error) {
	switch {
	case s.APIKey != "" && s.APIKeyFile != "":
		return "", errors.New("api_key and api_key_file are both set: set one")
	case s.APIKey != "":
		return s.APIKey, nil
	case s.APIKeyFile == "":
		return "", errors.New("no ingest key: set api_key or api_key_file")
	}
	return readSecret("api_key_file", "key file", s.APIKeyFile)
}

// readSecret reads a secret from the file at path (what names the setting, noun the file in
// messages, which never quote the secret). The newline editors and echo(1) leave is not part
// of it.
func readSecret(what, noun, path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%s: read %s: %w", what, noun, err)
	}
	v := strings.TrimRightFunc(string(b), unicode.IsSpace)
	if v == "" {
		return "", fmt.Errorf("%s: %s %s is empty", what, noun, path)
	}
	return v, nil
}

// Pipe binds a source to a sender.
type Pipe struct {
	Source string `koanf:"source"`
	Sender string `koanf:"sender"`
	// BatchSize bounds the rows of one pushed batch.
	BatchSize int `koanf:"batch_size"`
	// TimeoutHint is the session timeout asked of Fusion (it uses max(hint, its default)).
	TimeoutHint time.Duration `koanf:"timeout_hint"`
	// AuditInterval is the leader's audit period; 0 turns audits off.
	AuditInterval time.Duration `koanf:"audit_interval"`
	// AuditRollingShare is the part of the directories an audit finds unchanged (mtime as
	// cached: "true silence") that it lists and stats in full anyway, so that files rewritten
	// in place, which leave their directory's mtime alone, are found: each such directory is
	// re-checked within ceil(1/share) audits. 0 = pure true silence, 1 = every audit deep.
	// Unset = DefaultAuditRollingShare (a pointer, as 0 is a setting of its own).
	AuditRollingShare *float64 `koanf:"audit_rolling_share"`
	// AuditDeepEvery makes every Nth audit deep: every directory listed and every entry
	// stat'ed whatever the mtime cache says. 0 = never; unset = DefaultAuditDeepEvery.
	AuditDeepEvery *int `koanf:"audit_deep_every"`
	// OverflowAuditDelay spaces the deep recovery audits that follow realtime queue overflows
	// (lost events): the first one starts at once, the next no sooner than this after the
	// previous one ended, every overflow in between folded into it — none is dropped.
	// 0 = no spacing; unset = DefaultOverflowAuditDelay.
	OverflowAuditDelay *time.Duration `koanf:"overflow_audit_delay"`
	// StuckAfter restarts a snapshot or audit that made no progress for this long.
	StuckAfter time.Duration `koanf:"stuck_after"`
	// AuditStateSaveInterval is how often the audit cache is saved to state_dir: 0 after every
	// completed audit (and only then: a failed audit's cache is never saved), more at most
	// that often and at a graceful stop, negative never (nor read: every start audits in full).
	AuditStateSaveInterval time.Duration `koanf:"audit_state_save_interval"`
	// BackoffMin and BackoffMax bound the reconnect backoff.
	BackoffMin time.Duration `koanf:"backoff_min"`
	BackoffMax time.Duration `koanf:"backoff_max"`
	// FieldsMapping projects the rows of a generic-schema source (DESIGN.md §7; package
	// agent/internal/mapping; the sql driver): empty = pass-through. The fs, journal and s3
	// drivers emit the fs schema, whose rows are typed, so a non-empty mapping is refused on them.
	FieldsMapping mapping.Config `koanf:"fields_mapping"`
}

// Default returns a configuration with no sources, senders or pipes.
func Default() Config {
	return Config{Log: Log{Level: "info", Format: "console"}, Sources: map[string]Source{},
		Senders: map[string]Sender{}, Pipes: map[string]Pipe{}}
}

// Per-entry defaults applied by Normalize.
const (
	DefaultBatchSize      = 1000
	DefaultModifyThrottle = time.Second
	DefaultBusCapacity    = 1 << 16
	DefaultBackoffMin     = 5 * time.Second
	DefaultBackoffMax     = 60 * time.Second
	DefaultAuditInterval  = 12 * time.Hour
	DefaultStuckAfter     = 10 * time.Minute
	// DefaultAuditRollingShare re-checks every file in a silent directory within two audits:
	// once a day at the default 12 h audit_interval.
	DefaultAuditRollingShare = 0.5
	// DefaultAuditDeepEvery: a deep audit every 10th (5 days at 12 h) bounds what the rolling
	// share cannot: a share set small for a huge tree, or audits that keep failing part-way.
	DefaultAuditDeepEvery = 10
	// DefaultOverflowAuditDelay keeps a watcher that overflows over and over from walking the
	// tree back to back, while a loss is repaired within seconds of the last audit.
	DefaultOverflowAuditDelay = 10 * time.Second
)

// DefaultStateDir returns $FUSTOR_HOME/agent-state, FUSTOR_HOME defaulting to ~/.fustor.
func DefaultStateDir() string {
	return filepath.Join(sdkconfig.Home(os.Getenv), "agent-state")
}

// Normalize fills per-entry defaults.
func (c *Config) Normalize() {
	if c.AgentID == "" {
		if h, err := os.Hostname(); err == nil {
			c.AgentID = h
		}
	}
	if c.StateDir == "" {
		c.StateDir = DefaultStateDir()
	}
	for id, s := range c.Sources {
		if s.Driver == "" {
			s.Driver = "fs"
		}
		if s.ModifyThrottle == 0 {
			s.ModifyThrottle = DefaultModifyThrottle
		}
		if s.BusCapacity == 0 {
			s.BusCapacity = DefaultBusCapacity
		}
		if s.Driver == "s3" {
			if s.S3.ListInterval == 0 {
				s.S3.ListInterval = DefaultS3ListInterval
			}
			if s.S3.BackoffMax == 0 {
				s.S3.BackoffMax = DefaultS3BackoffMax
			}
			s.S3.BackoffMax = max(s.S3.BackoffMax, s.S3.ListInterval)
		}
		if s.Driver == "sql" {
			q := &s.SQL
			q.Dialect = cmp.Or(q.Dialect, "postgres")
			q.PollInterval = cmp.Or(q.PollInterval, DefaultSQLPollInterval)
			q.BackoffMax = max(cmp.Or(q.BackoffMax, DefaultSQLBackoffMax), q.PollInterval)
			q.QueryTimeout = cmp.Or(q.QueryTimeout, DefaultSQLQueryTimeout)
			q.PageSize = cmp.Or(q.PageSize, DefaultSQLPageSize)
			q.SchemaName = cmp.Or(q.SchemaName, q.Table)
			q.SchemaVersion = cmp.Or(q.SchemaVersion, 1)
		}
		c.Sources[id] = s
	}
	for id, s := range c.Senders {
		if s.Driver == "" {
			s.Driver = "grpc"
		}
		c.Senders[id] = s
	}
	for id, p := range c.Pipes {
		if p.BatchSize == 0 {
			p.BatchSize = DefaultBatchSize
		}
		if p.BackoffMin == 0 {
			p.BackoffMin = DefaultBackoffMin
		}
		if p.BackoffMax == 0 {
			p.BackoffMax = DefaultBackoffMax
		}
		if p.AuditInterval == 0 {
			p.AuditInterval = DefaultAuditInterval
		}
		if p.StuckAfter == 0 {
			p.StuckAfter = DefaultStuckAfter
		}
		if p.AuditRollingShare == nil {
			p.AuditRollingShare = ptr(DefaultAuditRollingShare)
		}
		if p.AuditDeepEvery == nil {
			p.AuditDeepEvery = ptr(DefaultAuditDeepEvery)
		}
		if p.OverflowAuditDelay == nil {
			p.OverflowAuditDelay = ptr(DefaultOverflowAuditDelay)
		}
		c.Pipes[id] = p
	}
}

// Validate reports every inconsistency at once.
func (c *Config) Validate() error {
	var errs []error
	if c.AgentID == "" {
		errs = append(errs, errors.New("agent_id is empty and the host name is unknown"))
	}
	if c.DebugListen != "" {
		if _, _, err := net.SplitHostPort(c.DebugListen); err != nil {
			errs = append(errs, fmt.Errorf("debug_listen %q: %w", c.DebugListen, err))
		}
	}
	if c.MetricsListen != "" {
		if _, _, err := net.SplitHostPort(c.MetricsListen); err != nil {
			errs = append(errs, fmt.Errorf("metrics_listen %q: %w", c.MetricsListen, err))
		}
	}
	// The directory is created at the first save; something else in its place is an error.
	if st, err := os.Stat(c.StateDir); err == nil && !st.IsDir() {
		errs = append(errs, fmt.Errorf("state_dir %q is not a directory", c.StateDir))
	}
	for _, id := range slices.Sorted(maps.Keys(c.Sources)) {
		s := c.Sources[id]
		switch s.Driver {
		case "fs":
			if st, err := os.Stat(s.Root); err != nil || !st.IsDir() {
				errs = append(errs, fmt.Errorf("sources.%s: root %q is not a readable directory", id, s.Root))
			}
		case "journal":
			if st, err := os.Stat(s.Path); err != nil || st.IsDir() {
				errs = append(errs, fmt.Errorf("sources.%s: journal path %q is not a readable file", id, s.Path))
			}
		case "s3":
			if s.S3.Endpoint == "" || s.S3.Bucket == "" {
				errs = append(errs, fmt.Errorf("sources.%s: s3.endpoint and s3.bucket are required", id))
			}
			if s.S3.ListInterval < 0 || s.S3.BackoffMax < 0 || s.S3.MaxRetries < 0 || s.S3.PageSize < 0 || s.S3.PageSize > 1000 {
				errs = append(errs, fmt.Errorf("sources.%s: s3.list_interval, backoff_max and max_retries must not be negative, page_size must be 0..1000", id))
			}
			if (s.S3.AccessKey == "") != (s.S3.SecretKey == "") {
				errs = append(errs, fmt.Errorf("sources.%s: set both s3.access_key and s3.secret_key, or neither", id))
			}
		case "sql":
			errs = append(errs, s.SQL.validate(id)...)
		default:
			errs = append(errs, fmt.Errorf("sources.%s: unknown driver %q (want fs, journal, s3 or sql)", id, s.Driver))
		}
		if s.ScanWorkers < 0 || s.BusCapacity <= 0 || s.ModifyThrottle < 0 || s.MaxWatches < 0 {
			errs = append(errs, fmt.Errorf("sources.%s: scan_workers, bus_capacity, modify_throttle and max_watches must not be negative", id))
		}
	}
	for _, id := range slices.Sorted(maps.Keys(c.Senders)) {
		s := c.Senders[id]
		switch s.Driver {
		case "echo":
			continue // writes locally: no address, no key
		case "grpc":
		default:
			errs = append(errs, fmt.Errorf("senders.%s: unknown driver %q (want grpc or echo)", id, s.Driver))
		}
		if s.Address == "" {
			errs = append(errs, fmt.Errorf("senders.%s: address is required", id))
		}
		if _, err := s.Key(); err != nil {
			errs = append(errs, fmt.Errorf("senders.%s: %w", id, err))
		}
		if err := s.TLS.validate(); err != nil {
			errs = append(errs, fmt.Errorf("senders.%s.%w", id, err))
		}
	}
	if len(c.Pipes) == 0 {
		errs = append(errs, errors.New("no pipes configured"))
	}
	for _, id := range slices.Sorted(maps.Keys(c.Pipes)) {
		p := c.Pipes[id]
		if _, ok := c.Sources[p.Source]; !ok {
			errs = append(errs, fmt.Errorf("pipes.%s: unknown source %q", id, p.Source))
		}
		if _, ok := c.Senders[p.Sender]; !ok {
			errs = append(errs, fmt.Errorf("pipes.%s: unknown sender %q", id, p.Sender))
		}
		if p.BatchSize <= 0 || p.BatchSize > 100_000 {
			errs = append(errs, fmt.Errorf("pipes.%s: batch_size must be 1..100000", id))
		}
		if p.AuditInterval < 0 {
			errs = append(errs, fmt.Errorf("pipes.%s: audit_interval must not be negative", id))
		}
		if p.BackoffMin <= 0 || p.BackoffMax < p.BackoffMin {
			errs = append(errs, fmt.Errorf("pipes.%s: need 0 < backoff_min <= backoff_max", id))
		}
		// !(x >= 0 && x <= 1) rejects NaN too.
		if v := p.AuditRollingShare; v != nil && !(*v >= 0 && *v <= 1) {
			errs = append(errs, fmt.Errorf("pipes.%s: audit_rolling_share %v must be in [0, 1]", id, *v))
		}
		if v := p.AuditDeepEvery; v != nil && *v < 0 {
			errs = append(errs, fmt.Errorf("pipes.%s: audit_deep_every %d must not be negative", id, *v))
		}
		if v := p.OverflowAuditDelay; v != nil && *v < 0 {
			errs = append(errs, fmt.Errorf("pipes.%s: overflow_audit_delay %v must not be negative", id, *v))
		}
		if err := p.FieldsMapping.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("pipes.%s: fields_mapping: %w", id, err))
		} else if len(p.FieldsMapping.Fields) > 0 || p.FieldsMapping.OnCastError != "" {
			if src, ok := c.Sources[p.Source]; ok && !Generic(src.Driver) {
				errs = append(errs, fmt.Errorf("pipes.%s: fields_mapping applies to generic-schema rows; source %q (driver %s) emits fs rows", id, p.Source, src.Driver))
			}
		}
	}
	// DESIGN.md §2: a <source, sender> pair runs at most one pipe.
	seen := map[[2]string]string{}
	for _, id := range slices.Sorted(maps.Keys(c.Pipes)) {
		k := [2]string{c.Pipes[id].Source, c.Pipes[id].Sender}
		if prev, ok := seen[k]; ok {
			errs = append(errs, fmt.Errorf("pipes.%s: source %q and sender %q are already paired by pipe %s", id, k[0], k[1], prev))
		}
		seen[k] = id
	}
	return errors.Join(errs...)
}

// Demo returns the built-in configuration of `make demo`: the directory root, Fusion on
// 127.0.0.1:7070 with the demo ingest key.
func Demo(root string) Config {
	c := Default()
	c.Sources["demo"] = Source{Driver: "fs", Root: root}
	c.Senders["fusion"] = Sender{Driver: "grpc", Address: "127.0.0.1:7070", APIKey: "demo-ingest-key"}
	c.Pipes["demo"] = Pipe{Source: "demo", Sender: "fusion", BackoffMin: time.Second, BackoffMax: 10 * time.Second}
	c.Normalize()
	return c
}

// ptr returns a pointer to a copy of v, for the settings whose zero is a value of its own.
func ptr[T any](v T) *T { return &v }

// SchemaOf is the schema (DESIGN.md §2) a source emits, name and version: "fs" rows, version
// SchemaVersionFS, for the fs, journal and s3 drivers; a sql source's is its schema_name and
// schema_version (default: the table, 1).
func SchemaOf(s Source) (string, uint32) {
	if s.Driver == "sql" {
		return cmp.Or(s.SQL.SchemaName, s.SQL.Table), cmp.Or(s.SQL.SchemaVersion, 1)
	}
	return "fs", SchemaVersionFS
}

// Generic reports whether a driver emits rows of a generic schema (fustor.v1.GenericRow),
// which a pipe's fields_mapping applies to, rather than the typed fs rows.
func Generic(driver string) bool { return driver == "sql" }

// validate reports what is wrong with a sql source's settings.
func (s SQL) validate(id string) []error {
	var errs []error
	if s.Dialect != "postgres" {
		errs = append(errs, fmt.Errorf("sources.%s: sql.dialect %q: want postgres", id, s.Dialect))
	}
	if _, _, err := s.Credentials(); err != nil {
		errs = append(errs, fmt.Errorf("sources.%s: %w", id, err))
	}
	if s.Table == "" || len(s.KeyColumns) == 0 || s.CursorColumn == "" {
		errs = append(errs, fmt.Errorf("sources.%s: sql.table, sql.key_columns and sql.cursor_column are required", id))
	}
	if s.PollInterval <= 0 || s.BackoffMax < s.PollInterval || s.QueryTimeout <= 0 || s.PageSize <= 0 || s.PageSize > 100_000 {
		errs = append(errs, fmt.Errorf("sources.%s: need 0 < sql.poll_interval <= backoff_max, query_timeout > 0, page_size 1..100000", id))
	}
	for _, c := range slices.Concat(s.KeyColumns, s.Columns) {
		if c == "" {
			errs = append(errs, fmt.Errorf("sources.%s: sql.key_columns and sql.columns must not hold an empty name", id))
			break
		}
	}
	return errs
}

// SchemaVersionFS is the version of the fs schema the agent speaks.
const SchemaVersionFS = 1
