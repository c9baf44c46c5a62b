package e2e

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	fustorv1 "github.com/fustor/fustor/gen/fustor/v1"
	"github.com/fustor/fustor/sdk/client"
	"github.com/fustor/fustor/sdk/pgtest"
)

// sqlSetup is a submissions table whose version column a sequence sets on every insert and
// update (the cursor the agent's realtime polls), with a soft-delete flag. bytes is text, so a
// row can carry a value the pipe's int cast refuses.
const sqlSetup = `
CREATE SEQUENCE subs_version;
CREATE TABLE submissions (
  id bigint PRIMARY KEY,
  path text NOT NULL,
  status text,
  bytes text,
  deleted boolean NOT NULL DEFAULT false,
  version bigint NOT NULL DEFAULT nextval('subs_version'));
CREATE FUNCTION bump() RETURNS trigger AS $$ BEGIN NEW.version := nextval('subs_version'); RETURN NEW; END $$ LANGUAGE plpgsql;
CREATE TRIGGER bump BEFORE UPDATE ON submissions FOR EACH ROW EXECUTE FUNCTION bump();`

// sqlRows is how many rows TestSQLSourceFeedsRowsView starts with.
const sqlRows = 20_000

// tableAsView is the table as the rows view must hold it after the pipe's fields_mapping:
// every row not soft-deleted, keyed by id, path renamed location, bytes cast to int (left out
// when it is not a number), status as is (left out when NULL), and the constant site.
func tableAsView(t testing.TB, pg *pgtest.Server) map[string]map[string]string {
	t.Helper()
	out := map[string]map[string]string{}
	// NULL is printed as "\N" so it differs from an empty string.
	text := pg.Query(`SELECT id, path, coalesce(status, '\N'), coalesce(bytes, '\N') FROM submissions WHERE NOT deleted ORDER BY id`)
	if text == "" {
		return out
	}
	for _, line := range strings.Split(text, "\n") {
		col := strings.Split(line, "|")
		if len(col) != 4 {
			t.Fatalf("unexpected row %q", line)
		}
		f := map[string]string{"location": col[1], "site": "lab-1"}
		if col[2] != `\N` {
			f["status"] = col[2]
		}
		if n, err := strconv.ParseInt(strings.TrimSpace(col[3]), 10, 64); err == nil {
			f["bytes"] = strconv.FormatInt(n, 10)
		}
		out[col[0]] = f
	}
	return out
}

// rowsOf lists the whole rows view.
func rowsOf(ctx context.Context, cl *client.Client, view string) (map[string]map[string]string, error) {
	out := map[string]map[string]string{}
	for r, err := range cl.Rows(ctx, &fustorv1.ListRowsRequest{View: view, PageSize: 10_000}) {
		if err != nil {
			return nil, err
		}
		out[r.GetKey()] = r.GetFields()
	}
	return out, nil
}

// compareRows reports how the view differs from the table.
func compareRows(want, got map[string]map[string]string) error {
	return compareMaps("view", "table", "rows", want, got, func(g, w map[string]string) bool { return maps.Equal(g, w) })
}

