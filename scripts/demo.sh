#!/usr/bin/env bash
# `make demo`: the main job on the built-in simulated fleet. Each stage says what it does;
# later stages are added as the features land.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PWD/.tools/bin:$PWD/.venv/bin:$PATH
export COLUMNS=${COLUMNS:-120}

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "Validate the example fleet (cabinets/ and backups/)"
kloudctl validate

step "The fleet"
kloudctl cabinet list

for cabinet in brieux saint-aubin mortree; do
  step "Offline plan of $cabinet: capacity, power, VMID ranges, addresses"
  kloudctl plan "$cabinet" --offline
done

step "Replication: one round between the example cabinets (real restic, rest-servers on loopback), then status"
repl=$(mktemp -d /tmp/kloudctl-demo-replication.XXXXXX)
trap 'kill "${repl_pid:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$repl"' EXIT
endpoints='{"cabinets": {'
for cabinet in brieux saint-aubin mortree; do
  # Each cabinet's files, simulated as a folder: what the `standard` policy backs up.
  root=$repl/files/$cabinet
  mkdir -p "$root/etc" "$root/var/lib/vz/dump" "$root/var/lib/kloudctl"
  echo "$cabinet" > "$root/etc/hostname"
  head -c 2000000 /dev/urandom > "$root/var/lib/vz/dump/vzdump-qemu-1000.vma"
  endpoints+="\"$cabinet\": {\"root\": \"$root\"},"
done
printf '%s\n' "${endpoints%,}}}" > "$repl/endpoints.json"
kloudctl replication serve --state-dir "$repl" > "$repl/serve.log" 2>&1 &
repl_pid=$!
for _ in $(seq 100); do grep -q ready "$repl/serve.log" && break; sleep 0.2; done
kloudctl replication run --all --state-dir "$repl"
kloudctl replication status --state-dir "$repl"
kloudctl replication check --all --state-dir "$repl" || true
