#!/usr/bin/env python3
"""Prove that the Pulumi CLI of the tools step works with the pinned Python SDK.

Runs `pulumi version` (it must equal the installed `pulumi` package's version), then, through
the Automation API, an inline program with one dynamic-provider resource: `up`, then `destroy`.
The provider writes a marker file on create and removes it on delete, so the check sees that
the provider really ran in the CLI's dynamic-provider process, both ways.

Run it with a Python that has the pinned `pulumi` package, from anywhere:
    .venv/bin/python scripts/tools/check-pulumi.py
It puts the repository's .tools/bin first on PATH. It uses PULUMI_BACKEND_URL and
PULUMI_CONFIG_PASSPHRASE from the environment when set, else a throw-away local backend and
an empty passphrase; PULUMI_HOME is always a throw-away directory. Exit status 0 means it works.
"""

from __future__ import annotations

import importlib.metadata
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
TOOLS_BIN = ROOT / ".tools" / "bin"


def say(msg: str) -> None:
    print(f"check-pulumi: {msg}", flush=True)


def fail(msg: str) -> None:
    print(f"check-pulumi: FAILED: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def main(work: pathlib.Path) -> None:
    os.environ["PATH"] = f"{TOOLS_BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    # The dynamic-provider shim runs `python3 -m pulumi.dynamic`: make it this Python.
    os.environ["PATH"] = f"{pathlib.Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    os.environ.setdefault("PULUMI_SKIP_UPDATE_CHECK", "true")
    os.environ.setdefault("PULUMI_BACKEND_URL", (work / "state").as_uri())
    os.environ.setdefault("PULUMI_CONFIG_PASSPHRASE", "")
    backend = os.environ["PULUMI_BACKEND_URL"]
    if backend.startswith("file://"):  # the CLI wants the directory to exist
        pathlib.Path(backend.removeprefix("file://")).mkdir(parents=True, exist_ok=True)

    sdk_version = importlib.metadata.version("pulumi")
    try:
        cli = subprocess.run(["pulumi", "version"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        fail(f"`pulumi version` did not run: {e}")
    cli_version = cli.stdout.strip()
    say(f"pulumi version: {cli_version} (Python SDK {sdk_version})")
    if cli_version.lstrip("v") != sdk_version:
        fail(f"the CLI is {cli_version} but the Python SDK is {sdk_version}")

    import pulumi
    from pulumi import automation as auto
    from pulumi.dynamic import CreateResult, Resource, ResourceProvider

    class MarkerProvider(ResourceProvider):
        # Runs in the CLI's dynamic-provider process (pickled with dill into the state).
        def create(self, props):
            path = pathlib.Path(props["path"])
            path.write_text(props["message"])
            return CreateResult(id_=path.name, outs=dict(props))

        def delete(self, id, props):
            pathlib.Path(props["path"]).unlink(missing_ok=True)

    class Marker(Resource):
        message: pulumi.Output[str]

        def __init__(self, name: str, path: str, message: str) -> None:
            super().__init__(MarkerProvider(), name, {"path": path, "message": message})

    marker = work / "marker"

    def program() -> None:
        m = Marker("marker", str(marker), "hello from a dynamic provider")
        pulumi.export("message", m.message)

    pulumi_home = work / "home"
    pulumi_home.mkdir()
    stack = auto.create_or_select_stack(
        stack_name="check",
        project_name="check-pulumi",
        program=program,
        opts=auto.LocalWorkspaceOptions(
            pulumi_home=str(pulumi_home),
            project_settings=auto.ProjectSettings(name="check-pulumi", runtime="python"),
        ),
    )

    start = time.monotonic()
    up = stack.up(on_output=lambda line: None)
    say(
        f"up: {up.summary.result}, {up.summary.resource_changes} in {time.monotonic() - start:.1f}s"
    )
    if up.summary.result != "succeeded":
        fail(f"up ended {up.summary.result}")
    if up.outputs.get("message") is None or up.outputs["message"].value != (
        "hello from a dynamic provider"
    ):
        fail(f"unexpected outputs after up: {up.outputs}")
    if not marker.exists():
        fail("the dynamic provider's create did not run (no marker file)")

    start = time.monotonic()
    down = stack.destroy(on_output=lambda line: None)
    say(
        f"destroy: {down.summary.result}, {down.summary.resource_changes}"
        f" in {time.monotonic() - start:.1f}s"
    )
    if down.summary.result != "succeeded":
        fail(f"destroy ended {down.summary.result}")
    if marker.exists():
        fail("the dynamic provider's delete did not run (marker file still there)")
    stack.workspace.remove_stack("check")
    say("ok")


if __name__ == "__main__":
    work_dir = pathlib.Path(tempfile.mkdtemp(prefix="check-pulumi-"))
    try:
        main(work_dir)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
