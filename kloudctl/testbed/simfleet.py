"""A copy of the example fleet served by `kloudctl sim`, ready for `kloudctl tenants`: shared
by the tenants end-to-end test and `bench/tenants.py`.

The simulator runs in this process (`kloudctl.sim.testing`: its own thread and event loop)
on 127.0.0.x with a free port per cabinet; each cabinet gets an automation user and a
full-privilege token made through the API as root (ticket auth), exactly as an operator
bootstraps a real cabinet. That step belongs to the tenants engine, which the testbed does
not import: the caller hands it in (`kloudctl.tenants.simtargets.bootstrap_target`).
The targets file that `kloudctl.proxmox.target` reads is written 0600 in the fleet copy.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import urllib3
from proxmoxer import ProxmoxAPI

from kloudctl.errors import InputError
from kloudctl.model import Fleet, load_fleet
from kloudctl.sim.testing import RunningSim, running_sim

#: The checkout this module runs from: its example fleet.
ROOT = Path(__file__).resolve().parents[2]
CABINETS = ("brieux", "saint-aubin", "mortree")

#: `bootstrap(fleet, cabinet, endpoint)` -> the cabinet's target (endpoint, fingerprint,
#: token id and secret): `kloudctl.tenants.simtargets.bootstrap_target`.
Bootstrap = Callable[[Fleet, str, dict[str, Any]], dict[str, str]]


@dataclass
class SimFleet:
    root: Path
    running: RunningSim
    targets: dict[str, dict[str, str]] = field(default_factory=dict)
    _stack: ExitStack | None = None

    @property
    def endpoints(self) -> dict[str, Any]:
        return dict(self.running.endpoints)

    # -- the simulator's control endpoint --------------------------------------------------
    def fault(self, cabinet: str, **spec: Any) -> dict[str, Any]:
        kind = spec.pop("kind")
        return dict(self.running.fault(cabinet, kind, **spec))

    def root_api(self, cabinet: str) -> ProxmoxAPI:
        ep = self.endpoints[cabinet]
        return ProxmoxAPI(
            ep.host, port=ep.port, user="root@pam", password=ep.root_password, verify_ssl=False
        )

    def api_as(self, cabinet: str, token_id: str, secret: str) -> ProxmoxAPI:
        ep = self.endpoints[cabinet]
        user, _, name = token_id.partition("!")
        return ProxmoxAPI(
            ep.host, port=ep.port, user=user, token_name=name, token_value=secret, verify_ssl=False
        )

    def guests(self, cabinet: str) -> dict[str, dict[str, Any]]:
        return {
            g["name"]: g
            for g in self.root_api(cabinet).cluster.resources.get(type="vm")
            if not g.get("template")
        }

    # -- the fleet copy --------------------------------------------------------------------
    def cabinet_file(self, cabinet: str) -> Path:
        return self.root / "cabinets" / f"{cabinet}.yaml"

    def edit(self, cabinet: str, old: str, new: str) -> None:
        path = self.cabinet_file(cabinet)
        text = path.read_text()
        if old not in text:
            raise InputError(f"{path}: {old!r} not found")
        path.write_text(text.replace(old, new, 1))

    def fleet(self) -> Fleet:
        return load_fleet(self.root)

    def stop(self) -> None:
        if self._stack is not None:
            self._stack.close()


def start_sim_fleet(
    workdir: Path,
    task_seconds: float = 0.05,
    cabinets: dict[str, str] | None = None,
    *,
    bootstrap: Bootstrap,
) -> SimFleet:
    """Serve `cabinets` (name -> YAML text; default: the example fleet) from one simulator;
    `bootstrap` makes each cabinet's automation user and token."""
    urllib3.disable_warnings()
    root = workdir / "fleet"
    (root / "cabinets").mkdir(parents=True)
    if cabinets is None:
        cabinets = {n: (ROOT / "cabinets" / f"{n}.yaml").read_text() for n in CABINETS}
    for name, text in cabinets.items():
        (root / "cabinets" / f"{name}.yaml").write_text(text)
    if (ROOT / "backups").is_dir():
        shutil.copytree(ROOT / "backups", root / "backups")
    fleet = load_fleet(root)
    stack = ExitStack()
    running = stack.enter_context(
        running_sim(cabinets=list(cabinets), fleet=fleet, task_seconds=task_seconds)
    )
    simfleet = SimFleet(root, running, _stack=stack)
    try:
        for name in cabinets:
            endpoint = simfleet.endpoints[name].as_dict()
            simfleet.targets[name] = bootstrap(simfleet.fleet(), name, endpoint)
    except BaseException:
        stack.close()
        raise
    targets = root / ".state" / "sim" / "targets.json"
    targets.parent.mkdir(parents=True)
    fd = os.open(targets, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(simfleet.targets, f)
    return simfleet
