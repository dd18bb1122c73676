"""The single exception tree of kloudctl's core.

The CLI maps each class to an exit code in one place (`kloudctl.cli.boundary`); the core
never prints or exits. Messages never carry secret values.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Problem:
    """One input error, located in a file: `file:line:col field: message`."""

    file: str
    line: int
    column: int
    field: str
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.line:
            where += f":{self.line}:{self.column}"
        field = f"{self.field}:" if self.field else ""
        return " ".join(part for part in (where, field, self.message) if part)

    def as_dict(self) -> dict[str, str | int]:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "field": self.field,
            "message": self.message,
        }


class KloudError(Exception):
    """Anything kloudctl reports as a failure (exit 1)."""

    exit_code = 1


class InputError(KloudError):
    """Invalid input (a declaration, an argument): exit 2, nothing was changed."""

    exit_code = 2

    def __init__(self, problems: list[Problem] | str) -> None:
        if isinstance(problems, str):
            problems = [Problem("", 0, 0, "", problems)]
        self.problems = sorted(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class NotFound(InputError):
    """A named object (cabinet, tenant, mailbox...) does not exist."""


class AdmissionRefused(InputError):
    """A plan exceeds the cabinet's capacity or power budget; nothing was applied."""


class ExternalError(KloudError):
    """A component outside kloudctl (Proxmox API, Pulumi, Ansible, restic) failed."""


class PartialFailure(KloudError):
    """Some targets succeeded, others could not be reached (exit 3)."""

    exit_code = 3


class ResticError(ExternalError):
    """restic ended with a failure. `code` is its exit code, `message` its own words."""

    code: int = 1

    def __init__(self, command: str, message: str, code: int | None = None) -> None:
        if code is not None:
            self.code = code
        self.command = command
        self.message = message
        super().__init__(f"restic {command} failed (exit {self.code}): {message}")


class RepositoryMissing(ResticError):
    """The repository does not exist (restic exit 10)."""

    code = 10


class RepositoryLocked(ResticError):
    """The repository stayed locked through every retry (restic exit 11)."""

    code = 11


class WrongPassword(ResticError):
    """No key of the repository opens with the password (restic exit 12); never retried."""

    code = 12


class ResticCancelled(ResticError):
    """restic was interrupted (exit 130)."""

    code = 130


class ResticTimeout(ResticError):
    """restic did not finish in time (it retries an unreachable server for many minutes)."""

    code = -1


class ToolMissing(ExternalError):
    """A tool kloudctl needs (restic, rest-server) is not on PATH; `make tools` builds it."""


class StackBusy(ExternalError):
    """Another run (kloudctl or pulumi) is updating the same stack right now."""


class ApplyFailed(ExternalError):
    """The engine ran, and some resources failed: their messages say why."""

    def __init__(self, message: str, failures: list[str] | None = None) -> None:
        super().__init__(message)
        self.failures = failures or []


class Forbidden(KloudError):
    """The acting person may not do this (e.g. a domain administrator on another domain)."""


def failed_for(what: str, failed: list[str], total: int) -> KloudError:
    """`what` failed for the `failed` of `total` targets: exit 3 (PartialFailure) when the
    others were handled, exit 1 when none was (nothing partial about that)."""
    message = f"{what} failed for: {', '.join(failed)}"
    return PartialFailure(message) if len(failed) < total else KloudError(message)
