"""The replication agent's interface (kloudctl.replication.agent_interface, agent.py and
agent.schema.json): requests and answers of each command against the schema, read with the
`jsonschema` library (the tests' reference) and with kloudctl's own reader of the schema
(what the cabinet and the controller use), which must agree; version mismatches, malformed
answers and unknown commands on both ends.

The answers checked here are the agent's own, made by its `handle` on a real fleet folder
and state folder (real restic when a command needs it); the whole round trip over a
process and a (stand-in) SSH is in tests/replication/test_agent.py, over real SSH in
tests/replication/test_cabinets_end_to_end.py.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from kloudctl.answers import (
    SCHEMA_ANNOTATIONS,
    SCHEMA_KEYWORDS,
    SchemaUnsupported,
    UnexpectedAnswer,
    schema_problem,
)
from kloudctl.replication import agent
from kloudctl.replication import agent_interface as ai
from kloudctl.replication import restic as r
from kloudctl.replication.layout import Layout
from kloudctl.testbed.fleets import make_fleet

TOOL = "kloudctl replication agent on alpha"


@functools.cache
def reference(name: str) -> jsonschema.protocols.Validator:
    """The `jsonschema` library's validator of one of the schema's definitions."""
    schema = {"$ref": f"#/$defs/{name}", "$defs": ai.schema()["$defs"]}
    validator_class = jsonschema.validators.validator_for(ai.schema())
    validator_class.check_schema(ai.schema())
    return validator_class(schema)


def both_agree(document: Any, name: str) -> bool:
    """Whether `document` conforms to definition `name`, said the same by both readers."""
    ours = schema_problem(document, ai.definition(name), ai.schema()) is None
    theirs = reference(name).is_valid(document)
    assert ours == theirs, (
        name,
        document,
        schema_problem(document, ai.definition(name), ai.schema()),
    )
    return ours


def test_the_schema_uses_only_what_kloudctl_reads() -> None:
    assert ai.schema()["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    found: set[str] = set()

    def walk(node: Any, parent_key: str = "") -> None:
        if isinstance(node, dict):
            if parent_key not in ("properties", "$defs"):
                found.update(node)
            for key, value in node.items():
                if key not in ("const", "enum"):
                    walk(value, key)
        elif isinstance(node, list):
            for item in node:
                walk(item, parent_key if parent_key in ("allOf",) else "")

    for definition in ai.schema()["$defs"].values():
        walk(definition)
    assert found <= SCHEMA_KEYWORDS | SCHEMA_ANNOTATIONS, found - SCHEMA_KEYWORDS
    # ... and the reader refuses a keyword it does not read, instead of ignoring it.
    with pytest.raises(SchemaUnsupported, match="oneOf"):
        schema_problem({}, {"oneOf": [{"type": "object"}]}, {})


REQUESTS = [
    ai.RunOptions(),
    ai.RunOptions(prune=False, check=False, now="1700000000"),
    ai.CheckOptions(integrity=True, now="2026-11-30T04:00:00Z"),
    ai.StatusOptions(),
    ai.RestoreTestOptions(sample=4, seed=1),
    ai.RestoreTestOptions(sample=10_000, seed=None),
]


@pytest.mark.parametrize("options", REQUESTS, ids=lambda o: f"{o.command}-{hash(o) % 1000}")
def test_each_commands_request_conforms(options: ai.Options) -> None:
    request = ai.Request("alpha", "/etc/kloudctl/fleet", "/var/lib/kloudctl/replication", options)
    document = request.as_dict()
    assert document["command"] == options.command and document["version"] == ai.VERSION
    assert both_agree(document, "request")
    assert ai.request_problem(document) is None
    assert ai.Request.from_dict(json.loads(json.dumps(document))) == request


def _mutations(document: dict[str, Any]) -> list[tuple[str, Any]]:
    """Documents one change away from `document`: each field dropped, given the wrong
    type, or a field added, at every depth."""
    out: list[tuple[str, Any]] = []

    def at(path: tuple[str | int, ...], change: Any) -> Any:
        changed = copy.deepcopy(document)
        target = changed
        for step in path[:-1]:
            target = target[step]
        change(target, path[-1])
        return changed

    def visit(node: Any, path: tuple[str | int, ...]) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                here = (*path, key)
                out.append((f"drop {here}", at(here, lambda t, k: t.pop(k))))
                for wrong in ("text", 7, -1, 1.5, True, None, [], {}):
                    out.append(
                        (f"{here}={wrong!r}", at(here, lambda t, k, w=wrong: t.__setitem__(k, w)))
                    )
                visit(value, here)
            out.append((f"add {path}.zz", at((*path, "zz"), lambda t, k: t.__setitem__(k, 1))))
        elif isinstance(node, list) and node:
            visit(node[0], (*path, 0))

    visit(document, ())
    return out


@pytest.mark.parametrize("options", REQUESTS[::2], ids=lambda o: o.command)
def test_the_two_readers_agree_on_malformed_requests(options: ai.Options) -> None:
    document = ai.Request("alpha", "/f", "/s", options).as_dict()
    verdicts = [both_agree(changed, "request") for _why, changed in _mutations(document)]
    assert verdicts.count(False) > len(verdicts) // 2  # most changes break a strict request


# --- the agent's answers, from a real fleet and state folder --------------------------------


@pytest.fixture
def cabinet(tmp_path: Path) -> tuple[Path, Path]:
    """alpha as its agent sees it: the fleet folder and the state folder on the cabinet
    (nothing replicated yet; beta's rest-server is nowhere)."""
    root = make_fleet(tmp_path / "fleet", ["alpha", "beta"], commands=False)
    state = tmp_path / "state"
    files = tmp_path / "files"
    (files / "srv" / "data").mkdir(parents=True)
    (files / "srv" / "data" / "a.txt").write_text("bonjour\n")
    Layout(state).write_endpoints(
        {
            "cabinets": {
                "alpha": {"root": str(files)},
                "beta": {"server": {"url": "https://127.0.0.1:9"}},  # nothing listens
            }
        }
    )
    return root, state


def _ask(cabinet: tuple[Path, Path], options: ai.Options, /, **changes: Any) -> dict[str, Any]:
    root, state = cabinet
    document = {**ai.Request("alpha", str(root), str(state), options).as_dict(), **changes}
    answer = agent.handle(json.loads(json.dumps(document))).as_dict()
    return json.loads(json.dumps(answer))  # as it travels


@pytest.mark.parametrize(
    "options", [*REQUESTS[::2], ai.RestoreTestOptions()], ids=lambda o: o.command
)
def test_each_commands_answer_conforms_and_reads_back(
    cabinet: tuple[Path, Path], options: ai.Options
) -> None:
    answer = _ask(cabinet, options)
    assert both_agree(answer, "answer")
    request = ai.Request("alpha", "/f", "/s", options)
    if options.command == "restore-test":  # nothing on the peer to restore from
        assert answer["error"]["code"] == ai.FAILED and answer["exit"] == 1, answer
        with pytest.raises(ai.AgentFailed, match=f"{TOOL} could not restore-test"):
            ai.read_answer(TOOL, request, answer)
        return
    read = ai.read_answer(TOOL, request, answer)
    assert read.command == options.command
    if options.command == "run":  # backed up here; the copy to beta failed: exit 1
        steps = {s["step"]: s for s in read.result["steps"]}
        assert steps["backup:paths"]["ok"] and not steps["copy:beta"]["ok"], steps
        assert read.exit == 1 and read.result["cabinet"] == "alpha"
    elif options.command == "check":  # the monitoring-plugin code: nothing to check yet
        assert read.exit == read.result["code"] == 3, read.result  # UNKNOWN: no keys made
        assert read.result["summary"].startswith("REPLICATION UNKNOWN - secret ")
    else:  # status: one row per peer
        [row] = read.result
        assert row["cabinet"] == "alpha" and row["peer"] == "beta"


def test_an_agent_refuses_another_major_version(cabinet: tuple[Path, Path]) -> None:
    for version in ("2.0", "0.9", "1", "one", 1.0, None):
        answer = _ask(cabinet, ai.StatusOptions(), version=version)
        assert both_agree(answer, "answer")
        assert answer["error"]["code"] == ai.UNSUPPORTED_VERSION and answer["exit"] == 2
        assert answer["version"] == ai.VERSION  # it says which it speaks
        assert f"this agent speaks {ai.VERSION}" in answer["error"]["message"]
    # a newer minor version of the same major is understood
    assert "result" in _ask(cabinet, ai.StatusOptions(), version="1.7")


def test_an_agent_answers_an_unknown_command_or_a_bad_request(cabinet: tuple[Path, Path]) -> None:
    answer = _ask(cabinet, ai.StatusOptions(), command="erase")
    assert both_agree(answer, "answer")
    assert answer["error"]["code"] == ai.UNKNOWN_COMMAND and answer["command"] == "erase"
    assert "run, check, status, restore-test" in answer["error"]["message"]
    bad = _ask(cabinet, ai.RestoreTestOptions(), options={"sample": 0, "seed": None})
    assert bad["error"] == {
        "code": ai.BAD_REQUEST,
        "message": "options.sample is expected to be at least 1",
    }
    extra = _ask(cabinet, ai.StatusOptions(), options={"now": None, "force": True})
    assert extra["error"]["message"] == "options.force is expected to be absent"
    for document in ([], "status", {"command": "status"}):
        answer = agent.handle(document).as_dict()
        assert both_agree(answer, "answer") and answer["error"]["code"] == ai.BAD_REQUEST


def test_the_agent_refuses_to_ask_itself(cabinet: tuple[Path, Path]) -> None:
    _root, state = cabinet
    Layout(state).update_endpoints({"alpha": {"ssh": {"address": "192.0.2.10"}}})
    answer = _ask(cabinet, ai.RunOptions())
    assert answer["error"]["code"] == ai.FAILED and answer["exit"] == 2, answer
    assert "the agent runs on the cabinet itself" in answer["error"]["message"]


# --- the controller reading answers -------------------------------------------------------


def _status_answer() -> dict[str, Any]:
    return {
        "interface": ai.INTERFACE,
        "version": "1.3",  # a newer minor: its extra fields are ignored
        "command": "status",
        "exit": 0,
        "result": [{"cabinet": "alpha", "peer": "beta", "lag_seconds": 12.5, "new": 1}],
        "also_new": True,
    }


STATUS = ai.Request("alpha", "/f", "/s", ai.StatusOptions())


def test_the_controller_reads_a_newer_minor_version() -> None:
    answer = ai.read_answer(TOOL, STATUS, _status_answer())
    assert answer.exit == 0 and answer.result[0]["lag_seconds"] == 12.5


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"version": "2.0"}, f"expected interface version 1.x (this kloudctl speaks {ai.VERSION}"),
        ({"version": None}, "expected interface version 1.x"),
        ({"interface": "kloudctl"}, "expected an answer of the kloudctl-replication-agent"),
        ({"exit": "0"}, "expected exit to be an integer; got '0'"),
        ({"result": {"cabinet": "alpha"}}, "expected result to be a list"),
        ({"result": [{"cabinet": "alpha", "peer": "beta", "lag_seconds": "long"}]},
         "expected result[0].lag_seconds to be a number or null; got 'long'"),
        ({"command": "check"}, "expected result to be an object"),
        ({"command": "check", "result": {"code": 0}}, "expected result.status to be given"),
        ({"error": {"code": "failed"}}, "expected error.message to be given"),
    ],
)  # fmt: skip
def test_the_controller_refuses_a_malformed_answer(change: dict[str, Any], expected: str) -> None:
    document = {**_status_answer(), **change}
    with pytest.raises(UnexpectedAnswer) as info:
        ai.read_answer(TOOL, STATUS, document)
    assert str(info.value).startswith(f"{TOOL} answered unexpectedly: "), info.value
    assert expected in str(info.value), str(info.value)
    if change.get("version", "1.0") == "1.0":  # the reference reader agrees it is wrong
        assert not reference("answer").is_valid(document) or "interface" in change


