#!/usr/bin/env bash
# Runs a private PostgreSQL server with a seeded "submissions" table, Fusion with the built-in
# demo configuration plus a rows view of schema "submissions", and an agent whose sql source is
# that table (with a fields_mapping), until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=./bin
ROWS=${DEMO_SQL_ROWS:-10000}
PGPORT=7095
for port in 7070 7071 7080 $PGPORT; do
  if command -v ss >/dev/null && ss -ltn 2>/dev/null | grep -q "127.0.0.1:$port "; then
    echo "demo-sql: 127.0.0.1:$port is already in use; stop whatever listens there first" >&2
    exit 1
  fi
done
# PostgreSQL's binaries: on PATH, else Debian's postgresql package.
PGBIN=$(dirname "$(readlink -f "$(command -v initdb 2>/dev/null || ls -d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1)")")
if [ ! -x "$PGBIN/initdb" ]; then
  echo "demo-sql: PostgreSQL's server binaries are missing: apt-get install postgresql" >&2
  exit 1
fi
LOGS="$(pwd)/$BIN/demo-logs"
DATA="$LOGS/sql-pg"
mkdir -p "$LOGS"
rm -rf "$DATA" "$LOGS/sql-home"
mkdir -p "$DATA"
# PostgreSQL refuses to run as root: as root the server runs as the user postgres.
AS=()
if [ "$(id -u)" = 0 ]; then
  chown postgres "$DATA"
  chmod o+x "$LOGS" "$(dirname "$LOGS")" 2>/dev/null || true
  AS=(runuser -u postgres --)
fi
"${AS[@]}" "$PGBIN/initdb" -D "$DATA/db" -U fustor --auth=trust >"$LOGS/sql-initdb.log" 2>&1
"${AS[@]}" "$PGBIN/postgres" -D "$DATA/db" -k "$DATA" -p "$PGPORT" -h 127.0.0.1 >"$LOGS/sql-postgres.log" 2>&1 &
PG=$!
PSQL=("$PGBIN/psql" -h 127.0.0.1 -p "$PGPORT" -U fustor -d postgres -v ON_ERROR_STOP=1 -q)
for _ in $(seq 1 100); do "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PGPORT" && break; sleep 0.1; done
"${PSQL[@]}" <<SQL
CREATE SEQUENCE subs_version;
CREATE TABLE submissions (
  id bigint PRIMARY KEY,
  path text NOT NULL,
  status text NOT NULL,
  bytes text,
  deleted boolean NOT NULL DEFAULT false,
  version bigint NOT NULL DEFAULT nextval('subs_version'));
CREATE FUNCTION bump() RETURNS trigger AS \$\$ BEGIN NEW.version := nextval('subs_version'); RETURN NEW; END \$\$ LANGUAGE plpgsql;
CREATE TRIGGER bump BEFORE UPDATE ON submissions FOR EACH ROW EXECUTE FUNCTION bump();
INSERT INTO submissions (id, path, status, bytes)
  SELECT i, '/upload/submit/' || lpad((i % 100)::text, 2, '0') || '/' || i, CASE WHEN i % 10 = 0 THEN 'uploading' ELSE 'complete' END, (i * 1000)::text
  FROM generate_series(1, $ROWS) AS i;
SQL
cat >"$LOGS/fusion-sql.yaml" <<YAML
receivers:
  rows: {api_keys: [{key: demo-rows-ingest-key, pipe: submissions}]}
pipes:
  submissions: {receiver: rows, schema: submissions, views: [submissions]}
views:
  submissions: {driver: rows, schema: submissions, schema_version: 1, query_keys: [demo-key]}
YAML
cat >"$LOGS/agent-sql.yaml" <<YAML
agent_id: demo-sql
sources:
  db:
    driver: sql
    sql: {dsn: "postgres://fustor@127.0.0.1:$PGPORT/postgres?sslmode=disable", table: submissions, key_columns: [id],
          cursor_column: version, soft_delete_column: deleted, schema_name: submissions, poll_interval: 1s}
senders:
  fusion: {address: 127.0.0.1:7070, api_key: demo-rows-ingest-key}
pipes:
  submissions:
    source: db
    sender: fusion
    audit_interval: 30s
    fields_mapping:
      fields:
        - {to: location, from: path}
        - {to: status}
        - {to: bytes, type: int}
        - {to: site, value: demo-lab}
YAML
FUSTOR_HOME="$LOGS/sql-home" "$BIN/fustor-fusion" --demo --config "$LOGS/fusion-sql.yaml" --server.metrics_listen 127.0.0.1:7071 >"$LOGS/fusion-sql.log" 2>&1 &
FUSION=$!
FUSTOR_HOME="$LOGS/sql-home" "$BIN/fustor-agent" --config "$LOGS/agent-sql.yaml" >"$LOGS/agent-sql.log" 2>&1 &
AGENT=$!
stop() {
  trap - INT TERM EXIT
  echo
  echo "demo-sql: stopping agent, fusion and postgres"
  kill -TERM "$AGENT" "$FUSION" 2>/dev/null || true
  kill -INT "$PG" 2>/dev/null || true
  wait "$AGENT" "$FUSION" "$PG" 2>/dev/null || true
  echo "demo-sql: stopped (logs in $LOGS/)"
  exit 0
}
trap stop INT TERM EXIT
CTL="$BIN/fustorctl --key demo-key"
for _ in $(seq 1 300); do
  if $CTL row submissions "$ROWS" >/dev/null 2>&1; then break; fi
  for p in "$PG" "$FUSION" "$AGENT"; do
    if ! kill -0 "$p" 2>/dev/null; then
      echo "demo-sql: a process exited early; see $LOGS/" >&2
      tail -n 20 "$LOGS/sql-postgres.log" "$LOGS/fusion-sql.log" "$LOGS/agent-sql.log" >&2
      exit 1
    fi
  done
  sleep 0.2
done
cat <<TXT
Fustor SQL demo is running: PostgreSQL on 127.0.0.1:$PGPORT (table "submissions", $ROWS rows),
Fusion on 127.0.0.1:7070, an agent polling the table every 1 s into the rows view "submissions"
(its fields_mapping: path → location, bytes cast to int, a constant site).

  Console: http://127.0.0.1:7080/   (sign in with the key demo-key, pick the view submissions)

Query it from another terminal:
  $CTL row submissions 42
  $CTL rows submissions --where status=uploading --limit 5
  $CTL rows submissions --prefix 99 --limit 5
Change the table:
  ${PSQL[*]} -c "UPDATE submissions SET status = 'complete' WHERE id = 10"
  ${PSQL[*]} -c "INSERT INTO submissions (id, path, status, bytes) VALUES (100001, '/upload/late', 'uploading', 'n/a')"
  ${PSQL[*]} -c "DELETE FROM submissions WHERE id = 7"
then query again: changes show within a poll (1 s), the hard delete with the next audit (30 s);
'n/a' fails the int cast: the row comes without bytes, counted (mapping_cast_failures).
Logs: $LOGS/. Press Ctrl-C to stop.
TXT
$CTL row submissions 42 || true
wait "$AGENT" "$FUSION" "$PG"
