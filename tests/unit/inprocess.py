"""The real CLI, in this process: kloudctl's boundary (exit codes, messages) under click's
CliRunner isolation. Hundreds of cases in seconds, where a subprocess each would take
minutes; tests/unit/test_cli.py keeps the subprocess checks of the installed entry point."""

from __future__ import annotations

import hashlib
import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner

from kloudctl.cli import cli
from kloudctl.cli.boundary import run_with_boundary

#: Settings a developer's shell may carry that would point a test at their own files.
SETTINGS = (
    "KLOUDCTL_FLEET",
    "KLOUDCTL_DEBUG",
    "KLOUDCTL_NOW",
    "KLOUDCTL_MAIL_DB",
    "KLOUDCTL_MAIL_HOST",
    "KLOUDCTL_MAIL_ADMIN",
    "KLOUDCTL_MAIL_SSH_KEY",
    "KLOUDCTL_MAIL_KNOWN_HOSTS",
    "KLOUDCTL_REPLICATION_STATE",
    "KLOUDCTL_FEDERATION_STATE",
    "KLOUDCTL_SIM_DIR",
    "KLOUDCTL_PROXMOX_TARGETS",
    "KLOUDCTL_PULUMI_STATE",
    "ANSIBLE_VAULT_PASSWORD_FILE",
)


@dataclass
class Ran:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def flat(self) -> str:
        """Output with runs of spaces and line breaks as one space (tables wrap)."""
        return " ".join(self.output.split())


def invoke(*args: str, stdin: str | bytes | None = None, env: dict[str, str] | None = None) -> Ran:
    """Run `kloudctl ARGS` as the entry point would, returning its exit code and output."""
    settings: dict[str, str | None] = dict.fromkeys(SETTINGS)
    settings.update(COLUMNS="200", **(env or {}))
    with CliRunner().isolation(input=stdin, env=settings) as (out, err, _):
        try:
            run_with_boundary(cli, list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
        sys.stdout.flush()
        sys.stderr.flush()
        return Ran(
            code, out.getvalue().decode(errors="replace"), err.getvalue().decode(errors="replace")
        )


def tree(root: Path) -> dict[str, tuple[object, ...]]:
    """What is under `root`: each entry's kind, mode and content (hash), link targets."""
    found: dict[str, tuple[object, ...]] = {}
    for folder, dirs, names in os.walk(root):
        for name in dirs + names:
            path = Path(folder) / name
            info = os.lstat(path)
            if stat.S_ISREG(info.st_mode):
                content: object = hashlib.sha256(path.read_bytes()).hexdigest()
            elif stat.S_ISLNK(info.st_mode):
                content = os.readlink(path)
            else:
                content = None
            found[str(path.relative_to(root))] = (stat.S_IFMT(info.st_mode), info.st_mode, content)
    return found