def test_the_controller_refuses_an_answer_to_another_command() -> None:
    document = {**_status_answer(), "command": "restore-test", "result": []}
    with pytest.raises(UnexpectedAnswer, match="expected the answer to status"):
        ai.read_answer(TOOL, STATUS, document)


def test_the_two_readers_agree_on_malformed_answers(cabinet: tuple[Path, Path]) -> None:
    answers = [_ask(cabinet, o) for o in (ai.CheckOptions(), ai.RunOptions())]
    answers.append(_ask(cabinet, ai.StatusOptions(), command="erase"))
    for answer in answers:
        for _why, changed in _mutations(answer):
            both_agree(changed, "answer")


# --- the agent's process ------------------------------------------------------------------


def _agent(stdin: bytes, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "kloudctl.replication.agent", *args],
        input=stdin,
        capture_output=True,
        timeout=120,
        env={**os.environ, "KLOUDCTL_DEBUG": "0"},
    )


def test_the_agents_process_answers_on_stdout_with_its_exit_code(
    cabinet: tuple[Path, Path],
) -> None:
    root, state = cabinet
    request = ai.Request("alpha", str(root), str(state), ai.StatusOptions()).as_dict()
    done = _agent(json.dumps({**request, "version": "9.0"}).encode())
    assert done.returncode == 2, done.stderr
    answer = json.loads(done.stdout)
    assert both_agree(answer, "answer") and answer["error"]["code"] == ai.UNSUPPORTED_VERSION
    for garbage in (b"", b"status alpha", b"\xff\xfe"):
        done = _agent(garbage)
        assert done.returncode == 2 and b"Traceback" not in done.stderr
        assert json.loads(done.stdout)["error"]["code"] == ai.BAD_REQUEST
    done = _agent(b"", "--help")
    assert (
        done.returncode == 2
        and "no arguments but --schema" in json.loads(done.stdout)["error"]["message"]
    )
    schema = _agent(b"", "--schema")
    assert schema.returncode == 0 and json.loads(schema.stdout) == ai.schema()


