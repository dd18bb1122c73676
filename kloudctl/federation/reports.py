"""What each member holds and applied, as the coordinator learns it: sync reports.

After each sync (fetch, verify, apply to its mesh interface) a member sends the coordinator
a report `{commune, version, head, applied_at_ms}` signed with its ed25519 key; the
coordinator checks the signature against the registry and that `head` is its own entry at
`version`, then records it in `held-reports.json`, keeping for each member the first time it applied
each version. From those, `federation status` shows per member the version held and when
it synced, and the revocation's propagation: from the revoke entry's time to the moment
the last remaining member applied a version that includes it.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

from kloudctl import files
from kloudctl.errors import InputError
from kloudctl.federation import LAST_SECOND, canonical
from kloudctl.federation.invites import read_records
from kloudctl.federation.keys import MemberKeys, verify
from kloudctl.federation.registry import Registry, entry_hash

REPORTS_FILE = "held-reports.json"
LOCK_FILE = "held-reports.lock"
REPORT_KEYS = {"commune", "version", "head", "applied_at_ms"}


def make_report(
    commune: str, registry: Registry, applied_at: float, keys: MemberKeys
) -> dict[str, Any]:
    report = {
        "commune": commune,
        "version": registry.version,
        "head": registry.head,
        "applied_at_ms": int(applied_at * 1000),
    }
    return {"report": report, "signature": keys.sign(canonical.encode(report))}


def checked_report(data: Any, registry: Registry) -> dict[str, Any]:
    """The report in `data` if its member signed it and it names an entry of `registry`;
    InputError saying what is wrong otherwise."""
    if not isinstance(data, dict) or set(data) != {"report", "signature"}:
        raise InputError("held report: expected report and signature")
    report, signature = data["report"], data["signature"]
    if not isinstance(report, dict) or set(report) != REPORT_KEYS:
        raise InputError(f"held report: expected the fields {', '.join(sorted(REPORT_KEYS))}")
    commune = report["commune"]
    member = registry.members.get(commune) if isinstance(commune, str) else None
    if member is None:
        raise InputError(f"held report: {commune!r} is not a member")
    version = report["version"]
    if isinstance(version, bool) or not isinstance(version, int):
        raise InputError("held report: version must be a whole number")
    if not 1 <= version <= registry.version:
        raise InputError(f"held report: version {version} is not in this registry")
    if report["head"] != entry_hash(registry.entries[version - 1]):
        raise InputError(f"held report: entry version {version} differs from this registry's")
    moment = report["applied_at_ms"]
    if isinstance(moment, bool) or not isinstance(moment, int) or moment < 0:
        raise InputError("held report: applied_at_ms must be a time in milliseconds")
    if moment > LAST_SECOND * 1000:
        raise InputError("held report: applied_at_ms must be a time in milliseconds")
    if not isinstance(signature, str) or not verify(
        member.signing_key, signature, canonical.encode(report)
    ):
        raise InputError(f"held report: not signed by '{member.commune}'")
    return report


class ReportBook:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / REPORTS_FILE

    def read(self) -> dict[str, Any]:
        return read_records(
            self.path,
            "held reports",
            "member",
            _entry_problem,
            "the file was damaged: delete it, the members' next syncs write it again",
        )

    def record(self, report: dict[str, Any]) -> None:
        with files.exclusive_lock(self.folder / LOCK_FILE):
            data = self.read()
            entry = data.setdefault(report["commune"], {"first_applied": {}})
            moment = report["applied_at_ms"] / 1000
            if report["version"] >= entry.get("version", 0):
                entry["version"] = report["version"]
                entry["applied_at"] = moment
            first = entry["first_applied"]
            key = str(report["version"])
            first[key] = min(first.get(key, moment), moment)
            files.write_atomic(self.path, json.dumps(data, indent=1) + "\n", what="held reports")


def _moment(value: Any) -> bool:
    return (
        isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= LAST_SECOND
    )


def _entry_problem(entry: Any) -> str | None:
    """What is wrong with one member's entry of the reports file, or None."""
    if not isinstance(entry, dict):
        return "expected an object"
    version = entry.get("version")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
        return "field 'version': expected a whole number"
    if "applied_at" in entry and not _moment(entry["applied_at"]):
        return "field 'applied_at': expected a time in seconds"
    first = entry.get("first_applied")
    if not isinstance(first, dict):
        return "field 'first_applied': expected an object"
    for key, moment in first.items():
        if not key.isdigit() or len(key) > 9 or not _moment(moment):
            return f"field 'first_applied.{key}': expected a version and a time in seconds"
    return None


def _iso(moment: float | None) -> str | None:
    if moment is None:
        return None
    return datetime.datetime.fromtimestamp(moment, datetime.UTC).isoformat(timespec="seconds")


def first_holding(entry: dict[str, Any], version: int) -> float | None:
    """When a member first applied `version` or a later one."""
    times = [t for v, t in entry.get("first_applied", {}).items() if int(v) >= version]
    return min(times) if times else None


def propagation(registry: Registry, reports: dict[str, Any]) -> dict[str, Any] | None:
    """The latest revocation and how far it has reached: the seconds from its entry to the
    last remaining member applying it, or who has not applied it yet."""
    revokes = [e for e in registry.entries if e["kind"] == "revoke"]
    if not revokes:
        return None
    entry = revokes[-1]
    version = entry["version"]
    at = datetime.datetime.fromisoformat(entry["time"]).timestamp()
    waiting, reached = [], []
    for commune in sorted(registry.active()):
        if commune == registry.coordinator and commune not in reports:
            # A coordinator without a mesh never reports: it held the entry when it made it.
            reached.append(at)
            continue
        moment = first_holding(reports.get(commune, {}), version)
        if moment is None:
            waiting.append(commune)
        else:
            reached.append(moment)
    return {
        "revoked": entry["body"]["commune"],
        "version": version,
        "revoked_at": entry["time"],
        "waiting_for": waiting,
        # Entry times are whole seconds: the figure is rounded up to the second at worst.
        "seconds": None if waiting or not reached else round(max(max(reached) - at, 0.0), 1),
    }


def member_sync(entry: dict[str, Any] | None) -> tuple[int | None, str | None]:
    if not entry:
        return None, None
    return entry.get("version"), _iso(entry.get("applied_at"))
