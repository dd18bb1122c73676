"""No internal error on any user path: a tool answering nonsense is an ExternalError that
names the tool, what was expected and what came back (issue 11, item 2).

The fake `podman`, `restic`, `pulumi` and `ssh` written here stand in for a misbehaving
tool (another version, a broken build, a wrapper printing noise); the real tools are
tested against kloudctl elsewhere (tests/replication, tests/tenants, tests/testbed). The
fake Proxmox API is a loopback HTTPS server answering what a broken proxy could.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from kloudctl.answers import UnexpectedAnswer
from kloudctl.errors import ExternalError, KloudError, ResticError, ToolMissing
from kloudctl.replication import restic as r
from kloudctl.replication.restic import Repo, Restic

REPO = Path(__file__).resolve().parents[2]

#: What a misbehaving tool prints where kloudctl expects a list of snapshots.
MALFORMED = {
    "not-json": "Fatal: this is not JSON at all\n",
    "object-for-a-list": "{}\n",
    "missing-id": '[{"time": "2026-01-01T00:00:00Z", "short_id": "0123abcd"}]\n',
    "missing-time": '[{"id": "0123abcd4567ef", "short_id": "0123abcd"}]\n',
    "time-not-a-time": '[{"id": "0123abcd4567ef", "time": "yesterday"}]\n',
    "null": "null\n",
    "truncated": '[{"id": "0123abcd4567ef", "time": "2026-01-0',
    "huge-integer": '[{"id": "0123abcd4567ef", "time": ' + "9" * 400 + "}]\n",
    "group-without-list": '[{"group_key": {}, "snapshots": {"id": "x"}}]\n',
    "empty": "",
}

FakeTool = Callable[..., Path]


@pytest.fixture
def fake_tool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeTool:
    """`fake_tool(name, stdout, stderr="", code=0, answers={word: stdout})` puts a shell
    script `name` first on PATH: it prints `stdout` (or, when `word` is among its
    arguments, that answer, exit 0) and `stderr`, and exits `code`."""
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir(exist_ok=True)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("KLOUDCTL_PODMAN_NETWORK_BACKEND", raising=False)

    def install(
        name: str,
        stdout: str,
        stderr: str = "",
        code: int = 0,
        answers: dict[str, str] | None = None,
    ) -> Path:
        data = tmp_path / f"fake-{name}"
        data.mkdir(exist_ok=True)
        (data / "stdout").write_text(stdout)
        (data / "stderr").write_text(stderr)
        lines = ["#!/bin/sh", f"# fake {name}: a misbehaving tool (see the module docstring)"]
        for i, (word, answer) in enumerate((answers or {}).items()):
            (data / f"answer{i}").write_text(answer)
            lines += [
                f'for a in "$@"; do [ "$a" = {shlex.quote(word)} ] && '
                f"{{ cat {shlex.quote(str(data / f'answer{i}'))}; exit 0; }}; done"
            ]
        lines += [
            f"cat {shlex.quote(str(data / 'stdout'))}",
            f"cat {shlex.quote(str(data / 'stderr'))} >&2",
            f"exit {code}",
        ]
        script = bin_dir / name
        script.write_text("\n".join(lines) + "\n")
        script.chmod(0o755)
        return script

    return install


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    password = tmp_path / "password"
    password.write_text("not a real key\n")
    return Repo(str(tmp_path / "repo"), password_file=password)


def _names(exc: BaseException, tool: str) -> None:
    """The error a user sees names the tool and is no internal error."""
    assert isinstance(exc, ExternalError), repr(exc)
    assert tool in str(exc), str(exc)


# --- restic -------------------------------------------------------------------------------


@pytest.mark.parametrize("printed", MALFORMED.values(), ids=MALFORMED.keys())
def test_restic_snapshots_of_the_wrong_shape(fake_tool: FakeTool, repo: Repo, printed: str) -> None:
    fake_tool("restic", printed)
    result = Restic().run(repo, r.snapshots_args())
    with pytest.raises(UnexpectedAnswer) as info:
        r.snapshot_list(result)
    _names(info.value, "restic snapshots")
    if printed.strip().startswith("Fatal"):  # what came back is quoted, even when not JSON
        assert "this is not JSON at all" in str(info.value)


def test_restic_snapshots_well_formed_are_normalised(fake_tool: FakeTool, repo: Repo) -> None:
    # The counterpart of the above: restic's own shapes still read (grouped, no short_id,
    # a null `original`), so the checks refuse only what is wrong.
    fake_tool(
        "restic",
        '[{"group_key": {"hostname": "alpha"}, "snapshots": [{"id": "0123456789abcdef",'
        ' "time": "2026-01-01T00:00:00.123456789+01:00", "original": null}]}]\n',
    )
    [snap] = r.snapshot_list(Restic().run(repo, r.snapshots_args()))
    assert snap["short_id"] == "01234567" and "original" not in snap


@pytest.mark.parametrize(
    "stderr",
    [
        '{"message_type": "exit_error", "code": 1, "message": "   "}\n',
        '{"message_type": "error", "error": "a string, not an object"}\n',
        '{"message_type": "error", "error": {"message": 5}, "during": "archival"}\n',
        '{"message_type": "error"}\n[1, 2]\n',
        "",
    ],
)
def test_restic_failing_with_odd_error_messages(
    fake_tool: FakeTool, repo: Repo, stderr: str
) -> None:
    fake_tool("restic", "", stderr=stderr, code=1)
    with pytest.raises(ResticError) as info:
        Restic().run(repo, ["check"])
    assert str(info.value).startswith("restic check failed (exit 1): ")


def test_restic_missing_or_not_a_program(
    tmp_path: Path, repo: Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(ToolMissing, match="restic is not on PATH"):
        Restic().run(repo, ["snapshots"])
    garbage = empty / "restic"
    garbage.write_bytes(b"\x7fELF-not-really\x00")  # executable, but no program
    garbage.chmod(0o755)
    with pytest.raises(ExternalError, match=r"cannot run .*restic"):
        Restic().run(repo, ["snapshots"])


# --- replication through the CLI ------------------------------------------------------------


@pytest.fixture
def closing_server() -> Iterator[int]:
    """A loopback port that accepts connections and closes them: the peer "answers" the
    reachability probe, then nothing useful (restic is the fake that matters)."""
    sock = socket.create_server(("127.0.0.1", 0))
    sock.settimeout(0.05)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                continue
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield sock.getsockname()[1]
    stop.set()
    thread.join(2)
    sock.close()


@pytest.fixture
def replicated_fleet(tmp_path: Path, closing_server: int) -> tuple[Path, Path]:
    """Two cabinets replicating to each other, their secrets made, their rest-servers at
    `closing_server`: (fleet root, state folder)."""
    from kloudctl.replication.layout import Layout
    from kloudctl.testbed.fleets import make_fleet

    root = make_fleet(tmp_path / "fleet", ["alpha", "beta"], commands=False)
    state = tmp_path / "state"
    layout = Layout(state)
    server = {"server": {"url": f"https://127.0.0.1:{closing_server}"}}
    layout.write_endpoints({"cabinets": {"alpha": server, "beta": server}})
    for cabinet, peer in (("alpha", "beta"), ("beta", "alpha")):
        layout.local_repo(cabinet)
        layout.peer_repo(cabinet, peer)
    return root, state


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """The CLI in this process, through its boundary (as `kloudctl` runs): exit code,
    stdout, stderr. In-process so the fakes' monkeypatches apply."""
    from kloudctl.cli import cli
    from kloudctl.cli.boundary import run_with_boundary

    with pytest.raises(SystemExit) as info:
        run_with_boundary(cli, args)
    out, err = capsys.readouterr()
    code = info.value.code
    return code if isinstance(code, int) else 1, out, err