# --- the failover's file moves (interface 1.1): archive-backup and archive-stage ----------
#
# Real agent processes and real restic repositories: alpha keeps a VM's archive in its
# local repository; beta, its peer, keeps alpha's copy in its rest-server's data folder
# (here a folder, opened with the owner's key as on a cabinet), takes the guest's archive
# into it (failback) and stages an archive out of it (failover).

ARCHIVE = "vzdump-qemu-1000-2026_11_30-04_00_00.vma.zst"
SNAPSHOT_HEX = "ab" * 32


@pytest.fixture
def hosts(tmp_path: Path) -> dict[str, Path]:
    """alpha's and beta's state folders and storages, beta hosting alpha's copy."""
    root = make_fleet(tmp_path / "fleet", ["alpha", "beta"], commands=False)
    places = {"root": root}
    for name in ("alpha", "beta"):
        storage = tmp_path / name / "var" / "lib" / "vz"
        (storage / "dump").mkdir(parents=True)
        places[f"{name}-storage"] = storage
        places[f"{name}-state"] = tmp_path / name / "state"
    (places["alpha-storage"] / "dump" / ARCHIVE).write_bytes(os.urandom(200_000))
    data_dir, owner_keys = tmp_path / "beta" / "rest-data", tmp_path / "beta" / "owner-keys"
    owner_keys.mkdir(parents=True)
    (owner_keys / "alpha.password").write_text("owner-key-of-beta-to-alpha\n")
    subprocess.run(
        [r.find_restic(), "init", "--repo", str(data_dir / "alpha")],
        env={"PATH": os.environ["PATH"], "RESTIC_PASSWORD_FILE": str(owner_keys / "alpha.password")},
        check=True, capture_output=True,
    )  # fmt: skip
    nowhere = {"server": {"url": "https://127.0.0.1:9"}}
    Layout(places["alpha-state"]).write_endpoints({"cabinets": {"beta": nowhere}})
    hosted = {"data_dir": str(data_dir), "owner_keys": str(owner_keys)}
    Layout(places["beta-state"]).write_endpoints(
        {"cabinets": {"beta": {"hosted": hosted}, "alpha": nowhere}}
    )
    places["hosted"] = data_dir / "alpha"
    return places


