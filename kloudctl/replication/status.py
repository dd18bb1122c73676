"""What the repositories say: replication status, and the check that cron runs.

Freshness is read from the repositories themselves (`snapshots` of the peer copy, matched to
the local snapshots through the copies' `original` field), never from our own bookkeeping.
The one exception is a peer that cannot be reached: then the newest copy seen at the last
successful read is the best lower bound of the lag, and the check says so (WARNING until the
lag passes the RPO, CRITICAL after).

Monitoring-plugin codes: 0 OK, 1 WARNING (lag past half the RPO, or peer unreachable),
2 CRITICAL (lag past the RPO, failed integrity check, missing repository, wrong key),
3 UNKNOWN (cannot tell: no restic, no snapshot ever seen while the peer is down).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kloudctl.answers import UnexpectedAnswer, dig, number, parse_json
from kloudctl.errors import (
    ExternalError,
    KloudError,
    NotFound,
    RepositoryMissing,
    ResticError,
    ToolMissing,
    WrongPassword,
    failed_for,
)
from kloudctl.model.types import format_duration
from kloudctl.replication import restic as r
from kloudctl.replication.agent_interface import CheckOptions, StatusOptions, tool_name
from kloudctl.replication.layout import KeyNotMade, now
from kloudctl.replication.ops import PEER_TIMEOUT, Replicator
from kloudctl.replication.remote import ask_agent
from kloudctl.replication.restic import parse_time

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
NAMES = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}
# Which state wins when jobs disagree: CRITICAL > UNKNOWN > WARNING > OK.
_RANK = {OK: 0, WARNING: 1, UNKNOWN: 2, CRITICAL: 3}


def worst(codes: list[int]) -> int:
    return max(codes, key=lambda c: _RANK[c]) if codes else UNKNOWN


@dataclass
class JobCheck:
    cabinet: str
    peer: str
    code: int
    reason: str
    lag: float | None
    rpo: int
    newest_copied: float | None
    peer_reachable: bool
    duration: float
    integrity: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "cabinet": self.cabinet,
            "peer": self.peer,
            "status": NAMES[self.code],
            "code": self.code,
            "reason": self.reason,
            "lag_seconds": None if self.lag is None else round(self.lag, 1),
            "rpo_seconds": self.rpo,
            "newest_copied": self.newest_copied,
            "peer_reachable": self.peer_reachable,
            "duration_seconds": round(self.duration, 3),
            "integrity": self.integrity,
        }

    @classmethod
    def from_dict(cls, data: Any, tool: str = "kloudctl replication check") -> JobCheck:
        """A job as `kloudctl replication check --json` reports it (a cabinet's agent: `tool`)."""
        code = dig(tool, data, "code", kind=int)
        if code not in NAMES:
            raise UnexpectedAnswer(tool, "code to be 0, 1, 2 or 3", data)
        return cls(
            cabinet=dig(tool, data, "cabinet", kind=str),
            peer=dig(tool, data, "peer", kind=str),
            code=code,
            reason=str(data.get("reason", "")),
            lag=number(tool, data, "lag_seconds", default=None),
            rpo=dig(tool, data, "rpo_seconds", kind=int, default=0),
            newest_copied=number(tool, data, "newest_copied", default=None),
            peer_reachable=bool(data.get("peer_reachable")),
            duration=number(tool, data, "duration_seconds", default=0.0),
            integrity=dig(tool, data, "integrity", kind=dict, default={}),
        )


def _snapshots(rep: Replicator, repo: r.Repo, host: str | None = None) -> list[dict[str, Any]]:
    result = rep.restic.run(repo, r.snapshots_args(host=host), retry_locked=False)
    return r.snapshot_list(result)


def listed_snapshot_ids(repo: r.Repo, timeout: float = 10.0) -> list[str] | None:
    """The names of the snapshot files in a rest-server repository (GET /snapshots/ with the
    source's identity, over TLS): no key needed. None when it cannot be listed."""
    # The standard library only: this runs on cabinets too, whose kloudctl carries no
    # HTTP library (kloudctl.hosts.bundle).
    import base64
    import ssl
    import urllib.error
    import urllib.request

    if not repo.location.startswith("rest:") or repo.rest_credentials_file is None:
        return None
    url = repo.location.removeprefix("rest:").rstrip("/") + "/snapshots/"
    try:
        user, password = r.read_credentials(repo.rest_credentials_file)
        context = ssl.create_default_context(cafile=str(repo.cacert) if repo.cacert else None)
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request = urllib.request.Request(
            url,
            headers={
                "Authorization": f"Basic {token}",
                "Accept": "application/vnd.x.restic.rest.v2",
            },
        )
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            entries = parse_json("rest-server", response.read())
        listed = dig("rest-server", entries, kind=list)
        return [dig("rest-server", entry, "name", kind=str) for entry in listed]
    except (OSError, ValueError, KloudError):
        return None  # urllib's errors are OSErrors; any doubt: let restic read it


def peer_snapshot_times(
    rep: Replicator, cabinet: str, peer: str, state: dict[str, Any]
) -> list[float]:
    """Times of the snapshots in the peer copy, read from the peer repository.

    A snapshot's id is the hash of its encrypted file, so an id decrypted once always
    carries the same time: when the repository lists no id we have not read before, the
    times come from that listing (one HTTPS request); otherwise restic opens the repository
    (one scrypt key derivation, the expensive part) and the ids read are remembered."""
    known: dict[str, float] = state.setdefault("peer_snapshot_times", {}).get(peer, {})
    listed = listed_snapshot_ids(rep.layout.peer_repo(cabinet, peer))
    if listed is not None and all(i in known for i in listed):
        return [known[i] for i in listed]
    snaps = rep.peer_snapshots(cabinet, peer, state)
    return [parse_time(s["time"]) for s in snaps]


def check_job(rep: Replicator, cabinet: str, peer: str) -> JobCheck:
    started = time.monotonic()
    t = now(rep.clock)
    rpo = rep.rpo(cabinet)
    state = rep.layout.load_state(cabinet)
    seen = state.setdefault("peer_seen", {}).setdefault(peer, {})
    integrity = state.get("checks", {})
    newest: float | None = None
    reachable = True
    code, reason = OK, ""
    try:
        times = peer_snapshot_times(rep, cabinet, peer, state)
        newest = max(times) if times else None
        if newest is not None:
            seen.update({"newest_copied": newest, "observed_at": t})
        rep.layout.save_state(cabinet, state)
    except (ToolMissing, UnexpectedAnswer) as exc:  # no restic, or one we cannot read
        return JobCheck(cabinet, peer, UNKNOWN, str(exc), None, rpo, None, False, 0.0, integrity)
    except (RepositoryMissing, WrongPassword) as exc:
        return JobCheck(
            cabinet, peer, CRITICAL, f"peer copy: {exc.message}", None, rpo, None, True,
            time.monotonic() - started, integrity,
        )  # fmt: skip
    except KeyNotMade as exc:  # never run from this state: no copy can exist
        return JobCheck(
            cabinet, peer, CRITICAL, f"nothing replicated yet ({_short(exc)})", None, rpo,
            None, True, time.monotonic() - started, integrity,
        )  # fmt: skip
    except NotFound as exc:  # nothing to reach here yet (no rest-server known)
        return JobCheck(
            cabinet, peer, UNKNOWN, _short(exc), None, rpo, None, False,
            time.monotonic() - started, integrity,
        )  # fmt: skip
    except (ResticError, KloudError) as exc:
        reachable = False
        newest = seen.get("newest_copied")
        reason = f"peer {peer} unreachable ({_short(exc)})"

    lag = None if newest is None else max(0.0, t - newest)
    if lag is None:
        code = UNKNOWN if not reachable else CRITICAL
        reason = reason or "nothing replicated yet"
        if not reachable:
            reason += ", no copy ever seen"
    elif lag > rpo:
        code = CRITICAL
        reason = _join(
            reason, f"lag {format_duration(int(lag))} past the RPO {format_duration(rpo)}"
        )
    elif not reachable:
        code = WARNING
    elif lag > rpo / 2:
        code = WARNING
        reason = f"lag {format_duration(int(lag))} past half the RPO {format_duration(rpo)}"
    failed = [k for k, v in integrity.items() if v.get("ok") is False]
    if failed:
        code = worst([code, CRITICAL])
        reason = _join(reason, "integrity check failed: " + ", ".join(sorted(failed)))
    return JobCheck(
        cabinet, peer, code, reason or "ok", lag, rpo, newest, reachable,
        time.monotonic() - started, integrity,
    )  # fmt: skip


def _short(exc: Exception) -> str:
    """The error's own words on one line (summary lines are one line), never cut: the
    remedy is often at the end."""
    text = " ".join(str(getattr(exc, "message", None) or exc).split())
    return text or type(exc).__name__


def _join(a: str, b: str) -> str:
    return f"{a}; {b}" if a else b


def check(
    rep: Replicator, cabinets: list[str], workers: int | None = None, *, integrity: bool = False
) -> list[JobCheck]:
    """Check every (cabinet, peer) job: here, or on the cabinet where kloudctl is installed."""
    here = [c for c in cabinets if rep.layout.endpoint(c).ssh is None]
    remote = [c for c in cabinets if c not in here]
    if integrity:
        for cabinet in here:
            rep.check_integrity(cabinet)
    jobs = [(c, p) for c in here for p in rep.peers(c)]
    workers = workers or min(8, max(2, (os.cpu_count() or 2) * 2))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        local = pool.map(lambda job: check_job(rep, *job), jobs)
        far = pool.map(lambda c: check_on_cabinet(rep, c, integrity=integrity), remote)
        found = [*local, *(j for jobs_ in far for j in jobs_)]
    order = {c: i for i, c in enumerate(cabinets)}
    return sorted(found, key=lambda j: (order[j.cabinet], j.peer))


def check_on_cabinet(rep: Replicator, cabinet: str, *, integrity: bool = False) -> list[JobCheck]:
    """The cabinet's own check (its integrity results, its view of the peer). When the
    cabinet does not answer, the controller reads the peer copy itself: a burnt cabinet
    must show as a growing lag, not as silence."""
    ssh = rep.layout.endpoint(cabinet).ssh
    assert ssh is not None
    options = CheckOptions(integrity=integrity, now=rep.clock)
    tool = tool_name(cabinet)
    try:
        _code, doc = ask_agent(ssh, cabinet, options, timeout=PEER_TIMEOUT + 600)
        jobs = dig(tool, doc, "jobs", kind=list, default=[])
        found = [
            job for job in (JobCheck.from_dict(j, tool) for j in jobs) if job.cabinet == cabinet
        ]
        if not found:  # the cabinet could not tell (UNKNOWN): look from here
            raise ExternalError(str(dig(tool, doc, "summary", default=None) or "no result"))
        return found
    except KloudError as exc:
        jobs = [check_job(rep, cabinet, peer) for peer in rep.peers(cabinet)]
        for job in jobs:
            job.reason = _join(f"cabinet {cabinet} unreachable ({_short(exc)})", job.reason)
            job.code = worst([job.code, WARNING])
        return jobs


def summary_line(results: list[JobCheck]) -> tuple[int, str]:
    """`REPLICATION WARNING - ... | perfdata`, the monitoring-plugin way."""
    code = worst([j.code for j in results])
    if not results:
        return UNKNOWN, "REPLICATION UNKNOWN - no replicated cabinet"
    bad = [j for j in results if j.code != OK]
    if bad:
        text = "; ".join(f"{j.cabinet}->{j.peer} {NAMES[j.code]}: {j.reason}" for j in bad)
    else:
        lags = [j.lag for j in results if j.lag is not None]
        text = f"{len(results)} job(s) replicated, max lag {format_duration(int(max(lags or [0])))}"
    perf = []
    for j in results:
        label = f"lag_{j.cabinet}_{j.peer}"
        value = "U" if j.lag is None else f"{int(j.lag)}s"
        perf.append(f"'{label}'={value};{j.rpo // 2};{j.rpo};0")
    return code, f"REPLICATION {NAMES[code]} - {text} | {' '.join(perf)}"


def _metric(name: str, labels: dict[str, str], value: float | int | str) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return f"kloudctl_replication_{name}{{{inner}}} {value}"


def prometheus(results: list[JobCheck], rep: Replicator) -> str:
    """Text exposition for node_exporter's textfile collector."""
    out = [
        "# HELP kloudctl_replication_status Monitoring-plugin code (0 OK .. 3 UNKNOWN).",
        "# TYPE kloudctl_replication_status gauge",
    ]
    out += [_metric("status", {"cabinet": j.cabinet, "peer": j.peer}, j.code) for j in results]
    out += [
        "# HELP kloudctl_replication_lag_seconds Age of the newest snapshot copied to the peer.",
        "# TYPE kloudctl_replication_lag_seconds gauge",
    ]
    out += [
        _metric("lag_seconds", {"cabinet": j.cabinet, "peer": j.peer}, f"{j.lag:.0f}")
        for j in results
        if j.lag is not None
    ]
    success, durations = [], []
    for cabinet in sorted({j.cabinet for j in results}):
        state = rep.layout.load_state(cabinet)
        for job, entry in sorted(state.get("jobs", {}).items()):
            labels = {"cabinet": cabinet, "job": job}
            if "last_success" in entry:
                success.append(
                    _metric(
                        "last_success_timestamp_seconds", labels, f"{entry['last_success']:.0f}"
                    )
                )
            durations.append(_metric("duration_seconds", labels, entry.get("duration", 0)))
    for j in results:
        labels = {"cabinet": j.cabinet, "job": "replicated", "peer": j.peer}
        if j.newest_copied is not None:  # the copy's success, as the peer repository says
            success.append(
                _metric("last_success_timestamp_seconds", labels, f"{j.newest_copied:.0f}")
            )
        labels = {"cabinet": j.cabinet, "job": "check", "peer": j.peer}
        durations.append(_metric("duration_seconds", labels, f"{j.duration:.3f}"))
    out += [
        "# HELP kloudctl_replication_last_success_timestamp_seconds Last success of each job.",
        "# TYPE kloudctl_replication_last_success_timestamp_seconds gauge",
        *success,
        "# HELP kloudctl_replication_duration_seconds Duration of the last run of each job.",
        "# TYPE kloudctl_replication_duration_seconds gauge",
        *durations,
    ]
    return "\n".join(out) + "\n"


def write_textfile(path: Path, text: str) -> None:
    """Replace node_exporter's textfile; its folder must exist (the role makes it), and a
    file someone made keeps its mode and owner (node_exporter must still read it)."""
    from kloudctl import files

    files.write_atomic(path, text, keep_mode=True, what="Prometheus textfile")


def cron_check(
    cabinets: Callable[[], list[str]],
    replicator: Callable[[], Replicator],
    *,
    integrity: bool = False,
    textfile: str | None = None,
) -> tuple[int, str, list[JobCheck]]:
    """The check cron runs, whole: (monitoring-plugin code, summary line, jobs) of the
    `cabinets`, and the Prometheus `textfile` written when given. It never raises: whatever
    fails (a wrong textfile path first, before anything is replaced; finding the fleet or
    the cabinets; restic) is UNKNOWN with its reason on the one line, for cron has no use
    for a traceback or an exit 1."""
    from kloudctl import files

    try:
        if textfile:
            files.writable_file(textfile, "--prometheus-textfile")
        names = cabinets()
        rep = replicator()
        results = check(rep, names, integrity=integrity)
        code, line = summary_line(results)
        if textfile:
            write_textfile(Path(textfile), prometheus(results, rep))
    except Exception as exc:
        return UNKNOWN, "REPLICATION UNKNOWN - " + " ".join(str(exc).split()), []  # one line
    return code, line, results


# --------------------------------------------------------------------------------------
# status: the fuller picture, for people.


def status_of(rep: Replicator, cabinet: str, timeout: float = 600) -> list[dict[str, Any]]:
    """The rows of one cabinet; a deployed cabinet is asked over SSH, within `timeout`."""
    ssh = rep.layout.endpoint(cabinet).ssh
    if ssh is not None:
        tool = tool_name(cabinet)
        try:
            _code, found = ask_agent(ssh, cabinet, StatusOptions(now=rep.clock), timeout=timeout)
            checked = [_status_row(tool, row) for row in dig(tool, found, kind=list)]
            return [row for row in checked if row["cabinet"] == cabinet]
        except KloudError as exc:
            unknown = dict.fromkeys(
                ("newest_local", "newest_local_id", "newest_copied", "lag_seconds",
                 "unreplicated", "local_size", "peer_size"),
            )  # fmt: skip
            return [
                {**unknown, "cabinet": cabinet, "peer": peer, "local_error": _short(exc)}
                for peer in rep.peers(cabinet) or [""]
            ]
    t = now(rep.clock)
    state = rep.layout.load_state(cabinet)
    rows: list[dict[str, Any]] = []
    local_error = None
    try:
        local = _snapshots(rep, rep.layout.local_repo(cabinet))
    except KloudError as exc:  # restic's failure, an answer we cannot read, a missing key
        local, local_error = [], _short(exc)
    newest_local = max(local, key=lambda s: parse_time(s["time"]), default=None)
    local_size = _dir_size(rep.layout.endpoint(cabinet).repository)
    resolution = rep.resolver.resolve(cabinet)
    for peer in resolution.peers or [""]:
        row: dict[str, Any] = {
            "cabinet": cabinet,
            "peer": peer,
            # on a cabinet: its registry says this shipped peer is revoked or gone
            "peer_warning": resolution.warnings.get(peer),
            "newest_local": newest_local["time"] if newest_local else None,
            "newest_local_id": newest_local["short_id"] if newest_local else None,
            "local_snapshots": len(local),
            "local_size": local_size,
            "local_error": local_error,
            "last_check": state.get("checks", {}),
        }
        if peer:
            try:
                remote = rep.peer_snapshots(cabinet, peer, state)
                originals = {s.get("original") for s in remote}
                copied = [s for s in local if s["id"] in originals]
                newest_copy = max(remote, key=lambda s: parse_time(s["time"]), default=None)
                row.update(
                    newest_copied=newest_copy["time"] if newest_copy else None,
                    newest_copied_original=(newest_copy or {}).get("original", "")[:8] or None,
                    lag_seconds=round(t - parse_time(newest_copy["time"]), 1)
                    if newest_copy
                    else None,
                    unreplicated=len(local) - len(copied),
                    peer_snapshots=len(remote),
                    peer_size=_peer_size(rep, cabinet, peer),
                    peer_error=None,
                )
            except (ResticError, KloudError) as exc:
                row.update(
                    newest_copied=None, lag_seconds=None, unreplicated=None, peer_error=_short(exc)
                )
        rows.append(row)
    return rows


#: A status row's fields that people and scripts read, by kind (None: unknown).
_ROW_TEXT = ("newest_local", "newest_local_id", "newest_copied", "newest_copied_original",
             "local_error", "peer_error", "peer_warning")  # fmt: skip
_ROW_COUNTS = ("local_snapshots", "unreplicated", "peer_snapshots", "local_size", "peer_size")


def _status_row(tool: str, row: Any) -> dict[str, Any]:
    """A status row from a cabinet's agent, checked field by field (the table reads them
    without looking; the schema already said most of it)."""
    checked: dict[str, Any] = {
        "cabinet": dig(tool, row, "cabinet", kind=str),
        "peer": dig(tool, row, "peer", kind=str),
        "lag_seconds": number(tool, row, "lag_seconds", default=None),
    }
    for key in _ROW_TEXT:
        checked[key] = dig(tool, row, key, kind=(str, type(None)), default=None)
    for key in _ROW_COUNTS:
        checked[key] = dig(tool, row, key, kind=(int, type(None)), default=None)
    checks = dig(tool, row, "last_check", kind=dict, default={})
    for name in checks:
        dig(tool, checks, name, kind=dict)
    return {**row, **checked, "last_check": checks}


def _dir_size(path: Path) -> int | None:
    if not path.exists():
        return None
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


def _peer_size(rep: Replicator, cabinet: str, peer: str) -> int | None:
    try:
        result = rep.restic.run(rep.layout.peer_repo(cabinet, peer), r.stats_args("raw-data"))
    except ResticError:
        return None
    size = number("restic stats", r.document(result, "restic stats", dict), "total_size")
    return int(size)


def raise_for_status(rows: list[dict[str, Any]]) -> None:
    """A status whose rows carry errors is no success: exit 1 when no cabinet could be
    read, 3 when some could (scripts read the exit code, not the table)."""
    cabinets = sorted({row["cabinet"] for row in rows})
    broken = {row["cabinet"] for row in rows if row.get("local_error") or row.get("peer_error")}
    failed = [c for c in cabinets if c in broken]
    if failed:
        raise failed_for("replication status", failed, len(cabinets))
