"""The one way kloudctl runs a command on another machine: OpenSSH's `ssh`.

Ansible configures hosts; for one-off requests (the mail accounts store on the mail host,
replication commands on a cabinet) kloudctl runs the same `ssh` client Ansible uses, with
`BatchMode=yes` (never a prompt), the caller's key and known_hosts. ssh's own failures
(connection refused, unknown host key, authentication) exit 255, which tells them apart
from the remote program's failure.
"""

from __future__ import annotations

import shlex
import subprocess
from dataclasses import dataclass

from kloudctl.errors import ExternalError, ToolMissing

#: ssh's exit code for its own failures.
SSH_FAILED = 255


class Unreachable(ExternalError):
    """The machine did not answer over SSH (or not in time)."""


@dataclass(frozen=True)
class SshTarget:
    """Where and how to reach a machine: `options` are ssh's own (-i, -o ...)."""

    host: str
    user: str | None = None
    port: int | None = None
    options: tuple[str, ...] = ()

    def describe(self) -> str:
        who = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port else ""
        return f"{who}{self.host}{port}"

    def argv(self, command: str) -> list[str]:
        """The ssh command line running `command` (one string for the remote shell)."""
        port = ["-p", str(self.port)] if self.port else []
        who = f"{self.user}@{self.host}" if self.user else self.host
        return ["ssh", *self.options, *port, "-o", "BatchMode=yes", "--", who, command]


def run(
    target: SshTarget, command: list[str] | str, *, stdin: str | None = None, timeout: float
) -> subprocess.CompletedProcess[str]:
    """Run `command` (a list is quoted for the remote shell) on `target`; the remote
    program's exit code is the caller's to read, ssh's own failure is Unreachable."""
    line = command if isinstance(command, str) else shlex.join(command)
    try:
        proc = subprocess.run(
            target.argv(line),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=None if stdin is not None else subprocess.DEVNULL,
        )
    except FileNotFoundError:
        raise ToolMissing("ssh is not installed: `apt-get install openssh-client`") from None
    except subprocess.TimeoutExpired:
        raise Unreachable(
            f"{target.describe()}: no answer over SSH within {timeout:.0f} s"
        ) from None
    if proc.returncode == SSH_FAILED:
        raise Unreachable(f"ssh {target.describe()} failed: {last_line(proc.stderr)}")
    return proc


def last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "(nothing printed)"
