package config

import (
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/fustor/fustor/agent/internal/mapping"
	sdkconfig "github.com/fustor/fustor/sdk/config"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestValidate(t *testing.T) {
	root := t.TempDir()
	keyFile, emptyFile := filepath.Join(t.TempDir(), "key"), filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(keyFile, []byte("ingest-key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(emptyFile, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"demo is valid", func(*Config) {}, ""},
		{"missing root", func(c *Config) { s := c.Sources["demo"]; s.Root = root + "/nope"; c.Sources["demo"] = s }, "not a readable directory"},
		{"unknown sender", func(c *Config) { p := c.Pipes["demo"]; p.Sender = "x"; c.Pipes["demo"] = p }, `unknown sender "x"`},
		{"batch size", func(c *Config) { p := c.Pipes["demo"]; p.BatchSize = -1; c.Pipes["demo"] = p }, "batch_size"},
		{"no address", func(c *Config) { s := c.Senders["fusion"]; s.Address = ""; c.Senders["fusion"] = s }, "address is required"},
		{"metrics address", func(c *Config) { c.MetricsListen = "localhost" }, `metrics_listen "localhost"`},
		{"metrics address set", func(c *Config) { c.MetricsListen = "127.0.0.1:0" }, ""},
		{"state dir is a file", func(c *Config) { c.StateDir = keyFile }, "state_dir"},
		{"state dir not created yet", func(c *Config) { c.StateDir = root + "/state/agent" }, ""},
		{"pair used twice", func(c *Config) { c.Pipes["other"] = c.Pipes["demo"] }, "already paired"},
		{"rolling share 0", func(c *Config) { p := c.Pipes["demo"]; p.AuditRollingShare = ptr(0.0); c.Pipes["demo"] = p }, ""},
		{"rolling share 1", func(c *Config) { p := c.Pipes["demo"]; p.AuditRollingShare = ptr(1.0); c.Pipes["demo"] = p }, ""},
		{"rolling share above 1", func(c *Config) { p := c.Pipes["demo"]; p.AuditRollingShare = ptr(1.5); c.Pipes["demo"] = p }, "audit_rolling_share 1.5"},
		{"rolling share negative", func(c *Config) { p := c.Pipes["demo"]; p.AuditRollingShare = ptr(-0.1); c.Pipes["demo"] = p }, "audit_rolling_share -0.1"},
		{"rolling share NaN", func(c *Config) { p := c.Pipes["demo"]; p.AuditRollingShare = ptr(math.NaN()); c.Pipes["demo"] = p }, "audit_rolling_share NaN"},
		{"deep every 0", func(c *Config) { p := c.Pipes["demo"]; p.AuditDeepEvery = ptr(0); c.Pipes["demo"] = p }, ""},
		{"overflow delay 0", func(c *Config) {
			p := c.Pipes["demo"]
			p.OverflowAuditDelay = ptr(time.Duration(0))
			c.Pipes["demo"] = p
		}, ""},
		{"overflow delay negative", func(c *Config) { p := c.Pipes["demo"]; p.OverflowAuditDelay = ptr(-time.Second); c.Pipes["demo"] = p }, "overflow_audit_delay -1s"},
		{"deep every negative", func(c *Config) { p := c.Pipes["demo"]; p.AuditDeepEvery = ptr(-1); c.Pipes["demo"] = p }, "audit_deep_every -1"},
		{"no key", func(c *Config) { s := c.Senders["fusion"]; s.APIKey = ""; c.Senders["fusion"] = s },
			"senders.fusion: no ingest key: set api_key or api_key_file"},
		{"key and key file", func(c *Config) { s := c.Senders["fusion"]; s.APIKeyFile = keyFile; c.Senders["fusion"] = s },
			"senders.fusion: api_key and api_key_file are both set: set one"},
		{"key file", func(c *Config) {
			s := c.Senders["fusion"]
			s.APIKey, s.APIKeyFile = "", keyFile
			c.Senders["fusion"] = s
		}, ""},
		{"key file missing", func(c *Config) {
			s := c.Senders["fusion"]
			s.APIKey, s.APIKeyFile = "", root+"/gone"
			c.Senders["fusion"] = s
		},
			"senders.fusion: api_key_file: read key file: open " + root + "/gone: no such file or directory"},
		{"key file empty", func(c *Config) {
			s := c.Senders["fusion"]
			s.APIKey, s.APIKeyFile = "", emptyFile
			c.Senders["fusion"] = s
		},
			"senders.fusion: api_key_file: key file " + emptyFile + " is empty"},
	}
	tests = append(tests, []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"echo sender needs no address nor key", func(c *Config) { c.Senders["fusion"] = Sender{Driver: "echo"} }, ""},
		{"unknown sender driver", func(c *Config) { s := c.Senders["fusion"]; s.Driver = "kafka"; c.Senders["fusion"] = s }, `unknown driver "kafka" (want grpc or echo)`},
		{"s3 source", func(c *Config) {
			c.Sources["demo"] = Source{Driver: "s3", BusCapacity: 1, S3: S3{Endpoint: "e", Bucket: "b"}}
		}, ""},
		{"s3 without bucket", func(c *Config) { c.Sources["demo"] = Source{Driver: "s3", BusCapacity: 1, S3: S3{Endpoint: "e"}} }, "s3.endpoint and s3.bucket are required"},
		{"s3 half a key", func(c *Config) {
			c.Sources["demo"] = Source{Driver: "s3", BusCapacity: 1, S3: S3{Endpoint: "e", Bucket: "b", AccessKey: "a"}}
		}, "set both s3.access_key and s3.secret_key"},
		{"s3 page size", func(c *Config) {
			c.Sources["demo"] = Source{Driver: "s3", BusCapacity: 1, S3: S3{Endpoint: "e", Bucket: "b", PageSize: 5000}}
		}, "page_size must be 0..1000"},
		{"fields_mapping on an fs source", func(c *Config) {
			p := c.Pipes["demo"]
			p.FieldsMapping = mapping.Config{Fields: []mapping.Rule{{To: "a"}}}
			c.Pipes["demo"] = p
		}, `fields_mapping applies to generic-schema rows; source "demo" (driver fs) emits fs rows`},
		{"sql source", func(c *Config) { c.Sources["demo"] = sqlSource(SQL{}) }, ""},
		{"sql source with a fields_mapping", func(c *Config) {
			c.Sources["demo"] = sqlSource(SQL{})
			p := c.Pipes["demo"]
			p.FieldsMapping = mapping.Config{Fields: []mapping.Rule{{To: "a"}}}
			c.Pipes["demo"] = p
		}, ""},
		{"sql without table", func(c *Config) { q := sqlSource(SQL{}); q.SQL.Table = ""; c.Sources["demo"] = q },
			"sources.demo: sql.table, sql.key_columns and sql.cursor_column are required"},
		{"sql without dsn", func(c *Config) { q := sqlSource(SQL{}); q.SQL.DSN = ""; c.Sources["demo"] = q },
			"sources.demo: sql.dsn or sql.dsn_file is required"},
		{"sql dsn twice", func(c *Config) { c.Sources["demo"] = sqlSource(SQL{DSNFile: keyFile}) }, "sql.dsn and sql.dsn_file are both set"},
		{"sql password file missing", func(c *Config) { c.Sources["demo"] = sqlSource(SQL{PasswordFile: root + "/gone"}) },
			"sql.password_file: read file: open " + root + "/gone"},
		{"sql dialect", func(c *Config) { c.Sources["demo"] = sqlSource(SQL{Dialect: "oracle"}) }, `sql.dialect "oracle": want postgres`},
		{"sql page size", func(c *Config) { c.Sources["demo"] = sqlSource(SQL{PageSize: 200_000}) }, "page_size 1..100000"},
		{"bad fields_mapping", func(c *Config) {
			p := c.Pipes["demo"]
			p.FieldsMapping = mapping.Config{Fields: []mapping.Rule{{To: "a", Type: "decimal"}}}
			c.Pipes["demo"] = p
		}, `pipes.demo: fields_mapping: fields[0]: unknown type "decimal"`},
	}...)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Demo(root)
			tt.mutate(&c)
			c.Normalize()
			err := c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v; want %q", err, tt.want)
			}
		})
	}
}

