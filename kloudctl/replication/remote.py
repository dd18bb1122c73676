"""Replication commands for a cabinet where kloudctl itself is installed, run there over SSH.

The cabinet holds its files, its local repository and its keys; the same kloudctl runs
there (`kloudctl replication deploy` installs it, and its systemd timers use it). The
controller runs `kloudctl replication <command> CABINET --json` on the cabinet and reads
back the JSON and the exit code: one implementation, two places.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from collections.abc import Sequence
from typing import Any

from kloudctl.errors import ExternalError
from kloudctl.replication.layout import Ssh

#: ssh's own failures (connection refused, host key, auth) exit 255.
SSH_FAILED = 255


class CabinetUnreachable(ExternalError):
    """The cabinet did not answer over SSH."""


def ssh_argv(ssh: Ssh, command: list[str]) -> list[str]:
    """The ssh command line that runs `command` (quoted for the remote shell) on the cabinet."""
    return [
        "ssh",
        *ssh.options,
        "-o",
        "BatchMode=yes",
        f"{ssh.user}@{ssh.address}",
        shlex.join(command),
    ]


def kloudctl_argv(ssh: Ssh, cabinet: str, subcommand: str, extra: Sequence[str]) -> list[str]:
    return [
        "kloudctl",
        "--fleet",
        ssh.fleet,
        "replication",
        subcommand,
        cabinet,
        "--state-dir",
        ssh.state,
        "--json",
        *extra,
    ]


def on_cabinet(
    ssh: Ssh,
    cabinet: str,
    subcommand: str,
    extra: Sequence[str] = (),
    timeout: float = 6 * 3600,
) -> tuple[int, Any]:
    """Run `kloudctl replication SUBCOMMAND CABINET --json EXTRA` on the cabinet."""
    argv = ssh_argv(ssh, kloudctl_argv(ssh, cabinet, subcommand, extra))
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise CabinetUnreachable(f"{cabinet}: no answer over SSH within {timeout:.0f} s") from None
    if proc.returncode == SSH_FAILED:
        raise CabinetUnreachable(
            f"{cabinet}: ssh {ssh.user}@{ssh.address} failed: {_tail(proc.stderr)}"
        )
    try:
        return proc.returncode, json.loads(proc.stdout)
    except ValueError:
        raise ExternalError(
            f"{cabinet}: kloudctl on the cabinet exited {proc.returncode} without JSON: "
            f"{_tail(proc.stderr or proc.stdout)}"
        ) from None


def _tail(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "(nothing printed)"
