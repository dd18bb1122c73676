"""The status history: one sample per cabinet per `kloudctl status` run, in one SQLite file.

Default place: `<fleet>/.state/status/history.sqlite` (beside the fleet's other state).
Safe against runs from cron overlapping: WAL journal (readers never block the writer), a
busy timeout (a second writer waits for the first instead of failing), and each run's
samples written in one `BEGIN IMMEDIATE` transaction (all of a run, or none). Bounded:
every write deletes the samples older than the retention (default 400 days, a year and a
bit, so a council report can compare a period with the same one a year before).

Schema (version 2, kept in `meta.schema_version`; a newer version is refused, never
rewritten; a version 1 file is migrated in place by the first writer, in the same
`BEGIN IMMEDIATE` transaction that checks the version, so two runs never migrate twice,
and is read as it is by readers, with no mailboxes):

`samples`: one row per cabinet and run.
    id                     INTEGER PRIMARY KEY
    cabinet                TEXT     the cabinet's name
    taken_at               REAL     Unix time (UTC seconds) the gathering of the cabinet began
    reachable              INTEGER  1 when its Proxmox API answered, else 0
    error                  TEXT     why not (NULL when reachable)
    elapsed_seconds        REAL     how long the cabinet took to read
    pve_version            TEXT
    nodes_total, nodes_online        INTEGER
    guests_total, guests_running     INTEGER
    vcpu_capacity          REAL     vCPUs the cabinet may promise (cores x overcommit)
    ram_capacity_bytes, disk_capacity_bytes   INTEGER (after host reserve and overcommit)
    cpu_used_cores         REAL     cores busy, as the nodes report
    ram_used_bytes         INTEGER  the nodes' memory in use
    storage_used_bytes, storage_total_bytes   INTEGER (the storages' used and total)
    power_budget_watts     REAL
    power_estimated_watts  REAL     from the nodes' CPU use (idle + (peak - idle) x use)
    power_measured_watts   REAL     the last record of the cabinet's UPS (NULL: not measured)
    power_measured_at      REAL     Unix time of that record
    replication_state      TEXT     'not set up', 'ok', 'unknown' ...
    replication_lag_seconds REAL    the worst peer's lag (NULL: unknown or not set up)
    mail_state             TEXT     v2: 'ok', 'attention', 'down', 'not probed'... (NULL: no
                                    mail declared, or a v1 sample)

`tenant_samples`: one row per tenant present in a reachable sample.
    sample_id              INTEGER  REFERENCES samples(id) ON DELETE CASCADE
    tenant                 TEXT     the tenant (the guests' Proxmox pool)
    declared               INTEGER  1 when the cabinet file declares it
    guests, guests_running INTEGER
    vcpu_quota, ram_quota_bytes, disk_quota_bytes            declared quota (NULL: none)
    vcpu_reserved, ram_reserved_bytes, disk_reserved_bytes   the guests' sizes
    cpu_used_cores, ram_used_bytes, disk_used_bytes          what Proxmox measures

`mailbox_samples` (v2): one row per mail domain in a sample whose accounts store was read.
    sample_id              INTEGER  REFERENCES samples(id) ON DELETE CASCADE
    domain                 TEXT
    tenant                 TEXT     the tenant its mailboxes are billed to (`mail.billed_to`
                                    in the cabinet file then); NULL: the commune's own
    mailboxes              INTEGER  mailboxes in the accounts store

What a report computes from it, per cabinet and period [a, b):
- uptime: each sample stands for the time until the next one (capped, e.g. at twice the
  run interval, so a stopped cron is a gap, not uptime); uptime = reachable time / known
  time;
- kWh: the same weighting of `power_measured_watts` (else `power_estimated_watts`) / 1000
  x hours;
- storage over time: `storage_used_bytes` per sample (or per day: the last sample);
- per-tenant usage: `tenant_samples` joined to `samples`, averaged or integrated alike;
  mailbox-days: `mailbox_samples.mailboxes` integrated alike, per tenant.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kloudctl import files
from kloudctl.errors import InputError, KloudError
from kloudctl.status.gather import CabinetStatus

SCHEMA_VERSION = 2
DEFAULT_RETENTION_DAYS = 400
#: How long a writer waits for another run's transaction before giving up.
BUSY_TIMEOUT_MS = 30_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS samples (
    id INTEGER PRIMARY KEY,
    cabinet TEXT NOT NULL,
    taken_at REAL NOT NULL,
    reachable INTEGER NOT NULL CHECK (reachable IN (0, 1)),
    error TEXT,
    elapsed_seconds REAL NOT NULL,
    pve_version TEXT,
    nodes_total INTEGER,
    nodes_online INTEGER,
    guests_total INTEGER,
    guests_running INTEGER,
    vcpu_capacity REAL,
    ram_capacity_bytes INTEGER,
    disk_capacity_bytes INTEGER,
    cpu_used_cores REAL,
    ram_used_bytes INTEGER,
    storage_used_bytes INTEGER,
    storage_total_bytes INTEGER,
    power_budget_watts REAL,
    power_estimated_watts REAL,
    power_measured_watts REAL,
    power_measured_at REAL,
    replication_state TEXT,
    replication_lag_seconds REAL,
    mail_state TEXT
);
CREATE INDEX IF NOT EXISTS samples_by_time ON samples (taken_at);
CREATE INDEX IF NOT EXISTS samples_by_cabinet ON samples (cabinet, taken_at);
CREATE TABLE IF NOT EXISTS tenant_samples (
    sample_id INTEGER NOT NULL REFERENCES samples (id) ON DELETE CASCADE,
    tenant TEXT NOT NULL,
    declared INTEGER NOT NULL,
    guests INTEGER NOT NULL,
    guests_running INTEGER NOT NULL,
    vcpu_quota INTEGER,
    ram_quota_bytes INTEGER,
    disk_quota_bytes INTEGER,
    vcpu_reserved INTEGER NOT NULL,
    ram_reserved_bytes INTEGER NOT NULL,
    disk_reserved_bytes INTEGER NOT NULL,
    cpu_used_cores REAL NOT NULL,
    ram_used_bytes INTEGER NOT NULL,
    disk_used_bytes INTEGER NOT NULL,
    PRIMARY KEY (sample_id, tenant)
);
CREATE TABLE IF NOT EXISTS mailbox_samples (
    sample_id INTEGER NOT NULL REFERENCES samples (id) ON DELETE CASCADE,
    domain TEXT NOT NULL,
    tenant TEXT,
    mailboxes INTEGER NOT NULL CHECK (mailboxes >= 0),
    PRIMARY KEY (sample_id, domain)
);
"""
#: What version 1 lacks, added in place (SQLite adds a column without rewriting rows).
_MIGRATE_FROM_1 = ("ALTER TABLE samples ADD COLUMN mail_state TEXT",)


