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
        assert db.execute("SELECT value FROM meta").fetchone() == ("2",)


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
    with pytest.raises(KloudError, match="status history schema 99, this kloudctl reads 2"):
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


#: The schema as version 1 wrote it (kloudctl before mailboxes): a file cron made then.
V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE samples (
    id INTEGER PRIMARY KEY, cabinet TEXT NOT NULL, taken_at REAL NOT NULL,
    reachable INTEGER NOT NULL CHECK (reachable IN (0, 1)), error TEXT,
    elapsed_seconds REAL NOT NULL, pve_version TEXT, nodes_total INTEGER,
    nodes_online INTEGER, guests_total INTEGER, guests_running INTEGER,
    vcpu_capacity REAL, ram_capacity_bytes INTEGER, disk_capacity_bytes INTEGER,
    cpu_used_cores REAL, ram_used_bytes INTEGER, storage_used_bytes INTEGER,
    storage_total_bytes INTEGER, power_budget_watts REAL, power_estimated_watts REAL,
    power_measured_watts REAL, power_measured_at REAL, replication_state TEXT,
    replication_lag_seconds REAL
);
CREATE INDEX samples_by_time ON samples (taken_at);
CREATE INDEX samples_by_cabinet ON samples (cabinet, taken_at);
CREATE TABLE tenant_samples (
    sample_id INTEGER NOT NULL REFERENCES samples (id) ON DELETE CASCADE,
    tenant TEXT NOT NULL, declared INTEGER NOT NULL, guests INTEGER NOT NULL,
    guests_running INTEGER NOT NULL, vcpu_quota INTEGER, ram_quota_bytes INTEGER,
    disk_quota_bytes INTEGER, vcpu_reserved INTEGER NOT NULL,
    ram_reserved_bytes INTEGER NOT NULL, disk_reserved_bytes INTEGER NOT NULL,
    cpu_used_cores REAL NOT NULL, ram_used_bytes INTEGER NOT NULL,
    disk_used_bytes INTEGER NOT NULL, PRIMARY KEY (sample_id, tenant)
);
INSERT INTO meta VALUES ('schema_version', '1');
INSERT INTO samples (cabinet, taken_at, reachable, elapsed_seconds, pve_version)
    VALUES ('brieux', 100.0, 1, 0.2, '9.1.2');
INSERT INTO tenant_samples VALUES (1, 'mairie', 1, 3, 2, 8, NULL, NULL, 3, 1, 1, 0.5, 1, 1);
"""


def _v1_file(path: Path) -> Path:
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA journal_mode = WAL")
        db.executescript(V1_SCHEMA)
    return path


def with_mail(s: CabinetStatus, **counts: int) -> CabinetStatus:
    s.mail = {"state": "ok", "up": True, "mailboxes": counts,
              "billed_to": {"boulangerie-leroy.fr": "boulangerie-leroy"}}  # fmt: skip
    return s


def test_a_version_1_file_still_reads_unchanged(tmp_path: Path) -> None:
    store = _v1_file(tmp_path / "h.sqlite")
    before = store.read_bytes()
    [row] = history.read_samples(store)
    assert (row["cabinet"], row["pve_version"], row["mail_state"], row["mailboxes"]) == (
        "brieux", "9.1.2", None, [])  # fmt: skip
    assert [t["tenant"] for t in row["tenants"]] == ["mairie"]
    assert store.read_bytes() == before  # reading migrates nothing


def test_the_first_writer_migrates_version_1_in_place(tmp_path: Path) -> None:
    store = _v1_file(tmp_path / "h.sqlite")
    s = with_mail(sample("brieux", 200.0), **{"brieux.fr": 12, "boulangerie-leroy.fr": 3})
    assert history.append(store, [s], now=200.0, retention_days=36500) == 2
    old, new = history.read_samples(store)
    assert old["pve_version"] == "9.1.2" and old["mailboxes"] == [] and old["mail_state"] is None
    assert new["mail_state"] == "ok"
    assert [(m["domain"], m["tenant"], m["mailboxes"]) for m in new["mailboxes"]] == [
        ("boulangerie-leroy.fr", "boulangerie-leroy", 3), ("brieux.fr", None, 12)]  # fmt: skip
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT value FROM meta").fetchone() == ("2",)
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def _migrating_writer(store: str, worker: int, ready: Any) -> None:
    ready.wait()
    for run in range(10):
        s = with_mail(sample(f"cab{worker}", 1000.0 + worker * 100 + run), **{"brieux.fr": run})
        history.append(Path(store), [s], now=0.0)


def test_concurrent_runs_on_a_version_1_file_migrate_it_once(tmp_path: Path) -> None:
    """Four processes start on the same version 1 file at once (cron after an upgrade):
    one migrates, the others wait for it, then all their samples and mailboxes are there."""
    store = _v1_file(tmp_path / "h.sqlite")
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    workers = [ctx.Process(target=_migrating_writer, args=(str(store), w, ready)) for w in range(4)]
    for p in workers:
        p.start()
    ready.set()
    for p in workers:
        p.join(120)
    assert [p.exitcode for p in workers] == [0] * 4
    rows = history.read_samples(store)
    assert len(rows) == 1 + 4 * 10
    assert sorted(r["mailboxes"][0]["mailboxes"] for r in rows[1:]) == sorted(list(range(10)) * 4)
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT value FROM meta").fetchone() == ("2",)
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
