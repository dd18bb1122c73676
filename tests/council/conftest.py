"""A status history written by the test with known values, and the example fleet."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from kloudctl.status import history

REPO = Path(__file__).resolve().parents[2]
#: 2026-11-01T00:00:00Z: the histories below start here.
T0 = 1_793_491_200.0
HOUR = 3600.0
GIB = 1024**3


def write_history(path: Path, rows: list[dict[str, Any]]) -> None:
    """Samples as given (the schema made by kloudctl's own history module): each row is
    a sample's columns plus `tenants`, a list of tenant_samples columns, and `mailboxes`,
    a list of (domain, tenant or None, count)."""
    db = history.open_history(path)
    try:
        db.execute("BEGIN IMMEDIATE")
        for row in rows:
            tenants = row.pop("tenants", [])
            mailboxes = row.pop("mailboxes", [])
            sample = {"reachable": 1, "elapsed_seconds": 0.1, **row}
            names = ", ".join(sample)
            marks = ", ".join(f":{k}" for k in sample)
            cursor = db.execute(f"INSERT INTO samples ({names}) VALUES ({marks})", sample)
            for t in tenants:
                t = {"sample_id": cursor.lastrowid, "declared": 1, "guests": 1,
                     "guests_running": 1, "vcpu_quota": None, "ram_quota_bytes": None,
                     "disk_quota_bytes": None, "cpu_used_cores": 0.0, "ram_used_bytes": 0,
                     "disk_used_bytes": 0, **t}  # fmt: skip
                names = ", ".join(t)
                marks = ", ".join(f":{k}" for k in t)
                db.execute(f"INSERT INTO tenant_samples ({names}) VALUES ({marks})", t)
            for m in mailboxes:  # (domain, tenant or None, mailboxes)
                db.execute("INSERT INTO mailbox_samples VALUES (?, ?, ?, ?)",
                           (cursor.lastrowid, *m))  # fmt: skip
        db.execute("COMMIT")
    finally:
        db.close()


@pytest.fixture
def fleet_copy(tmp_path: Path) -> Path:
    """The example fleet (cabinets/, backups/), copied so a test may edit it."""
    root = tmp_path / "fleet"
    for part in ("cabinets", "backups"):
        shutil.copytree(REPO / part, root / part)
    return root