class HistoryError(KloudError):
    """The history file cannot be used (not SQLite, a newer schema, locked too long)."""


def default_path(fleet_root: Path) -> Path:
    return fleet_root / ".state" / "status" / "history.sqlite"


@contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    """One `BEGIN IMMEDIATE` transaction: committed when the block ends, rolled back when
    anything (an interrupt too) leaves it."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def open_history(path: Path, *, create_folder: bool = False) -> sqlite3.Connection:
    """The history at `path`, made (schema included) when new. The folder must exist
    unless `create_folder` (the default place under the fleet's state folder)."""
    if create_folder:
        path.parent.mkdir(parents=True, exist_ok=True)
    files.writable_file(path, "status history")
    try:
        db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA foreign_keys = ON")
        with _transaction(db):
            # One statement at a time: executescript would commit the open transaction.
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', ?)",
                    (str(SCHEMA_VERSION),),
                )
            elif int(row[0]) == 1:
                # The new tables were made above (IF NOT EXISTS); the new column here.
                for statement in _MIGRATE_FROM_1:
                    db.execute(statement)
                db.execute(
                    "UPDATE meta SET value = ? WHERE key = 'schema_version'",
                    (str(SCHEMA_VERSION),),
                )
            elif int(row[0]) > SCHEMA_VERSION:
                raise HistoryError(
                    f"{path}: status history schema {row[0]} is newer than this kloudctl's "
                    f"({SCHEMA_VERSION}): use a newer kloudctl, or another --history file"
                )
    except sqlite3.DatabaseError as exc:
        raise HistoryError(f"{path}: not a usable status history ({exc})") from None
    return db


def append(
    path: Path,
    samples: Iterable[CabinetStatus],
    *,
    retention_days: float = DEFAULT_RETENTION_DAYS,
    create_folder: bool = False,
    now: float | None = None,
) -> int:
    """Add the samples of one run, then drop what is older than the retention, in one
    transaction. Returns how many samples the history holds after."""
    if not retention_days > 0:
        raise InputError(f"retention: expected a number of days above 0, got {retention_days}")
    db = open_history(path, create_folder=create_folder)
    try:
        with _transaction(db):
            for sample in samples:
                _insert(db, sample)
            horizon = (time.time() if now is None else now) - retention_days * 86400
            db.execute("DELETE FROM samples WHERE taken_at < ?", (horizon,))
            (count,) = db.execute("SELECT count(*) FROM samples").fetchone()
    except sqlite3.DatabaseError as exc:
        raise HistoryError(f"{path}: cannot add to the status history ({exc})") from None
    finally:
        db.close()
    return int(count)


