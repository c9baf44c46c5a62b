// Package sql is the database-table source driver (DESIGN.md §2: a source of a generic schema):
// one table's rows as generic rows (source.Row: key, delete, text fields, index), declared to
// Fusion as a schema of their own (default: the table's name), not the fs schema.
//
// Dialect: PostgreSQL, through github.com/jackc/pgx/v5's database/sql driver (pgx/v5/stdlib):
// pure Go (no cgo, no libpq), maintained, the driver most Go PostgreSQL code uses, and it takes
// a libpq-style DSN or URL with libpq's environment (PGPASSWORD, PGPASSFILE/~/.pgpass, PGSSLMODE,
// ...). database/sql keeps the source written against a pool and generic rows, so another
// dialect would be a driver and a few statements, not a rewrite.
//
// Mapping: every row is one generic row. Its key is the key column's value as text (several
// key columns: each value with "%" and "/" escaped as %25 and %2F, joined by "/"; a bytea key
// that is UTF-8 has "\" doubled, so it never reads as the hex of one that is not); its fields
// are the configured columns (default: all) as text — NULL leaves the field out, a time is
// RFC 3339 UTC, bytes that are not UTF-8 are hex (\x...); its index is the cursor column: a
// monotone version or updated-at column, as ms since the epoch for a timestamp or date, as the
// number for an integer. An optional soft-delete column marks deleted rows (any value other
// than NULL, false or 0).
//
// Keys are never merged: a table's key columns must be NOT NULL (describe refuses others; a
// view's rows with a NULL key part are left out of every statement), and a row whose key is
// not UTF-8 (a database of another encoding) is skipped and counted (skipped_invalid_key)
// rather than rewritten into another row's key.
//
// Capabilities:
//   - Snapshot (and on-demand scans of "/"): a keyset-paginated listing, SELECT ... WHERE key >
//     last key ORDER BY key LIMIT page_size, so every page is one bounded, indexed statement and
//     no transaction stays open for the walk. Soft-deleted rows are left out.
//   - Audit: the same complete listing as audit rows, so rows deleted from the table (a hard
//     DELETE that no poll can see) are found missing by Fusion: blind-spot safe.
//   - Realtime (source.RowResumer): a poll every poll_interval of the rows whose cursor is at or
//     past the position, ordered by cursor then key. Soft deletes come through as deletes.
//     LastIndex is the highest finite cursor.
//
// The cursor caveat: Follow sees a change only through the cursor, so a row committed with a
// cursor value below what Follow has already passed — a long transaction that took its
// updated_at (or its sequence value) before a shorter one committed — is missed by realtime,
// as are hard deletes. The periodic audit heals both (keep pipes' audit_interval set). Rows
// sharing a cursor value are safe: the position is (cursor, key) within a Follow, and a resumed
// Follow starts at the committed index itself (>=), sending its rows again rather than
// skipping the ones not yet sent.
//
// A row whose cursor is NULL, infinity or -infinity is listed (index 0; the infinite ones
// counted as skipped_invalid_cursor) but never polled: give the column a default. LastIndex
// is the highest finite cursor, so such a row never keeps realtime from starting.
//
// Connection loss never ends anything: every statement runs with query_timeout, and a failed
// one is retried, keeping its position, after a wait doubling from poll_interval (walks: from
// a tenth of it) to backoff_max. While polls fail the source reports no realtime
// (RealtimeReporter). The pipe's heartbeats never touch the database. (A walk that waits
// longer than the pipe's stuck_after is restarted by the pipe from its first page.)
package sql

import (
	"context"
	dbsql "database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"go.uber.org/zap"

	"github.com/fustor/fustor/agent/internal/source"
)

// The source contract this driver implements.
var (
	_ source.RowSnapshotter   = (*Source)(nil)
	_ source.RowAuditor       = (*Source)(nil)
	_ source.RowResumer       = (*Source)(nil)
	_ source.Counters         = (*Source)(nil)
	_ source.RealtimeReporter = (*Source)(nil)
)

