"""A vzdump archive made on one commune's simulated cabinet (brieux), carried by the real
restic into the repository another commune's cabinet (mortree) serves with the real
rest-server (on loopback, started as the replication tests start it), restored from there
into mortree's simulated backup storage, then restored as a guest through mortree's API."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path

import pytest
from simhelpers import ok, root_api

from kloudctl.model import Fleet, load_fleet
from kloudctl.replication import restic as r
from kloudctl.replication.layout import Layout
from kloudctl.replication.restic import Outcome, Restic
from kloudctl.replication.serve import loopback
from kloudctl.sim.testing import running_sim
from kloudctl.testbed.fleets import make_fleet

pytestmark = pytest.mark.slow

MAC = re.compile(r"([0-9A-F]{2}:){5}[0-9A-F]{2}")
# What a restore with unique=1 gives the guest anew (PVE: a new SMBIOS UUID, a new VM
# generation id, new MAC addresses); `digest` is the config file's, not the guest's.
RENEWED = {"smbios1", "vmgenid", "digest"}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_archive_goes_by_restic_to_another_commune_and_restores_as_a_guest(
    sim_fleet: Fleet, tmp_path: Path
) -> None:
    # The replication fleet: brieux's copies go to mortree (the ring of make_fleet).
    replication = load_fleet(make_fleet(tmp_path / "fleet", ["brieux", "mortree"]))
    layout = Layout(tmp_path / "state")
    with (
        running_sim(["brieux", "mortree"], fleet=sim_fleet, task_seconds=0.05) as sim,
        loopback(layout, replication, ["mortree"]),
    ):
        brieux = root_api(sim["brieux"])
        node = brieux.nodes("pve1")
        ok(brieux, node.qemu(9000).clone.post(newid=700, name="council-web", full=1))
        node.qemu(700).config.put(memory="3072", cores=2, description="mairie", tags="council")
        original = node.qemu(700).config.get()
        ok(brieux, node.vzdump.post(vmid=700, storage="local", compress="zstd", mode="snapshot"))
        [entry] = node.storage("local").content.get(content="backup", vmid=700)
        volid = entry["volid"]
        name = volid.split("/", 1)[1]
        archive = sim.storage_folder("brieux", "pve1", "local") / "dump" / name
        assert archive.is_file() and archive.stat().st_size == entry["size"]
        digest = sha256(archive)

        # brieux backs the archive up into its repository on mortree's rest-server.
        repo = layout.peer_repo("brieux", "mortree")
        assert repo.location.startswith("rest:https://127.0.0.")
        restic = Restic()
        restic.run(repo, r.init_args())
        backup = restic.run(repo, r.backup_paths_args([str(archive)], host="brieux"))
        assert backup.outcome is Outcome.OK and backup.summary, backup
        assert backup.summary["files_new"] == 1
        snapshot = backup.summary["snapshot_id"]

        # mortree restores it into its own backup storage: a staging folder next to
        # dump/, then one rename, so the storage never lists a half-written archive.
        mortree = root_api(sim["mortree"])
        assert mortree.nodes("pve1").storage("local").content.get(content="backup") == []
        storage = sim.storage_folder("mortree", "pve1", "local")
        staging = storage / "restic-restore"
        restic.run(repo, r.restore_args(snapshot, staging))
        (storage / "dump").mkdir(parents=True, exist_ok=True)
        os.replace(staging / archive.relative_to(archive.anchor), storage / "dump" / name)
        shutil.rmtree(staging)
        assert sha256(storage / "dump" / name) == digest

        [copied] = mortree.nodes("pve1").storage("local").content.get(content="backup")
        assert copied["volid"] == volid and copied["size"] == entry["size"]
        status = ok(mortree, mortree.nodes("pve1").qemu.post(vmid=700, archive=volid, unique=1))
        assert status["type"] == "qmrestore"
        restored = mortree.nodes("pve1").qemu(700).config.get()

    assert set(restored) == set(original)
    for key in set(original) - RENEWED - {"net0"}:
        assert restored[key] == original[key], key
    for key in RENEWED - {"digest"}:
        assert restored[key] != original[key], key
    # unique=1: the same NIC with a new MAC address
    assert MAC.sub("MAC", restored["net0"]) == MAC.sub("MAC", original["net0"])
    assert MAC.search(restored["net0"]) and restored["net0"] != original["net0"]
    assert restored["scsi0"] == "local-lvm:vm-700-disk-0,size=3G"
