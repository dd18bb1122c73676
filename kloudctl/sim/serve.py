"""The simulator's process: serve simulated cabinets until SIGTERM or SIGINT.

    python -m kloudctl.sim.serve [--state-dir DIR] [--fleet DIR] [--count N] [--ephemeral]
                                 [--task-seconds S] [--base-address IP] [--port P]
                                 [--quiet] [--] [CABINET ...]

Its options are a dataclass, `ServeOptions`: `kloudctl sim serve` (foreground) builds one
from its own options and calls `serve`; `runner.start_background` (`kloudctl sim up`, the
testbed) turns one into this module's command line (`ServeOptions.argv`) and starts it as
a detached process. kloudctl never runs its own CLI for this.

Once every cabinet listens, the process writes `run.json` (mode 0600) in its state folder:
its pid, the control token of the fault endpoint, and every cabinet's endpoint (URL,
fingerprint, root password) and storage folders (`"storages": {"NODE/STORAGE": FOLDER}`,
where the files of its path-based storages are); it removes it when it stops.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kloudctl import console
from kloudctl.errors import ExternalError, InputError
from kloudctl.model import Fleet, find_root, load_fleet
from kloudctl.sim.persist import write_atomic
from kloudctl.sim.server import Endpoint, Simulator

DEFAULT_DIR = Path(".state/sim")
DEFAULT_PORT = 8006
DEFAULT_BASE = "127.0.0.10"
#: Environment defaults of the command line, the same as `kloudctl sim serve`'s.
STATE_DIR_ENV = "KLOUDCTL_SIM_DIR"
FLEET_ENV = "KLOUDCTL_FLEET"
MAX_COUNT = 250
MAX_TASK_SECONDS = 3600.0

OnReady = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class ServeOptions:
    """What one simulator process serves, and where it keeps its state.

    `cabinets` are named from the fleet (they get its declared hardware); `count` adds
    anonymous ones (sim01...). `fleet_dir` None: the fleet is found from the current
    folder, and a folder without one is fine when no cabinet is named."""

    cabinets: tuple[str, ...] = ()
    count: int = 0
    fleet_dir: Path | None = None
    state_dir: Path = DEFAULT_DIR
    ephemeral: bool = False
    task_seconds: float = 1.0
    base_address: str = DEFAULT_BASE
    port: int = DEFAULT_PORT
    quiet: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.count <= MAX_COUNT:
            raise InputError(f"--count: expected 0 to {MAX_COUNT}, got {self.count}")
        if not (math.isfinite(self.task_seconds) and 0 <= self.task_seconds <= MAX_TASK_SECONDS):
            raise InputError(
                f"--task-seconds: expected 0 to {MAX_TASK_SECONDS:g}, got {self.task_seconds}"
            )
        if not 0 <= self.port <= 65535:
            raise InputError(f"--port: expected 0 to 65535, got {self.port}")

    @property
    def names(self) -> list[str]:
        """Every cabinet served: the named ones, then the anonymous ones."""
        return cabinet_names(list(self.cabinets), self.count)

    def argv(self) -> list[str]:
        """This module's command line for these options (`from_argv` reads it back)."""
        args = [
            "--state-dir",
            str(self.state_dir),
            "--count",
            str(self.count),
            "--task-seconds",
            repr(self.task_seconds),
            "--base-address",
            self.base_address,
            "--port",
            str(self.port),
        ]
        if self.fleet_dir is not None:
            args += ["--fleet", str(self.fleet_dir)]
        if self.ephemeral:
            args.append("--ephemeral")
        if self.quiet:
            args.append("--quiet")
        return [*args, "--", *self.cabinets]

    @classmethod
    def from_argv(cls, argv: Sequence[str]) -> ServeOptions:
        """Options from this module's command line; a usage error exits 2 (argparse)."""
        parser = _parser()
        ns = parser.parse_args(list(argv))
        try:
            return cls(
                cabinets=tuple(ns.cabinets),
                count=ns.count,
                fleet_dir=Path(ns.fleet) if ns.fleet else None,
                state_dir=Path(ns.state_dir),
                ephemeral=ns.ephemeral,
                task_seconds=ns.task_seconds,
                base_address=ns.base_address,
                port=ns.port,
                quiet=ns.quiet,
            )
        except InputError as exc:
            parser.error(str(exc))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m kloudctl.sim.serve",
        description="Serve simulated Proxmox VE 9.1 cabinets until SIGTERM or SIGINT.",
    )
    parser.add_argument("cabinets", nargs="*", metavar="CABINET", help="cabinets of the fleet")
    parser.add_argument(
        "--state-dir",
        default=os.environ.get(STATE_DIR_ENV) or str(DEFAULT_DIR),
        help=f"folder of the state, certificates and run file (default: {DEFAULT_DIR})",
    )
    parser.add_argument(
        "--fleet",
        default=os.environ.get(FLEET_ENV) or None,
        help="fleet folder (default: found from the current folder)",
    )
    parser.add_argument("--count", type=int, default=0, help="anonymous cabinets to add")
    parser.add_argument("--ephemeral", action="store_true", help="keep no state")
    parser.add_argument("--task-seconds", type=float, default=1.0, help="how long a task runs")
    parser.add_argument("--base-address", default=DEFAULT_BASE, help="first cabinet's address")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port of every cabinet")
    parser.add_argument("--quiet", action="store_true", help="print nothing once serving")
    return parser