// DialectPostgres is the one dialect so far.
const DialectPostgres = "postgres"

// Config is one table source.
type Config struct {
	// Dialect is the database kind ("" = postgres).
	Dialect string
	// DSN is the connection: a libpq key=value string or a postgres:// URL.
	DSN string
	// Password, when set, replaces the DSN's (else the DSN's, PGPASSWORD or the passfile).
	Password string
	// Table is the table (or view), optionally schema-qualified: "items", "sales.items".
	Table string
	// KeyColumns identify a row (the primary key); the listing is ordered by them.
	KeyColumns []string
	// CursorColumn is the monotone version or updated-at column realtime polls by.
	CursorColumn string
	// Columns are the columns sent as fields (empty = every column of the table).
	Columns []string
	// SoftDeleteColumn, when set, marks deleted rows: any value but NULL, false or 0.
	SoftDeleteColumn string
	// SchemaName and SchemaVersion are the schema the rows are declared as ("" = Table, 0 = 1).
	SchemaName    string
	SchemaVersion uint32
	// PollInterval is realtime's period; BackoffMax bounds the wait after failures.
	PollInterval, BackoffMax time.Duration
	// QueryTimeout bounds every statement and connection attempt.
	QueryTimeout time.Duration
	// PageSize is the rows per listing statement.
	PageSize int
}

// Default returns the defaults of a table source without its DSN, table and columns.
func Default() Config {
	return Config{Dialect: DialectPostgres, PollInterval: 5 * time.Second, BackoffMax: time.Minute,
		QueryTimeout: 30 * time.Second, PageSize: 1000, SchemaVersion: 1}
}

// withDefaults fills what is unset from Default.
func (c Config) withDefaults() Config {
	d := Default()
	if c.Dialect == "" {
		c.Dialect = d.Dialect
	}
	if c.PollInterval == 0 {
		c.PollInterval = d.PollInterval
	}
	if c.BackoffMax == 0 {
		c.BackoffMax = max(d.BackoffMax, c.PollInterval)
	}
	if c.QueryTimeout == 0 {
		c.QueryTimeout = d.QueryTimeout
	}
	if c.PageSize == 0 {
		c.PageSize = d.PageSize
	}
	if c.SchemaVersion == 0 {
		c.SchemaVersion = d.SchemaVersion
	}
	if c.SchemaName == "" {
		c.SchemaName = c.Table
	}
	return c
}

// Validate reports what is missing or out of range.
func (c Config) Validate() error {
	var errs []error
	if c.Dialect != "" && c.Dialect != DialectPostgres {
		errs = append(errs, fmt.Errorf("dialect %q: want %s", c.Dialect, DialectPostgres))
	}
	if c.DSN == "" {
		errs = append(errs, errors.New("dsn is required"))
	} else if _, err := pgx.ParseConfig(c.DSN); err != nil {
		errs = append(errs, fmt.Errorf("dsn: %w", redact(err, c.DSN)))
	}
	if c.Table == "" || c.CursorColumn == "" || len(c.KeyColumns) == 0 {
		errs = append(errs, errors.New("table, key_columns and cursor_column are required"))
	}
	if _, err := tableIdent(c.Table); c.Table != "" && err != nil {
		errs = append(errs, err)
	}
	for _, col := range slices.Concat([]string{c.CursorColumn, c.SoftDeleteColumn}, c.KeyColumns, c.Columns) {
		if strings.ContainsRune(col, 0) {
			errs = append(errs, fmt.Errorf("column %q: a NUL in a name", col))
		}
	}
	if c.PollInterval < 0 || c.BackoffMax < 0 || c.QueryTimeout < 0 || c.PageSize < 0 || c.PageSize > 100_000 {
		errs = append(errs, errors.New("poll_interval, backoff_max and query_timeout must not be negative, page_size must be 0..100000"))
	}
	return errors.Join(errs...)
}