def _insert(db: sqlite3.Connection, s: CabinetStatus) -> None:
    guests = s.guests
    cap = s.capacity
    lag = s.replication.get("lag_seconds")
    row: dict[str, Any] = {
        "cabinet": s.cabinet,
        "taken_at": s.taken_at,
        "reachable": int(s.reachable),
        "error": s.error,
        "elapsed_seconds": s.elapsed,
        "pve_version": s.version,
        "nodes_total": len(s.nodes) if s.reachable else None,
        "nodes_online": sum(n.online for n in s.nodes) if s.reachable else None,
        "guests_total": sum(guests.values()) if s.reachable else None,
        "guests_running": guests.get("running", 0) if s.reachable else None,
        "vcpu_capacity": cap.get("vCPU", {}).get("capacity"),
        "ram_capacity_bytes": cap.get("RAM", {}).get("capacity"),
        "disk_capacity_bytes": cap.get("disk", {}).get("capacity"),
        "cpu_used_cores": cap.get("vCPU", {}).get("used"),
        "ram_used_bytes": cap.get("RAM", {}).get("used"),
        "storage_used_bytes": s.storage_used,
        "storage_total_bytes": s.storage_total,
        "power_budget_watts": s.power.get("budget_watts"),
        "power_estimated_watts": s.power.get("estimated_watts"),
        "power_measured_watts": s.power.get("measured_watts"),
        "power_measured_at": s.power.get("measured_at"),
        "replication_state": s.replication.get("state"),
        "replication_lag_seconds": lag if isinstance(lag, int | float) else None,
        "mail_state": s.mail.get("state") if s.mail.get("state") != "not set up" else None,
    }
    names = ", ".join(row)
    marks = ", ".join(f":{k}" for k in row)
    cursor = db.execute(f"INSERT INTO samples ({names}) VALUES ({marks})", row)
    billed_to = s.mail.get("billed_to") or {}
    for domain, count in sorted((s.mail.get("mailboxes") or {}).items()):
        db.execute(
            "INSERT INTO mailbox_samples VALUES (?, ?, ?, ?)",
            (cursor.lastrowid, domain, billed_to.get(domain), count),
        )
    if not s.reachable:
        return
    for t in s.tenants:
        db.execute(
            "INSERT INTO tenant_samples VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                cursor.lastrowid, t.tenant, int(t.declared), sum(t.guests.values()),
                t.guests.get("running", 0), t.vcpu_quota, t.ram_quota, t.disk_quota,
                t.vcpu_reserved, t.ram_reserved, t.disk_reserved, round(t.cpu_used, 3),
                t.ram_used, t.disk_used,
            ),
        )  # fmt: skip


def read_samples(
    path: Path, cabinet: str | None = None, *, before: float | None = None
) -> list[dict[str, Any]]:
    """The samples (oldest first) of one cabinet or all, each with its `tenants`; only those
    taken before `before` when given: the one reader, for reports and tests. Reading never
    makes the file, and refuses a schema newer than this kloudctl's."""
    files.existing_store(path, "status history", "run `kloudctl status` first")
    try:
        db = sqlite3.connect(f"file:{os.fspath(path)}?mode=ro", uri=True, timeout=30)
    except sqlite3.DatabaseError as exc:
        raise HistoryError(f"{path}: cannot be opened ({exc})") from None
    try:
        db.row_factory = sqlite3.Row
        version = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if version is None or int(version[0]) > SCHEMA_VERSION:
            shown = "none" if version is None else version[0]
            raise HistoryError(
                f"{path}: status history schema {shown}, this kloudctl reads {SCHEMA_VERSION}"
            )
        where: list[str] = []
        args: list[Any] = []
        if cabinet is not None:
            where.append("cabinet = ?")
            args.append(cabinet)
        if before is not None:
            where.append("taken_at < ?")
            args.append(before)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = [
            dict(r)
            for r in db.execute(f"SELECT * FROM samples {clause} ORDER BY taken_at, id", args)
        ]
        tenants: dict[int, list[dict[str, Any]]] = {}
        for t in db.execute(
            "SELECT * FROM tenant_samples WHERE sample_id IN "
            f"(SELECT id FROM samples {clause}) ORDER BY sample_id, tenant",
            args,
        ):
            tenants.setdefault(t["sample_id"], []).append(dict(t))
        mailboxes: dict[int, list[dict[str, Any]]] = {}
        if int(version[0]) >= 2:  # a version 1 file, read as it is, has no mailboxes
            for m in db.execute(
                "SELECT * FROM mailbox_samples WHERE sample_id IN "
                f"(SELECT id FROM samples {clause}) ORDER BY sample_id, domain",
                args,
            ):
                mailboxes.setdefault(m["sample_id"], []).append(dict(m))
    except sqlite3.DatabaseError as exc:
        raise HistoryError(f"{path}: not a readable status history ({exc})") from None
    finally:
        db.close()
    for r in rows:
        r.setdefault("mail_state", None)
        r["tenants"] = tenants.get(r["id"], [])
        r["mailboxes"] = mailboxes.get(r["id"], [])
    return rows