def cabinet_names(names: list[str], count: int) -> list[str]:
    out = list(dict.fromkeys(names)) + [f"sim{i + 1:02d}" for i in range(count)]
    return out or ["sim01"]


def cabinet_models(names: list[str], fleet: Any | None) -> list[tuple[str, Any | None]]:
    """(name, model) pairs: names from the fleet get their declared hardware."""
    out = []
    for name in names:
        model = fleet.cabinet(name) if fleet is not None and name in fleet.cabinets else None
        out.append((name, model))
    return out


def _host(base: str, i: int) -> str:
    try:
        first = ipaddress.IPv4Address(base)
    except ValueError:
        raise InputError(
            f"--base-address: expected an IPv4 address such as 127.0.0.10, got {base!r}"
        ) from None
    last = int(first) % 256 + i
    if last > 254:
        raise InputError(f"--base-address: too many cabinets for base address {base}")
    return str(first + i)


def check_addresses(base: str, count: int) -> None:
    """Refuse a base address that cannot serve `count` cabinets, before anything starts."""
    _host(base, max(count - 1, 0))


def fleet_of(options: ServeOptions) -> Fleet | None:
    """The fleet the named cabinets come from; None when there is none and none is named."""
    try:
        root = options.fleet_dir.resolve() if options.fleet_dir else find_root(Path.cwd())
        return load_fleet(root)
    except Exception:
        if options.cabinets:
            raise
        return None


def serve(options: ServeOptions, on_ready: OnReady | None = None) -> None:
    """Serve until SIGTERM or SIGINT; `on_ready(run)` once every cabinet listens (`run` is
    the record written to run.json)."""
    names = options.names
    fleet = fleet_of(options)
    options.state_dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(_serve(names, fleet, options, on_ready or (lambda run: None)))


async def _serve(
    names: list[str], fleet: Fleet | None, options: ServeOptions, on_ready: OnReady
) -> None:
    state_dir, base, port = options.state_dir, options.base_address, options.port
    simulator = Simulator(
        state_dir=None if options.ephemeral else state_dir, task_seconds=options.task_seconds
    )
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
        "ephemeral": options.ephemeral,
        # each cabinet's storage folders too: kloudctl moves backup archives through them
        "cabinets": [
            {**e.as_dict(), "storages": simulator.cabinets[e.name].path_storages()}
            for e in endpoints
        ],
    }
    write_atomic(state_dir / "run.json", json.dumps(run, indent=2).encode(), 0o600)
    on_ready(run)
    try:
        await stop.wait()
    finally:
        await simulator.stop()
        try:
            current = json.loads((state_dir / "run.json").read_text())
            if isinstance(current, dict) and current.get("pid") == os.getpid():
                (state_dir / "run.json").unlink()
        except (OSError, ValueError):
            pass


# --- the process's entry point ---------------------------------------------------------------


def show_endpoints(cabinets: list[dict[str, Any]]) -> None:
    """Each simulated cabinet's URL, nodes, root user and fingerprint (for people). The root
    password is not printed (a terminal's output ends up in logs and CI records): it is in
    the state folder's run.json (0600), which `--json` prints for tools."""
    for c in cabinets:
        console.line(f"{c['name']}  {c['url']}  nodes: {', '.join(c['nodes'])}")
        console.line(f"  user: {c['user']}  password: in the state folder's run.json (0600)")
        console.line(f"  fingerprint: {c['fingerprint']}")


def show_ready(run: dict[str, Any]) -> None:
    """What a simulator in the foreground says once it serves."""
    show_endpoints(run["cabinets"])
    console.info("serving; SIGTERM or Ctrl-C stops")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the simulator process; the exit code follows kloudctl's (0, 1, 2; 130 on an
    interruption before serving). Errors are said as the CLI says them, on stderr (the
    run's log), with a traceback only under KLOUDCTL_DEBUG=1."""
    debug = os.environ.get("KLOUDCTL_DEBUG") == "1"
    try:
        options = ServeOptions.from_argv(sys.argv[1:] if argv is None else argv)
        serve(options, on_ready=None if options.quiet else show_ready)
    except (Exception, KeyboardInterrupt) as exc:
        return console.failure(exc, debug=debug)
    return 0


if __name__ == "__main__":
    sys.exit(main())
