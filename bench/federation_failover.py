"""Failover bench: recovery time of `federation failover` and `failback` against bare restic.

    .venv/bin/python bench/federation_failover.py [--sizes 1,64,256] [--task-seconds 0.05]

For each size (MiB): the example fleet (brieux-web declared `failover: true`, its replica on
saint-aubin, which lends a guest quota), brieux and saint-aubin each served by their own
Proxmox VE simulator in this process (state kept, so brieux can stop and come back), real
restic and a real rest-server on loopback, a registry where both are members. brieux-web's
vzdump archive holds SIZE MiB of incompressible stand-in data (the simulator's
`archive_disk_bytes`). `federation backup brieux` runs while brieux answers; then brieux's
simulator stops, `failover` is timed (its recovery time), brieux comes back and `failback`
is timed.

Baselines, measured in the same process on the same repositories, the moves of data alone:
- failover: a bare `restic restore` of the same snapshot from the peer's copy, plus a bare
  copy of the archive file into the peer's storage;
- failback: a bare `restic backup` of the archive the failback moved, into the same copy,
  a bare `restic restore` of it, and a bare copy of the file.
Printed: both times and kloudctl's ratio to the baseline (what the API calls, the tasks,
the sha256 checks and the journal add around the transfer).

Everything lives in a temporary folder; the simulators and rest-servers stop at the end.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["PATH"] = f"{ROOT / '.tools' / 'bin'}:{os.environ['PATH']}"

import urllib3  # noqa: E402

from kloudctl.failover.ops import Failover  # noqa: E402
from kloudctl.federation.keys import MemberKeys  # noqa: E402
from kloudctl.federation.registry import RegistryStore, create  # noqa: E402
from kloudctl.model import Fleet, load_fleet  # noqa: E402
from kloudctl.proxmox.client import Client  # noqa: E402
from kloudctl.proxmox.target import cabinet_target  # noqa: E402
from kloudctl.replication import restic as r  # noqa: E402
from kloudctl.replication.layout import Layout  # noqa: E402
from kloudctl.replication.restic import Restic  # noqa: E402
from kloudctl.replication.serve import loopback  # noqa: E402
from kloudctl.sim.testing import RunningSim, running_sim  # noqa: E402
from kloudctl.tenants.simtargets import bootstrap_target, write_targets  # noqa: E402

# the simulator's self-signed certificates are pinned by fingerprint
urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)

HOME, PEER, VM, VMID = "brieux", "saint-aubin", "brieux-web", 1000
MIB = 1024 * 1024


def make_fleet(root: Path) -> Fleet:
    """A copy of the example fleet, and a registry where brieux and saint-aubin are members."""
    for folder in ("cabinets", "backups"):
        shutil.copytree(ROOT / folder, root / folder)
    keys = {name: MemberKeys.generate() for name in (HOME, PEER)}
    t0 = datetime.datetime.now(datetime.UTC)

    def doc(commune: str, address: str) -> dict[str, Any]:
        return {
            "commune": commune,
            "cabinet": commune,
            "endpoints": ["203.0.113.1:51820"],
            "wireguard_key": keys[commune].wireguard_public,
            "signing_key": keys[commune].signing_public,
            "mesh_address": address,
            "capacity": {
                "spare_disk_declared": 2 * 1024**4,
                "spare_disk_measured": None,
                "power_headroom_declared": 300,
                "power_headroom_measured": None,
            },
        }

    pool = ipaddress.IPv4Network("10.250.0.0/24")
    registry = create("bocage", pool, doc(HOME, "10.250.0.1"), keys[HOME], t0)
    registry = registry.append(
        "admit", HOME, {"member": doc(PEER, registry.next_address())}, keys[HOME], t0
    )
    (root / ".state" / "federation").mkdir(parents=True)
    RegistryStore(root / ".state" / "federation").accept(registry, "(bench)")
    return load_fleet(root)


@contextmanager
def cabinet_sim(
    fleet: Fleet, layout: Layout, name: str, state: Path, first_host: int, disk_bytes: int
) -> Iterator[RunningSim]:
    """One simulated cabinet with its state in `state`, its API target and storage folders
    recorded where kloudctl reads them (what `kloudctl sim up` does)."""
    with running_sim(
        [name], fleet=fleet, state_dir=state, task_seconds=TASK_SECONDS, first_host=first_host
    ) as sim:
        sim.call(lambda s: setattr(s.cabinets[name], "archive_disk_bytes", disk_bytes))
        ep = sim[name]
        endpoint = {"url": ep.url, "fingerprint": ep.fingerprint, "password": ep.root_password}
        write_targets(fleet.root, {name: bootstrap_target(fleet, name, endpoint)})
        layout.record_storages({name: sim.call(lambda s: s.cabinets[name].path_storages())})
        yield sim


def timed(fn: Any) -> tuple[float, Any]:
    started = time.monotonic()
    result = fn()
    return time.monotonic() - started, result


def bare_restic(restic: Restic, repo: r.Repo, args: list[str]) -> float:
    """`restic ARGS` run by a bare subprocess call with the repository's environment."""
    argv = restic.argv(repo, args)
    env = r.child_environment(repo, cache_dir=restic.cache_dir)
    started = time.monotonic()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.monotonic() - started