// redact keeps a password out of an error about the DSN.
func redact(err error, dsn string) error {
	if cfg, perr := pgx.ParseConfig(dsn); perr == nil && cfg.Password != "" {
		return errors.New(strings.ReplaceAll(err.Error(), cfg.Password, "xxxxx"))
	}
	return errors.New("cannot parse the DSN (its text is not repeated: it may hold a password)")
}

// tableIdent quotes "name" or "schema.name".
func tableIdent(t string) (pgx.Identifier, error) {
	parts := strings.Split(t, ".")
	if len(parts) > 2 || strings.ContainsRune(t, 0) {
		return nil, fmt.Errorf("table %q: want name or schema.name", t)
	}
	for _, p := range parts {
		if p == "" {
			return nil, fmt.Errorf("table %q: want name or schema.name", t)
		}
	}
	return pgx.Identifier(parts), nil
}

// URI is how the source is named to Fusion and in logs, credentials left out:
// sql://host:port/database/table.
func URI(dsn, table string) (string, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return "", fmt.Errorf("parse dsn: %w", redact(err, dsn))
	}
	host := cfg.Host
	if strings.HasPrefix(host, "/") {
		host = "unix:" + host
	}
	return fmt.Sprintf("sql://%s:%d/%s/%s", host, cfg.Port, cfg.Database, table), nil
}

// Source is one table. Its walks and Follow may run concurrently.
type Source struct {
	log *zap.Logger
	cfg Config
	db  *dbsql.DB
	c   counters
	// failing is set while realtime polls fail (Realtime).
	failing atomic.Bool

	mu   sync.Mutex
	meta *table // nil until read, and again after a failed statement
}

type counters struct {
	queries, failures, rows, polls, deletes, badCursor, badText, badKey atomic.Uint64
}

// New returns the source of cfg; it connects at its first statement, so a database that is
// down at start delays the rows, never the agent.
func New(log *zap.Logger, cfg Config) (*Source, error) {
	if log == nil {
		log = zap.NewNop()
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("validate sql source: %w", err)
	}
	cfg = cfg.withDefaults()
	cc, err := pgx.ParseConfig(cfg.DSN)
	if err != nil {
		return nil, fmt.Errorf("parse dsn: %w", redact(err, cfg.DSN))
	}
	if cfg.Password != "" {
		cc.Password = cfg.Password
	}
	if cc.ConnectTimeout == 0 {
		cc.ConnectTimeout = cfg.QueryTimeout
	}
	db := stdlib.OpenDB(*cc)
	// Walks, Follow and scans share the pool: a few connections, none kept idle for long.
	db.SetMaxOpenConns(4)
	db.SetMaxIdleConns(2)
	db.SetConnMaxIdleTime(5 * time.Minute)
	return &Source{log: log, cfg: cfg, db: db}, nil
}

// Close closes the pool.
func (s *Source) Close() error { return s.db.Close() }

// Schema is the schema the rows are declared as.
func (s *Source) Schema() source.Schema {
	return source.Schema{Name: s.cfg.SchemaName, Version: s.cfg.SchemaVersion}
}

// Counters returns the source's counters.
func (s *Source) Counters() map[string]uint64 {
	return map[string]uint64{"sql_queries": s.c.queries.Load(), "sql_query_failures": s.c.failures.Load(),
		"sql_rows_read": s.c.rows.Load(), "sql_polls": s.c.polls.Load(), "sql_deletes_found": s.c.deletes.Load(),
		"skipped_invalid_cursor": s.c.badCursor.Load(), "sql_invalid_text": s.c.badText.Load(),
		"skipped_invalid_key": s.c.badKey.Load()}
}

// Realtime reports whether the last poll succeeded.
func (s *Source) Realtime() bool { return !s.failing.Load() }

// SnapshotRows lists every row not soft-deleted, in key order, one page per statement.
func (s *Source) SnapshotRows(ctx context.Context, origin source.Origin, emit func([]source.Row) error) (source.WalkStats, error) {
	var ws source.WalkStats
	var after []any // the last key listed (nil: from the start)
	for {
		var pg page
		err := s.retry(ctx, "list rows", s.cfg.PollInterval/10, func(ctx context.Context, t *table) error {
			var err error
			pg, err = s.listPage(ctx, t, after)
			return err
		})
		if err != nil {
			return ws, err
		}
		ws.Files += uint64(len(pg.rows))
		if len(pg.rows) > 0 {
			if err := emit(pg.rows); err != nil {
				return ws, err
			}
		}
		if pg.n > 0 {
			after = pg.lastKey
		}
		if pg.n < s.cfg.PageSize {
			return ws, nil
		}
	}
}

