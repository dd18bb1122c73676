"""Metrics on the simulator: RRD data of nodes, guests and storages that follow the
simulated load, metric servers, and the metrics export."""

from __future__ import annotations

import itertools
import time

import pytest
from simhelpers import error_of, ok, root_api


@pytest.fixture(scope="module")
def root(pve_sim):
    return root_api(pve_sim["brieux"])


def test_node_rrddata_moves_with_the_load(root):
    node = root.nodes("pve1")
    idle = node.rrddata.get(timeframe="hour")
    assert len(idle) == 70
    assert all(b["time"] - a["time"] == 60 for a, b in itertools.pairwise(idle))
    ok(root, node.qemu(9000).clone.post(newid=800, name="load"))
    node.qemu(800).config.put(cores=4, memory="4096")
    ok(root, node.qemu(800).status.start.post())
    busy = node.rrddata.get(timeframe="hour")
    assert busy[-1]["cpu"] > idle[-1]["cpu"]
    assert busy[-1]["memused"] - idle[-1]["memused"] == int(4096 * 1024**2 * 0.42)
    assert busy[0]["cpu"] == idle[0]["cpu"]  # an hour ago the guest was not running
    peak = node.rrddata.get(timeframe="hour", cf="MAX")
    assert peak[-1]["cpu"] >= busy[-1]["cpu"]
    day = node.rrddata.get(timeframe="day")
    assert day[-1]["time"] - day[-2]["time"] == 1800


def test_guest_and_storage_rrddata(root):
    node = root.nodes("pve1")
    rows = node.qemu(800).rrddata.get(timeframe="hour")
    assert rows[-1]["cpu"] > 0 and rows[-1]["maxmem"] == 4096 * 1024**2
    assert rows[0]["cpu"] == 0 and rows[0]["mem"] == 0
    ok(root, node.qemu(800).status.stop.post())
    assert node.qemu(800).rrddata.get(timeframe="hour")[-1]["cpu"] == 0
    storage = node.storage("local-lvm").rrddata.get(timeframe="hour")
    assert storage[-1]["used"] >= 3 * 1024**3 and storage[-1]["total"] > storage[-1]["used"]
    exc = error_of(node.qemu(801).rrddata.get, timeframe="hour")
    assert "Configuration file 'nodes/pve1/qemu-server/801.conf' does not exist" in str(exc)
    assert error_of(node.rrddata.get, timeframe="fortnight").status_code == 400
    ok(root, node.qemu(800).delete(purge=1))


def test_metric_servers_and_export(root):
    servers = root.cluster.metrics.server
    servers("influx").post(type="influxdb", server="10.0.0.9", port=8089, token="s3cret")
    exc = error_of(servers("influx").post, type="influxdb", server="10.0.0.9", port=8089)
    assert "metric server 'influx' already exists" in str(exc)
    listed = servers.get()
    assert [(s["id"], s["type"], s["port"]) for s in listed] == [("influx", "influxdb", 8089)]
    shown = servers("influx").get()
    assert "token" not in shown and shown["server"] == "10.0.0.9"  # secrets never shown
    servers("influx").put(server="10.0.0.10", port=8089)
    assert servers("influx").get()["server"] == "10.0.0.10"
    servers("influx").delete()
    assert "does not exist" in str(error_of(servers("influx").get))
    data = root.cluster.metrics.export.get()["data"]
    ids = {d["id"] for d in data}
    assert {"node/pve1", "node/pve2", "qemu/9000"} <= ids
    assert {d["type"] for d in data} <= {"gauge", "counter", "derive"}


def test_cluster_resources_figures_move_after_the_status_period(root, monkeypatch):
    """PVE's pvestatd refreshes what /cluster/resources shows every 10 s: within a period the
    simulator may answer the same figures, after it the uptime has moved on."""
    from kloudctl.sim.handlers import cluster

    node = root.nodes("pve1")
    ok(root, node.qemu(9000).clone.post(newid=802, name="uptime"))
    ok(root, node.qemu(802).status.start.post())

    def uptime() -> int:
        rows = root.cluster.resources.get(type="vm")
        return next(r["uptime"] for r in rows if r["vmid"] == 802)

    first = uptime()
    time.sleep(1.1)
    assert uptime() == first  # the same period: pvestatd has not refreshed yet
    now = cluster._clock()
    monkeypatch.setattr(cluster, "_clock", lambda: now + cluster.STATUS_PERIOD)
    assert uptime() > first
    ok(root, node.qemu(802).status.stop.post())
    ok(root, node.qemu(802).delete(purge=1))
