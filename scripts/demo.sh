#!/usr/bin/env bash
# Runs Fusion and one agent on ./demo-data with the built-in demo configuration, until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=./bin
DATA=./demo-data
if [ ! -d "$DATA" ]; then
  mkdir -p "$DATA/upload/submit/aa/bb/run-0001/sub_1" "$DATA/upload/submit/aa/cc/run-0002/sub_1" "$DATA/docs"
  for i in 1 2 3; do echo "sample $i" >"$DATA/upload/submit/aa/bb/run-0001/sub_1/data_000$i.dat"; done
  echo "partial upload" >"$DATA/upload/submit/aa/cc/run-0002/sub_1/data_0001.dat"
  echo "Files here are watched by the demo agent. Add, change or remove some, then query again." >"$DATA/docs/README.txt"
fi
for port in 7070 7071 7080; do
  if command -v ss >/dev/null && ss -ltn 2>/dev/null | grep -q "127.0.0.1:$port "; then
    echo "demo: 127.0.0.1:$port is already in use; stop whatever listens there first" >&2
    exit 1
  fi
done
mkdir -p "$BIN/demo-logs"
"$BIN/fustor-fusion" --demo --server.metrics_listen 127.0.0.1:7071 >"$BIN/demo-logs/fusion.log" 2>&1 &
FUSION=$!
"$BIN/fustor-agent" --demo "$DATA" >"$BIN/demo-logs/agent.log" 2>&1 &
AGENT=$!
stop() {
  trap - INT TERM EXIT
  echo
  echo "demo: stopping agent and fusion"
  kill -TERM "$AGENT" "$FUSION" 2>/dev/null || true
  wait "$AGENT" "$FUSION" 2>/dev/null || true
  echo "demo: stopped (logs in $BIN/demo-logs/)"
  exit 0
}
trap stop INT TERM EXIT
CTL="$BIN/fustorctl --key demo-key --view demo"
for _ in $(seq 1 100); do
  if $CTL stats / >/dev/null 2>&1; then break; fi
  if ! kill -0 "$FUSION" 2>/dev/null || ! kill -0 "$AGENT" 2>/dev/null; then
    echo "demo: a process exited early; see $BIN/demo-logs/" >&2
    tail -n 20 "$BIN/demo-logs/"*.log >&2
    exit 1
  fi
  sleep 0.1
done
cat <<TXT
Fustor demo is running: Fusion on 127.0.0.1:7070, an agent watching $DATA (view "demo").

  Console: http://127.0.0.1:7080/   (sign in with the key demo-key)

Query it from another terminal:
  $CTL stats /
  $CTL ls / --depth 3
  $CTL tree /
  $CTL find / --glob '*.dat'
  $CTL stat /docs/README.txt --json
  $BIN/fustorctl --key demo-key sessions
or with grpcurl (reflection is on):
  grpcurl -plaintext -H 'authorization: Bearer demo-key' -d '{"view":"demo","path":"/"}' 127.0.0.1:7070 fustor.v1.ViewService/GetStats

Web console (key: demo-key): http://127.0.0.1:7080/
JSON over HTTP, the same calls and keys (OpenAPI document at http://127.0.0.1:7080/openapi.json):
  curl -s -H 'authorization: Bearer demo-key' 'http://127.0.0.1:7080/v1/views/demo/dir?path=/upload&max_depth=3'
  curl -sN -H 'authorization: Bearer demo-key' 'http://127.0.0.1:7080/v1/views/demo/watch?path=/'

Prometheus metrics (views, pipes, gRPC calls and their timings): curl -s 127.0.0.1:7071/metrics

Change files under $DATA and query again: changes show up within a second.
Logs: $BIN/demo-logs/. Press Ctrl-C to stop.
TXT
$CTL stats / || true
wait "$AGENT" "$FUSION"
