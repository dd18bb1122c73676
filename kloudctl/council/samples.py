"""Reading the status history (read-only) and weighting its samples over a period.

The history is written by `kloudctl status` (schema in `kloudctl/status/history.py`); this
module only reads it, through a `mode=ro` connection, so a report never changes it and
never waits for a writer (WAL readers do not block).

Weighting: each sample stands for the time until the next sample of its cabinet, capped at
twice the usual interval between runs (the median gap), so a cron that stopped is a gap of
unknown time, never uptime. The pieces are cut to the period [start, end).
"""

from __future__ import annotations

import itertools
import os
import sqlite3
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kloudctl import files
from kloudctl.errors import KloudError
from kloudctl.status.history import SCHEMA_VERSION

#: Assumed run interval when the history holds a single sample of the cabinet.
DEFAULT_INTERVAL_SECONDS = 3600.0


class HistoryReadError(KloudError):
    """The status history cannot be read."""


def read(
    path: Path, cabinet: str | None = None, *, before: float | None = None
) -> list[dict[str, Any]]:
    """Samples (oldest first) of one cabinet or all, each with its `tenants`; only those
    taken before `before` when given. Never creates the file."""
    files.existing_store(path, "status history", "run `kloudctl status` first")
    try:
        db = sqlite3.connect(f"file:{os.fspath(path)}?mode=ro", uri=True, timeout=30)
    except sqlite3.DatabaseError as exc:
        raise HistoryReadError(f"{path}: cannot be opened ({exc})") from None
    try:
        db.row_factory = sqlite3.Row
        version = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if version is None or int(version[0]) > SCHEMA_VERSION:
            shown = "none" if version is None else version[0]
            raise HistoryReadError(
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
    except sqlite3.DatabaseError as exc:
        raise HistoryReadError(f"{path}: not a readable status history ({exc})") from None
    finally:
        db.close()
    for r in rows:
        r["tenants"] = tenants.get(r["id"], [])
    return rows


@dataclass(frozen=True)
class Piece:
    """The part of the period one sample stands for."""

    sample: dict[str, Any]
    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


def cap_seconds(samples: list[dict[str, Any]]) -> float:
    """How long one sample may stand for: twice the median gap between runs."""
    times = [s["taken_at"] for s in samples]
    gaps = [b - a for a, b in itertools.pairwise(times) if b > a]
    return 2 * (statistics.median(gaps) if gaps else DEFAULT_INTERVAL_SECONDS)


def pieces(samples: list[dict[str, Any]], start: float, end: float) -> list[Piece]:
    """Each sample's share of [start, end) (one cabinet's samples, oldest first)."""
    cap = cap_seconds(samples)
    found = []
    for i, s in enumerate(samples):
        until = s["taken_at"] + cap
        if i + 1 < len(samples):
            until = min(until, samples[i + 1]["taken_at"])
        a, b = max(s["taken_at"], start), min(until, end)
        if b > a:
            found.append(Piece(s, a, b))
    return found


def overlap(a: float, b: float, windows: list[tuple[float, float]]) -> float:
    """Seconds of [a, b) inside any of the windows (which may overlap each other)."""
    cuts = sorted((max(a, ws), min(b, we)) for ws, we in windows if we > a and ws < b)
    total, reach = 0.0, a
    for ws, we in cuts:
        ws = max(ws, reach)
        if we > ws:
            total += we - ws
            reach = we
    return total
