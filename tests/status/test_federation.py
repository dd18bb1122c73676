"""`kloudctl status` reads the federation from the fleet's local registry.

The registries are real: built, signed and stored by the federation's own code
(`tests.federation.conftest.Federation`: coordinator brieux, mortree, saint-aubin revoked,
the sim fleet's three cabinets); the cabinets are the Proxmox VE simulator's. The commands
run as a user runs them, a subprocess of the real CLI.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kloudctl.federation.registry import RegistryStore
from kloudctl.testbed.simfleet import SimFleet
from tests.federation.conftest import Federation
from tests.status.test_status import by_cabinet, status


def _hold(folder: Path, federation: Federation, upto: int) -> RegistryStore:
    folder.mkdir(exist_ok=True)
    store = RegistryStore(folder)
    store.accept(federation.chain(upto), "test")
    return store


def test_membership_version_and_mesh_from_the_local_registry(
    sims: SimFleet, kloudctl: Any, tmp_path: Path
) -> None:
    _hold(tmp_path / "fed", Federation(), 5)
    textfile = tmp_path / "m.prom"
    done = status(
        kloudctl, sims, "--json", "--no-history", "--federation-state", str(tmp_path / "fed"),
        "--prometheus-textfile", str(textfile),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    found = {name: cab["federation"] for name, cab in by_cabinet(done.stdout).items()}
    common = {"federation": "bocage", "registry_version": 5, "mesh": "not set up"}
    assert found["brieux"] == {
        "state": "active", **common, "commune": "brieux", "role": "coordinator",
        "mesh_address": "10.250.0.1",
    }  # fmt: skip
    assert found["mortree"]["state"] == "active" and found["mortree"]["role"] == "member"
    assert found["saint-aubin"]["state"] == "revoked"
    assert all({k: f[k] for k in common} == common for f in found.values())
    metrics = textfile.read_text()
    for cabinet, state in (("brieux", "active"), ("mortree", "active"), ("saint-aubin", "revoked")):
        labels = f'cabinet="{cabinet}",federation="bocage",state="{state}"'
        assert f"kloudctl_federation_member{{{labels}}} 1\n" in metrics
        labels = f'cabinet="{cabinet}",federation="bocage"'
        assert f"kloudctl_federation_registry_version{{{labels}}} 5\n" in metrics
        assert f'kloudctl_federation_registry_verified{{cabinet="{cabinet}"}} 1\n' in metrics
    table = status(kloudctl, sims, "--no-history", "--federation-state", str(tmp_path / "fed"))
    assert table.returncode == 0, table.stderr
    assert "revoked in bocage" in " ".join(table.stdout.split())


def test_a_cabinet_the_registry_does_not_name_is_not_a_member(
    sims: SimFleet, kloudctl: Any, tmp_path: Path
) -> None:
    _hold(tmp_path, Federation(), 2)  # brieux and mortree only
    done = status(kloudctl, sims, "--json", "--no-history", "--federation-state", str(tmp_path))
    assert done.returncode == 0, done.stderr
    found = by_cabinet(done.stdout)
    assert found["saint-aubin"]["federation"]["state"] == "not a member"
    assert found["saint-aubin"]["federation"]["registry_version"] == 2
    assert found["mortree"]["federation"]["state"] == "active"


def test_no_registry_is_not_set_up_and_nothing_is_created(
    sims: SimFleet, kloudctl: Any, tmp_path: Path
) -> None:
    folder = tmp_path / "none"
    done = status(kloudctl, sims, "--json", "--no-history", "--federation-state", str(folder))
    assert done.returncode == 0, done.stderr
    assert {c["federation"]["state"] for c in json.loads(done.stdout)} == {"not set up"}
    assert not folder.exists()


def test_a_tampered_registry_is_an_error_for_every_cabinet_and_exit_3(
    sims: SimFleet, kloudctl: Any, tmp_path: Path
) -> None:
    store = _hold(tmp_path, Federation(), 5)
    document = json.loads(store.path.read_bytes())
    document["entries"][3]["body"]["changes"]["endpoints"] = ["6.6.6.6:51820"]
    store.path.write_text(json.dumps(document))
    textfile = tmp_path / "m.prom"
    done = status(
        kloudctl, sims, "--json", "--no-history", "--federation-state", str(tmp_path),
        "--prometheus-textfile", str(textfile),
    )  # fmt: skip
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr
    assert "federation registry" in done.stderr and "entry version 4" in done.stderr
    for cab in json.loads(done.stdout):
        assert cab["reachable"], cab  # every other fact was read
        assert cab["federation"]["state"] == "error"
        assert "entry version 4 (update" in cab["federation"]["detail"]
    metrics = textfile.read_text()
    assert 'kloudctl_federation_registry_verified{cabinet="mortree"} 0\n' in metrics
    assert "kloudctl_federation_member{" not in metrics


def test_a_rolled_back_registry_is_an_error_and_exit_3(
    sims: SimFleet, kloudctl: Any, tmp_path: Path
) -> None:
    federation = Federation()
    store = _hold(tmp_path, federation, 3)
    old = store.path.read_bytes()
    store.accept(federation.chain(5), "newer")
    store.path.write_bytes(old)  # someone puts the older registry back
    done = status(kloudctl, sims, "--json", "--no-history", "--federation-state", str(tmp_path))
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr
    for cab in json.loads(done.stdout):
        assert cab["federation"]["state"] == "error"
        assert "at version 3, older than version 5" in cab["federation"]["detail"]