def bench_size(base: Path, size_mib: int) -> dict[str, float]:
    root = base / f"fleet-{size_mib}"
    fleet = make_fleet(root)
    layout = Layout(root / ".state" / "replication")
    restic = Restic()
    operations = Failover(fleet, layout, root / ".state" / "federation", restic)
    disk_bytes = size_mib * MIB
    with (
        loopback(layout, fleet, [PEER]),
        cabinet_sim(fleet, layout, PEER, base / f"sim-peer-{size_mib}", 20, disk_bytes) as peer,
    ):
        with cabinet_sim(fleet, layout, HOME, base / f"sim-home-{size_mib}", 10, disk_bytes):
            home = Client(cabinet_target(fleet, HOME), component="bench")
            home.post("nodes/pve1/qemu/9000/clone", newid=VMID, name=VM, full=1)
            home.post(f"nodes/pve1/qemu/{VMID}/status/start")
            backup_s, [backed] = timed(lambda: operations.backup(HOME))
        # brieux is down: its simulator stopped
        failover_s, done = timed(lambda: operations.failover(HOME, VM, PEER))
        assert done["steps"][-1].endswith("started"), done["steps"]
        repo = layout.peer_repo(HOME, PEER)
        storage = peer.storage_folder(PEER, "pve1", "local")
        # baseline: the same snapshot restored by bare restic, the archive copied into place
        staging = base / f"bare-failover-{size_mib}"
        restore_s = bare_restic(
            restic, repo, ["restore", done["snapshot"], "--target", str(staging)]
        )
        [found] = [p for p in staging.rglob(backed["archive"]) if p.is_file()]
        copy_s, _ = timed(lambda: shutil.copyfile(found, storage / f"bare-{backed['archive']}"))
        shutil.rmtree(staging)
        (storage / f"bare-{backed['archive']}").unlink()
        with cabinet_sim(fleet, layout, HOME, base / f"sim-home-{size_mib}", 10, disk_bytes):
            failback_s, back = timed(lambda: operations.failback(HOME, VM))
            # baseline: the archive the failback moved, backed up, restored, copied by bare
            # restic and a bare copy (it is still in the home's storage)
            home_dump = Path(layout.endpoints()["cabinets"][HOME]["storages"]["pve1/local"])
            archive = home_dump / "dump" / back["archive"]
            backup_bare_s = bare_restic(
                restic, repo, ["backup", "--host", HOME, "--tag", "bench", str(archive)]
            )
            snapshot = r.snapshot_list(
                restic.run(repo, [*r.snapshots_args(), "--tag", "bench", "--no-lock"])
            )[-1]["id"]
            staging = base / f"bare-failback-{size_mib}"
            restore_back_s = bare_restic(
                restic, repo, ["restore", snapshot, "--target", str(staging)]
            )
            [found] = [p for p in staging.rglob(back["archive"]) if p.is_file()]
            target = home_dump / "dump" / f"bare-{back['archive']}"
            copy_back_s, _ = timed(lambda: shutil.copyfile(found, target))
            target.unlink()
            shutil.rmtree(staging)
    failover_base = restore_s + copy_s
    failback_base = backup_bare_s + restore_back_s + copy_back_s
    return {
        "archive_mib": backed["size"] / MIB,
        "backup_s": backup_s,
        "failover_s": failover_s,
        "failover_reported_s": done["recovery_time_seconds"],
        "failover_base_s": failover_base,
        "failback_s": failback_s,
        "failback_archive_mib": back["size"] / MIB,
        "failback_base_s": failback_base,
    }


TASK_SECONDS = 0.05


def main() -> None:
    global TASK_SECONDS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,64,256", help="archive sizes in MiB")
    parser.add_argument(
        "--task-seconds", type=float, default=0.05, help="how long a simulated task lasts"
    )
    args = parser.parse_args()
    TASK_SECONDS = args.task_seconds
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="kloudctl-bench-failover-") as tmp:
        for size in sizes:
            print(f"archive of {size} MiB ...", flush=True)
            rows.append(bench_size(Path(tmp), size))
    print(f"\nsimulated tasks last {TASK_SECONDS} s; times in seconds")
    print(
        f"{'archive':>9} {'failover':>9} {'baseline':>9} {'ratio':>6}"
        f" {'failback':>9} {'baseline':>9} {'ratio':>6}"
    )
    for row in rows:
        print(
            f"{row['archive_mib']:>6.1f}MiB {row['failover_s']:>9.2f}"
            f" {row['failover_base_s']:>9.2f} {row['failover_s'] / row['failover_base_s']:>6.2f}"
            f" {row['failback_s']:>9.2f} {row['failback_base_s']:>9.2f}"
            f" {row['failback_s'] / row['failback_base_s']:>6.2f}"
        )
    print(
        "failover baseline: bare `restic restore` of the same snapshot + a copy of the file;"
        " failback baseline: bare `restic backup` + `restic restore` + a copy"
    )


if __name__ == "__main__":
    main()
