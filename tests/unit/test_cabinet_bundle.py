"""kloudctl for cabinets (kloudctl.hosts.bundle): the tarball alone, on Debian's python3
isolated from every other library (-I -S, as the launcher the role installs runs it),
must offer the replication commands the cabinet's timers and cron use, and the federation
commands its mesh's sync timer and its operator use (with `cryptography`, carried)."""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

import kloudctl
from kloudctl.hosts import bundle

REPO = Path(__file__).resolve().parents[2]


def test_bundle_runs_the_replication_commands_alone(tmp_path: Path) -> None:
    built = bundle.build(tmp_path / "bundles")
    assert bundle.build(tmp_path / "bundles") == built  # same content, same file
    assert built.name == f"kloudctl-cabinet-{bundle.version_of(built)}.tar.gz"
    unpacked = tmp_path / "opt"
    with tarfile.open(built) as tar:
        names = tar.getnames()
        tar.extractall(unpacked, filter="data")
    assert "kloudctl/replication/ops.py" in names
    assert not any("__pycache__" in n or n.startswith("pulumi") for n in names)
    launcher = (
        f"import sys; sys.path.insert(0, {str(unpacked)!r}); sys.argv[0] = 'kloudctl'; "
        "from kloudctl.cli import main; main()"
    )
    for args in (
        ["--help"],
        ["replication", "check", "--help"],
        ["validate"],
        ["federation", "sync", "--help"],
    ):
        done = subprocess.run(
            ["/usr/bin/python3", "-I", "-S", "-c", launcher, "--fleet", str(REPO), *args],
            capture_output=True,
            text=True,
            cwd=tmp_path,
        )
        assert done.returncode == 0, done.stderr
    listed = subprocess.run(
        ["/usr/bin/python3", "-I", "-S", "-c", launcher, "--help"],
        capture_output=True, text=True, cwd=tmp_path,
    ).stdout  # fmt: skip
    assert "replication" in listed
    # the bundle says it is one: groups whose libraries it leaves out are left out quietly
    assert f"kloudctl/{kloudctl.CABINET_MARKER}" in names
    commands = {line.split()[0] for line in listed.split("Commands:")[1].splitlines() if line}
    assert "mail" not in commands and "sim" not in commands  # argon2, aiohttp: not carried
    # the Proxmox API client is carried (the failover backup timer): what reads it loads
    assert {"federation", "validate", "status"} <= commands
    # the controller's own groups are left out even where their libraries would load
    assert not commands & {"tenant", "tenants", "testbed"}
    refused = subprocess.run(
        ["/usr/bin/python3", "-I", "-S", "-c", launcher, "testbed", "list"],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert refused.returncode == 2 and "No such command 'testbed'" in refused.stderr


#: Runs kloudctl's CLI with one library made unimportable (as if it were not installed).
_WITHOUT_ARGON2 = """
import sys
class Missing:
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] == "argon2":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Missing())
sys.argv[0] = "kloudctl"
from kloudctl.cli import main
main()
"""


def test_on_the_controller_a_group_that_cannot_be_imported_is_an_error(tmp_path: Path) -> None:
    from kloudctl.cli import ON_CABINET, UNLOADABLE

    assert not ON_CABINET and not UNLOADABLE  # the source tree is no cabinet bundle

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", _WITHOUT_ARGON2, "--fleet", str(REPO), *args],
            capture_output=True, text=True, cwd=tmp_path,
        )  # fmt: skip

    # Groups load lazily: a run of another group does not import `mail` and is not held up.
    assert run("validate").returncode == 0
    for args in (["mail", "list"], ["mail", "--help"]):
        ran = run(*args)
        assert ran.returncode == 1, (args, ran.stderr)
        assert "cannot load the commands `mail` (No module named 'argon2')" in ran.stderr
        assert "Traceback" not in ran.stderr and "internal error" not in ran.stderr
    assert "mail" in run("--help").stdout  # listed, not silently missing


def test_the_bundles_replication_agent_answers_alone(tmp_path: Path) -> None:
    """The agent as its launcher runs it (roles/replication_source/templates/
    kloudctl-replication-agent.j2): the bundle alone, isolated; its schema travels with it."""
    import json

    from kloudctl.replication import agent_interface as ai
    from kloudctl.replication.layout import Layout
    from kloudctl.testbed.fleets import make_fleet

    unpacked = tmp_path / "opt"
    with tarfile.open(bundle.build(tmp_path / "bundles")) as tar:
        assert "kloudctl/replication/agent.schema.json" in tar.getnames()
        tar.extractall(unpacked, filter="data")
    launcher = (
        f"import sys; sys.path.insert(0, {str(unpacked)!r}); "
        "from kloudctl.replication.agent import main; sys.exit(main())"
    )

    def agent(request: object, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["/usr/bin/python3", "-I", "-S", "-c", launcher, *args],
            input=json.dumps(request), capture_output=True, text=True, cwd=tmp_path,
        )  # fmt: skip

    assert json.loads(agent(None, "--schema").stdout) == ai.schema()
    root = make_fleet(tmp_path / "fleet", ["alpha", "beta"], commands=False)
    state = tmp_path / "state"
    Layout(state).write_endpoints({"cabinets": {}})
    request = ai.Request("alpha", str(root), str(state), ai.StatusOptions())
    done = agent(request.as_dict())
    assert done.returncode == 1, done.stderr  # nothing replicated yet: rows with errors
    answer = ai.read_answer("agent", request, json.loads(done.stdout))
    [row] = answer.result
    assert row["cabinet"] == "alpha" and row["peer"] == "beta" and row["local_error"]
    done = agent({**request.as_dict(), "command": "erase"})
    assert done.returncode == 2 and json.loads(done.stdout)["error"]["code"] == ai.UNKNOWN_COMMAND
