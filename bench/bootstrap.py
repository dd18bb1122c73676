"""Benchmark: bootstrapping test cabinets, and our runner's overhead over ansible-playbook.

    python bench/bootstrap.py [--rounds 3] [--cabinets 3] [--no-fresh]

1. Wall time to bootstrap 1 cabinet, then N cabinets in parallel, each on fresh test
   cabinets (first run: every role converges from the bare image). `--no-fresh` skips
   the single-cabinet run (the N cabinets are still converged once).
2. On the converged cabinets (no-change runs), the same playbook through our runner
   (`kloudctl.hosts.runner.run_playbook`, ansible-runner with event handling) and through
   a plain `ansible-playbook` with the same inventory and settings, alternated A/B over
   the rounds, both starting from the same SSH connection state (ControlPersist masters
   left by the previous run). Reported per side: best and median wall time, and the
   median CPU seconds (our process plus all its children: ansible, its forks, ssh) -- the
   machine is shared, so wall times are noisy and CPU time is the steadier measure of
   overhead. Target: overhead under 10 %.

Needs root and podman (as the tests); uses its own testbed prefix and removes it at the end.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from kloudctl.hosts.runner import run_playbook  # noqa: E402
from kloudctl.model import load_fleet  # noqa: E402
from kloudctl.testbed import bed  # noqa: E402
from kloudctl.testbed.fleets import make_fleet_root  # noqa: E402

CABINETS = ["brieux", "mortree", "saint-aubin"]


def bootstrap_time(root: Path, names: list[str], prefix: str, keep: bool = False) -> float:
    os.environ[bed.PREFIX_ENV] = prefix
    bed.up(load_fleet(root), names, state=bed.state_dir(root))
    try:
        started = time.perf_counter()
        result = run_playbook(root, "bootstrap.yml", limit=names, testbed_state=_state(root))
        elapsed = time.perf_counter() - started
        result.raise_for_status()
        return elapsed
    finally:
        if not keep:
            bed.down(root)


def _state(root: Path) -> Path:
    return bed.state_dir(root) / "testbed.json"


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def _timed(
    run: Callable[[Path, list[str]], None], root: Path, names: list[str]
) -> tuple[float, float]:
    """Wall and CPU seconds of one run: this process plus its (waited-for) children."""
    cpu = _cpu(resource.RUSAGE_SELF) + _cpu(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    run(root, names)
    wall = time.perf_counter() - started
    return wall, _cpu(resource.RUSAGE_SELF) + _cpu(resource.RUSAGE_CHILDREN) - cpu


def plain_playbook(root: Path, names: list[str]) -> None:
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(root / "ansible.cfg"),
        "KLOUDCTL_FLEET": str(root),
        "KLOUDCTL_TESTBED_STATE": str(_state(root)),
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "-i",
            str(root / "inventory"),
            "--limit",
            ",".join(names),
            "--forks",
            "10",
            str(root / "playbooks" / "bootstrap.yml"),
        ],
        cwd=root,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )


def ours(root: Path, names: list[str]) -> None:
    run_playbook(
        root, "bootstrap.yml", limit=names, testbed_state=_state(root), on_event=lambda e: None
    ).raise_for_status()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cabinets", type=int, default=len(CABINETS), choices=(1, 2, 3))
    parser.add_argument("--no-fresh", action="store_true", help="skip the 1-cabinet bootstrap")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kloudctl-bench-") as tmp:
        root = make_fleet_root(Path(tmp) / "fleet")
        try:
            names = CABINETS[: args.cabinets]
            if not args.no_fresh:
                one = bootstrap_time(root, ["brieux"], "kloudctl-bench")
                print(f"bootstrap 1 cabinet:             {one:7.1f} s")
            many = bootstrap_time(root, names, "kloudctl-bench", keep=True)
            print(f"bootstrap {len(names)} cabinet(s) (parallel): {many:7.1f} s")
            sides: dict[str, tuple[list[float], list[float]]] = {
                "ansible-playbook": ([], []),
                "kloudctl runner": ([], []),
            }
            for _ in range(args.rounds):
                for label, run in (("ansible-playbook", plain_playbook), ("kloudctl runner", ours)):
                    wall, cpu = _timed(run, root, names)
                    sides[label][0].append(wall)
                    sides[label][1].append(cpu)
            for label, (walls, cpus) in sides.items():
                print(
                    f"no-change run, {label + ':':17} best {min(walls):6.1f} s, median"
                    f" {statistics.median(walls):6.1f} s wall;"
                    f" median {statistics.median(cpus):6.1f} s CPU"
                    f" ({args.rounds} rounds, {len(names)} cabinet(s))"
                )
            (bw, bc), (mw, mc) = sides.values()
            for what, base, mine in (
                ("wall, best", min(bw), min(mw)),
                ("wall, median", statistics.median(bw), statistics.median(mw)),
                ("CPU, median", statistics.median(bc), statistics.median(mc)),
            ):
                print(
                    f"runner overhead ({what}): {(mine / base - 1) * 100:+.1f} %"
                    f" (ratio {mine / base:.3f}; target < 10 %)"
                )
        finally:
            bed.down(root)


if __name__ == "__main__":
    main()