// AuditRows is a complete listing as audit rows: Fusion removes the rows it lacks.
func (s *Source) AuditRows(ctx context.Context, emit func([]source.Row) error) (source.WalkStats, error) {
	return s.SnapshotRows(ctx, source.OriginAudit, emit)
}

// LastIndex is the highest finite cursor value now (0 for an empty table). While it fails
// the source reports no realtime: realtime cannot start.
func (s *Source) LastIndex(ctx context.Context) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.QueryTimeout)
	defer cancel()
	t, err := s.table(ctx)
	if err != nil {
		s.failing.Store(true)
		return 0, err
	}
	s.c.queries.Add(1)
	var v any
	err = s.db.QueryRowContext(ctx, t.maxCursor).Scan(&v)
	if errors.Is(err, dbsql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		s.failed()
		s.failing.Store(true)
		return 0, fmt.Errorf("read max(%s): %w", s.cfg.CursorColumn, err)
	}
	idx, ok := t.index(v)
	if !ok {
		s.failing.Store(true)
		return 0, fmt.Errorf("read max(%s): %v is no cursor value", s.cfg.CursorColumn, v)
	}
	return idx, nil
}

// FollowRows polls the rows changed at or after from, in cursor order, until ctx is done. A
// failed poll is retried with backoff from where it was; it never returns for one.
func (s *Source) FollowRows(ctx context.Context, from uint64, batch int, emit func([]source.Row) error) error {
	if batch <= 0 {
		batch = s.cfg.PageSize
	}
	pos := followPos{from: from}
	backoff := time.Duration(0)
	for {
		var pg page
		var next followPos
		t, err := s.table(ctx)
		if err == nil {
			s.c.polls.Add(1)
			pg, next, err = s.followPage(ctx, t, pos, batch)
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			s.failing.Store(true)
			backoff = min(max(backoff*2, s.cfg.PollInterval), s.cfg.BackoffMax)
			s.log.Warn("sql poll failed; retrying", zap.String("table", s.cfg.Table), zap.Duration("retry_in", backoff), zap.Error(err))
			if !sleep(ctx, backoff) {
				return nil
			}
			continue
		}
		if s.failing.Swap(false) {
			s.log.Info("sql polls work again", zap.String("table", s.cfg.Table))
		}
		backoff = 0
		if len(pg.rows) > 0 {
			if err := emit(pg.rows); err != nil {
				return err
			}
		}
		pos = next
		if pg.n == batch {
			continue // more is waiting
		}
		if !sleep(ctx, s.cfg.PollInterval) {
			return nil
		}
	}
}

// retry runs f until it succeeds or ctx ends, waiting from first doubling to backoff_max
// between failed tries; the table's description is read again after a failure.
func (s *Source) retry(ctx context.Context, what string, first time.Duration, f func(context.Context, *table) error) error {
	wait := time.Duration(0)
	for {
		t, err := s.table(ctx)
		if err == nil {
			err = f(ctx, t)
		}
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		wait = min(max(wait*2, first, time.Millisecond), s.cfg.BackoffMax)
		s.log.Warn("sql statement failed; retrying", zap.String("table", s.cfg.Table), zap.String("what", what),
			zap.Duration("retry_in", wait), zap.Error(err))
		if !sleep(ctx, wait) {
			return ctx.Err()
		}
	}
}

// failed counts a failed statement and forgets the table's description (it may have changed).
func (s *Source) failed() {
	s.c.failures.Add(1)
	s.mu.Lock()
	s.meta = nil
	s.mu.Unlock()
}

// sleep waits d or until ctx is done (false then).
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
