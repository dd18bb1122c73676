"""The replication agent: the process a cabinet runs when the controller asks it something.

    kloudctl-replication-agent < request.json > answer.json
    kloudctl-replication-agent --schema          (the interface's JSON Schema)

`replication_source` installs the launcher (`/usr/local/bin/kloudctl-replication-agent`),
which runs this module from the cabinet's kloudctl bundle on Debian's python3 (-I -S). It
reads one request of the interface in `agent_interface` on its standard input, calls the
replication core directly (no CLI, no click) and writes one answer on its standard output;
its exit code is the answer's `exit`. A request it cannot read, of another major version
or for an unknown command gets a structured error answer (exit 2), never a traceback.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from kloudctl import console
from kloudctl.errors import InputError, KloudError
from kloudctl.model import load_fleet
from kloudctl.replication import archives
from kloudctl.replication import status as st
from kloudctl.replication.agent_interface import (
    BAD_REQUEST,
    COMMANDS,
    FAILED,
    INTERFACE,
    MAJOR,
    SCHEMA_FILE,
    UNKNOWN_COMMAND,
    UNSUPPORTED_VERSION,
    VERSION,
    Answer,
    ArchiveBackupOptions,
    ArchiveStageOptions,
    CheckOptions,
    Request,
    RestoreTestOptions,
    RunOptions,
    StatusOptions,
    major_of,
    request_problem,
)
from kloudctl.replication.layout import Layout, replicated_cabinets, sources_of
from kloudctl.replication.ops import Replicator
from kloudctl.replication.restoretest import restore_test


def _replicator(request: Request, now: str | None, *, read_only: bool) -> Replicator:
    """The replicator of the cabinet's own state folder, for its own cabinet."""
    root = Path(request.fleet)
    fleet = load_fleet(root)
    replicated_cabinets(fleet, request.cabinet, False)  # it exists and replicates
    layout = Layout.for_fleet(root, request.state_dir, read_only=read_only)
    if layout.endpoint(request.cabinet).ssh is not None:
        # The agent would ask itself over SSH, forever: it runs where the cabinet is.
        raise InputError(
            f"{layout.state / 'endpoints.json'} says {request.cabinet} is reached over SSH:"
            " the agent runs on the cabinet itself, with the cabinet's own state folder"
        )
    return Replicator(fleet, layout, clock=now)


def _run(request: Request, options: RunOptions) -> tuple[int, Any]:
    rep = _replicator(request, options.now, read_only=False)
    report = rep.run(request.cabinet, prune=options.prune, check=options.check)
    return (0 if report.ok else 1), report.as_dict()


def _check(request: Request, options: CheckOptions) -> tuple[int, Any]:
    # The cron check, whole: it never raises (whatever fails is UNKNOWN, with its reason).
    code, line, jobs = st.cron_check(
        lambda: [request.cabinet],
        lambda: _replicator(request, options.now, read_only=True),
        integrity=options.integrity,
    )
    result = {
        "status": st.NAMES[code],
        "code": code,
        "summary": line,
        "jobs": [j.as_dict() for j in jobs],
    }
    return code, result


def _status(request: Request, options: StatusOptions) -> tuple[int, Any]:
    rep = _replicator(request, options.now, read_only=True)
    rows = st.status_of(rep, request.cabinet)
    failed = any(row.get("local_error") or row.get("peer_error") for row in rows)
    return (1 if failed else 0), rows


def _restore_test(request: Request, options: RestoreTestOptions) -> tuple[int, Any]:
    rep = _replicator(request, None, read_only=False)
    reports = restore_test(rep, request.cabinet, sample=options.sample, seed=options.seed)
    return (0 if all(r["ok"] for r in reports) else 1), reports


def _archive_backup(request: Request, options: ArchiveBackupOptions) -> tuple[int, Any]:
    rep = _replicator(request, None, read_only=False)
    cabinet, owner = request.cabinet, options.owner
    folder = archives.storage_folder(options.storage_path)
    copies: dict[str, str] = {}
    if owner == cabinet:
        # the cabinet's own repository: one run at a time, as its timer's runs
        with rep.layout.run_lock(cabinet):
            local = rep.ensure_local(cabinet)
            kept = archives.backup_archive(
                rep.restic, local, folder, options.archive,
                host=cabinet, vm=options.vm, failback=options.failback,
            )  # fmt: skip
            for peer in rep.peers(cabinet) if options.copy else []:
                copies[peer] = rep.copy(cabinet, peer)[0]
        return 0, {**kept, "copies": copies}
    if owner not in sources_of(rep.fleet, cabinet, rep.resolver):
        raise InputError(f"cabinet '{cabinet}' keeps no copy of '{owner}' (not its peer)")
    hosted = archives.hosted_copy(rep.layout, cabinet, owner)
    try:
        kept = archives.backup_archive(
            rep.restic, hosted, folder, options.archive,
            host=owner, vm=options.vm, failback=options.failback,
        )  # fmt: skip
    finally:
        archives.give_back(hosted)
    return 0, {**kept, "copies": copies}


