"""State survives a restart (atomic JSON per cabinet) or is ephemeral on request."""

from __future__ import annotations

import json

from simhelpers import ok, root_api

from kloudctl.sim.testing import running_sim


def test_state_survives_restart(tmp_path, sim_fleet):
    with running_sim(["mortree"], fleet=sim_fleet, state_dir=tmp_path) as sim:
        ep = sim["mortree"]
        root = root_api(ep)
        ok(root, root.nodes(ep.nodes[0]).qemu(9000).clone.post(newid=400, name="kept"))
        root.pools.post(poolid="kept-pool")
        tok = root.access.users("root@pam").token("ci").post(privsep=0)
        first = ep
    state = json.loads((tmp_path / "mortree" / "state.json").read_text())
    assert "400" in state["guests"]
    assert "ci" in state["access"]["users"]["root@pam"]["tokens"]
    assert tok["value"] not in (tmp_path / "mortree" / "state.json").read_text()  # hashed only
    assert not list((tmp_path / "mortree").glob(".*.tmp"))  # no torn writes left behind
    with running_sim(["mortree"], fleet=sim_fleet, state_dir=tmp_path) as sim:
        ep = sim["mortree"]
        assert ep.fingerprint == first.fingerprint
        assert ep.root_password == first.root_password
        root = root_api(ep)
        assert root.nodes(ep.nodes[0]).qemu(400).config.get()["name"] == "kept"
        assert "kept-pool" in [p["poolid"] for p in root.pools.get()]


def test_ephemeral_keeps_nothing(sim_fleet):
    with running_sim(["mortree"], fleet=sim_fleet) as sim:
        root = root_api(sim["mortree"])
        ok(root, root.nodes(sim["mortree"].nodes[0]).qemu(9000).clone.post(newid=401))
    with running_sim(["mortree"], fleet=sim_fleet) as sim:
        root = root_api(sim["mortree"])
        assert 401 not in [v["vmid"] for v in root.cluster.resources.get(type="vm")]


def test_fleet_cabinets_get_their_hardware(sim_fleet):
    cab = sim_fleet.cabinet("brieux")
    with running_sim(["brieux"], count=1, fleet=sim_fleet) as sim:
        root = root_api(sim["brieux"])
        nodes = {n["node"]: n for n in root.nodes.get()}
        assert set(nodes) == {n.name for n in cab.hardware.nodes}
        for n in cab.hardware.nodes:
            assert nodes[n.name]["maxcpu"] == n.cores and nodes[n.name]["maxmem"] == n.ram
        template = root.nodes("pve1").qemu(9000).config.get()
        assert template["name"] == "debian-12-cloud" and template["template"] == 1
        assert template["scsi0"].startswith("local-lvm:")
        assert sim["sim01"].host != sim["brieux"].host  # one loopback address each