// sqlSource is a valid sql source with o's non-zero settings over it.
func sqlSource(o SQL) Source {
	q := SQL{DSN: "postgres://u@db/app", Table: "items", KeyColumns: []string{"id"}, CursorColumn: "version"}
	if o.DSNFile != "" {
		q.DSNFile = o.DSNFile
	}
	if o.PasswordFile != "" {
		q.PasswordFile = o.PasswordFile
	}
	if o.Dialect != "" {
		q.Dialect = o.Dialect
	}
	q.PageSize = o.PageSize
	return Source{Driver: "sql", SQL: q}
}

// TestSQLKeys: a sql source loads from YAML, gets its defaults, and reads its secrets from
// files; SchemaOf is its schema.
func TestSQLKeys(t *testing.T) {
	dir := t.TempDir()
	dsnFile, pwFile := filepath.Join(dir, "dsn"), filepath.Join(dir, "pw")
	if err := os.WriteFile(dsnFile, []byte("postgres://reader@db:5432/app?sslmode=disable\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pwFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "agent.yaml")
	yaml := `agent_id: a
sources:
  orders:
    driver: sql
    sql:
      dsn_file: ` + dsnFile + `
      password_file: ` + pwFile + `
      table: sales.orders
      key_columns: [region, id]
      cursor_column: updated_at
      columns: [id, region, total]
      soft_delete_column: deleted_at
      poll_interval: 2s
      page_size: 500
senders: {dbg: {driver: echo}}
pipes:
  p: {source: orders, sender: dbg, fields_mapping: {fields: [{to: total, type: float}]}}
`
	if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	c := Default()
	if err := sdkconfig.Load(&c, sdkconfig.Source{Path: file, Environ: func() []string { return nil }}); err != nil {
		t.Fatal(err)
	}
	c.Normalize()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	q := c.Sources["orders"].SQL
	want := SQL{Dialect: "postgres", DSNFile: dsnFile, PasswordFile: pwFile, Table: "sales.orders", KeyColumns: []string{"region", "id"},
		CursorColumn: "updated_at", Columns: []string{"id", "region", "total"}, SoftDeleteColumn: "deleted_at", SchemaName: "sales.orders",
		SchemaVersion: 1, PollInterval: 2 * time.Second, BackoffMax: DefaultSQLBackoffMax, QueryTimeout: DefaultSQLQueryTimeout, PageSize: 500}
	if !reflect.DeepEqual(q, want) {
		t.Errorf("sql settings\n%+v\nwant\n%+v", q, want)
	}
	dsn, pw, err := q.Credentials()
	if err != nil || dsn != "postgres://reader@db:5432/app?sslmode=disable" || pw != "s3cret" {
		t.Errorf("Credentials() = %q, %q, %v", dsn, pw, err)
	}
	if name, v := SchemaOf(c.Sources["orders"]); name != "sales.orders" || v != 1 {
		t.Errorf("SchemaOf = %s %d", name, v)
	}
	if name, v := SchemaOf(Source{Driver: "s3"}); name != "fs" || v != SchemaVersionFS {
		t.Errorf("SchemaOf(s3) = %s %d", name, v)
	}
}

// TestPipeAuditKeys: the audit keys load from YAML and the environment, an explicit 0 stays 0
// (it is a setting: pure true silence, never deep), and unset keys take their defaults.
func TestPipeAuditKeys(t *testing.T) {
	root := t.TempDir()
	file := filepath.Join(t.TempDir(), "agent.yaml")
	yaml := `agent_id: a
sources: {src: {root: ` + root + `}}
senders: {fusion: {address: "127.0.0.1:7070", api_key: k}}
pipes:
  zero: {source: src, sender: fusion, audit_rolling_share: 0, audit_deep_every: 0, overflow_audit_delay: 0s}
  set: {source: src, sender: fusion, audit_rolling_share: 0.25, audit_deep_every: 4, overflow_audit_delay: 3s}
  unset: {source: src, sender: fusion}
`
	if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	// The three pipes pair one source with one sender: give each its own sender.
	env := []string{"FUSTOR_SENDERS__F2__ADDRESS=127.0.0.1:7070", "FUSTOR_SENDERS__F3__ADDRESS=127.0.0.1:7070",
		"FUSTOR_SENDERS__F2__API_KEY=k", "FUSTOR_SENDERS__F3__API_KEY=k",
		"FUSTOR_PIPES__SET__SENDER=f2", "FUSTOR_PIPES__UNSET__SENDER=f3", "FUSTOR_PIPES__SET__AUDIT_DEEP_EVERY=6",
		"FUSTOR_PIPES__SET__OVERFLOW_AUDIT_DELAY=2500ms"}
	c := Default()
	if err := sdkconfig.Load(&c, sdkconfig.Source{Path: file, Environ: func() []string { return env }}); err != nil {
		t.Fatal(err)
	}
	c.Normalize()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]struct {
		share float64
		every int
		delay time.Duration
	}{"zero": {0, 0, 0}, "set": {0.25, 6, 2500 * time.Millisecond},
		"unset": {DefaultAuditRollingShare, DefaultAuditDeepEvery, DefaultOverflowAuditDelay}} {
		p := c.Pipes[id]
		if p.AuditRollingShare == nil || *p.AuditRollingShare != want.share || p.AuditDeepEvery == nil || *p.AuditDeepEvery != want.every ||
			p.OverflowAuditDelay == nil || *p.OverflowAuditDelay != want.delay {
			t.Errorf("pipes.%s: share %v, deep every %v, overflow delay %v; want %v, %v, %v", id, deref(p.AuditRollingShare),
				deref(p.AuditDeepEvery), deref(p.OverflowAuditDelay), want.share, want.every, want.delay)
		}
	}
}

// TestPipeAuditKeysOverDefaults: over a configuration that already holds them (the demo's,
// normalised, as the command line starts from), the environment still sets the pointer keys.
func TestPipeAuditKeysOverDefaults(t *testing.T) {
	c := Demo(t.TempDir())
	env := []string{"FUSTOR_PIPES__DEMO__AUDIT_ROLLING_SHARE=0", "FUSTOR_PIPES__DEMO__AUDIT_DEEP_EVERY=3", "FUSTOR_PIPES__DEMO__OVERFLOW_AUDIT_DELAY=0"}
	if err := sdkconfig.Load(&c, sdkconfig.Source{Environ: func() []string { return env }}); err != nil {
		t.Fatal(err)
	}
	c.Normalize()
	if p := c.Pipes["demo"]; *p.AuditRollingShare != 0 || *p.AuditDeepEvery != 3 || *p.OverflowAuditDelay != 0 {
		t.Fatalf("share %v, deep every %v, overflow delay %v; want 0, 3, 0", *p.AuditRollingShare, *p.AuditDeepEvery, *p.OverflowAuditDelay)
	}
}

// deref shows a pointer setting's value, or nil.
func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

// TestSenderKey: api_key_file's content, trailing whitespace trimmed, is the key, read again at
// each call (a reload sees a rotated key); it loads from YAML as api_key_file.
// TestStateDirDefault: state_dir defaults to $FUSTOR_HOME/agent-state, beside Fusion's
// $FUSTOR_HOME/state; a configured one is kept.
func TestStateDirDefault(t *testing.T) {
	home := t.TempDir()
	t.Setenv("FUSTOR_HOME", home)
	c := Default()
	c.Normalize()
	if want := filepath.Join(home, "agent-state"); c.StateDir != want {
		t.Fatalf("state_dir %q; want %q", c.StateDir, want)
	}
	c.StateDir = "/var/lib/fustor"
	c.Normalize()
	if c.StateDir != "/var/lib/fustor" {
		t.Fatalf("configured state_dir replaced: %q", c.StateDir)
	}
	var k Config
	if err := sdkconfig.Load(&k, sdkconfig.Source{Environ: func() []string {
		return []string{"FUSTOR_STATE_DIR=/s", "FUSTOR_PIPES__P__AUDIT_STATE_SAVE_INTERVAL=10m"}
	}}); err != nil {
		t.Fatal(err)
	}
	if k.StateDir != "/s" || k.Pipes["p"].AuditStateSaveInterval != 10*time.Minute {
		t.Fatalf("koanf keys: state_dir %q, audit_state_save_interval %v", k.StateDir, k.Pipes["p"].AuditStateSaveInterval)
	}
}

func TestSenderKey(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "ingest.key")
	if err := os.WriteFile(keyFile, []byte("from-file \r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "agent.yaml")
	yaml := "senders: {fusion: {address: 127.0.0.1:7070, api_key_file: " + keyFile + "}}\n"
	if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	c := Default()
	if err := sdkconfig.Load(&c, sdkconfig.Source{Path: file, Environ: func() []string { return nil }}); err != nil {
		t.Fatal(err)
	}
	s := c.Senders["fusion"]
	if k, err := s.Key(); err != nil || k != "from-file" {
		t.Fatalf("Key() = %q, %v; want from-file", k, err)
	}
	if err := os.WriteFile(keyFile, []byte("rotated\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if k, err := s.Key(); err != nil || k != "rotated" {
		t.Fatalf("Key() after rotation = %q, %v", k, err)
	}
	if k, err := (Sender{APIKey: "literal"}).Key(); err != nil || k != "literal" {
		t.Fatalf("Key() = %q, %v", k, err)
	}
}

// TestLoadNewKeys: the s3 source, the echo sender and a fields_mapping load from YAML.
func TestLoadNewKeys(t *testing.T) {
	file := filepath.Join(t.TempDir(), "agent.yaml")
	yaml := `agent_id: a
sources:
  b: {driver: s3, s3: {endpoint: "http://127.0.0.1:9000", bucket: data, prefix: in/, path_style: true, list_interval: 5s, max_retries: 3}}
senders: {dbg: {driver: echo, path: /tmp/x.jsonl}}
pipes:
  p:
    source: b
    sender: dbg
    fields_mapping:
      on_cast_error: drop_row
      fields:
        - {to: id, from: user_id, type: int}
        - {to: site, value: eu}
        - {to: on, from: enabled, type: bool, default: "false"}
`
	if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	c := Default()
	if err := sdkconfig.Load(&c, sdkconfig.Source{Path: file, Environ: func() []string { return nil }}); err != nil {
		t.Fatal(err)
	}
	c.Normalize()
	s3 := c.Sources["b"].S3
	if s3.Endpoint != "http://127.0.0.1:9000" || s3.Bucket != "data" || s3.Prefix != "in/" || !s3.PathStyle || s3.ListInterval != 5*time.Second ||
		s3.MaxRetries != 3 || s3.BackoffMax != DefaultS3BackoffMax {
		t.Errorf("s3 settings %+v", s3)
	}
	if snd := c.Senders["dbg"]; snd.Driver != "echo" || snd.Path != "/tmp/x.jsonl" {
		t.Errorf("sender %+v", snd)
	}
	fm := c.Pipes["p"].FieldsMapping
	if fm.OnCastError != "drop_row" || len(fm.Fields) != 3 || fm.Fields[0] != (mapping.Rule{To: "id", From: "user_id", Type: "int"}) ||
		fm.Fields[1].Value == nil || *fm.Fields[1].Value != "eu" || fm.Fields[2].Default == nil || *fm.Fields[2].Default != "false" {
		t.Errorf("fields_mapping %+v", fm)
	}
	// On an s3 source (fs rows) the mapping is refused, with the reason.
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "fields_mapping applies to generic-schema rows") {
		t.Errorf("Validate() = %v", err)
	}
}
