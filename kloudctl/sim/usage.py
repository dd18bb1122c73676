"""Which API methods each client used, and what the simulator answered.

Every request under /api2/json is counted in memory by (client, HTTP verb, schema path,
status): one dict increment, so the simulator stays as fast (bench/sim.py). A 501 is
also kept as an event, in order, so a test harness can tell which test reached it.

The client is named by the `X-Kloudctl-Client` header when a caller sets one (a test
harness labelling an Ansible run, whose modules send proxmoxer's User-Agent like any
other proxmoxer program), else by the User-Agent: kloudctl's one Proxmox client sends
`kloudctl/<version> (<component>)`, proxmoxer sends requests' `python-requests/<version>`.

A usage report (`to_report`, `merge_reports`) is JSON: `{"version": 1, "records": [{"client",
"method", "path", "status", "count"}], "unimplemented": [{"client", "method", "path",
"test"?}]}`; `kloudctl sim coverage --usage FILE` reads it.
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kloudctl.errors import InputError

__all__ = [
    "CLIENT_HEADER",
    "REPORT_VERSION",
    "Usage",
    "check_report",
    "client_of",
    "merge_reports",
    "per_client",
    "read_report",
]

#: A caller's own name for itself, taken before the User-Agent.
CLIENT_HEADER = "X-Kloudctl-Client"
REPORT_VERSION = 1

_KLOUDCTL_UA = re.compile(r"kloudctl/\S+(?: \(([\w.:-]+)\))?")
_CLIENT_NAME = re.compile(r"[\w.:/-]{1,64}")


def client_of(label: str | None, user_agent: str | None, proxmoxer: str = "proxmoxer") -> str:
    """The client's name: its label, else one read from its User-Agent (`proxmoxer` names
    the programs sending requests' default one)."""
    if label and _CLIENT_NAME.fullmatch(label):
        return label
    ua = user_agent or ""
    found = _KLOUDCTL_UA.match(ua)
    if found:
        return f"kloudctl:{found.group(1) or 'core'}"
    if ua.startswith("python-requests/"):
        return proxmoxer
    if ua.startswith("Python-urllib/"):
        return "urllib"
    return "other"


@dataclass
class Usage:
    """Counts of (client, method, path, status), and the 501 events in order."""

    counts: Counter[tuple[str, str, str, int]] = field(default_factory=Counter)
    unimplemented: list[tuple[str, str, str]] = field(default_factory=list)
    #: What to call requests' default User-Agent meanwhile: a harness running a program
    #: that cannot label itself (an Ansible playbook: its modules use proxmoxer) sets it.
    proxmoxer_as: str = "proxmoxer"
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def client(self, label: str | None, user_agent: str | None) -> str:
        return client_of(label, user_agent, self.proxmoxer_as)

    def record(self, client: str, method: str, path: str, status: int) -> None:
        key = (client, method, path, status)
        with self._lock:
            self.counts[key] += 1
            if status == 501:
                self.unimplemented.append((client, method, path))

    def to_report(self) -> dict[str, Any]:
        with self._lock:
            counts = dict(self.counts)
            events = list(self.unimplemented)
        return {
            "version": REPORT_VERSION,
            "records": [
                {"client": c, "method": m, "path": p, "status": s, "count": n}
                for (c, m, p, s), n in sorted(counts.items())
            ],
            "unimplemented": [{"client": c, "method": m, "path": p} for c, m, p in events],
        }


def read_report(path: Path) -> dict[str, Any]:
    """The usage report in `path`; anything else is an InputError naming the file, the line
    (JSON) or the field."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise InputError(f"{path}: cannot read the usage report: {exc.strerror}") from None
    try:
        report = json.loads(text)
    except ValueError as exc:
        line = getattr(exc, "lineno", "?")
        raise InputError(f"{path} line {line}: not JSON ({exc})") from None
    return check_report(str(path), report)


def check_report(source: str, report: Any) -> dict[str, Any]:
    """`report` checked as a usage report (InputError naming `source` and the field)."""

    def need(ok: bool, where: str, expected: str) -> None:
        if not ok:
            raise InputError(f"{source}: {where}: expected {expected} (not a usage report?)")

    need(isinstance(report, dict), "the file", "an object")
    need(report.get("version") == REPORT_VERSION, "version", f"{REPORT_VERSION}")
    records = report.get("records")
    need(isinstance(records, list), "records", "a list")
    for i, rec in enumerate(records):
        need(isinstance(rec, dict), f"records[{i}]", "an object")
        for key in ("client", "method", "path"):
            need(isinstance(rec.get(key), str), f"records[{i}].{key}", "a string")
        for key in ("status", "count"):
            value = rec.get(key)
            ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
            need(ok, f"records[{i}].{key}", "a whole number")
    events = report.get("unimplemented", [])
    need(isinstance(events, list), "unimplemented", "a list")
    for i, ev in enumerate(events):
        need(isinstance(ev, dict), f"unimplemented[{i}]", "an object")
        for key in ("client", "method", "path"):
            need(isinstance(ev.get(key), str), f"unimplemented[{i}].{key}", "a string")
        test = ev.get("test")
        need(test is None or isinstance(test, str), f"unimplemented[{i}].test", "a string")
    return dict(report)


def per_client(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The methods each client used: calls, and how many answers of each status."""
    clients: dict[str, dict[tuple[str, str], dict[str, Any]]] = {}
    for rec in report["records"]:
        methods = clients.setdefault(rec["client"], {})
        entry = methods.setdefault(
            (rec["method"], rec["path"]),
            {"method": rec["method"], "path": rec["path"], "calls": 0, "statuses": {}},
        )
        entry["calls"] += rec["count"]
        status = str(rec["status"])
        entry["statuses"][status] = entry["statuses"].get(status, 0) + rec["count"]
    return [
        {
            "client": client,
            "methods": [methods[k] for k in sorted(methods, key=lambda k: (k[1], k[0]))],
        }
        for client, methods in sorted(clients.items())
    ]


def merge_reports(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """One report summing the counts of several (several simulators, one test session)."""
    counts: Counter[tuple[str, str, str, int]] = Counter()
    events: list[dict[str, Any]] = []
    for report in reports:
        for rec in report["records"]:
            counts[(rec["client"], rec["method"], rec["path"], rec["status"])] += rec["count"]
        events.extend(report.get("unimplemented", []))
    return {
        "version": REPORT_VERSION,
        "records": [
            {"client": c, "method": m, "path": p, "status": s, "count": n}
            for (c, m, p, s), n in sorted(counts.items())
        ],
        "unimplemented": events,
    }
