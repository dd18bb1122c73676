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

# --- tenants through Pulumi, on simulated cabinets ----------------------------------------
demo_sim=$(mktemp -d)
export KLOUDCTL_PULUMI_STATE=$demo_sim/pulumi  # a throw-away stack set for throw-away cabinets
export KLOUDCTL_PROXMOX_TARGETS=$demo_sim/targets.json
trap 'kloudctl sim down --state-dir "$demo_sim/sim" >/dev/null 2>&1 || true; rm -rf "$demo_sim"' EXIT

step "Start simulated cabinets (kloudctl sim) and point the tenants commands at them"
kloudctl sim up brieux saint-aubin mortree --ephemeral --port 0 --task-seconds 0.05 \
  --state-dir "$demo_sim/sim" --json >/dev/null
KLOUDCTL_SIM_DIR=$demo_sim/sim kloudctl tenants use-sim

for cabinet in brieux saint-aubin mortree; do
  step "Apply the tenants of $cabinet through Pulumi (pools, identities, isolation, guests)"
  kloudctl tenants apply "$cabinet"
done

step "Plan brieux again: nothing to change"
kloudctl tenants plan brieux
