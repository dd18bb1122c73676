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

step "Mail: a test cabinet with Postfix, Dovecot and rspamd; residents' mailboxes; one message end to end"
python scripts/demo_mail.py
