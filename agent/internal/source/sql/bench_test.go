package sql

import (
	"context"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/fustor/fustor/agent/internal/source"
	"github.com/fustor/fustor/sdk/pgtest"
)

// benchRows is the table's size in the benchmarks: a submissions-like table.
const benchRows = 100_000

func benchSource(b *testing.B, srv *pgtest.Server) *Source {
	b.Helper()
	s, err := New(zap.NewNop(), Config{DSN: srv.DSN(), Table: "subs", KeyColumns: []string{"id"}, CursorColumn: "version",
		PageSize: 1000, PollInterval: 10 * time.Millisecond, BackoffMax: time.Second, QueryTimeout: time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	return s
}

func benchTable(b *testing.B) *pgtest.Server {
	b.Helper()
	srv := pgtest.Start(b)
	srv.Exec(`CREATE TABLE subs (id bigint PRIMARY KEY, path text NOT NULL, status text, bytes bigint, version bigint NOT NULL)`,
		`INSERT INTO subs SELECT g, '/upload/submit/' || (g % 1000) || '/' || g, 'complete', g * 10, g FROM generate_series(1, 100000) g`,
		`ANALYZE subs`)
	return srv
}

// BenchmarkSnapshotRows: one snapshot of a 100,000-row table in pages of 1,000 (keyset
// pagination) — rows/s and statements per 1,000 rows.
func BenchmarkSnapshotRows(b *testing.B) {
	srv := benchTable(b)
	s := benchSource(b, srv)
	b.ResetTimer()
	start, q0 := time.Now(), s.Counters()["sql_queries"]
	for b.Loop() {
		n := 0
		if _, err := s.SnapshotRows(context.Background(), source.OriginSnapshot, func(rs []source.Row) error {
			n += len(rs)
			return nil
		}); err != nil {
			b.Fatal(err)
		}
		if n != benchRows {
			b.Fatalf("%d rows, want %d", n, benchRows)
		}
	}
	el := time.Since(start)
	b.ReportMetric(float64(b.N*benchRows)/el.Seconds(), "rows/s")
	b.ReportMetric(float64(s.Counters()["sql_queries"]-q0)/float64(b.N)/(benchRows/1000), "queries/1k-rows")
}

// BenchmarkFollowRows: realtime — 10,000 rows updated in one statement, then followed from
// the cursor before the update until every one arrived: rows/s of the polls.
func BenchmarkFollowRows(b *testing.B) {
	srv := benchTable(b)
	s := benchSource(b, srv)
	const updated = 10_000
	var total time.Duration
	for b.Loop() {
		b.StopTimer()
		from, err := s.LastIndex(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		srv.Exec(`CREATE SEQUENCE IF NOT EXISTS v START 1000000`,
			`UPDATE subs SET status = 'moved', version = nextval('v') WHERE id <= 10000`)
		b.StartTimer()
		start := time.Now()
		ctx, cancel := context.WithCancel(context.Background())
		n := 0
		err = s.FollowRows(ctx, from+1, 1000, func(rs []source.Row) error {
			n += len(rs)
			if n >= updated {
				cancel()
			}
			return nil
		})
		cancel()
		if err != nil && ctx.Err() == nil {
			b.Fatal(err)
		}
		total += time.Since(start)
	}
	b.ReportMetric(float64(b.N*updated)/total.Seconds(), "rows/s")
}
