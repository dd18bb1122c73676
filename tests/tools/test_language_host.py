"""kloudctl's own Pulumi language host for Python (scripts/tools/pulumi-language-python).

Everything here is real: the Pulumi CLI and language host built by the tools step, the pinned
Python SDK in the project's virtualenv, the dynamic-provider plugin, and a local file backend in
a temporary directory. Each test drives a tiny `runtime: python` project with plain `pulumi`
commands, as a user (or kloudctl) would, with no Automation API in between.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TOOLS_BIN = REPO / ".tools" / "bin"
PULUMI = TOOLS_BIN / "pulumi"

pytestmark = [
    pytest.mark.pulumi,
    pytest.mark.slow,
    pytest.mark.skipif(not PULUMI.exists(), reason="no .tools/bin/pulumi: run `make tools`"),
]

# A dynamic resource writing a marker file on create and removing it on delete, a config value,
# a secret config value and stack outputs.
PROGRAM = """\
import pathlib

import pulumi
from pulumi.dynamic import CreateResult, Resource, ResourceProvider


class MarkerProvider(ResourceProvider):
    def create(self, props):
        pathlib.Path(props["path"]).write_text(props["content"])
        return CreateResult(id_=props["path"], outs=dict(props))

    def delete(self, id, props):
        pathlib.Path(id).unlink(missing_ok=True)


class Marker(Resource):
    path: pulumi.Output[str]

    def __init__(self, name, path, content):
        super().__init__(MarkerProvider(), name, {"path": path, "content": content})


config = pulumi.Config()
token = config.require_secret("token")
marker = Marker("marker", config.require("marker"), "made by the language host test")
pulumi.export("marker", marker.path)
pulumi.export("greeting", "hello " + config.require("who"))
pulumi.export("token_length", token.apply(len))
print("the program ran")
"""


def make_project(path: Path, program: str, virtualenv: str) -> Path:
    """A project whose runtime stanza is the one pulumi/Pulumi.yaml uses."""
    path.mkdir(parents=True)
    options = [f"    virtualenv: {virtualenv}", "    toolchain: pip"]
    stanza = ["runtime:", "  name: python", "  options:", *options]
    (path / "Pulumi.yaml").write_text("\n".join([f"name: {path.name}", *stanza, ""]))
    (path / "__main__.py").write_text(program)
    return path


@pytest.fixture
def pulumi(tmp_path: Path):
    """Run the real `pulumi` in a project directory, with a throw-away home and file backend."""
    state = tmp_path / "state"
    state.mkdir()
    env = {
        **os.environ,
        "PATH": f"{TOOLS_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PULUMI_HOME": str(tmp_path / "pulumi-home"),
        "PULUMI_BACKEND_URL": state.as_uri(),
        "PULUMI_CONFIG_PASSPHRASE": secrets.token_hex(16),
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        "NO_COLOR": "1",
    }
    for name in ("PULUMI_CONFIG_PASSPHRASE_FILE", "PULUMI_ACCESS_TOKEN", "PULUMI_DEBUG_LANGUAGES"):
        env.pop(name, None)

    def run(project: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(PULUMI), "--non-interactive", *args],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if check and proc.returncode != 0:
            pytest.fail(
                f"pulumi {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}"
            )
        return proc

    return run


def test_plain_pulumi_runs_a_python_project(tmp_path: Path, pulumi) -> None:
    # The virtualenv running the tests (the project's .venv), named relative to the project.
    project = tmp_path / "langhost-ok"
    make_project(project, PROGRAM, os.path.relpath(sys.prefix, project))
    marker = tmp_path / "marker"
    token = secrets.token_urlsafe(12)
    pulumi(project, "stack", "init", "test")
    pulumi(project, "config", "set", "who", "world")
    pulumi(project, "config", "set", "marker", str(marker))
    pulumi(project, "config", "set", "--secret", "token", token)

    up = pulumi(project, "up", "--yes", "--skip-preview")
    assert "the program ran" in up.stdout
    # The CLI found our host next to itself, not merely on PATH.
    assert "from $PATH" not in up.stdout + up.stderr
    assert marker.read_text() == "made by the language host test"

    shown = json.loads(pulumi(project, "stack", "output", "--json").stdout)
    assert shown == {"marker": str(marker), "greeting": "hello world", "token_length": "[secret]"}
    revealed = json.loads(pulumi(project, "stack", "output", "--json", "--show-secrets").stdout)
    assert revealed["token_length"] == len(token)
    state_files = "".join(p.read_text() for p in (tmp_path / "state").rglob("*.json"))
    assert token not in state_files

    preview = pulumi(project, "preview", "--expect-no-changes")
    assert "2 unchanged" in preview.stdout

    pulumi(project, "destroy", "--yes")
    assert not marker.exists()


def test_a_failing_program_shows_its_python_error_once(tmp_path: Path, pulumi) -> None:
    message = f"kaboom-{secrets.token_hex(4)}"
    program = f"import pulumi\n\nraise RuntimeError({message!r})\n"
    project = make_project(tmp_path / "langhost-fail", program, sys.prefix)
    pulumi(project, "stack", "init", "test")

    up = pulumi(project, "up", "--yes", "--skip-preview", check=False)
    out = up.stdout + up.stderr
    assert up.returncode != 0
    assert "Program failed with an unhandled exception" in out
    # Once: the traceback quotes the raising line, then the error itself.
    assert out.count(f"RuntimeError: {message}") == 1, out
    # The host reported a bail: no generic exit-code error on top, and no Go crash.
    assert "exited with code" not in out
    assert "goroutine" not in out and "panic:" not in out


def test_a_missing_virtualenv_is_reported_by_name(tmp_path: Path, pulumi) -> None:
    project = make_project(tmp_path / "langhost-novenv", PROGRAM, "no-such-venv")
    pulumi(project, "stack", "init", "test")

    preview = pulumi(project, "preview", check=False)
    out = preview.stdout + preview.stderr
    assert preview.returncode != 0
    # A relative virtualenv is resolved against the project root.
    assert f"{project / 'no-such-venv'}/bin/python does not exist" in out
    assert "goroutine" not in out and "panic:" not in out
