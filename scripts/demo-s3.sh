#!/usr/bin/env bash
# Runs fustor-s3d (an in-memory S3 server with a seeded bucket), Fusion with the built-in demo
# configuration and an agent whose source is that bucket, until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=./bin
OBJECTS=${DEMO_S3_OBJECTS:-10000}
S3=127.0.0.1:7090
for port in 7070 7071 7080 7090; do
  if command -v ss >/dev/null && ss -ltn 2>/dev/null | grep -q "127.0.0.1:$port "; then
    echo "demo-s3: 127.0.0.1:$port is already in use; stop whatever listens there first" >&2
    exit 1
  fi
done
LOGS="$BIN/demo-logs"
mkdir -p "$LOGS"
cat >"$LOGS/agent-s3.yaml" <<YAML
agent_id: demo-s3
sources:
  bucket: {driver: s3, s3: {endpoint: "http://$S3", bucket: demo, region: us-east-1, path_style: true, access_key: demo, secret_key: demo-secret, list_interval: 2s, backoff_max: 10s}}
senders:
  fusion: {address: 127.0.0.1:7070, api_key: demo-ingest-key}
pipes:
  demo: {source: bucket, sender: fusion, backoff_min: 1s, backoff_max: 10s}
YAML
"$BIN/fustor-s3d" --listen "$S3" --bucket demo --seed "$OBJECTS" --start -24h --wall-clock --access-key demo --secret-key demo-secret >"$LOGS/s3d.log" 2>&1 &
S3D=$!
# A Fustor home of its own, emptied: `make demo`'s checkpoint (or an earlier bucket's) is not
# this view's.
rm -rf "$LOGS/s3-home"
FUSTOR_HOME="$LOGS/s3-home" "$BIN/fustor-fusion" --demo --server.metrics_listen 127.0.0.1:7071 >"$LOGS/fusion.log" 2>&1 &
FUSION=$!
FUSTOR_HOME="$LOGS/s3-home" "$BIN/fustor-agent" --config "$LOGS/agent-s3.yaml" >"$LOGS/agent-s3.log" 2>&1 &
AGENT=$!
stop() {
  trap - INT TERM EXIT
  echo
  echo "demo-s3: stopping agent, fusion and fustor-s3d"
  kill -TERM "$AGENT" "$FUSION" "$S3D" 2>/dev/null || true
  wait "$AGENT" "$FUSION" "$S3D" 2>/dev/null || true
  echo "demo-s3: stopped (logs in $LOGS/)"
  exit 0
}
trap stop INT TERM EXIT
CTL="$BIN/fustorctl --key demo-key --view demo"
for _ in $(seq 1 300); do
  if [ "$($CTL --json stats / 2>/dev/null | grep -o '"fileCount": *"*[0-9]*' | grep -o '[0-9]*$')" = "$OBJECTS" ]; then break; fi
  for p in "$S3D" "$FUSION" "$AGENT"; do
    if ! kill -0 "$p" 2>/dev/null; then
      echo "demo-s3: a process exited early; see $LOGS/" >&2
      tail -n 20 "$LOGS/s3d.log" "$LOGS/fusion.log" "$LOGS/agent-s3.log" >&2
      exit 1
    fi
  done
  sleep 0.2
done
SIGN='--aws-sigv4 aws:amz:us-east-1:s3 --user demo:demo-secret'
cat <<TXT
Fustor S3 demo is running: fustor-s3d on $S3 (bucket "demo", $OBJECTS objects under
t0..t9/m0..m9/l0..l9/), Fusion on 127.0.0.1:7070, an agent listing the bucket every 2 s (view "demo").

  Console: http://127.0.0.1:7080/   (sign in with the key demo-key)

Query it from another terminal:
  $CTL stats /
  $CTL ls / --depth 2
  $CTL find /t3/m1 --glob '*.dat'
  $CTL stat /t0/m0/l0/obj-000000.dat --json
  $CTL blind-spots /
Change the bucket (fustor-s3d checks Signature V4: access key demo, secret key demo-secret):
  curl $SIGN -X PUT --data hello http://$S3/demo/new/hello.txt
  curl $SIGN -X DELETE http://$S3/demo/t1/m0/l0/obj-000001.dat
then query again: changes show within a listing (2 s), the delete as a blind-spot deletion.
An outage: kill -USR1 $S3D (the S3 endpoint goes away), kill -USR2 $S3D (it is back).
Logs: $LOGS/. Press Ctrl-C to stop.
TXT
$CTL stats / || true
wait "$AGENT" "$FUSION" "$S3D"
