#!/usr/bin/env bash
# `make demo`: the main job on the built-in simulated fleet. Each stage says what it does;
# later stages are added as the features land.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PWD/.tools/bin:$PWD/.venv/bin:$PATH
export COLUMNS=${COLUMNS:-120}

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
# Where the demo keeps its own state (default .state/ here); KLOUDCTL_DEMO_KEEP=1 leaves its
# temporary folders (under $TMPDIR) for whoever ran it to inspect and remove (the secrets
# sweep, tests/security/test_secrets_sweep.py); KLOUDCTL_DEMO_PREFIX names its containers.
demo_state=${KLOUDCTL_DEMO_STATE:-.state}
demo_keep=${KLOUDCTL_DEMO_KEEP:-}
demo_prefix=${KLOUDCTL_DEMO_PREFIX:-kloudctl-demo}
drop() { [[ -n $demo_keep ]] || rm -rf "$@"; }

step "Validate the example fleet (cabinets/ and backups/)"
kloudctl validate

step "The fleet"
kloudctl cabinet list

for cabinet in brieux saint-aubin mortree; do
  step "Offline plan of $cabinet: capacity, power, VMID ranges, addresses"
  kloudctl plan "$cabinet" --offline
done

# --- Proxmox VE API simulator (issue 3) ---------------------------------------------------
sim_dir=$demo_state/demo-sim
step "Start the example fleet on the Proxmox VE 9.1 API simulator (kloudctl sim up)"
kloudctl sim down --state-dir "$sim_dir" >/dev/null 2>&1 || true
kloudctl sim up brieux saint-aubin mortree --ephemeral --port 0 --task-seconds 0.2 --state-dir "$sim_dir"
trap 'kloudctl sim down --state-dir "$sim_dir" >/dev/null 2>&1 || true' EXIT

step "The simulated cabinets answer (kloudctl sim status)"
kloudctl sim status --state-dir "$sim_dir"

step "A Proxmox client, unchanged: clone the debian-12-cloud template on brieux and start it"
python - "$sim_dir" <<'PY'
import json, sys
from proxmoxer import ProxmoxAPI
from proxmoxer.tools import Tasks
import urllib3
urllib3.disable_warnings()
cab = next(c for c in json.load(open(f"{sys.argv[1]}/run.json"))["cabinets"] if c["name"] == "brieux")
api = ProxmoxAPI(cab["host"], port=cab["port"], user="root@pam", password=cab["password"], verify_ssl=False)
node = cab["nodes"][0]
for step, upid in (("clone", lambda: api.nodes(node).qemu(9000).clone.post(newid=1000, name="brieux-web")),
                   ("start", lambda: api.nodes(node).qemu(1000).status.start.post())):
    print(f"{step}: {Tasks.blocking_status(api, upid(), polling_interval=0.1)['exitstatus']}")
for vm in api.cluster.resources.get(type="vm"):
    print(f"  {vm['vmid']:>5} {vm['name']:<16} {vm['node']:<5} {vm['status']}")
PY

step "Simulated share of the PVE 9.1 API (kloudctl sim coverage)"
kloudctl sim coverage | tail -1

# --- tenants through Pulumi, on the simulated cabinets (issue 4) ----------------------------
demo_tenants=$(mktemp -d)
export KLOUDCTL_PULUMI_STATE=$demo_tenants/pulumi  # throw-away stacks for throw-away cabinets
export KLOUDCTL_PROXMOX_TARGETS=$demo_tenants/targets.json
trap 'kloudctl sim down --state-dir "$sim_dir" >/dev/null 2>&1 || true; drop "$demo_tenants"' EXIT

step "Point the tenants commands at the simulated cabinets (automation token bootstrapped as root)"
KLOUDCTL_SIM_DIR=$sim_dir kloudctl tenants use-sim

for cabinet in brieux saint-aubin mortree; do
  step "Apply the tenants of $cabinet through Pulumi: pools, identities, isolation, VMs and containers"
  kloudctl tenants apply "$cabinet"
done

step "Plan brieux again: nothing to change"
kloudctl tenants plan brieux

step "Hand the bakery its own token (PVEVMAdmin on its pool only; secret elided here)"
kloudctl tenant token brieux boulangerie-leroy | sed 's/\(PROXMOX_TOKEN_SECRET=\).*/\1.../'

