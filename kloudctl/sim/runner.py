"""Running the simulator as a service: foreground serving, background start, status, stop,
faults, coverage. The CLI (`kloudctl sim ...`) is a thin layer over these functions.

A running simulator writes `run.json` (mode 0600) in its state folder: its pid, the control
token of the fault endpoint, and every cabinet's endpoint (URL, fingerprint, root
password). Test-cabinet credentials only: they never go to git or logs.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

from kloudctl.errors import ExternalError, InputError, KloudError, NotFound
from kloudctl.processes import pid_alive
from kloudctl.sim.persist import write_atomic
from kloudctl.sim.server import CONTROL_PREFIX, Endpoint, Simulator

DEFAULT_DIR = Path(".state/sim")
DEFAULT_PORT = 8006


def cabinet_names(names: list[str], count: int) -> list[str]:
    out = list(dict.fromkeys(names)) + [f"sim{i + 1:02d}" for i in range(count)]
    return out or ["sim01"]


def _host(base: str, i: int) -> str:
    parts = base.split(".")
    last = int(parts[-1]) + i
    if last > 254:
        raise InputError(f"too many cabinets for base address {base}")
    return ".".join([*parts[:-1], str(last)])


async def _serve(
    names: list[str],
    fleet: Any | None,
    state_dir: Path,
    ephemeral: bool,
    task_seconds: float,
    base: str,
    port: int,
    on_ready: Any,
) -> None:
    from kloudctl.sim.testing import cabinet_models

    simulator = Simulator(state_dir=None if ephemeral else state_dir, task_seconds=task_seconds)
    endpoints: list[Endpoint] = []
    for i, (name, model) in enumerate(cabinet_models(names, fleet)):
        cab = simulator.add_cabinet(name, model)
        try:
            endpoints.append(await simulator.serve(cab, _host(base, i), port))
        except OSError as exc:
            await simulator.stop()
            raise ExternalError(
                f"cannot listen on {_host(base, i)}:{port}: {exc.strerror}"
            ) from None
    simulator.settle()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    run = {
        "pid": os.getpid(),
        "started": int(time.time()),
        "control_token": simulator.control_token,
        "ephemeral": ephemeral,
        "cabinets": [e.as_dict() for e in endpoints],
    }
    write_atomic(state_dir / "run.json", json.dumps(run, indent=2).encode(), 0o600)
    on_ready(run)
    try:
        await stop.wait()
    finally:
        await simulator.stop()
        try:
            current = json.loads((state_dir / "run.json").read_text())
            if current.get("pid") == os.getpid():
                (state_dir / "run.json").unlink()
        except (OSError, ValueError):
            pass


def serve_forever(
    names: list[str],
    fleet: Any | None,
    *,
    state_dir: Path = DEFAULT_DIR,
    ephemeral: bool = False,
    task_seconds: float = 1.0,
    base: str = "127.0.0.10",
    port: int = DEFAULT_PORT,
    on_ready: Any = lambda run: None,
) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(_serve(names, fleet, state_dir, ephemeral, task_seconds, base, port, on_ready))


def read_run(state_dir: Path = DEFAULT_DIR) -> dict[str, Any] | None:
    path = state_dir / "run.json"
    try:
        run: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return run if pid_alive(int(run["pid"])) else None


def start_background(
    args: list[str], state_dir: Path = DEFAULT_DIR, timeout: float = 60
) -> dict[str, Any]:
    """Start `kloudctl sim serve ARGS` detached; return its run record once it serves."""
    if read_run(state_dir) is not None:
        raise KloudError(f"a simulator already runs from {state_dir} (kloudctl sim down first)")
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "run.json").unlink(missing_ok=True)
    log = open(state_dir / "sim.log", "ab")  # noqa: SIM115 (handed to the child)
    cmd = [
        sys.executable,
        "-m",
        "kloudctl",
        "sim",
        "serve",
        "--quiet",
        "--state-dir",
        str(state_dir),
        *args,
    ]
    proc = subprocess.Popen(
        cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True
    )
    log.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = read_run(state_dir)
        if run is not None and run["pid"] == proc.pid:
            return run
        if proc.poll() is not None:
            tail = (state_dir / "sim.log").read_text(errors="replace").strip().splitlines()[-3:]
            raise ExternalError("the simulator did not start: " + " / ".join(tail))
        time.sleep(0.1)
    proc.terminate()
    raise ExternalError(f"the simulator did not answer within {timeout:.0f} s")


def status(state_dir: Path = DEFAULT_DIR) -> dict[str, Any]:
    run = read_run(state_dir)
    if run is None:
        return {"running": False, "cabinets": []}
    for cab in run["cabinets"]:
        try:
            _control(cab["url"], run["control_token"], "/health")
            cab["answering"] = True
        except ExternalError:
            cab["answering"] = False
    return {
        "running": True,
        "pid": run["pid"],
        "started": run["started"],
        "cabinets": run["cabinets"],
    }


def stop(state_dir: Path = DEFAULT_DIR, timeout: float = 20) -> bool:
    run = read_run(state_dir)
    if run is None:
        return False
    os.kill(int(run["pid"]), signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and pid_alive(int(run["pid"])):
        time.sleep(0.1)
    return True


def _control(url: str, token: str, what: str, spec: dict[str, Any] | None = None) -> dict[str, Any]:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    data = json.dumps(spec).encode() if spec is not None else None
    req = urllib.request.Request(
        url + CONTROL_PREFIX + what,
        data=data,
        method="POST" if data else "GET",
        headers={"X-Sim-Control": token, "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
            result: dict[str, Any] = json.loads(resp.read())
            return result
    except urllib.error.HTTPError as exc:
        body = json.loads(exc.read() or b"{}")
        raise InputError(str(body.get("error", exc))) from None
    except (urllib.error.URLError, OSError) as exc:
        raise ExternalError(f"the simulator does not answer at {url}: {exc}") from None


def fault(
    cabinet: str, spec: dict[str, Any] | None, state_dir: Path = DEFAULT_DIR
) -> dict[str, Any]:
    """Inject a fault (spec) into a running cabinet, or show its faults (spec None)."""
    run = read_run(state_dir)
    if run is None:
        raise KloudError("no simulator runs (kloudctl sim up first)")
    for cab in run["cabinets"]:
        if cab["name"] == cabinet:
            return _control(cab["url"], run["control_token"], "/fault", spec)
    running = ", ".join(c["name"] for c in run["cabinets"])
    raise NotFound(f"no simulated cabinet named '{cabinet}' (running: {running})")


def coverage() -> dict[str, Any]:
    """Which schema methods the simulator answers, per area of the API."""
    from kloudctl.sim import handlers  # noqa: F401
    from kloudctl.sim.api import HANDLERS
    from kloudctl.sim.schema import load_schema

    schema = load_schema()
    methods = sorted(schema.methods, key=lambda k: (k[1], k[0]))
    simulated = [k for k in methods if k in HANDLERS]
    areas_total: Counter[str] = Counter()
    areas_done: Counter[str] = Counter()
    for http, path in methods:
        area = (
            "/".join(path.split("/")[:3])
            if path.startswith("/nodes/{node}/")
            else "/".join(path.split("/")[:2])
        )
        areas_total[area] += 1
        if (http, path) in HANDLERS:
            areas_done[area] += 1
    indexes = [k for k in simulated if getattr(HANDLERS[k], "schema_index", False)]
    return {
        "total": len(methods),
        "simulated": len(simulated),
        "directory_indexes": len(indexes),
        "share": round(len(simulated) / len(methods), 4),
        "areas": [
            {"area": a, "simulated": areas_done[a], "total": n}
            for a, n in sorted(areas_total.items())
        ],
        "methods": [
            {
                "method": h,
                "path": p,
                "name": schema.methods[(h, p)].name,
                "simulated": (h, p) in HANDLERS,
            }
            for h, p in methods
        ],
    }
