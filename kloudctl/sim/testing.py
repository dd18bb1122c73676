"""Run simulated cabinets inside a test process (a background thread with its own loop).

    with running_sim(cabinets=["brieux"], fleet=fleet, task_seconds=0.05) as sim:
        ep = sim.endpoints["brieux"]
        api = ProxmoxAPI(ep.host, port=ep.port, user="root@pam", password=ep.root_password,
                         verify_ssl=False)

`sim.fault(name, kind, **spec)` injects a fault through the control endpoint (HTTPS, like
`kloudctl sim fault`). Everything stops when the block ends.

Every simulator started here keeps its usage log (`kloudctl.sim.usage`) in `USAGES`, even
once stopped: a test harness reads it to report which methods each client used and to
fail a test that reached a 501 (tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kloudctl.sim.serve import cabinet_models
from kloudctl.sim.server import CONTROL_PREFIX, Endpoint, Simulator
from kloudctl.sim.usage import Usage

#: The usage log of every simulator `running_sim` started in this process, in order.
USAGES: list[Usage] = []


@dataclass
class RunningSim:
    simulator: Simulator
    loop: asyncio.AbstractEventLoop
    endpoints: dict[str, Endpoint] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Endpoint:
        return self.endpoints[name]

    @property
    def first(self) -> Endpoint:
        return next(iter(self.endpoints.values()))

    def fault(self, cabinet: str, kind: str, **spec: Any) -> dict[str, Any]:
        return control(
            self.endpoints[cabinet], self.simulator.control_token, {"kind": kind, **spec}
        )

    def storage_folder(self, cabinet: str, node: str, storage: str) -> Path:
        """The real folder standing for a directory storage of `cabinet` on `node`: its
        backup archives are the files of `dump/` (tests copy archives in and out there)."""
        folder: Path = self.call(lambda sim: sim.cabinets[cabinet].storage_folder(node, storage))
        return folder

    @contextmanager
    def clients_named(self, name: str) -> Iterator[None]:
        """Meanwhile, count requests sent with proxmoxer's default User-Agent under `name`
        (a program that cannot label its requests: an Ansible playbook)."""
        usage = self.simulator.usage
        before, usage.proxmoxer_as = usage.proxmoxer_as, name
        try:
            yield
        finally:
            usage.proxmoxer_as = before

    def call(self, fn: Any) -> Any:
        """Run `fn(simulator)` on the simulator's loop (to peek at state in tests)."""

        async def run() -> Any:
            return fn(self.simulator)

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)


def control(endpoint: Endpoint, token: str, spec: dict[str, Any] | None) -> dict[str, Any]:
    """Call a cabinet's control endpoint (outside /api2): GET faults, or POST one."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    data = json.dumps(spec).encode() if spec is not None else None
    req = urllib.request.Request(
        f"{endpoint.url}{CONTROL_PREFIX}/fault",
        data=data,
        method="POST" if data else "GET",
        headers={"X-Sim-Control": token, "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
        result: dict[str, Any] = json.loads(resp.read())
    return result


@contextmanager
def running_sim(
    cabinets: list[str] | None = None,
    count: int = 0,
    *,
    fleet: Any | None = None,
    state_dir: Path | None = None,
    task_seconds: float = 0.05,
    first_host: int = 2,
) -> Iterator[RunningSim]:
    """Serve cabinets (named, or `count` anonymous ones) on 127.0.0.x with free ports."""
    names = list(cabinets or []) + [f"sim{i + 1:02d}" for i in range(count)]
    if not names:
        names = ["sim01"]
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    thread = threading.Thread(
        target=_loop_forever, args=(loop, ready), daemon=True, name="kloudctl-sim"
    )
    thread.start()
    ready.wait()
    simulator = Simulator(state_dir=state_dir, task_seconds=task_seconds)
    USAGES.append(simulator.usage)
    sim = RunningSim(simulator, loop)

    async def start() -> None:
        for i, (name, model) in enumerate(cabinet_models(names, fleet)):
            cab = simulator.add_cabinet(name, model)
            sim.endpoints[name] = await simulator.serve(cab, f"127.0.0.{first_host + i}", 0)

    try:
        asyncio.run_coroutine_threadsafe(start(), loop).result(60)
        yield sim
    finally:
        asyncio.run_coroutine_threadsafe(simulator.stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def _loop_forever(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
    asyncio.set_event_loop(loop)
    loop.call_soon(ready.set)
    loop.run_forever()