# --- Test cabinets and host bootstrap (issue 5) ----------------------------------------
step "Test cabinets: the three example cabinets as real Debian systems in podman"
if problem=$(python -c 'from kloudctl.testbed.podman import podman_problem; print(podman_problem() or "")') && [[ -z $problem ]]; then
  (
    export KLOUDCTL_TESTBED_PREFIX=$demo_prefix
    trap 'kloudctl testbed down >/dev/null 2>&1 || true' EXIT
    kloudctl testbed up
    step "Bootstrap the three cabinets in parallel (roles base, proxmox_host, power_budget)"
    kloudctl cabinet bootstrap brieux mortree saint-aubin
    step "Bootstrap again: nothing changes"
    kloudctl cabinet bootstrap brieux mortree saint-aubin
  )
else
  echo "skipped: test cabinets cannot run here: $problem"
fi
step "Mail: a test cabinet with Postfix, Dovecot and rspamd; residents' mailboxes; one message end to end"
python scripts/demo_mail.py

# --- Replication (issue 6) ------------------------------------------------------------
step "Replication: one round between the example cabinets (real restic, rest-servers on loopback), then status"
(
  repl=$(mktemp -d "${TMPDIR:-/tmp}/kloudctl-demo-replication.XXXXXX")
  trap 'kill "${repl_pid:-}" 2>/dev/null || true; wait 2>/dev/null || true; drop "$repl"' EXIT
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
)

