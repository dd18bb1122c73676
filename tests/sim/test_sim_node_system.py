"""Node system settings, services and cluster configuration objects on the simulator:
what is set is read back, digests guard concurrent edits, secrets are never shown."""

from __future__ import annotations

import pytest
from simhelpers import error_of, ok, root_api


@pytest.fixture(scope="module")
def root(pve_sim):
    return root_api(pve_sim["brieux"])


def test_dns_time_hosts_round_trip(root):
    node = root.nodes("pve2")
    node.dns.put(search="mairie.lan", dns1="10.0.0.53")
    assert node.dns.get() == {"search": "mairie.lan", "dns1": "10.0.0.53"}
    node.time.put(timezone="UTC")
    assert node.time.get()["timezone"] == "UTC"
    hosts = node.hosts.get()
    node.hosts.post(data=hosts["data"] + "10.0.0.9 nas\n", digest=hosts["digest"])
    assert "10.0.0.9 nas" in node.hosts.get()["data"]
    exc = error_of(node.hosts.post, data="x\n", digest=hosts["digest"])
    assert "detected modified configuration" in str(exc)


def test_services_stop_and_start(root):
    node = root.nodes("pve2")
    ok(root, node.services("postfix").stop.post())
    assert node.services("postfix").state.get()["state"] == "dead"
    ok(root, node.services("postfix").start.post())
    assert node.services("postfix").state.get()["active-state"] == "active"
    exc = error_of(node.services("nginx").state.get)  # PVE manages a fixed set of services
    assert exc.status_code == 400 and "does not have a value in the enumeration" in str(exc)
    assert len(node.services.get()) == 23


def test_startall_starts_onboot_guests_only(root):
    node = root.nodes("pve1")
    ok(root, node.qemu(9000).clone.post(newid=900, name="boot"))
    ok(root, node.qemu(9000).clone.post(newid=901, name="manual"))
    node.qemu(900).config.put(onboot=1)
    ok(root, node.startall.post())
    assert node.qemu(900).status.current.get()["status"] == "running"
    assert node.qemu(901).status.current.get()["status"] == "stopped"
    ok(root, node.stopall.post())
    assert node.qemu(900).status.current.get()["status"] == "stopped"
    for vmid in (900, 901):
        ok(root, node.qemu(vmid).delete())


def test_notification_endpoint_secrets_are_not_shown(root, pve_sim):
    gotify = root.cluster.notifications.endpoints.gotify
    gotify.post(name="council", server="https://gotify.lan", token="very-secret")
    assert "token" not in gotify("council").get()
    targets = {t["name"]: t for t in root.cluster.notifications.targets.get()}
    assert targets["council"]["type"] == "gotify" and "mail-to-root" in targets
    exc = error_of(gotify.post, name="council", server="https://x.lan", token="t")
    assert "endpoint 'council' already exists" in str(exc)
    state = pve_sim.simulator.cabinets["brieux"].state
    assert "very-secret" not in str(state)  # kept as a salted hash only
    gotify("council").delete()
    assert "endpoint 'council' does not exist" in str(error_of(gotify("council").get))


def test_replication_job_shows_guest_and_job_number(root):
    root.cluster.replication.post(id="9000-1", target="pve2", type="local")
    [job] = root.cluster.replication.get()
    assert (job["guest"], job["jobnum"], job["target"]) == (9000, 1, "pve2")
    root.cluster.replication("9000-1").delete()
