"""Benchmark: validating a generated fleet of N cabinets, against parsing the same YAML alone.

    python bench/validate.py [--cabinets 500] [--rounds 3]

Prints the best time of each over the rounds and their ratio. Target: validation (parse,
schema, cross-references, allocation checks) costs under 3x the bare parse.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import yaml

from kloudctl.model import load_fleet

REPO = Path(__file__).resolve().parent.parent


def generate(root: Path, count: int) -> list[Path]:
    """`count` cabinets derived from the example Brieux, each replicating to the next."""
    (root / "cabinets").mkdir(parents=True)
    shutil.copytree(REPO / "backups", root / "backups")
    template = (REPO / "cabinets" / "brieux.yaml").read_text()
    files = []
    for i in range(count):
        name = f"commune-{i:04d}"
        peer = f"commune-{(i + 1) % count:04d}"
        text = (
            template.replace("name: brieux", f"name: {name}", 1)
            .replace("peers: [saint-aubin]", f"peers: [{peer}]")
            .replace("domains: [brieux.fr, mortree.fr]", f"domains: [{name}.fr]")
            .replace("203.0.113.10/29", f"100.{64 + i // 250}.{i % 250}.10/29")
            .replace("203.0.113.9", f"100.{64 + i // 250}.{i % 250}.9")
            .replace("10.250.0.1/24", f"10.{250 - i // 250}.{i % 250}.1/16")
        )
        path = root / "cabinets" / f"{name}.yaml"
        path.write_text(text)
        files.append(path)
    return files


def best(fn, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cabinets", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        files = generate(root, args.cabinets) + sorted((root / "backups").glob("*.yaml"))
        # Both sides read the files from disk: the ratio is what validation adds.
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

        def parse() -> None:
            for f in files:
                yaml.load(f.read_text(), Loader=loader)

        def validate() -> None:
            fleet = load_fleet(root)
            assert len(fleet.cabinets) == args.cabinets

        parse_s = best(parse, args.rounds)
        validate_s = best(validate, args.rounds)
    print(f"cabinets:           {args.cabinets}")
    print(f"bare YAML parse:    {parse_s * 1000:8.1f} ms")
    print(f"full validation:    {validate_s * 1000:8.1f} ms")
    print(f"ratio:              {validate_s / parse_s:8.2f}x  (target < 3x)")


if __name__ == "__main__":
    main()
