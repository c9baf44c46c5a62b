#!/usr/bin/env bash
# Checks the example units in this directory: "systemd-analyze verify" where it is available
# (any complaint fails, unknown keys and typos included), the sysctl names against the running
# kernel. Without systemd-analyze it says so and exits 0: the units are examples, and a build
# host need not run systemd.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

for key in $(sed -n 's/^\(fs\.[a-z_.]*\) *=.*/\1/p' "$here/90-fustor-agent.conf"); do
  if [ -d /proc/sys/fs ] && [ ! -e "/proc/sys/${key//.//}" ]; then
    echo "deploy/systemd: 90-fustor-agent.conf: no sysctl $key on this kernel" >&2
    exit 1
  fi
done

if ! command -v systemd-analyze >/dev/null 2>&1; then
  echo "deploy/systemd: systemd-analyze not found; units not verified"
  exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# verify requires every Exec*= program to exist and be executable; the units name the install
# path, which this host need not have. Stand-ins of the same names take its place.
mkdir "$tmp/bin"
for b in fustor-fusion fustor-agent; do
  printf '#!/bin/sh\nexit 0\n' >"$tmp/bin/$b"
  chmod +x "$tmp/bin/$b"
done
units=()
for u in "$here"/*.service; do
  sed "s#/usr/local/bin/#$tmp/bin/#g" "$u" >"$tmp/$(basename "$u")"
  units+=("$tmp/$(basename "$u")")
done

# verify exits 0 on some problems (an unknown key is "ignoring"), so its output decides too.
if ! out=$(SYSTEMD_LOG_LEVEL=notice systemd-analyze verify --man=no "${units[@]}" 2>&1) || [ -n "$out" ]; then
  echo "deploy/systemd: systemd-analyze verify:" >&2
  echo "${out//$tmp\//}" >&2
  exit 1
fi
echo "deploy/systemd: ${#units[@]} units verified ($(systemd-analyze --version | head -1))"
