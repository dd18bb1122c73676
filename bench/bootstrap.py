"""Benchmark: bootstrapping test cabinets, and our runner's overhead over ansible-playbook.

    python bench/bootstrap.py [--rounds 2]

1. Wall time to bootstrap 1 cabinet, then 3 cabinets in parallel, each on fresh test
   cabinets (first run: every role converges from the bare image).
2. On the converged 3 cabinets (no-change runs), the same playbook through our runner
   (`kloudctl.hosts.runner.run_playbook`, ansible-runner with event handling) and through
   a plain `ansible-playbook` with the same inventory and settings, alternated; the best
   of each over the rounds, and their ratio. Target: overhead under 10 %.

Needs root and podman (as the tests); uses its own testbed prefix and removes it at the end.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from kloudctl.hosts.runner import run_playbook  # noqa: E402
from kloudctl.model import load_fleet  # noqa: E402
from kloudctl.testbed import bed  # noqa: E402
from tests.testbed.conftest import make_fleet_root  # noqa: E402

CABINETS = ["brieux", "mortree", "saint-aubin"]


def bootstrap_time(root: Path, names: list[str], prefix: str) -> float:
    os.environ[bed.PREFIX_ENV] = prefix
    bed.up(load_fleet(root), names, state=bed.state_dir(root))
    try:
        started = time.perf_counter()
        result = run_playbook(root, "bootstrap.yml", limit=names, testbed_state=_state(root))
        elapsed = time.perf_counter() - started
        result.raise_for_status()
        return elapsed
    finally:
        if names != CABINETS:
            bed.down(root)


def _state(root: Path) -> Path:
    return bed.state_dir(root) / "testbed.json"


def plain_playbook(root: Path) -> float:
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(root / "ansible.cfg"),
        "KLOUDCTL_FLEET": str(root),
        "KLOUDCTL_TESTBED_STATE": str(_state(root)),
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    started = time.perf_counter()
    subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "-i",
            str(root / "inventory"),
            "--limit",
            ",".join(CABINETS),
            "--forks",
            "10",
            str(root / "playbooks" / "bootstrap.yml"),
        ],
        cwd=root,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def ours(root: Path) -> float:
    started = time.perf_counter()
    run_playbook(
        root, "bootstrap.yml", limit=CABINETS, testbed_state=_state(root), on_event=lambda e: None
    ).raise_for_status()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kloudctl-bench-") as tmp:
        root = make_fleet_root(Path(tmp) / "fleet")
        try:
            one = bootstrap_time(root, ["brieux"], "kloudctl-bench")
            three = bootstrap_time(root, CABINETS, "kloudctl-bench")
            print(f"bootstrap 1 cabinet:             {one:7.1f} s")
            print(
                f"bootstrap 3 cabinets (parallel): {three:7.1f} s"
                f"  ({three / one:.2f}x the single one)"
            )
            plain, runner = [], []
            for _ in range(args.rounds):
                plain.append(plain_playbook(root))
                runner.append(ours(root))
            base, mine = min(plain), min(runner)
            print(f"no-change run, ansible-playbook: {base:7.1f} s (best of {args.rounds})")
            print(f"no-change run, kloudctl runner:  {mine:7.1f} s (best of {args.rounds})")
            print(
                f"runner overhead: {(mine / base - 1) * 100:+.1f} %"
                f" (ratio {mine / base:.3f}; target < 10 %)"
            )
        finally:
            bed.down(root)


if __name__ == "__main__":
    main()
