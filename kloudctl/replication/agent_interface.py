"""The replication agent's interface, version 1: typed requests and answers, both ends.

The controller asks a cabinet where replication is deployed to run, check, report or
restore-test its own replication: it sends one request (JSON) to the agent's standard
input over SSH, the agent (`kloudctl.replication.agent`) answers one JSON document on its
standard output. `agent.schema.json`, shipped beside this module, describes both; both ends
read it with `kloudctl.answers.schema_problem` (cabinets carry no JSON Schema library).
docs/replication-agent.md tells the whole story.

Versions are MAJOR.MINOR. A reader refuses another major version; within a major, a newer
minor only adds optional fields to answers, which readers ignore.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kloudctl.answers import UnexpectedAnswer, conforming, dig, quote, schema_problem
from kloudctl.errors import ExternalError

INTERFACE = "kloudctl-replication-agent"
MAJOR = 1
#: 1.1 added archive-backup and archive-stage (the failover's file moves on the hosts).
VERSION = f"{MAJOR}.1"
#: The agent's launcher on a cabinet's PATH (/usr/local/bin), installed by replication_source.
COMMAND = "kloudctl-replication-agent"
SCHEMA_FILE = Path(__file__).with_name("agent.schema.json")

#: The answer's `error.code`s.
BAD_REQUEST = "bad-request"
UNSUPPORTED_VERSION = "unsupported-version"
UNKNOWN_COMMAND = "unknown-command"
FAILED = "failed"


@functools.cache
def schema() -> dict[str, Any]:
    """The interface's JSON Schema (its `$defs` hold `request` and `answer`)."""
    loaded: dict[str, Any] = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    return loaded


def definition(name: str) -> Any:
    return schema()["$defs"][name]


def tool_name(cabinet: str) -> str:
    """How errors name the program answering."""
    return f"kloudctl replication agent on {cabinet}"


def major_of(version: Any) -> int | None:
    """The major number of a MAJOR.MINOR version string, None if it is not one."""
    if not isinstance(version, str):
        return None
    major, dot, minor = version.partition(".")
    if not (dot and major.isdigit() and minor.isdigit()):
        return None
    return int(major)


# --- the commands' options -----------------------------------------------------------------


@dataclass(frozen=True)
class RunOptions:
    """Back up, copy to the peers, prune, check the structure."""

    prune: bool = True
    check: bool = True
    now: str | None = None  # an injected clock (tests)

    command = "run"


@dataclass(frozen=True)
class CheckOptions:
    """The check cron runs (monitoring-plugin code); `integrity` runs the restic checks."""

    integrity: bool = False
    now: str | None = None

    command = "check"


@dataclass(frozen=True)
class StatusOptions:
    now: str | None = None

    command = "status"


@dataclass(frozen=True)
class RestoreTestOptions:
    sample: int = 5
    seed: int | None = None

    command = "restore-test"


@dataclass(frozen=True)
class ArchiveBackupOptions:
    """Keep a vzdump archive of one of the host's storages in restic (the failover tags,
    its sha256): in the cabinet's local repository when `owner` is the cabinet itself
    (then, with `copy`, carried to its peers as a run does), else in `owner`'s copy that
    this cabinet hosts (`failback`: the guest's archive made on the peer)."""

    owner: str
    storage_path: str  # the storage's `path` as the Proxmox API reports it
    archive: str  # a `vzdump-qemu-...` name in its `dump/` folder
    vm: str
    failback: bool = False
    copy: bool = False

    command = "archive-backup"


@dataclass(frozen=True)
class ArchiveStageOptions:
    """Restore `snapshot`'s archive from `owner`'s copy on `peer` into the storage's `dump/`
    folder, sha256-checked, one rename: through `peer`'s rest-server when the cabinet is
    `owner`, from the copy it hosts (the owner's key) when it is `peer`."""

    owner: str
    peer: str
    storage_path: str
    archive: str
    snapshot: str  # the snapshot's full id (64 hex digits)
    sha256: str

    command = "archive-stage"


Options = (
    RunOptions
    | CheckOptions
    | StatusOptions
    | RestoreTestOptions
    | ArchiveBackupOptions
    | ArchiveStageOptions
)
OPTIONS: dict[str, type[Options]] = {
    o.command: o
    for o in (
        RunOptions,
        CheckOptions,
        StatusOptions,
        RestoreTestOptions,
        ArchiveBackupOptions,
        ArchiveStageOptions,
    )
}
COMMANDS = tuple(OPTIONS)


@dataclass(frozen=True)
class Request:
    """One command for the agent, on one cabinet of the fleet it keeps at `fleet`."""

    cabinet: str
    fleet: str
    state_dir: str
    options: Options

    @property
    def command(self) -> str:
        return self.options.command

    def as_dict(self) -> dict[str, Any]:
        return {
            "interface": INTERFACE,
            "version": VERSION,
            "command": self.command,
            "cabinet": self.cabinet,
            "fleet": self.fleet,
            "state_dir": self.state_dir,
            "options": dataclasses.asdict(self.options),
        }

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> Request:
        """A request already checked against the schema."""
        options = OPTIONS[document["command"]](**document["options"])
        return cls(document["cabinet"], document["fleet"], document["state_dir"], options)


@dataclass(frozen=True)
class Answer:
    """What the agent says: a `result`, or an `error` (code and message); `exit` is its
    exit code (kloudctl's, or the monitoring-plugin code for check)."""

    command: str | None
    exit: int
    result: Any = None
    error_code: str | None = None
    message: str = ""

    @classmethod
    def refusal(cls, command: str | None, code: str, message: str, exit: int = 2) -> Answer:
        return cls(command, exit, error_code=code, message=message)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "interface": INTERFACE,
            "version": VERSION,
            "command": self.command,
            "exit": self.exit,
        }
        if self.error_code is not None:
            out["error"] = {"code": self.error_code, "message": self.message}
        else:
            out["result"] = self.result
        return out


class AgentFailed(ExternalError):
    """The agent answered, with an error instead of a result."""


def request_problem(document: Any) -> str | None:
    """Why `document` is not a request of this interface and version (None if it is)."""
    found = schema_problem(document, definition("request"), schema())
    if found is None:
        return None
    where, expected = found
    place = ".".join(str(step) for step in where) or "the request"
    return f"{place} is expected {expected}"


def read_answer(tool: str, request: Request, document: Any) -> Answer:
    """The agent's answer to `request`, checked: its interface, its major version, the
    schema, the command it answers. An error answer is AgentFailed; any other deviation
    is UnexpectedAnswer naming `tool` and what came back."""
    dig(tool, document, kind=dict)
    if document.get("interface") != INTERFACE:
        raise UnexpectedAnswer(tool, f"an answer of the {INTERFACE} interface", document)
    version = document.get("version")
    if major_of(version) != MAJOR:
        raise UnexpectedAnswer(
            tool,
            f"interface version {MAJOR}.x (this kloudctl speaks {VERSION}; "
            "`kloudctl replication deploy` installs the matching agent)",
            version,
        )
    conforming(tool, document, definition("answer"), schema())
    error = document.get("error")
    if error is not None:
        raise AgentFailed(
            f"{tool} could not {request.command} ({error['code']}): {error['message']}"
        )
    if document["command"] != request.command:
        raise UnexpectedAnswer(
            tool, f"the answer to {request.command}", f"an answer to {quote(document['command'])}"
        )
    return Answer(request.command, document["exit"], document["result"])
