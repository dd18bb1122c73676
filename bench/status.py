"""Benchmark: `kloudctl status --all` over 50 simulated cabinets of 20 guests each.

Against one simulator in its own process (`kloudctl sim`'s background process: every
cabinet on its own 127.0.0.x and a free port, HTTPS with a pinned certificate, API tokens),
as remote cabinets would be, so clients and servers never share an interpreter; each
measurement against baselines run in this process on the same fleet:

- floor: one raw parallel round of `GET /cluster/resources` (one thread and one new HTTPS
  connection per cabinet, `requests`, token auth): the least any status could cost;
- playbook: the same facts gathered by `community.proxmox` info modules across the fleet
  (`proxmox_node_info`, `proxmox_vm_info`, `proxmox_storage_info`; one inventory host per
  cabinet, local connection, forks = cabinets), run by ansible-playbook;
- kloudctl status, in this process (the CLI's command with --json, history and textfile:
  what the command does, without the interpreter's start) and as a user runs it (a new
  `python -m kloudctl` process: imports included).

Printed: median wall times over BENCH_ROUNDS (default 3) and the ratios. Targets (issue
14): status at least 10x faster than the playbook, within 2x of the floor, under 2 s.

Run: .venv/bin/python bench/status.py
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import requests  # noqa: E402
import urllib3  # noqa: E402
from community_proxmox import MODULE_DEFAULTS, ansible_playbook, token_vars, write_private_json  # noqa: E402

from kloudctl.cli import cli  # noqa: E402
from kloudctl.model import load_fleet  # noqa: E402
from kloudctl.sim import runner  # noqa: E402
from kloudctl.sim.serve import ServeOptions  # noqa: E402
from kloudctl.tenants.simtargets import populate_guests, use_simulator  # noqa: E402
from kloudctl.testbed.fleets import make_fleet  # noqa: E402

CABINETS = int(os.environ.get("BENCH_CABINETS", "50"))
GUESTS = 20
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))

PLAYBOOK = (
    """\
- name: Gather the facts kloudctl status reads, with community.proxmox info modules
  hosts: all
  gather_facts: false
"""
    + MODULE_DEFAULTS
    + """\
  tasks:
    - name: Nodes
      community.proxmox.proxmox_node_info:
      register: nodes
    - name: Guests
      community.proxmox.proxmox_vm_info:
      register: guests
    - name: Storages
      community.proxmox.proxmox_storage_info:
      register: storages
    - name: Count what was read
      ansible.builtin.debug:
        msg: "{{ nodes.proxmox_nodes | length }} nodes, {{ guests.proxmox_vms | length }} guests"