def _archive_stage(request: Request, options: ArchiveStageOptions) -> tuple[int, Any]:
    rep = _replicator(request, None, read_only=False)
    cabinet, owner, peer = request.cabinet, options.owner, options.peer
    if peer not in rep.peers(owner):
        raise InputError(f"cabinet '{owner}' does not replicate to '{peer}'")
    if cabinet == owner:  # its copy on the peer, through the peer's rest-server
        repo = rep.layout.peer_repo(owner, peer)
    elif cabinet == peer:  # the copy it hosts, with the owner's key
        repo = archives.hosted_copy(rep.layout, cabinet, owner)
    else:
        raise InputError(
            f"cabinet '{cabinet}' is neither '{owner}' nor '{peer}': it reaches no copy of"
            f" '{owner}' on '{peer}'"
        )
    folder = archives.storage_folder(options.storage_path)
    moved = archives.stage_archive(
        rep.restic, repo, folder, options.archive, options.snapshot, options.sha256
    )
    return 0, {"archive": options.archive, "sha256": options.sha256, "moved": moved}


def perform(request: Request) -> tuple[int, Any]:
    """Carry out a request: (exit code, result). KloudError when it cannot be done."""
    options = request.options
    if isinstance(options, RunOptions):
        return _run(request, options)
    if isinstance(options, CheckOptions):
        return _check(request, options)
    if isinstance(options, StatusOptions):
        return _status(request, options)
    if isinstance(options, ArchiveBackupOptions):
        return _archive_backup(request, options)
    if isinstance(options, ArchiveStageOptions):
        return _archive_stage(request, options)
    return _restore_test(request, options)


def handle(
    document: Any, perform: Callable[[Request], tuple[int, Any]] = perform, *, debug: bool = False
) -> Answer:
    """The answer to one request document; it never raises."""
    command = document.get("command") if isinstance(document, dict) else None
    command = command if isinstance(command, str) else None
    if not isinstance(document, dict) or document.get("interface") != INTERFACE:
        return Answer.refusal(command, BAD_REQUEST, f"not a request of the {INTERFACE} interface")
    version = document.get("version")
    if major_of(version) != MAJOR:
        return Answer.refusal(
            command,
            UNSUPPORTED_VERSION,
            f"interface version {json.dumps(version)} is not spoken here: this agent speaks"
            f" {VERSION} (any {MAJOR}.x); `kloudctl replication deploy` installs the"
            " controller's own",
        )
    if command not in COMMANDS:
        return Answer.refusal(
            command,
            UNKNOWN_COMMAND,
            f"unknown command {json.dumps(command)}: the commands are {', '.join(COMMANDS)}",
        )
    problem = request_problem(document)
    if problem:
        return Answer.refusal(command, BAD_REQUEST, problem)
    request = Request.from_dict(document)
    try:
        code, result = perform(request)
    except (Exception, KeyboardInterrupt) as exc:
        # Said the one way on stderr (the controller shows its last line if all else
        # fails), and in the answer.
        code = console.failure(exc, debug=debug)
        message = str(exc) if isinstance(exc, KloudError) else f"{type(exc).__name__}: {exc}"
        return Answer.refusal(command, FAILED, message, exit=code)
    return Answer(command, code, result)


def main(argv: Sequence[str] | None = None) -> int:
    """Read one request on stdin, write one answer on stdout; the answer's exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["--schema"]:
        console.text(SCHEMA_FILE.read_text(encoding="utf-8"))
        return 0
    debug = os.environ.get("KLOUDCTL_DEBUG") == "1"
    if args:
        answer = Answer.refusal(
            None, BAD_REQUEST, f"no arguments but --schema (got {' '.join(args)}): the request"
            " is read from standard input",
        )  # fmt: skip
    else:
        try:
            document = json.loads(sys.stdin.buffer.read().decode("utf-8"))
        except ValueError:  # UnicodeDecodeError included
            answer = Answer.refusal(None, BAD_REQUEST, "the request is not JSON (UTF-8)")
        else:
            answer = handle(document, debug=debug)
    console.emit_json(answer.as_dict())
    return answer.exit


if __name__ == "__main__":
    sys.exit(main())
