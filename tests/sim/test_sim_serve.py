"""The simulator's process entry point, `python -m kloudctl.sim.serve`: typed options that
round-trip through its command line, and the process itself (serve, run file, SIGTERM)."""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kloudctl.errors import ExternalError, InputError
from kloudctl.sim import runner
from kloudctl.sim.serve import ServeOptions


def test_options_round_trip_through_the_command_line() -> None:
    for options in (
        ServeOptions(),
        ServeOptions(
            cabinets=("brieux", "saint-aubin"),
            count=2,
            fleet_dir=Path("/srv/fleet"),
            state_dir=Path("/tmp/sim state"),
            ephemeral=True,
            task_seconds=0.05,
            base_address="127.0.0.40",
            port=0,
            quiet=True,
        ),
    ):
        assert ServeOptions.from_argv(options.argv()) == options


def test_options_refuse_out_of_range_values(capsys: pytest.CaptureFixture[str]) -> None:
    for bad in ({"count": 251}, {"port": 70000}, {"task_seconds": math.nan}):
        with pytest.raises(InputError):
            ServeOptions(**bad)  # type: ignore[arg-type]
    with pytest.raises(SystemExit) as exited:
        ServeOptions.from_argv(["--count", "-1"])
    assert exited.value.code == 2 and "--count" in capsys.readouterr().err


def test_the_background_start_runs_the_entry_point_not_the_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[list[str]] = []

    class Exited:
        def __init__(self, cmd: list[str], **kw: object) -> None:
            started.append(cmd)

        def poll(self) -> int:
            return 1

    monkeypatch.setattr(runner.subprocess, "Popen", Exited)
    options = ServeOptions(cabinets=("brieux",), state_dir=tmp_path, port=0)
    with pytest.raises(ExternalError, match="did not start"):
        runner.start_background(options)
    [cmd] = started
    assert cmd[:3] == [sys.executable, "-m", "kloudctl.sim.serve"]
    assert ServeOptions.from_argv(cmd[3:]) == ServeOptions(
        cabinets=("brieux",), state_dir=tmp_path, port=0, quiet=True
    )


def _serve(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "kloudctl.sim.serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_the_process_serves_until_sigterm(tmp_path: Path) -> None:
    proc = _serve("--count", "1", "--port", "0", "--base-address", "127.0.0.47", "--ephemeral",
                  "--quiet", "--task-seconds", "0", "--state-dir", str(tmp_path))  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while runner.read_run(tmp_path) is None:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.1)
        run = json.loads((tmp_path / "run.json").read_text())
        assert run["pid"] == proc.pid and [c["name"] for c in run["cabinets"]] == ["sim01"]
        assert (tmp_path / "run.json").stat().st_mode & 0o777 == 0o600
        assert runner.status(tmp_path)["cabinets"][0]["answering"]
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert out == "" and not (tmp_path / "run.json").exists()


def test_the_process_says_why_it_cannot_serve_as_the_cli_does(tmp_path: Path) -> None:
    args = ["--port", "0", "--base-address", "127.0.0.48", "--ephemeral", "--state-dir"]
    with socket.socket() as busy:
        busy.bind(("127.0.0.48", 0))
        busy.listen()
        args[1] = str(busy.getsockname()[1])
        proc = _serve(*args, str(tmp_path / "module"))
        _, err = proc.communicate(timeout=60)
        cli = subprocess.run(
            [sys.executable, "-m", "kloudctl", "sim", "serve", *args, str(tmp_path / "cli")],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "COLUMNS": "500"},
        )
    assert proc.returncode == cli.returncode == 1
    assert err.startswith(f"error: cannot listen on 127.0.0.48:{args[1]}: ")
    assert "address already in use" in err and err == cli.stderr
