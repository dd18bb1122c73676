"""restore-test: recover a sample from the peer copy, the way a real recovery would go.

Only the peer copy is used (through the peer's rest-server, with the source's own
identity), into a scratch folder; each restored file is compared byte for byte with the
source file, when the source has not changed since the snapshot.
"""

from __future__ import annotations

import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

from kloudctl.answers import UnexpectedAnswer, dig
from kloudctl.errors import KloudError
from kloudctl.files import sha256_of
from kloudctl.replication import restic as r
from kloudctl.replication.agent_interface import RestoreTestOptions, tool_name
from kloudctl.replication.layout import probe
from kloudctl.replication.ops import Replicator
from kloudctl.replication.remote import ask_agent
from kloudctl.replication.restic import parse_time


def newest_paths_snapshot(rep: Replicator, cabinet: str, peer: str) -> dict[str, Any]:
    repo = rep.layout.peer_repo(cabinet, peer)
    probe(repo.location)  # restic would retry an unreachable server for minutes
    snaps = r.snapshot_list(rep.restic.run(repo, r.snapshots_args(tags=["paths"])))
    if not snaps:
        raise KloudError(f"no copy of {cabinet}'s files on {peer} to restore from")
    return max(snaps, key=lambda s: parse_time(s["time"]))


def list_files(rep: Replicator, repo: r.Repo, snapshot: str) -> list[dict[str, Any]]:
    """The files of `snapshot`, each with a string `path` and an `mtime` that parses."""
    files: list[dict[str, Any]] = []

    def collect(msg: dict[str, Any]) -> None:
        if msg.get("message_type") == "node" and msg.get("type") == "file":
            files.append(msg)

    rep.restic.run(repo, ["ls", snapshot], on_message=collect)
    # Checked once restic is done: an exception inside the callback would stop the reading.
    for node in files:
        dig("restic ls", node, "path", kind=str)
        try:
            parse_time(dig("restic ls", node, "mtime", kind=str))
        except (ValueError, OverflowError):
            raise UnexpectedAnswer("restic ls", "an RFC 3339 mtime for each file", node) from None
    return files


def restore_from_peer(
    rep: Replicator,
    cabinet: str,
    peer: str,
    target: Path,
    includes: list[str],
    snapshot: str | None = None,
) -> str:
    repo = rep.layout.peer_repo(cabinet, peer)
    snap = snapshot or newest_paths_snapshot(rep, cabinet, peer)["id"]
    rep.restic.run(repo, r.restore_args(snap, target, includes))
    return snap


def _remote_report(tool: str, report: Any) -> dict[str, Any]:
    """A restore-test report from a cabinet's agent, with the fields the table reads
    checked."""
    for key in ("cabinet", "peer", "snapshot"):
        dig(tool, report, key, kind=str)
    dig(tool, report, "ok", kind=bool)
    for i, _ in enumerate(dig(tool, report, "files", kind=list)):
        dig(tool, report, "files", i, "path", kind=str)
        dig(tool, report, "files", i, "result", kind=str)
    return dict(report)


def restore_test(
    rep: Replicator,
    cabinet: str,
    *,
    sample: int = 5,
    seed: int | None = None,
    scratch: Path | None = None,
) -> list[dict[str, Any]]:
    ssh = rep.layout.endpoint(cabinet).ssh
    if ssh is not None:  # the source files to compare with are on the cabinet
        options = RestoreTestOptions(sample=sample, seed=seed)
        _code, found = ask_agent(ssh, cabinet, options)
        tool = tool_name(cabinet)
        reports = [_remote_report(tool, report) for report in dig(tool, found, kind=list)]
        return [report for report in reports if report["cabinet"] == cabinet]
    reports = []
    for peer in rep.peers(cabinet):
        repo = rep.layout.peer_repo(cabinet, peer)
        snap = newest_paths_snapshot(rep, cabinet, peer)
        files = list_files(rep, repo, snap["id"])
        chosen = random.Random(seed).sample(files, min(sample, len(files)))
        work = Path(tempfile.mkdtemp(prefix=f"kloudctl-restore-{cabinet}-", dir=scratch))
        try:
            if chosen:
                rep.restic.run(repo, r.restore_args(snap["id"], work, [f["path"] for f in chosen]))
            results = []
            for f in chosen:
                restored = work / f["path"].lstrip("/")
                source = Path(f["path"])
                entry = {"path": f["path"], "size": f.get("size")}
                if not restored.is_file():
                    entry["result"] = "missing from the restore"
                elif not source.exists():
                    entry["result"] = "restored; source gone, nothing to compare"
                elif parse_time(f["mtime"]) != source.stat().st_mtime and (
                    abs(parse_time(f["mtime"]) - source.stat().st_mtime) > 1e-3
                ):
                    entry["result"] = "restored; source changed since the snapshot"
                elif sha256_of(restored) == sha256_of(source):
                    entry["result"] = "identical"
                else:
                    entry["result"] = "DIFFERENT"
                results.append(entry)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        bad = [e for e in results if e["result"] in ("DIFFERENT", "missing from the restore")]
        reports.append(
            {
                "cabinet": cabinet,
                "peer": peer,
                "snapshot": snap["short_id"],
                "snapshot_time": snap["time"],
                "original": (snap.get("original") or "")[:8],
                "files": results,
                "ok": not bad,
            }
        )
    return reports
