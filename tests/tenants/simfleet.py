"""A copy of the example fleet served by `kloudctl sim`, ready for `kloudctl tenants`.

The simulator runs in this process (its own thread and event loop) on 127.0.0.1 with a
random port per cabinet; each cabinet gets an automation user and full-privilege token made
through the API as root (ticket auth), exactly as an operator bootstraps a real cabinet.
The targets file that `kloudctl.proxmox.target` reads is written 0600 in the fleet copy.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import urllib3
from proxmoxer import ProxmoxAPI

from kloudctl.model import load_fleet

ROOT = Path(__file__).resolve().parents[2]
CABINETS = ("brieux", "saint-aubin", "mortree")


@dataclass
class SimFleet:
    root: Path
    endpoints: dict[str, Any]
    control_token: str
    targets: dict[str, dict[str, str]] = field(default_factory=dict)
    _loop: asyncio.AbstractEventLoop | None = None
    _sim: Any = None
    _thread: threading.Thread | None = None

    # -- the simulator's control endpoint --------------------------------------------------
    def fault(self, cabinet: str, **spec: Any) -> dict[str, Any]:
        url = self.endpoints[cabinet].url + "/_sim/fault"
        answer = requests.post(
            url, json=spec, headers={"X-Sim-Control": self.control_token}, verify=False, timeout=10
        )
        answer.raise_for_status()
        return dict(answer.json())

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
        assert old in text, f"{old!r} not in {path}"
        path.write_text(text.replace(old, new, 1))

    def fleet(self):
        return load_fleet(self.root)

    def stop(self) -> None:
        if self._loop and self._sim:
            asyncio.run_coroutine_threadsafe(self._sim.stop(), self._loop).result(30)
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread:
            self._thread.join(10)


def start_sim_fleet(
    workdir: Path, task_seconds: float = 0.05, cabinets: dict[str, str] | None = None
) -> SimFleet:
    """Serve `cabinets` (name -> YAML text; default: the example fleet) from one simulator."""
    from kloudctl.sim.server import Simulator

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

    loop = asyncio.new_event_loop()
    sim = Simulator(state_dir=workdir / "sim", task_seconds=task_seconds)
    ready = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, name="kloudctl-sim", daemon=True)
    thread.start()
    ready.wait()

    async def start() -> dict[str, Any]:
        endpoints = {}
        for name in cabinets:
            cab = sim.add_cabinet(name, fleet.cabinet(name))
            endpoints[name] = await sim.serve(cab, "127.0.0.1", 0)
        return endpoints

    endpoints = asyncio.run_coroutine_threadsafe(start(), loop).result(60)
    simfleet = SimFleet(root, endpoints, sim.control_token, _loop=loop, _sim=sim, _thread=thread)
    for name in cabinets:
        simfleet.targets[name] = bootstrap_automation(simfleet, name)
    targets = root / ".state" / "sim" / "targets.json"
    targets.parent.mkdir(parents=True)
    fd = os.open(targets, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(simfleet.targets, f)
    return simfleet


def bootstrap_automation(simfleet: SimFleet, cabinet: str) -> dict[str, str]:
    """What an operator does once per cabinet: the automation user and its token."""
    api = simfleet.root_api(cabinet)
    declared = simfleet.fleet().cabinet(cabinet).proxmox.token
    api.access.users.post(userid=declared.user, comment="kloudctl automation")
    api.access.acl.put(path="/", roles="Administrator", users=declared.user)
    made = api.access.users(declared.user).token(declared.id).post(privsep=0)
    ep = simfleet.endpoints[cabinet]
    return {
        "endpoint": ep.url,
        "fingerprint": ep.fingerprint,
        "token_id": f"{declared.user}!{declared.id}",
        "secret": made["value"],
    }