def _no_internal_error(err: str) -> None:
    assert "internal error" not in err and "Traceback" not in err, err


@pytest.mark.parametrize("printed", ["{}\n", "not JSON\n", '[{"id": "abc"}]\n'])
def test_replication_status_shows_restic_answers_as_errors(
    fake_tool: FakeTool,
    replicated_fleet: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
    printed: str,
) -> None:
    root, state = replicated_fleet
    fake_tool("restic", printed)
    code, out, err = _cli(
        ["--fleet", str(root), "replication", "status", "alpha", "--state-dir", str(state),
         "--json"],
        capsys,
    )  # fmt: skip
    _no_internal_error(err)
    assert code in (0, 1), err  # the rows are shown either way; 1 when some have errors
    [row] = json.loads(out)
    assert "restic snapshots answered unexpectedly" in row["local_error"]
    assert "restic snapshots answered unexpectedly" in row["peer_error"]


def test_replication_check_is_unknown_when_restic_answers_nonsense(
    fake_tool: FakeTool,
    replicated_fleet: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    root, state = replicated_fleet
    fake_tool("restic", "null\n")
    code, out, err = _cli(
        ["--fleet", str(root), "replication", "check", "alpha", "--state-dir", str(state)],
        capsys,
    )
    _no_internal_error(err)
    assert code == 3  # UNKNOWN, the monitoring-plugin way: kloudctl cannot tell
    assert out.startswith("REPLICATION UNKNOWN - alpha->beta UNKNOWN: restic snapshots")


def test_replication_run_fails_the_steps_restic_answered_wrongly(
    fake_tool: FakeTool,
    replicated_fleet: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    # `init` and `backup` "succeed" (exit 0) but the backup names no snapshot, and the
    # check gives no summary: neither may pass for done.
    root, state = replicated_fleet
    fake_tool("restic", '{"message_type": "summary", "snapshot_id": 42}\n')
    code, out, err = _cli(
        ["--fleet", str(root), "replication", "run", "alpha", "--state-dir", str(state),
         "--json", "--no-prune"],
        capsys,
    )  # fmt: skip
    _no_internal_error(err)
    assert code != 0
    [report] = json.loads(out)
    steps = {s["step"]: s for s in report["steps"]}
    assert not steps["backup:paths"]["ok"]
    assert (
        "restic backup answered unexpectedly: expected snapshot_id to be a string"
        in (steps["backup:paths"]["detail"])
    )
    assert not steps["check:local"]["ok"]
    assert "restic check answered unexpectedly" in steps["check:local"]["detail"]


# --- kloudctl on a cabinet, over a fake ssh --------------------------------------------------


@pytest.fixture
def cabinet_over_ssh(tmp_path: Path) -> tuple[Path, Path]:
    """alpha runs its own replication: the controller asks it over ssh (the fake)."""
    from kloudctl.replication.layout import Layout
    from kloudctl.testbed.fleets import make_fleet

    root = make_fleet(tmp_path / "fleet", ["alpha", "beta"], commands=False)
    state = tmp_path / "state"
    Layout(state).write_endpoints(
        {"cabinets": {"alpha": {"ssh": {"address": "192.0.2.10", "user": "root"}}}}
    )
    return root, state


AGENT = '"interface": "kloudctl-replication-agent"'
#: What a cabinet's replication agent might answer, whatever it was asked, all wrong.
SSH_ANSWERS = {
    "not-json": "Welcome to alpha!\n",
    "not-an-object": '[{"cabinet": "alpha"}]\n',
    "another-interface": '{"interface": "kloudctl", "version": "1.0"}\n',
    "major-version-2": "{" + AGENT + ', "version": "2.0", "command": null, "exit": 0}\n',
    "no-result": "{" + AGENT + ', "version": "1.0", "command": null, "exit": 0}\n',
    "huge-exit": "{" + AGENT + ', "version": "1.0", "command": null, "exit": 1e400}\n',
    "refused": "{" + AGENT + ', "version": "1.0", "command": null, "exit": 2,'
    ' "error": {"code": "bad-request", "message": "not a request"}}\n',
    "empty": "",
}


@pytest.mark.parametrize("printed", SSH_ANSWERS.values(), ids=SSH_ANSWERS.keys())
@pytest.mark.parametrize("subcommand", ["run", "status", "check", "restore-test"])
def test_a_cabinets_answer_over_ssh_is_checked(
    fake_tool: FakeTool,
    cabinet_over_ssh: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
    subcommand: str,
    printed: str,
) -> None:
    root, state = cabinet_over_ssh
    fake_tool("ssh", printed)
    code, out, err = _cli(
        ["--fleet", str(root), "replication", subcommand, "alpha", "--state-dir", str(state),
         "--json"],
        capsys,
    )  # fmt: skip
    _no_internal_error(err)
    if subcommand == "restore-test":  # nothing to fall back on: the error itself
        assert code == 1
        assert "kloudctl replication agent on alpha" in err
    elif subcommand == "run":  # the run failed, and its report says why
        assert code != 0
        [report] = json.loads(out)
        assert "kloudctl replication agent on alpha" in report["steps"][0]["detail"]
    elif subcommand == "status":  # the row says why it knows nothing
        [row] = json.loads(out)
        assert "kloudctl replication agent on alpha" in row["local_error"]
    else:  # check: the controller looks for itself (here: no peer server known)
        assert json.loads(out)["jobs"][0]["reason"].startswith("cabinet alpha unreachable")


def test_ssh_missing_is_said(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kloudctl.replication.agent_interface import StatusOptions
    from kloudctl.replication.layout import Ssh
    from kloudctl.replication.remote import ask_agent

    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolMissing, match="ssh is not installed"):
        ask_agent(Ssh("192.0.2.10"), "alpha", StatusOptions())


def test_a_cabinet_without_the_agent_is_told_to_deploy(
    fake_tool: FakeTool, cabinet_over_ssh: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    # A cabinet deployed before the agent existed: its shell does not find the command.
    root, state = cabinet_over_ssh
    fake_tool("ssh", "", stderr="sh: 1: kloudctl-replication-agent: not found\n", code=127)
    code, _out, err = _cli(
        ["--fleet", str(root), "replication", "restore-test", "alpha", "--state-dir", str(state)],
        capsys,
    )
    _no_internal_error(err)
    assert code == 1
    assert "kloudctl replication agent on alpha exited 127 without an answer" in err
    assert "`kloudctl replication deploy alpha` installs the agent" in err


def test_the_real_cli_in_a_subprocess(
    fake_tool: FakeTool, cabinet_over_ssh: tuple[Path, Path]
) -> None:
    # Once as a user runs it: a process of its own, its own boundary, exit 1 and a message.
    from tests.conftest import run_kloudctl

    root, state = cabinet_over_ssh
    fake_tool("ssh", '{"no": "list"}\n')
    result = run_kloudctl(
        "--fleet", str(root), "replication", "restore-test", "alpha", "--state-dir", str(state),
        env={"PATH": os.environ["PATH"]},
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "kloudctl replication agent on alpha answered unexpectedly" in result.stderr
    _no_internal_error(result.stderr)


# --- podman -------------------------------------------------------------------------------

INSPECT_ANSWERS = {
    "not-json": "Error: something odd\n",
    "object-for-a-list": "{}\n",
    "no-subnets": '[{"name": "net"}]\n',
    "subnet-not-an-address": '[{"subnets": [{"subnet": "ten dot zero"}]}]\n',
    "null": "null\n",
    "truncated": '[{"subnets": [{"subnet": "10.89.',
    "huge-integer": '[{"subnets": [{"subnet": ' + "9" * 400 + "}]}]\n",
    "empty": "",
}


@pytest.mark.parametrize("printed", INSPECT_ANSWERS.values(), ids=INSPECT_ANSWERS.keys())
def test_podman_network_inspect_of_the_wrong_shape(fake_tool: FakeTool, printed: str) -> None:
    from kloudctl.testbed import cabinets

    fake_tool("podman", printed, answers={"exists": ""})
    with pytest.raises(UnexpectedAnswer) as info:
        cabinets._network("kloudctl-test-net")
    _names(info.value, "podman network inspect")


def test_podman_missing_is_said(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kloudctl.testbed.podman import podman

    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("KLOUDCTL_PODMAN_NETWORK_BACKEND", raising=False)
    with pytest.raises(KloudError, match="podman is not installed"):
        podman("network", "ls")


# --- pulumi -------------------------------------------------------------------------------


@pytest.fixture
def tenants_fleet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_tool: FakeTool
) -> Callable[..., Path]:
    """The example fleet with its API target given (no vault), and a fake `pulumi`
    installed by the returned function (same arguments as `fake_tool`)."""
    import shutil

    from kloudctl.tenants import engine

    root = tmp_path / "fleet"
    for folder in ("cabinets", "backups"):
        shutil.copytree(REPO / folder, root / folder)
    targets = tmp_path / "targets.json"
    target = {"endpoint": "https://127.0.0.1:9", "fingerprint": "AA", "token_id": "a@pve!t"}
    targets.write_text(json.dumps({"mortree": {**target, "secret": "s"}}))
    monkeypatch.setenv("KLOUDCTL_PROXMOX_TARGETS", str(targets))
    monkeypatch.setenv("KLOUDCTL_PULUMI_STATE", str(tmp_path / "pulumi-state"))

    def install(stdout: str, **kw: Any) -> Path:
        script = fake_tool("pulumi", stdout, **kw)
        # kloudctl prefers the project's own build (.tools/bin): the fake must come first.
        monkeypatch.setattr(
            engine, "_tool_path", lambda: f"{script.parent}{os.pathsep}{os.environ['PATH']}"
        )
        return root

    return install


VERSION = {"version": "v3.200.0\n"}


@pytest.mark.parametrize(
    "printed",
    ["not JSON\n", '{"tenants": ', "null\n", '{"tenants": 1' + "0" * 400 + "}\n", ""],
    ids=["not-json", "truncated", "null", "huge-integer", "empty"],
)
def test_pulumi_stack_outputs_of_the_wrong_shape(
    tenants_fleet: Callable[..., Path], printed: str
) -> None:
    from kloudctl.model import load_fleet
    from kloudctl.tenants.credentials import tenant_credentials

    root = tenants_fleet(printed, answers=VERSION)
    with pytest.raises(ExternalError) as info:
        tenant_credentials(load_fleet(root), root, "mortree", "council")
    _names(info.value, "pulumi")


def test_pulumi_outputs_through_the_cli(
    tenants_fleet: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    root = tenants_fleet('{"tenants": {"council": {"pool": 7}}, "token_secrets": {"council": '
                         '"s3cr3t-value"}}\n', answers=VERSION)  # fmt: skip
    code, _out, err = _cli(["--fleet", str(root), "tenant", "token", "mortree", "council"], capsys)
    _no_internal_error(err)
    assert code == 1
    assert "pulumi (the outputs of the tenants stack of mortree) answered unexpectedly" in err
    assert "expected council.token_id" in err
    assert "s3cr3t-value" not in err  # the secrets output is never quoted


@pytest.mark.parametrize(
    ("version", "message"),
    [("not a version\n", "not a usable version"), ("", "not a usable version")],
)
def test_pulumi_version_unreadable(
    tenants_fleet: Callable[..., Path], version: str, message: str
) -> None:
    from kloudctl.model import load_fleet
    from kloudctl.tenants.engine import TenantsStack

    root = tenants_fleet("", answers={"version": version})
    with pytest.raises(ExternalError, match=message):
        TenantsStack(load_fleet(root), root, "mortree").outputs()


def test_pulumi_failing_with_garbage(
    tenants_fleet: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    root = tenants_fleet("{{{", stderr="panic: runtime error\n{{{", code=2, answers=VERSION)
    code, _out, err = _cli(["--fleet", str(root), "tenants", "plan", "mortree"], capsys)
    _no_internal_error(err)
    assert code == 1 and "pulumi failed" in err


def test_pulumi_missing_is_said(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kloudctl.tenants import engine

    monkeypatch.setattr(engine, "_tool_path", lambda: str(tmp_path))
    with pytest.raises(ToolMissing, match="the Pulumi CLI is not installed"):
        engine.find_pulumi()


def test_a_pulumi_lock_file_of_the_wrong_shape_is_skipped(tmp_path: Path) -> None:
    from kloudctl.tenants.engine import StatePaths, stale_locks

    folder = tmp_path / "backend/.pulumi/locks/organization/kloudctl-tenants/mortree"
    folder.mkdir(parents=True)
    (folder / "a.json").write_text("[1, 2]")
    (folder / "b.json").write_text('{"pid": "many"}')
    (folder / "c.json").write_text(
        json.dumps({"pid": 10**30, "hostname": socket.gethostname(), "timestamp": "t"})
    )
    stale, live = stale_locks(StatePaths(tmp_path), "mortree")
    assert stale == [folder / "c.json"] and live == []  # no process has such a pid


# --- the Proxmox API ------------------------------------------------------------------------

Routes = dict[tuple[str, str], tuple[int, bytes]]


@pytest.fixture
def fake_proxmox(tmp_path: Path) -> Iterator[tuple[str, str, Routes]]:
    """A loopback HTTPS server answering `routes[(method, path)] = (status, body)`:
    (endpoint, fingerprint, routes), routes filled in by the test."""
    from kloudctl.tls import fingerprint_of, self_signed

    cert, key = self_signed("fake-proxmox", "127.0.0.1", ["localhost"])
    (tmp_path / "cert.pem").write_bytes(cert)
    (tmp_path / "key.pem").write_bytes(key)
    routes: Routes = {}

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            path = self.path.split("?")[0].removeprefix("/api2/json/")
            status, body = routes.get((self.command, path), (404, b'{"data": null}'))
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = _answer

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}", fingerprint_of(cert), routes
    server.shutdown()
    server.server_close()


def _client(fake: tuple[str, str, Routes]) -> Any:
    from kloudctl.proxmox.client import ApiTarget, Client, RetryPolicy

    endpoint, fingerprint, _ = fake
    target = ApiTarget(endpoint, fingerprint, "kloudctl@pve!automation", "secret")
    return Client(target, RetryPolicy(attempts=1, task_poll=0.01, task_timeout=2))


@pytest.mark.parametrize(
    "body",
    [b"<html>502 Bad Gateway</html>", b'{"nodata": 1}', b"[1, 2]", b"", b'{"data": '],
    ids=["html", "no-data", "a-list", "empty", "truncated"],
)
def test_proxmox_body_that_is_not_an_answer(
    fake_proxmox: tuple[str, str, Routes], body: bytes
) -> None:
    fake_proxmox[2][("GET", "version")] = (200, body)
    with pytest.raises(UnexpectedAnswer) as info:
        _client(fake_proxmox).get("version")
    _names(info.value, f"the Proxmox API at {fake_proxmox[0]}")


def test_proxmox_error_body_of_any_shape_is_still_an_error(
    fake_proxmox: tuple[str, str, Routes],
) -> None:
    from kloudctl.proxmox.client import ProxmoxError

    fake_proxmox[2][("GET", "version")] = (400, b'[{"errors": "a list"}]')
    with pytest.raises(ProxmoxError, match="GET /version"):
        _client(fake_proxmox).get("version")


@pytest.mark.parametrize(
    "status",
    [b'{"data": {"exitstatus": "OK"}}', b'{"data": {"status": "stopped"}}', b'{"data": "OK"}'],
    ids=["no-status", "stopped-without-exitstatus", "a-string"],
)
def test_proxmox_task_status_of_the_wrong_shape(
    fake_proxmox: tuple[str, str, Routes], status: bytes
) -> None:
    upid = "UPID:pve1:0000C0DE:00000001:6500000A:qmstart:100:root@pam:"
    fake_proxmox[2][("GET", f"nodes/pve1/tasks/{upid}/status")] = (200, status)
    with pytest.raises(UnexpectedAnswer):  # at once, not after polling until the timeout
        _client(fake_proxmox).wait_task(upid)


@pytest.mark.parametrize(
    "listing",
    [
        b'{"data": {}}',
        b'{"data": [{"name": "vm"}]}',
        b'{"data": [{"vmid": "100"}]}',
        b'{"data": [7]}',
    ],
)
def test_proxmox_guest_listing_of_the_wrong_shape(
    fake_proxmox: tuple[str, str, Routes], listing: bytes
) -> None:
    fake_proxmox[2][("GET", "cluster/resources")] = (200, listing)
    with pytest.raises(UnexpectedAnswer):
        _client(fake_proxmox).find_guest(100)


def test_proxmox_login_without_a_ticket_never_quotes_the_answer(
    fake_proxmox: tuple[str, str, Routes],
) -> None:
    from kloudctl.proxmox.client import Client

    endpoint, fingerprint, routes = fake_proxmox
    routes[("POST", "access/ticket")] = (200, b'{"data": {"CSRFPreventionToken": "csrf-secret"}}')
    with pytest.raises(UnexpectedAnswer) as info:
        Client.login(endpoint, fingerprint, "alice@pve", "password")
    assert "csrf-secret" not in str(info.value)


def test_bootstrap_token_against_a_broken_api(fake_proxmox: tuple[str, str, Routes]) -> None:
    from kloudctl.proxmox.automation import ensure_automation_token as ensure_token

    endpoint, fingerprint, routes = fake_proxmox
    routes[("POST", "access/ticket")] = (
        200,
        b'{"data": {"ticket": "PVE:t", "CSRFPreventionToken": "c"}}',
    )
    routes[("GET", "access/users")] = (200, b'{"data": {"userid": "not a list"}}')
    with pytest.raises(UnexpectedAnswer) as info:
        ensure_token(
            endpoint, fingerprint, root_user="root@pam", root_password="pw",
            user="kloudctl@pve", token_id="automation",
        )  # fmt: skip
    _names(info.value, "the Proxmox API at")
    routes[("GET", "access/users")] = (200, b"[]")
    with pytest.raises(UnexpectedAnswer, match="expected data"):
        ensure_token(
            endpoint, fingerprint, root_user="root@pam", root_password="pw",
            user="kloudctl@pve", token_id="automation",
        )  # fmt: skip


def test_bootstrap_token_error_bodies_of_any_shape(fake_proxmox: tuple[str, str, Routes]) -> None:
    from kloudctl.proxmox.automation import token_works
    from kloudctl.proxmox.client import ApiTarget, ProxmoxError

    endpoint, fingerprint, routes = fake_proxmox
    target = ApiTarget(endpoint, fingerprint, "kloudctl@pve!automation", "secret")
    for body in (b"[1, 2]", b"not json", b'{"errors": ["a", "list"]}'):
        routes[("GET", "version")] = (500, body)
        with pytest.raises(ProxmoxError, match="GET /version") as info:
            token_works(target)
        assert info.value.status == 500


# --- the mail accounts store ----------------------------------------------------------------


@pytest.mark.parametrize(
    "out",
    ["", "Last login: yesterday\n", "[1, 2]\n", '{"ok": true, "result": ', "null\n"],
    ids=["empty", "a-banner", "a-list", "truncated", "null"],
)
def test_mail_host_answer_that_is_not_one(out: str) -> None:
    from kloudctl.mail.store import read_answer

    with pytest.raises(UnexpectedAnswer) as info:
        read_answer("root@mail.example", out)
    _names(info.value, "the accounts store at root@mail.example")


class _ScriptedTransport:
    """Stands in for an accounts store of another version on the mail host."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer

    def execute(self, request: dict[str, Any]) -> Any:
        return self.answer

    def describe(self) -> str:
        return "mail.example"


@pytest.mark.parametrize(
    ("call", "answer"),
    [
        (lambda s: s.mailbox_list(), {"ok": True, "result": {"a": 1}}),
        (lambda s: s.mailbox_list(), {"ok": True, "result": ["row"]}),
        (lambda s: s.mailbox_list(), {"ok": True}),
        (lambda s: s.dkim_list(), {"ok": True, "result": [{"domain": "a.fr", "selector": "k"}]}),
        (lambda s: s.mailbox_remove("a@b.fr"), {"ok": True, "result": []}),
        (lambda s: s.mailbox_quota("a@b.fr", 1 << 30), {"ok": True, "result": {"address": 1}}),
        (lambda s: s.domain_list(), ["ok", True]),
        (lambda s: s.domain_list(), {"ok": "yes", "result": []}),
    ],
)
def test_mail_store_answers_of_the_wrong_shape(call: Callable[[Any], Any], answer: Any) -> None:
    from kloudctl.mail.store import MailStore

    with pytest.raises(UnexpectedAnswer) as info:
        call(MailStore(_ScriptedTransport(answer)))
    _names(info.value, "the accounts store at mail.example")


def test_mail_list_through_the_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from kloudctl.mail.store import LocalTransport

    monkeypatch.setattr(
        LocalTransport, "execute", lambda self, request: {"ok": True, "result": {"rows": 1}}
    )
    code, _out, err = _cli(
        ["mail", "--db", str(tmp_path / "accounts.db"), "mailbox", "list"], capsys
    )
    _no_internal_error(err)
    assert code == 1 and "the accounts store at" in err and "(mailbox_list)" in err


# --- the Proxmox API simulator's run file ---------------------------------------------------


@pytest.mark.parametrize(
    "record",
    [
        "[]",
        '{"pid": "1"}',
        '{"pid": ' + "9" * 30 + ', "control_token": "t", "cabinets": []}',
        '{"pid": 1, "control_token": "t", "cabinets": [{"name": "sim01"}]}',
        '{"pid": 1, "con',
    ],
    ids=["a-list", "pid-a-string", "huge-pid", "cabinet-without-url", "truncated"],
)
def test_simulator_run_file_of_the_wrong_shape(tmp_path: Path, record: str) -> None:
    from kloudctl.sim import runner

    (tmp_path / "run.json").write_text(record)
    with pytest.raises(UnexpectedAnswer) as info:
        runner.status(tmp_path)
    _names(info.value, f"the simulator's run file {tmp_path / 'run.json'}")


def test_simulator_run_file_passwords_are_never_quoted(tmp_path: Path) -> None:
    from kloudctl.sim import runner

    record = {"pid": os.getpid(), "control_token": 5, "cabinets": [{"password": "hunter22"}]}
    (tmp_path / "run.json").write_text(json.dumps(record))
    with pytest.raises(UnexpectedAnswer) as info:
        runner.read_run(tmp_path)
    assert "hunter22" not in str(info.value)


def test_bootstrap_reads_the_simulators_run_file_checked(tmp_path: Path) -> None:
    from kloudctl.hosts.bootstrap import testbed_api

    run_file = tmp_path / "run.json"
    state = tmp_path / "testbed.json"
    state.write_text(json.dumps({"pairings": {"alpha": {"run_file": str(run_file)}}}))
    run_file.write_text(json.dumps({"cabinets": [{"name": "alpha", "password": "hunter22"}]}))
    with pytest.raises(UnexpectedAnswer) as info:
        testbed_api(state, "alpha")
    _names(info.value, f"the simulator's run file {run_file}")
    assert "hunter22" not in str(info.value)
    state.write_text('{"pairings": ["alpha"]}')  # not paired the way a testbed pairs
    assert testbed_api(state, "alpha") is None