def _run_agent(hosts: dict[str, Path], cabinet: str, options: ai.Options) -> dict[str, Any]:
    """One request to a real agent process, as SSH carries it: its answer, checked."""
    request = ai.Request(cabinet, str(hosts["root"]), str(hosts[f"{cabinet}-state"]), options)
    done = _agent(json.dumps(request.as_dict()).encode())
    answer = json.loads(done.stdout)
    assert done.returncode == answer["exit"] and b"Traceback" not in done.stderr, done.stderr
    assert both_agree(answer, "answer"), answer
    # what the agent refused as a bad request, both readers of the schema refuse
    valid = both_agree(request.as_dict(), "request")
    assert valid == (answer.get("error", {}).get("code") != ai.BAD_REQUEST), answer
    return answer


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_archive_backup_keeps_the_archive_with_its_sha256(hosts: dict[str, Path]) -> None:
    options = ai.ArchiveBackupOptions(
        owner="alpha", storage_path=str(hosts["alpha-storage"]), archive=ARCHIVE, vm="alpha-web"
    )
    answer = _run_agent(hosts, "alpha", options)
    kept = ai.read_answer(TOOL, ai.Request("alpha", "/f", "/s", options), answer).result
    digest = _sha(hosts["alpha-storage"] / "dump" / ARCHIVE)
    assert kept["sha256"] == digest and kept["size"] == 200_000 and kept["copies"] == {}
    # in alpha's local repository, with the tags the failover looks for
    layout = Layout(hosts["alpha-state"])
    snaps = r.snapshot_list(r.Restic().run(layout.local_repo("alpha"), r.snapshots_args()))
    [snap] = [s for s in snaps if s["id"] == kept["snapshot"]]
    assert {"failover", "vm:alpha-web", f"sha256:{digest}", f"archive:{ARCHIVE}"} <= set(
        snap["tags"]
    )
    # with `copy`, the copy to beta is tried as a run does (beta's rest-server is nowhere)
    failed = _run_agent(hosts, "alpha", dataclasses.replace(options, copy=True))
    assert failed["exit"] != 0 and failed["error"]["code"] == ai.FAILED, failed
    assert "127.0.0.1:9" in failed["error"]["message"]


