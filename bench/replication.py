"""Replication bench: kloudctl's restic runner against bare restic, and `check --all` at scale.

    .venv/bin/python bench/replication.py [--size-mib 1024] [--change 0.01] [--repos 50]

1. A dataset of --size-mib (default 1 GiB) of random files is generated in /tmp. Cabinet
   `alpha` replicates it through kloudctl's restic runner (backup + copy to its peer's
   rest-server over TLS); cabinet `bare` replicates the same data with the same restic
   commands run by a bare subprocess call (the baseline, same process, same machine). Then
   --change (1 %) of the data is rewritten and both replicate again. Printed: both runs'
   times for each, the runner's overhead as a ratio against the bare commands (target:
   under 5 %), and what `replication run` adds after a copy (reading the peer back).
2. --repos cabinets (default 50) each get a small replicated repository; then
   `kloudctl replication check --all` reads all 50 peer repositories: right after the
   runs, after new snapshots on a fifth of them, and cold (no snapshot time remembered),
   against bare `restic snapshots` on each (target: under 10 s).

Everything lives in a temporary folder and every rest-server is stopped at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["PATH"] = f"{ROOT / '.tools' / 'bin'}:{os.environ['PATH']}"

from kloudctl.model import load_fleet  # noqa: E402
from kloudctl.replication import restic as r  # noqa: E402
from kloudctl.replication.layout import Layout  # noqa: E402
from kloudctl.replication.ops import Replicator  # noqa: E402
from kloudctl.replication.restic import Repo, Restic  # noqa: E402
from kloudctl.replication.serve import loopback  # noqa: E402
from kloudctl.testbed.fleets import make_fleet  # noqa: E402

FILE_SIZE = 16 * 1024 * 1024


def make_dataset(root: Path, size_mib: int) -> list[Path]:
    data = root / "srv" / "data"
    data.mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "etc" / "hostname").write_text("bench\n")
    files = []
    remaining = size_mib * 1024 * 1024
    i = 0
    while remaining > 0:
        n = min(FILE_SIZE, remaining)
        path = data / f"blob-{i:04d}.bin"
        path.write_bytes(os.urandom(n))
        files.append(path)
        remaining -= n
        i += 1
    return files


def change(files: list[Path], fraction: float) -> int:
    """Rewrite `fraction` of the bytes: 64 KiB runs spread over the files."""
    total = sum(f.stat().st_size for f in files)
    budget = int(total * fraction)
    run = 64 * 1024
    changed = 0
    i = 0
    while changed < budget:
        f = files[i % len(files)]
        with open(f, "r+b") as handle:
            offset = (i * 7919 * run) % max(1, f.stat().st_size - run)
            handle.seek(offset)
            handle.write(os.urandom(run))
        changed += run
        i += 1
    return changed


class Bare:
    """The baseline: the same restic argv and environment, run with subprocess.run."""

    def __init__(self, runner: Restic) -> None:
        self.runner = runner

    def run(self, repo: Repo, args: list[str], from_repo: Repo | None = None) -> float:
        argv = self.runner.argv(repo, args, from_repo=from_repo)
        env = r.child_environment(repo, from_repo=from_repo, cache_dir=self.runner.cache_dir)
        started = time.monotonic()
        subprocess.run(
            argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        return time.monotonic() - started


def replicate_bare(bare: Bare, rep: Replicator, cabinet: str, peer: str, root: Path) -> float:
    local, remote = rep.ensure_local(cabinet), rep.ensure_peer(cabinet, peer)
    paths = [str(root / "etc"), str(root / "srv" / "data")]
    took = bare.run(
        local,
        r.backup_paths_args(paths, host=cabinet, tags=["kloudctl", "paths"], excludes=["*.tmp"]),
    )
    took += bare.run(remote, r.copy_args(local), from_repo=local)
    return took


def replicate_runner(rep: Replicator, cabinet: str, peer: str, root: Path) -> float:
    """The same two restic commands as the baseline, through kloudctl's runner (--json
    streamed and dispatched, typed outcomes, scrubbed environment)."""
    local, remote = rep.ensure_local(cabinet), rep.ensure_peer(cabinet, peer)
    paths = [str(root / "etc"), str(root / "srv" / "data")]
    started = time.monotonic()
    rep.restic.run(
        local,
        r.backup_paths_args(paths, host=cabinet, tags=["kloudctl", "paths"], excludes=["*.tmp"]),
    )
    rep.restic.run(remote, r.copy_args(local), from_repo=local)
    return time.monotonic() - started


def bench_runner(base: Path, size_mib: int, fraction: float) -> None:
    fleet_root = make_fleet(base / "fleet", ["alpha", "bare", "peer"], commands=False)
    layout = Layout(base / "state")
    data_root = base / "cabinet"
    print(f"generating {size_mib} MiB of random data in {data_root} ...", flush=True)
    files = make_dataset(data_root, size_mib)
    layout.write_endpoints({"cabinets": {n: {"root": str(data_root)} for n in ("alpha", "bare")}})
    fleet = load_fleet(fleet_root)
    # The ring is alpha -> bare -> peer -> alpha; alpha copies to `bare`'s server and the
    # baseline copies to `peer`'s: the same rest-server binary and flags.
    with loopback(layout, fleet):
        rep = Replicator(fleet, layout)
        bare = Bare(rep.restic)
        results: dict[str, list[float]] = {"bare": [], "runner": []}
        for label in ("initial", f"after changing {fraction:.0%}"):
            if results["bare"]:
                print(f"changed {change(files, fraction) / 2**20:.1f} MiB", flush=True)
            # Alternate which goes first, so neither always gets the warmer page cache.
            if not results["bare"]:
                t_bare = replicate_bare(bare, rep, "bare", "peer", data_root)
                t_runner = replicate_runner(rep, "alpha", "bare", data_root)
            else:
                t_runner = replicate_runner(rep, "alpha", "bare", data_root)
                t_bare = replicate_bare(bare, rep, "bare", "peer", data_root)
            results["bare"].append(t_bare)
            results["runner"].append(t_runner)
            print(
                f"{label:>24}: bare restic {t_bare:7.2f} s   kloudctl runner {t_runner:7.2f} s",
                flush=True,
            )
        # What `replication run` adds after a copy: reading the peer's snapshot times back
        # (one key derivation), so that checks need none.
        started = time.monotonic()
        rep.peer_snapshots("alpha", "bare")
        print(f"read-back of the peer's snapshots after a copy: {time.monotonic() - started:.2f} s")
        total_bare, total_runner = sum(results["bare"]), sum(results["runner"])
        print(
            f"runner overhead: {total_runner / total_bare:.3f}x the bare commands "
            f"({(total_runner / total_bare - 1) * 100:+.1f} %; target < +5 %)"
        )


def bench_check(base: Path, repos: int) -> None:
    names = [f"c{i:02d}" for i in range(repos)]
    fleet_root = make_fleet(base / "fleet50", names, commands=False)
    layout = Layout(base / "state50")
    roots = {}
    for name in names:
        root = base / "small" / name
        (root / "etc").mkdir(parents=True)
        (root / "etc" / "hostname").write_text(name)
        (root / "srv" / "data").mkdir(parents=True)
        (root / "srv" / "data" / "f").write_bytes(os.urandom(4096))
        roots[name] = {"root": str(root)}
    layout.write_endpoints({"cabinets": roots})
    fleet = load_fleet(fleet_root)
    servers = sorted({c.replication.peers[0] for c in fleet if c.replication})
    with loopback(layout, fleet, servers):
        rep = Replicator(fleet, layout)
        started = time.monotonic()
        print(f"preparing {repos} replicated repositories ...", flush=True)

        def prepare(name: str) -> None:
            rep.backup(name)
            rep.copy(name, rep.peers(name)[0])

        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(prepare, names))
        print(f"prepared in {time.monotonic() - started:.1f} s", flush=True)
        cmd = [
            sys.executable, "-c", "from kloudctl.cli import main; main()",
            "--fleet", str(fleet_root),
            "replication", "check", "--all", "--state-dir", str(layout.state),
        ]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(ROOT)}

        def timed_check(label: str) -> float:
            started = time.monotonic()
            done = subprocess.run(cmd, env=env, capture_output=True, text=True)
            took = time.monotonic() - started
            print(f"check --all exit {done.returncode}: {done.stdout.split('|')[0].strip()}")
            print(f"`replication check --all`, {repos} peer repositories, {label}: {took:.2f} s")
            return took

        # Baseline: what any checker that opens each repository with restic must pay (one
        # scrypt key derivation per repository), two at a time on this machine's two cores.
        bare = Bare(rep.restic)
        jobs = [(name, rep.peers(name)[0]) for name in names]
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(lambda j: bare.run(rep.layout.peer_repo(*j), ["snapshots"]), jobs))
        baseline = time.monotonic() - started
        print(f"baseline: bare `restic snapshots` on the {repos} peer copies: {baseline:.2f} s")
        after_runs = timed_check("right after the runs")
        # A new snapshot on a fifth of the cabinets, as between two cron runs.
        fresh = names[::5]
        for name in fresh:
            prepare(name)
        next_run = timed_check(f"next run ({len(fresh)} with new snapshots)")
        # Cold: the controller remembers no snapshot time (a new state folder, or copies
        # made elsewhere): every repository is opened with restic once.
        for name in names:
            state = layout.load_state(name)
            state.pop("peer_snapshot_times", None)
            layout.save_state(name, state)
        cold = timed_check("cold (no time remembered: every repository opened)")
        print(
            f"check --all against the bare baseline: after the runs {after_runs / baseline:.2f}x, "
            f"next run {next_run / baseline:.2f}x, cold {cold / baseline:.2f}x "
            f"(target < 10 s: {max(after_runs, next_run):.2f} s warm, {cold:.2f} s cold)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--change", type=float, default=0.01)
    parser.add_argument("--repos", type=int, default=50)
    parser.add_argument("--skip-runner", action="store_true")
    parser.add_argument("--skip-check", action="store_true")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="kloudctl-bench-replication-", dir="/tmp"))
    try:
        if not args.skip_runner:
            bench_runner(base, args.size_mib, args.change)
        if not args.skip_check:
            bench_check(base, args.repos)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
