"""The status history: what a run adds, retention, schema versions, and several writers at
once in separate processes (cron runs overlapping), on the real SQLite."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from kloudctl.errors import KloudError
from kloudctl.status import history
from kloudctl.status.gather import CabinetStatus, TenantUsage
from kloudctl.testbed.simfleet import SimFleet
from tests.status.conftest import PER_TENANT, targets_with_closed, tenants_of


def sample(cabinet: str, taken_at: float, *, reachable: bool = True) -> CabinetStatus:
    s = CabinetStatus(cabinet, taken_at, reachable=reachable, elapsed=0.1, version="9.1.3")
    s.tenants = [
        TenantUsage("mairie", True, {"running": 2, "stopped": 1}, 8, 2**34, 2**37, 3, 2**31,
                    2**33, 0.5, 2**30, 2**32),
    ]  # fmt: skip
    s.capacity = {"vCPU": {"capacity": 64.0, "used": 1.5}, "RAM": {"capacity": 2.0**36}}
    s.power = {"budget_watts": 500.0, "estimated_watts": 120.0, "measured_watts": None}
    return s


def test_a_status_run_adds_one_sample_per_cabinet(
    sims: SimFleet, kloudctl: Any, tmp_path: Path
) -> None:
    store = history.default_path(sims.root)
    targets = targets_with_closed(sims, "mortree", tmp_path)
    env = {"KLOUDCTL_PROXMOX_TARGETS": str(targets)}
    for _ in range(2):
        done = kloudctl(
            "--fleet", str(sims.root), "status", "--json", "--timeout", "3", env=env
        )  # fmt: skip
        assert done.returncode == 3, done.stderr
    rows = history.read_samples(store)
    assert len(rows) == 6
    assert {r["cabinet"] for r in rows} == {"brieux", "mortree", "saint-aubin"}
    for r in rows:
        if r["cabinet"] == "mortree":
            assert r["reachable"] == 0 and "cannot reach Proxmox" in r["error"]
            assert r["tenants"] == [] and r["power_budget_watts"] == 500.0
            continue
        assert r["reachable"] == 1 and r["pve_version"] == "9.1.3"
        assert r["guests_total"] == PER_TENANT * len(tenants_of(sims, r["cabinet"]))
        assert r["power_estimated_watts"] > 0 and r["storage_used_bytes"] > 0
        assert {t["tenant"] for t in r["tenants"]} == set(tenants_of(sims, r["cabinet"]))
        for t in r["tenants"]:
            assert t["guests"] == PER_TENANT and t["guests_running"] == PER_TENANT - 1
            assert t["ram_reserved_bytes"] == PER_TENANT * 1024**3
    with sqlite3.connect(store) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert db.execute("SELECT value FROM meta").fetchone() == ("1",)


def test_retention_drops_old_samples_and_their_tenants(tmp_path: Path) -> None:
    store = tmp_path / "h.sqlite"
    day = 86400.0
    history.append(store, [sample("a", 1000 * day), sample("b", 1000 * day)], now=1000 * day)
    history.append(store, [sample("a", 1300 * day)], now=1300 * day)
    count = history.append(store, [sample("a", 1450 * day)], now=1450 * day, retention_days=400)
    assert count == 2  # the samples of day 1000 are older than 400 days
    rows = history.read_samples(store)
    assert [r["taken_at"] for r in rows] == [1300 * day, 1450 * day]
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT count(*) FROM tenant_samples").fetchone() == (2,)


def test_a_newer_schema_is_refused_and_left_alone(tmp_path: Path) -> None:
    store = tmp_path / "h.sqlite"
    history.append(store, [sample("a", 1.0)], now=1.0)
    with sqlite3.connect(store) as db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(KloudError, match="schema 99 is newer"):
        history.append(store, [sample("a", 2.0)], now=2.0)
    # counted directly: the reader refuses a newer schema too
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT count(*) FROM samples").fetchone()[0] == 1
    with pytest.raises(KloudError, match="status history schema 99, this kloudctl reads 1"):
        history.read_samples(store)


def test_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    store = tmp_path / "h.sqlite"
    store.write_text("these are not the samples you are looking for\n" * 100)
    with pytest.raises(KloudError, match=r"h\.sqlite: not a usable status history"):
        history.append(store, [sample("a", 1.0)])


def _writer(store: str, worker: int, runs: int, ready: Any) -> None:
    ready.wait()
    for run in range(runs):
        samples = [sample(f"cab{c}", worker * 1000 + run) for c in range(5)]
        history.append(Path(store), samples, now=0.0)


def test_concurrent_runs_lose_nothing(tmp_path: Path) -> None:
    """Six processes append 25 runs of 5 cabinets each at the same time (cron runs that
    overlap): every sample and tenant row is there, the file is sound."""
    store = tmp_path / "h.sqlite"
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    workers = [ctx.Process(target=_writer, args=(str(store), w, 25, ready)) for w in range(6)]
    for p in workers:
        p.start()
    ready.set()
    for p in workers:
        p.join(120)
    assert [p.exitcode for p in workers] == [0] * 6
    with sqlite3.connect(store) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("SELECT count(*) FROM samples").fetchone() == (6 * 25 * 5,)
        assert db.execute("SELECT count(*) FROM tenant_samples").fetchone() == (6 * 25 * 5,)
        # each run is whole: 5 cabinets per (worker, run) time
        per_run = db.execute(
            "SELECT count(*) FROM samples GROUP BY taken_at HAVING count(*) != 5"
        ).fetchall()
        assert per_run == []