// TestSQLSourceFeedsRowsView: a PostgreSQL table → an agent's sql source → the pipe's
// fields_mapping (rename, int cast, constant) → a Fusion rows view of schema "submissions",
// whose rows equal the mapped table: after the snapshot; after inserts, updates and soft
// deletes (realtime) and hard deletes (healed by the audit's listing, as blind-spot
// deletions); values that fail the cast are counted by the agent and left out; with the
// database down the session and its heartbeats go on, and the view converges once it is back;
// after a kill -9 of the agent, then of Fusion, with the table changed meanwhile, the view
// equals the table again. A session of another schema is refused at creation by the rows pipe.
func TestSQLSourceFeedsRowsView(t *testing.T) {
	pg := pgtest.Start(t)
	pg.Exec(sqlSetup,
		fmt.Sprintf(`INSERT INTO submissions (id, path, status, bytes)
  SELECT i, '/upload/submit/' || (i %% 100) || '/' || i, CASE WHEN i %% 7 = 0 THEN NULL ELSE 'complete' END,
    CASE WHEN i %% 1000 = 0 THEN 'n/a' ELSE (i * 10)::text END
  FROM generate_series(1, %d) AS i`, sqlRows))

	bin := binaries(t, true)
	addr := freePort(t)
	cfgDir := t.TempDir()
	fusionCfg := fmt.Sprintf(`server: {listen: %s, admin_keys: [admin-key], shutdown_timeout: 2s}
log: {level: debug}
receivers:
  default:
    api_keys:
      - {key: ingest-key, pipe: subs}
pipes:
  subs: {receiver: default, schema: submissions, views: [submissions], session_timeout: 5s}
views:
  submissions: {driver: rows, schema: submissions, schema_version: 1, live: true, query_keys: [query-key]}
`, addr)
	agentCfg := fmt.Sprintf(`agent_id: sql-agent
log: {level: debug}
sources:
  db:
    driver: sql
    sql: {dsn: %q, table: submissions, key_columns: [id], cursor_column: version, soft_delete_column: deleted,
          schema_name: submissions, schema_version: 1, poll_interval: 300ms, page_size: 1000, backoff_max: 1s, query_timeout: 5s}
senders:
  fusion: {address: %s, api_key: ingest-key}
pipes:
  subs:
    source: db
    sender: fusion
    backoff_min: 100ms
    backoff_max: 500ms
    audit_interval: 2s
    fields_mapping:
      fields:
        - {to: location, from: path}
        - {to: status}
        - {to: bytes, type: int}
        - {to: site, value: lab-1}
`, pg.DSN(), addr)
	must(t, os.WriteFile(filepath.Join(cfgDir, "fusion.yaml"), []byte(fusionCfg), 0o644))
	must(t, os.WriteFile(filepath.Join(cfgDir, "agent.yaml"), []byte(agentCfg), 0o644))
	fusion := startProc(t, filepath.Join(bin, "fustor-fusion"), "--config", filepath.Join(cfgDir, "fusion.yaml"))
	start := time.Now()
	agent := startProc(t, filepath.Join(bin, "fustor-agent"), "--config", filepath.Join(cfgDir, "agent.yaml"))

	cl, err := client.New(addr, client.WithKey("query-key"), client.WithCallTimeout(20*time.Second))
	must(t, err)
	t.Cleanup(func() { _ = cl.Close() })
	c := &cluster{t: t, bin: bin, addr: addr, view: "submissions"}
	viewEqualsTable := func(within time.Duration, what string) time.Duration {
		t.Helper()
		return eventually(t, within, what, func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			got, err := rowsOf(ctx, cl, "submissions")
			if err != nil {
				time.Sleep(200 * time.Millisecond)
				return err
			}
			if err := compareRows(tableAsView(t, pg), got); err != nil {
				time.Sleep(200 * time.Millisecond)
				return err
			}
			return nil
		})
	}
	viewEqualsTable(2*time.Minute, fmt.Sprintf("rows view equals a table of %d rows", sqlRows))
	t.Logf("%d rows: the view equals the mapped table %v after the agent started", sqlRows, time.Since(start).Round(time.Millisecond))

	// The values that failed the int cast (every 1000th row's "n/a") were counted.
	eventually(t, 20*time.Second, "cast failures counted by the agent", func() error {
		_, counters, err := c.agentProgress()
		if err != nil {
			return err
		}
		if n := num(counters["mapping_cast_failures"]); n < sqlRows/1000 {
			time.Sleep(200 * time.Millisecond)
			return fmt.Errorf("mapping_cast_failures %d, want at least %d", n, sqlRows/1000)
		}
		return nil
	})

	// Realtime: inserts, updates and soft deletes; hard deletes, which no poll sees, go with
	// the next audit's listing.
	pg.Exec(`INSERT INTO submissions (id, path, status, bytes) SELECT i, '/late/' || i, 'uploading', '1' FROM generate_series(100001, 100100) AS i`,
		`UPDATE submissions SET status = 'complete', bytes = '2048' WHERE id BETWEEN 100001 AND 100050`,
		`UPDATE submissions SET path = path || '.moved' WHERE id BETWEEN 500 AND 549`,
		`UPDATE submissions SET deleted = true WHERE id BETWEEN 600 AND 619`,
		`DELETE FROM submissions WHERE id BETWEEN 700 AND 709`)
	took := viewEqualsTable(time.Minute, "the view follows inserts, updates, soft and hard deletes")
	t.Logf("inserts, updates, soft and hard deletes visible %v later (poll 300ms, audit 2s)", took.Round(time.Millisecond))
	eventually(t, 20*time.Second, "hard deletes are blind-spot deletions", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		resp, err := cl.ListRows(ctx, &fustorv1.ListRowsRequest{View: "submissions", Prefix: "70", PageSize: 1})
		if err != nil {
			return err
		}
		if n := resp.GetStats().GetBlindSpotDeletions(); n < 10 {
			time.Sleep(200 * time.Millisecond)
			return fmt.Errorf("blind_spot_deletions %d, want at least 10", n)
		}
		return nil
	})
	// One row by key, as a person would ask: where did submission 100001 land, is it complete.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	row, err := cl.GetRow(ctx, &fustorv1.GetRowRequest{View: "submissions", Key: "100001"})
	cancel()
	must(t, err)
	if f := row.GetRow().GetFields(); f["location"] != "/late/100001" || f["status"] != "complete" || f["bytes"] != "2048" {
		t.Errorf("row 100001: %v", f)
	}

	// Outage: the database is stopped; the session outlives it (heartbeats), realtime is
	// reported lost, and what changed meanwhile shows once it is back.
	before, err := c.sessionOf("sql-agent")
	must(t, err)
	pg.Stop()
	eventually(t, 30*time.Second, "heartbeats report realtime lost", func() error {
		s, err := c.sessionOf("sql-agent")
		if err != nil {
			return err
		}
		if s.ID != before.ID {
			return fmt.Errorf("session changed from %s to %s: heartbeats stopped", before.ID, s.ID)
		}
		if s.CanRealtime {
			time.Sleep(200 * time.Millisecond)
			return errNotYet
		}
		return nil
	})
	time.Sleep(10 * time.Second) // two session timeouts with the database down: nothing to poll for
	during, err := c.sessionOf("sql-agent")
	must(t, err)
	if during.ID != before.ID {
		t.Fatalf("session changed during the outage (%s → %s): heartbeats stopped", before.ID, during.ID)
	}
	pg.Restart()
	pg.Exec(`INSERT INTO submissions (id, path, status, bytes) VALUES (200001, '/after/outage', 'complete', '5')`,
		`UPDATE submissions SET deleted = true WHERE id = 1`,
		`DELETE FROM submissions WHERE id = 2`)
	back := viewEqualsTable(time.Minute, "the view converges after the outage")
	t.Logf("converged %v after the database returned", back.Round(time.Millisecond))
	after, err := c.sessionOf("sql-agent")
	must(t, err)
	if after.ID != before.ID {
		t.Errorf("session changed across the outage: %s → %s", before.ID, after.ID)
	}

	// kill -9 of the agent while the table changes: the new agent's session resumes its
	// realtime from Fusion's committed index (no snapshot needed), the audit removes the row
	// hard-deleted meanwhile, and the view equals the table again.
	agent.stop(t, syscall.SIGKILL)
	pg.Exec(`INSERT INTO submissions (id, path, status, bytes) VALUES (300001, '/while/agent/down', 'uploading', '9')`,
		`UPDATE submissions SET status = 'complete' WHERE id = 300001 OR id BETWEEN 10 AND 19`,
		`DELETE FROM submissions WHERE id = 3`)
	agent = startProc(t, filepath.Join(bin, "fustor-agent"), "--config", filepath.Join(cfgDir, "agent.yaml"))
	took = viewEqualsTable(time.Minute, "the view equals the table after the agent's kill -9")
	t.Logf("after the agent's kill -9: view equal %v after its restart", took.Round(time.Millisecond))

	// kill -9 of Fusion (no checkpoint of its own state dir): it starts empty, the agent's
	// next session is told nothing is committed, snapshots, and the view is whole again.
	fusion.stop(t, syscall.SIGKILL)
	pg.Exec(`INSERT INTO submissions (id, path, status, bytes) VALUES (400001, '/while/fusion/down', 'complete', '1')`,
		`DELETE FROM submissions WHERE id = 4`)
	fusion = startProc(t, filepath.Join(bin, "fustor-fusion"), "--config", filepath.Join(cfgDir, "fusion.yaml"))
	took = viewEqualsTable(time.Minute, "the view equals the table after Fusion's kill -9")
	t.Logf("after Fusion's kill -9: view equal %v after its restart", took.Round(time.Millisecond))

	// Routing by schema: the rows pipe refuses a session declaring fs.
	out, err := grpcurl(t, "-plaintext", "-H", "authorization: Bearer ingest-key", "-d", `{"agent_id":"x","schema_name":"fs","schema_version":1}`,
		addr, "fustor.v1.SessionService/CreateSession")
	if err == nil || !strings.Contains(out, "FailedPrecondition") || !strings.Contains(out, `pipe "subs" accepts schema "submissions", not "fs"`) {
		t.Errorf("CreateSession of schema fs on the rows pipe: %v\n%s", err, out)
	}
}
