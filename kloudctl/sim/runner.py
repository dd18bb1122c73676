"""Running the simulator as a service: background start, status, stop, faults, coverage.
The CLI (`kloudctl sim ...`) is a thin layer over these functions; serving itself (the
foreground, and the process `start_background` starts) is `kloudctl.sim.serve`.

A running simulator writes `run.json` (mode 0600) in its state folder: its pid, the control
token of the fault endpoint, and every cabinet's endpoint (URL, fingerprint, root
password). Test-cabinet credentials only: they never go to git or logs.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

from kloudctl.answers import UnexpectedAnswer, dig, parse_json, quote
from kloudctl.errors import ExternalError, InputError, KloudError, NotFound
from kloudctl.processes import pid_alive
from kloudctl.sim.serve import DEFAULT_DIR, DEFAULT_PORT, ServeOptions
from kloudctl.sim.server import CONTROL_PREFIX
from kloudctl.sim.usage import per_client, read_report

#: The simulator process's typed entry point (`python -m kloudctl.sim.serve`).
SERVE_MODULE = "kloudctl.sim.serve"

__all__ = [
    "DEFAULT_DIR",
    "DEFAULT_PORT",
    "SERVE_MODULE",
    "ServeOptions",
    "check_run",
    "coverage",
    "fault",
    "option_of",
    "read_run",
    "start_background",
    "status",
    "stop",
]


def option_of(state_dir: Path) -> str:
    """` --state-dir DIR` when `state_dir` is not the default: hints must name the same
    simulator (a bare `kloudctl sim down` would stop another one)."""
    if state_dir == DEFAULT_DIR:
        return ""
    return f" --state-dir {shlex.quote(str(state_dir))}"


def read_run(state_dir: Path = DEFAULT_DIR) -> dict[str, Any] | None:
    """The run record of the simulator serving from `state_dir`, or None when none runs.
    A record that is not one a simulator writes is UnexpectedAnswer, naming the file."""
    path = state_dir / "run.json"
    try:
        text = path.read_text()
    except OSError:
        return None
    run = check_run(str(path), parse_json(f"the simulator's run file {path}", text))
    return run if pid_alive(run["pid"]) else None


def check_run(path: str, run: Any) -> dict[str, Any]:
    """`run` checked: the fields kloudctl reads, of the kinds it reads them as. Checked by
    hand, not with `dig`, whose message would quote the record: it holds root passwords."""
    tool = f"the simulator's run file {path}"

    def need(ok: bool, expected: str) -> None:
        if not ok:
            raise UnexpectedAnswer(tool, expected, "(not shown: it holds passwords)")

    need(isinstance(run, dict), "an object")
    pid = run.get("pid")
    # os.kill overflows beyond 2**31, and 0 or less would signal whole process groups.
    need(isinstance(pid, int) and not isinstance(pid, bool) and 0 < pid < 2**31, "a pid")
    need(isinstance(run.get("control_token"), str), "a control_token")
    cabinets = run.get("cabinets")
    need(isinstance(cabinets, list), "a list of cabinets")
    for cab in cabinets:
        need(isinstance(cab, dict), "each cabinet to be an object")
        for key in ("name", "url", "fingerprint", "user", "password"):
            need(isinstance(cab.get(key), str), f"{key} of each cabinet to be a string")
        nodes = cab.get("nodes")
        need(
            isinstance(nodes, list) and all(isinstance(n, str) for n in nodes),
            "nodes of each cabinet to be a list of names",
        )
        storages = cab.get("storages", {})
        need(
            isinstance(storages, dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in storages.items()),
            "storages of each cabinet to map NODE/STORAGE to a folder",
        )
    return dict(run)


def start_background(options: ServeOptions, timeout: float = 60) -> dict[str, Any]:
    """Start the simulator process (`python -m kloudctl.sim.serve`, quiet) detached, from
    `options.state_dir`; return its run record once it serves."""
    state_dir = options.state_dir
    try:
        running = read_run(state_dir) is not None
    except UnexpectedAnswer:
        running = False  # a record no simulator wrote: the new one replaces it
    if running:
        raise KloudError(
            f"a simulator already runs from {state_dir}"
            f" (`kloudctl sim down{option_of(state_dir)}` first)"
        )
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "run.json").unlink(missing_ok=True)
    log = open(state_dir / "sim.log", "ab")  # noqa: SIM115 (handed to the child)
    cmd = [sys.executable, "-m", SERVE_MODULE, *replace(options, quiet=True).argv()]
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
        "started": run.get("started"),
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
    tool = f"the simulator at {url}"
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
            result: dict[str, Any] = dig(tool, parse_json(tool, resp.read()), kind=dict)
            return result
    except urllib.error.HTTPError as exc:
        body = exc.read()
        try:
            error = dig(tool, parse_json(tool, body), "error", kind=str)
        except UnexpectedAnswer:
            raise ExternalError(f"{tool} answered HTTP {exc.code}: {quote(body)}") from None
        raise InputError(error) from None
    except (urllib.error.URLError, OSError) as exc:
        raise ExternalError(f"the simulator does not answer at {url}: {exc}") from None


def fault(
    cabinet: str, spec: dict[str, Any] | None, state_dir: Path = DEFAULT_DIR
) -> dict[str, Any]:
    """Inject a fault (spec) into a running cabinet, or show its faults (spec None)."""
    run = read_run(state_dir)
    if run is None:
        raise KloudError(
            f"no simulator runs from {state_dir} (`kloudctl sim up{option_of(state_dir)}` first)"
        )
    for cab in run["cabinets"]:
        if cab["name"] == cabinet:
            return _control(cab["url"], run["control_token"], "/fault", spec)
    running = ", ".join(c["name"] for c in run["cabinets"])
    raise NotFound(f"no simulated cabinet named '{cabinet}' (running: {running})")


def coverage(usage: Path | None = None) -> dict[str, Any]:
    """Which schema methods the simulator answers, per area of the API; with a usage
    report (`kloudctl.sim.usage`), which methods each client used and which got a 501."""
    from kloudctl.sim.handlers import build_registry
    from kloudctl.sim.schema import load_schema

    schema = load_schema()
    HANDLERS = build_registry(schema)
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
    used: dict[str, Any] = {}
    if usage is not None:
        report = read_report(usage)
        clients = per_client(report)
        for client in clients:
            for m in client["methods"]:
                m["simulated"] = (m["method"], m["path"]) in HANDLERS
        used = {
            "usage": {
                "file": str(usage),
                "clients": clients,
                "methods_used": len({(r["method"], r["path"]) for r in report["records"]}),
                "unimplemented": report.get("unimplemented", []),
            }
        }
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
        **used,
    }