# --- Federation (issue 13) -------------------------------------------------------------
# The demo's test cabinets are down by now: the three communes federate on loopback, each
# with its own fleet folder, without the WireGuard mesh (tests/federation/test_cabinets_mesh.py
# and bench/federation.py show the mesh on test cabinets and network namespaces).
step "Federation: Brieux, Mortrée and Saint-Aubin form 'bocage' (on loopback, without the mesh)"
(
  fed=$(mktemp -d "${TMPDIR:-/tmp}/kloudctl-demo-federation.XXXXXX")
  trap 'kill "${serve_pid:-}" 2>/dev/null || true; wait 2>/dev/null || true; drop "$fed"' EXIT
  for commune in brieux mortree saint-aubin; do
    mkdir -p "$fed/$commune" && cp -r cabinets backups "$fed/$commune/"
  done
  port=$(python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  kloudctl --fleet "$fed/brieux" federation init bocage --endpoint "127.0.0.1:$port"
  kloudctl --fleet "$fed/brieux" federation serve > "$fed/serve.log" 2>&1 &
  serve_pid=$!
  for _ in $(seq 100); do grep -q "join endpoint on" "$fed/serve.log" && break; sleep 0.2; done
  for commune in mortree saint-aubin; do
    invite=$(kloudctl --fleet "$fed/brieux" federation invite "$commune" --expires 10m 2>/dev/null)
    joined=$(kloudctl --fleet "$fed/$commune" federation join "$invite" --cabinet "$commune")
    echo "$joined"
    fingerprint=$(sed -n 's/^fingerprint: //p' <<<"$joined")
    kloudctl --fleet "$fed/brieux" federation admit "$commune" "$fingerprint"
  done
  for commune in mortree saint-aubin; do kloudctl --fleet "$fed/$commune" federation sync; done
  step "Federation status on the coordinator: members, the registry version each holds"
  kloudctl --fleet "$fed/brieux" federation status
  step "Saint-Aubin leaves: the coordinator revokes it; Mortrée's next sync applies it"
  kloudctl --fleet "$fed/brieux" federation revoke saint-aubin --reason "a quitté la fédération"
  kloudctl --fleet "$fed/mortree" federation sync
  kloudctl --fleet "$fed/brieux" federation status
)

# --- Failover of a council VM to a federation peer (issue 13 part 5) ---------------------
# A block of its own: brieux and saint-aubin each in their own simulator (so brieux can be
# stopped alone), their own replication state, federation registry and API targets.
step "Failover: brieux's council website restored on saint-aubin from its replica while brieux is down"
(
  fo=$(mktemp -d "${TMPDIR:-/tmp}/kloudctl-demo-failover.XXXXXX")
  export KLOUDCTL_PROXMOX_TARGETS=$fo/targets.json
  repl=(--replication-state "$fo/replication")
  fed=(--state-dir "$fo/federation")
  sim_up() {  # `sim up` records the cabinet's storage folders where the failover reads them
    kloudctl sim up "$1" --port 0 --base-address "$2" --task-seconds 0.2 \
      --state-dir "$fo/sim-$1" "${repl[@]}" >/dev/null
    KLOUDCTL_SIM_DIR=$fo/sim-$1 kloudctl tenants use-sim >/dev/null
  }
  cleanup() {
    kill "${serve_pid:-}" "${join_pid:-}" 2>/dev/null || true
    wait 2>/dev/null || true
    for cabinet in brieux saint-aubin; do
      kloudctl sim down --state-dir "$fo/sim-$cabinet" >/dev/null 2>&1 || true
    done
    drop "$fo"
  }
  trap cleanup EXIT
  sim_up brieux 127.0.0.50
  sim_up saint-aubin 127.0.0.60
  # brieux-web (declared `failover: true`) runs at home
  python - <<'PY'
from pathlib import Path
from kloudctl.model import load_fleet
from kloudctl.proxmox.client import Client
from kloudctl.proxmox.target import cabinet_target
api = Client(cabinet_target(load_fleet(Path(".")), "brieux"), component="demo")
api.post("nodes/pve1/qemu/9000/clone", newid=1000, name="brieux-web", full=1)
api.post("nodes/pve1/qemu/1000/status/start")
print("brieux-web (VMID 1000) runs on brieux")
PY
  # the federation: brieux (coordinator) admits saint-aubin, which holds its replica
  port=$(python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  kloudctl federation init bocage --endpoint "127.0.0.1:$port" "${fed[@]}" >/dev/null
  kloudctl federation serve "${fed[@]}" > "$fo/join.log" 2>&1 &
  join_pid=$!
  for _ in $(seq 100); do grep -q "join endpoint on" "$fo/join.log" && break; sleep 0.2; done
  invite=$(kloudctl federation invite saint-aubin --expires 10m "${fed[@]}")
  fingerprint=$(kloudctl federation join "$invite" --cabinet saint-aubin --state-dir "$fo/federation-saint-aubin" \
    | sed -n 's/^fingerprint: //p')
  kloudctl federation admit saint-aubin "$fingerprint" "${fed[@]}"
  kill "$join_pid"
  # the rest-servers of the replication (loopback), then brieux's failover backup
  kloudctl replication serve --state-dir "$fo/replication" > "$fo/serve.log" 2>&1 &
  serve_pid=$!
  for _ in $(seq 100); do grep -q ready "$fo/serve.log" && break; sleep 0.2; done
  step "federation backup brieux: vzdump of brieux-web into brieux's restic repository, copied to saint-aubin"
  kloudctl federation backup brieux "${fed[@]}" "${repl[@]}"
  step "brieux goes down (its simulator stops); brieux-web fails over to saint-aubin"
  kloudctl sim down --state-dir "$fo/sim-brieux"
  kloudctl federation failover brieux brieux-web --to saint-aubin --dry-run "${fed[@]}" "${repl[@]}"
  kloudctl federation failover brieux brieux-web --to saint-aubin "${fed[@]}" "${repl[@]}"
  kloudctl federation failovers "${fed[@]}" "${repl[@]}"
  step "brieux is back: brieux-web returns home with the data written meanwhile (failback)"
  sim_up brieux 127.0.0.50
  kloudctl federation failback brieux brieux-web "${fed[@]}" "${repl[@]}"
  kloudctl federation failovers "${fed[@]}" "${repl[@]}"
)

# --- Status and the council's report (issue 14) -----------------------------------------
# The simulated cabinets are still up (stopped on exit): status reads them for real, into a
# history of the demo's own, and the report of Brieux is made from that history.
demo_history=$demo_state/demo-status/history.sqlite
mkdir -p "$(dirname "$demo_history")"
step "The fleet at a glance (kloudctl status --all), added to the demo's status history"
kloudctl status --all --history "$demo_history"
step "The council's report of Brieux (French, self-contained HTML): its path"
kloudctl report brieux --history "$demo_history"
