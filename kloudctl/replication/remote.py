"""Replication commands for a cabinet where kloudctl itself is installed, run there over SSH.

The cabinet holds its files, its local repository and its keys; the same kloudctl runs
there (`kloudctl replication deploy` installs it, and its systemd timers use it). The
controller runs `kloudctl replication <command> CABINET --json` on the cabinet and reads
back the JSON and the exit code: one implementation, two places.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kloudctl import ssh
from kloudctl.answers import parse_json
from kloudctl.errors import ExternalError
from kloudctl.replication.layout import Ssh


def tool_name(cabinet: str, subcommand: str) -> str:
    """How errors name the program answering: kloudctl itself, on the cabinet."""
    return f"kloudctl replication {subcommand} on {cabinet}"


def kloudctl_argv(remote: Ssh, cabinet: str, subcommand: str, extra: Sequence[str]) -> list[str]:
    return [
        "kloudctl",
        "--fleet",
        remote.fleet,
        "replication",
        subcommand,
        cabinet,
        "--state-dir",
        remote.state,
        "--json",
        *extra,
    ]


def on_cabinet(
    remote: Ssh,
    cabinet: str,
    subcommand: str,
    extra: Sequence[str] = (),
    timeout: float = 6 * 3600,
) -> tuple[int, Any]:
    """Run `kloudctl replication SUBCOMMAND CABINET --json EXTRA` on the cabinet; its exit
    code and JSON answer. ssh.Unreachable when the cabinet does not answer."""
    target = ssh.SshTarget(remote.address, remote.user, options=remote.options)
    proc = ssh.run(target, kloudctl_argv(remote, cabinet, subcommand, extra), timeout=timeout)
    tool = tool_name(cabinet, subcommand)
    if not proc.stdout.strip():
        raise ExternalError(
            f"{tool} exited {proc.returncode} without JSON: {ssh.last_line(proc.stderr)}"
        )
    return proc.returncode, parse_json(tool, proc.stdout)