"""
)


@dataclass
class SimFleet:
    root: Path
    targets: dict[str, dict[str, str]]
    hosts: dict[str, tuple[str, int]]


def serve_fleet(workdir: Path) -> SimFleet:
    """50 cabinets made from Mortrée (unique names and addresses, a replication ring),
    served by a simulator process, each with an automation token and 20 guests."""
    names = [f"bench{i + 1:02d}" for i in range(CABINETS)]
    root = make_fleet(workdir / "fleet", names)
    options = ServeOptions(
        cabinets=tuple(names), fleet_dir=root, state_dir=workdir / "sim", ephemeral=True,
        task_seconds=0.0, port=0,
    )  # fmt: skip
    run = runner.start_background(options, timeout=300)
    fleet = load_fleet(root)
    use_simulator(fleet, root, run)
    targets = json.loads((root / ".state" / "sim" / "targets.json").read_text())
    hosts = {ep["name"]: (ep["host"], int(ep["port"])) for ep in run["cabinets"]}
    for name, target in targets.items():
        populate_guests(target, fleet, name, per_tenant=7, total=GUESTS)
    return SimFleet(root, targets, hosts)


def floor(sim: SimFleet) -> float:
    """One parallel round of GET /cluster/resources, each on a new HTTPS connection."""

    def one(target: dict[str, str]) -> int:
        user, _, name = target["token_id"].partition("!")
        with requests.Session() as session:
            answer = session.get(
                f"{target['endpoint']}/api2/json/cluster/resources",
                headers={"Authorization": f"PVEAPIToken={user}!{name}={target['secret']}"},
                verify=False,
                timeout=30,
            )
            answer.raise_for_status()
            return len(answer.json()["data"])

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=len(sim.targets)) as pool:
        sizes = list(pool.map(one, sim.targets.values()))
    took = time.perf_counter() - started
    assert all(size > GUESTS for size in sizes), sizes
    return took


def status_in_process(sim: SimFleet, workdir: Path) -> float:
    args = [
        "--fleet", str(sim.root), "status", "--all", "--json",
        "--history", str(workdir / "history.sqlite"),
        "--prometheus-textfile", str(workdir / "status.prom"),
    ]  # fmt: skip
    out = io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(out):
        cli.main(args, standalone_mode=False)
    took = time.perf_counter() - started
    found = json.loads(out.getvalue())
    assert len(found) == CABINETS and all(c["reachable"] for c in found)
    assert all(sum(c["guests"].values()) == GUESTS for c in found)
    return took


def status_process(sim: SimFleet, workdir: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "kloudctl", "--fleet", str(sim.root), "status", "--json",
         "--history", str(workdir / "history.sqlite")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"kloudctl status failed: {done.stderr[-2000:]}")
    return took


def playbook(sim: SimFleet, workdir: Path) -> float:
    hosts: dict[str, Any] = {}
    for name, target in sim.targets.items():
        host, port = sim.hosts[name]
        hosts[name] = {
            "ansible_connection": "local",
            "ansible_python_interpreter": sys.executable,  # the venv: proxmoxer is there
            **token_vars(host, port, target),
        }
    inventory = workdir / "inventory.json"
    write_private_json(inventory, {"all": {"hosts": hosts}})
    book = workdir / "status.yml"
    book.write_text(PLAYBOOK)
    env = {
        "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.default",
        "ANSIBLE_FORKS": str(CABINETS),
        "ANSIBLE_HOST_KEY_CHECKING": "false",
    }
    took, stdout = ansible_playbook(book, ["-i", str(inventory)], env, tail=25, cwd=workdir)
    # proxmox_vm_info lists the template too (kloudctl status leaves it out)
    assert stdout.count(f"{GUESTS + 1} guests") == CABINETS, stdout[-3000:]
    return took


def main() -> None:
    urllib3.disable_warnings()
    with tempfile.TemporaryDirectory(prefix="kloudctl-bench-status-") as tmp:
        workdir = Path(tmp)
        made = time.perf_counter()
        try:
            sim = serve_fleet(workdir)
            print(
                f"status bench: {CABINETS} cabinets x {GUESTS} guests "
                f"(fleet ready in {time.perf_counter() - made:.1f} s), {ROUNDS} rounds"
            )
            times: dict[str, list[float]] = {
                "floor": [], "status": [], "status_cli": [], "playbook": []
            }  # fmt: skip
            for _ in range(ROUNDS):
                times["floor"].append(floor(sim))
                times["status"].append(status_in_process(sim, workdir))
                times["status_cli"].append(status_process(sim, workdir))
                times["playbook"].append(playbook(sim, workdir))
        finally:
            runner.stop(workdir / "sim")
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"  floor: one parallel round of /cluster/resources  {med['floor']:6.3f} s")
    print(f"  kloudctl status --all (in process)              {med['status']:6.3f} s")
    print(f"  kloudctl status --all (new process)             {med['status_cli']:6.3f} s")
    print(f"  playbook of community.proxmox info modules      {med['playbook']:6.3f} s")
    print(
        f"ratio playbook / status: {med['playbook'] / med['status']:.1f}x "
        f"(new process: {med['playbook'] / med['status_cli']:.1f}x; target >= 10)"
    )
    print(
        f"ratio status / floor: {med['status'] / med['floor']:.2f}x "
        f"(new process: {med['status_cli'] / med['floor']:.2f}x; target <= 2)"
    )
    print(
        f"status in all: {med['status']:.2f} s in process, {med['status_cli']:.2f} s as a "
        "new process (target < 2 s)"
    )


if __name__ == "__main__":
    main()