def test_archive_stage_on_the_peer_from_the_copy_it_hosts(hosts: dict[str, Path]) -> None:
    # the guest's archive on beta goes into alpha's copy there (failback's first half)...
    guest = hosts["beta-storage"] / "dump" / ARCHIVE
    guest.write_bytes(os.urandom(150_000))
    digest = _sha(guest)
    keep = ai.ArchiveBackupOptions(
        owner="alpha", storage_path=str(hosts["beta-storage"]), archive=ARCHIVE,
        vm="alpha-web", failback=True,
    )  # fmt: skip
    kept_answer = _run_agent(hosts, "beta", keep)
    kept = kept_answer["result"]
    assert kept["sha256"] == digest
    # ...files written as the agent's user go to the copy's owner (rest-server's user)
    owner = hosts["hosted"].stat().st_uid
    assert all(p.lstat().st_uid == owner for p in hosts["hosted"].rglob("*"))
    # staged into another storage of beta's: byte-identical, one rename, no staging left
    target = hosts["beta-storage"].parent / "elsewhere"
    (target / "dump").mkdir(parents=True)
    stage = ai.ArchiveStageOptions(
        owner="alpha", peer="beta", storage_path=str(target), archive=ARCHIVE,
        snapshot=kept["snapshot"], sha256=digest,
    )  # fmt: skip
    first = _run_agent(hosts, "beta", stage)
    assert first["exit"] == 0 and first["result"]["moved"] is True, first
    # the controller reads both answers; both readers of the schema agree on every
    # malformed variant of them
    for options, answer in ((keep, kept_answer), (stage, first)):
        request = ai.Request("beta", "/f", "/s", options)
        assert ai.read_answer(TOOL, request, answer).result == answer["result"]
        verdicts = [both_agree(changed, "answer") for _why, changed in _mutations(answer)]
        assert verdicts.count(False) > len(verdicts) // 3, verdicts
    with pytest.raises(UnexpectedAnswer, match=r"expected result\.moved to be given"):
        broken = {**first, "result": {"archive": ARCHIVE, "sha256": digest}}
        ai.read_answer(TOOL, ai.Request("beta", "/f", "/s", stage), broken)
    assert _sha(target / "dump" / ARCHIVE) == digest
    assert sorted(p.name for p in target.iterdir()) == ["dump"]
    # again: already there, nothing moved
    again = _run_agent(hosts, "beta", stage)
    assert again["result"] == {"archive": ARCHIVE, "sha256": digest, "moved": False}
    # an archive that is not what the backup recorded is not put in place
    (target / "dump" / ARCHIVE).unlink()
    wrong = _run_agent(hosts, "beta", dataclasses.replace(stage, sha256="0" * 64))
    assert wrong["error"]["code"] == ai.FAILED and "not restored" in wrong["error"]["message"]
    assert sorted(p.name for p in target.rglob("*")) == ["dump"]
    # a cabinet that is neither the owner nor the peer reaches no copy
    elsewhere = _run_agent(hosts, "alpha", dataclasses.replace(stage, owner="beta", peer="alpha"))
    assert elsewhere["error"]["code"] == ai.FAILED, elsewhere


