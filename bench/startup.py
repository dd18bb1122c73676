"""Benchmark: how long a `kloudctl` run takes to start, as a new process.

Measured against a baseline run in this process on the same interpreter: `python -c pass`
(the interpreter's own start, which no CLI can beat). Best of BENCH_ROUNDS (default 5) wall
times for `kloudctl --version` (the top-level group alone), `kloudctl status --help` (one
command group imported) and `kloudctl --help` (every group listed, none imported); each
printed with its ratio to the baseline.

Run: .venv/bin/python bench/startup.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))


def best(args: list[str]) -> float:
    times = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        subprocess.run(args, capture_output=True, check=True, cwd=REPO)
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    baseline = best([sys.executable, "-c", "pass"])
    print(f"baseline  python -c pass: {baseline:.3f} s (best of {ROUNDS})")
    for label, args in (
        ("kloudctl --version", ["--version"]),
        ("kloudctl status --help", ["status", "--help"]),
        ("kloudctl --help", ["--help"]),
    ):
        took = best([sys.executable, "-m", "kloudctl", *args])
        print(f"{label}: {took:.3f} s, {took / baseline:.1f}x the baseline")


if __name__ == "__main__":
    main()