ARCHIVE_REQUESTS = [
    ai.ArchiveBackupOptions(owner="alpha", storage_path="/var/lib/vz", archive=ARCHIVE, vm="web"),
    ai.ArchiveBackupOptions(
        owner="beta", storage_path="/srv/pve/backups", archive=ARCHIVE.removesuffix(".zst"),
        vm="web", failback=True, copy=True,
    ),
    ai.ArchiveStageOptions(
        owner="alpha", peer="beta", storage_path="/var/lib/vz", archive=ARCHIVE,
        snapshot=SNAPSHOT_HEX, sha256="0123456789abcdef" * 4,
    ),
]  # fmt: skip


@pytest.mark.parametrize("options", ARCHIVE_REQUESTS, ids=lambda o: f"{o.command}-{o.owner}")
def test_archive_requests_conform_and_the_readers_agree_on_malformed_ones(
    options: ai.Options,
) -> None:
    request = ai.Request("alpha", "/etc/kloudctl/fleet", "/var/lib/kloudctl/replication", options)
    document = request.as_dict()
    assert document["version"] == "1.1" and both_agree(document, "request")
    assert ai.Request.from_dict(json.loads(json.dumps(document))) == request
    verdicts = [both_agree(changed, "request") for _why, changed in _mutations(document)]
    assert verdicts.count(False) > len(verdicts) // 2


@pytest.mark.parametrize(
    ("field", "value", "why"),
    [
        ("archive", "../../etc/shadow", "options.archive is expected to match"),
        ("archive", "vzdump-qemu-1000-2026_11_30-04_00_00.vma.zst/../x", "options.archive"),
        ("storage_path", "/var/lib/vz/../../etc", "options.storage_path is expected to match"),
        ("storage_path", "var/lib/vz", "options.storage_path"),
        ("snapshot", "latest", "options.snapshot is expected to match"),
        ("snapshot", "AB" * 32, "options.snapshot"),
        ("sha256", "ab" * 31, "options.sha256"),
        ("owner", "Alpha; rm", "options.owner"),
    ],
)
def test_archive_requests_are_refused_unless_plain(
    hosts: dict[str, Path], field: str, value: str, why: str
) -> None:
    stage = ai.ArchiveStageOptions(
        owner="alpha", peer="beta", storage_path=str(hosts["beta-storage"]), archive=ARCHIVE,
        snapshot=SNAPSHOT_HEX, sha256=SNAPSHOT_HEX,
    )  # fmt: skip
    answer = _run_agent(hosts, "beta", dataclasses.replace(stage, **{field: value}))
    assert answer["exit"] == 2 and answer["error"]["code"] == ai.BAD_REQUEST, answer
    assert why in answer["error"]["message"], answer
    assert list((hosts["beta-storage"] / "dump").iterdir()) == []


def test_archive_paths_are_never_followed_through_a_link(
    hosts: dict[str, Path], tmp_path: Path
) -> None:
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / ARCHIVE).write_text("not an archive of this storage\n")
    linked = tmp_path / "linked"
    (linked).mkdir()
    (linked / "dump").symlink_to(secret)
    keep = ai.ArchiveBackupOptions(
        owner="alpha", storage_path=str(linked), archive=ARCHIVE, vm="alpha-web"
    )
    refused = _run_agent(hosts, "alpha", keep)
    assert refused["error"]["code"] == ai.FAILED and "symbolic link" in refused["error"]["message"]
    # a storage path that is itself a link, or a file in dump/ that is a link
    (tmp_path / "vz-link").symlink_to(hosts["alpha-storage"])
    refused = _run_agent(
        hosts, "alpha", dataclasses.replace(keep, storage_path=str(tmp_path / "vz-link"))
    )
    assert "goes through a link" in refused["error"]["message"], refused
    link = hosts["beta-storage"] / "dump" / ARCHIVE
    link.symlink_to(secret / ARCHIVE)
    refused = _run_agent(
        hosts, "beta", dataclasses.replace(keep, storage_path=str(hosts["beta-storage"]))
    )
    assert "not a regular file" in refused["error"]["message"], refused


def test_storage_paths_must_be_declared_where_the_host_declares_them(tmp_path: Path) -> None:
    from kloudctl.replication import archives

    storage = tmp_path / "vz"
    storage.mkdir()
    cfg = tmp_path / "storage.cfg"
    cfg.write_text(f"dir: local\n\tpath {storage}\n\tcontent backup,iso\n")
    assert archives.storage_folder(str(storage), cfg=cfg) == storage
    other = tmp_path / "etc"
    other.mkdir()
    with pytest.raises(archives.ArchiveRefused, match="no storage path declared in"):
        archives.storage_folder(str(other), cfg=cfg)
