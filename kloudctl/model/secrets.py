"""Secret references: where one may lead, and the one reader of what it names.

A cabinet file never holds a secret, only a reference to one:

- `vault:PATH#KEY`: the key KEY of an Ansible Vault file (opened with the password in the
  file named by ANSIBLE_VAULT_PASSWORD_FILE, which the operator sets, never a cabinet file);
- `file:PATH`: the content of a file, without its surrounding blanks;
- `env:NAME`: an environment variable whose name starts with `KLOUDCTL_SECRET_`. Any other
  variable is refused: a cabinet file must not be able to send a CI job's token or the
  operator's cloud keys as a Proxmox token to the endpoint it declares.

PATH is relative to the fleet folder and must lead into the fleet's secrets folder
(`secrets/` beside `cabinets/`), or into the one more folder `fleet.yaml` may allow
(`secrets: {extra_folder: ...}`). `..` and absolute paths are refused as written; symbolic
links are followed with `os.path.realpath`, which reads links, never a file's content, and
the real path must stay inside. Validation (`reference_problems`) and use (`resolve`) both
call `confine`, so what `kloudctl validate` accepts is exactly what may be read, and a link
changed since is caught when the secret is read.
"""

from __future__ import annotations

import functools
import os
import stat
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import BaseModel

from kloudctl import files
from kloudctl.errors import InputError, KloudError, Problem
from kloudctl.model.types import SecretMarker
from kloudctl.model.yamlsource import Located, PathKey

SECRETS_DIR = "secrets"
ENV_PREFIX = "KLOUDCTL_SECRET_"
# A token or a vault file is a few KB; a larger file is a mistake (a disk image, a log).
MAX_SECRET_BYTES = 1024 * 1024


class EscapingReference(InputError):
    """A reference that leads outside the secrets folders (exit 2, nothing read)."""


@dataclass(frozen=True)
class SecretFolders:
    """Where references may lead: the fleet's secrets folder (as named: it must be a real
    folder, a link in its place is not followed), and the one more real folder allowed by
    `fleet.yaml`, if any."""

    root: Path  # the fleet folder, resolved
    extra: Path | None = None  # a real path (links resolved)

    @property
    def main(self) -> Path:
        return self.root / SECRETS_DIR

    def described(self) -> str:
        if self.extra is None:
            return f"the secrets folder ({SECRETS_DIR}/)"
        return f"the secrets folders ({SECRETS_DIR}/ and {self.extra})"

    def holds(self, real: Path) -> bool:
        return any(real.is_relative_to(f) for f in (self.main, self.extra) if f is not None)


def parse(ref: str) -> tuple[str, str, str]:
    """(kind, path or variable, vault key) of a reference of the form the schema accepts."""
    kind, _, rest = ref.partition(":")
    path, _, key = rest.partition("#") if kind == "vault" else (rest, "", "")
    return kind, path, key


def confine(ref: str, folders: SecretFolders) -> Path | None:
    """The real path a `file:` or `vault:` reference leads to, None for `env:`; raises
    EscapingReference when it leads elsewhere. Reads links, never a file's content."""
    kind, path, _ = parse(ref)
    inside = f"a secret reference names a file inside {folders.described()}"
    if kind == "env":
        if not path.startswith(ENV_PREFIX) or path == ENV_PREFIX:
            raise EscapingReference(
                f"{ref}: only environment variables named {ENV_PREFIX}... may hold secrets"
            )
        return None
    written = PurePosixPath(path)
    if written.is_absolute():
        raise EscapingReference(f"{ref}: an absolute path is not allowed: {inside}")
    if ".." in written.parts:
        raise EscapingReference(f"{ref}: '..' is not allowed: {inside}")
    lexical = folders.root / written
    real = Path(os.path.realpath(lexical))
    if folders.holds(real):
        return real
    if real != Path(os.path.normpath(lexical)):
        raise EscapingReference(
            f"{ref} leads through a symbolic link to {real}, outside {folders.described()}"
        )
    raise EscapingReference(f"{ref} is outside {folders.described()}")


def _models_in(annotation: Any) -> Iterator[type[BaseModel]]:
    """The model classes an annotation may hold (`list[Vm]`, `Mail | None`...)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for arg in typing.get_args(annotation):
        yield from _models_in(arg)


@functools.cache
def _may_hold_secrets(model: type[BaseModel]) -> bool:
    # Found once per class: validating a fleet then walks only where references can be.
    return any(
        any(isinstance(m, SecretMarker) for m in field.metadata)
        or any(_may_hold_secrets(inner) for inner in _models_in(field.annotation))
        for field in model.model_fields.values()
    )


def secret_fields(model: BaseModel, path: PathKey = ()) -> Iterator[tuple[PathKey, str]]:
    """Every secret reference of `model` with its path: the fields typed `SecretRef`."""
    if not _may_hold_secrets(type(model)):
        return
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        here = (*path, name)
        if isinstance(value, BaseModel):
            yield from secret_fields(value, here)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, BaseModel):
                    yield from secret_fields(item, (*here, index))
        elif isinstance(value, str) and any(isinstance(m, SecretMarker) for m in field.metadata):
            yield here, value


def reference_problems(model: BaseModel, located: Located, folders: SecretFolders) -> list[Problem]:
    """A located problem for each reference of a document that leads outside the folders."""
    problems = []
    for path, ref in secret_fields(model):
        try:
            confine(ref, folders)
        except EscapingReference as exc:
            problems.append(located.problem(path, exc.problems[0].message))
    return problems


def extra_folder(root: Path, written: str) -> tuple[Path | None, str | None]:
    """The real path of `fleet.yaml`'s `secrets.extra_folder` (relative to the fleet folder
    or absolute), or why it cannot be one."""
    if "\0" in written:
        return None, "a path cannot hold a NUL character"
    real = Path(os.path.realpath(root / written))
    try:
        mode = os.stat(real).st_mode
    except OSError as exc:
        return None, f"{written}: cannot be used as a secrets folder ({exc.strerror})"
    if not stat.S_ISDIR(mode):
        return None, f"{written}: expected a folder"
    if root.is_relative_to(real):
        # `/`, the operator's home...: every file of the fleet and beside it would be reachable
        return None, (
            f"{written} holds the fleet folder itself: name a folder that holds only secrets"
        )
    return real, None


def resolve(ref: str, folders: SecretFolders, where: tuple[Located, PathKey] | None = None) -> str:
    """The secret `ref` names, read only once `confine` let it through the fleet's secret
    `folders`. The value is returned, never logged; `where` locates the reference in its
    cabinet file."""
    try:
        real = confine(ref, folders)
    except EscapingReference as exc:
        message = exc.problems[0].message
        raise EscapingReference(
            [where[0].problem(where[1], message)] if where else message
        ) from None
    kind, name, key = parse(ref)
    if real is None:
        value = os.environ.get(name)
        if not value:
            raise InputError(f"secret reference {ref}: environment variable {name} is not set")
        return value
    if kind == "vault":
        return _vault_secret(ref, real, key)
    try:
        return _read_file(ref, real).decode().strip()
    except UnicodeDecodeError:
        raise InputError(f"secret reference {ref}: {real} is not text") from None


def _read_file(ref: str, real: Path) -> bytes:
    # O_NOFOLLOW: `confine` resolved every link; one planted since is refused, not followed.
    # O_NONBLOCK: a named pipe put there answers at once instead of blocking the run.
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise InputError(f"secret reference {ref}: cannot read {real}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        mode = os.fstat(handle.fileno()).st_mode
        if not stat.S_ISREG(mode):
            raise InputError(f"secret reference {ref}: {real} is not a regular file")
        data = handle.read(MAX_SECRET_BYTES + 1)
    if len(data) > MAX_SECRET_BYTES:
        raise InputError(f"secret reference {ref}: {real} is larger than 1MiB: not a secret")
    return data


def _vault_secret(ref: str, real: Path, key: str) -> str:
    remedy = "set ANSIBLE_VAULT_PASSWORD_FILE to the file holding the vault's password"
    password_file = os.environ.get("ANSIBLE_VAULT_PASSWORD_FILE")
    if not password_file:
        raise InputError(
            f"secret reference {ref}: set ANSIBLE_VAULT_PASSWORD_FILE to open the vault"
        )
    import yaml
    from ansible.constants import DEFAULT_VAULT_ID_MATCH
    from ansible.parsing.vault import VaultLib, VaultSecret

    # The password file is the operator's (an environment variable), not a cabinet file's.
    path = files.existing_store(password_file, "ANSIBLE_VAULT_PASSWORD_FILE", remedy)
    try:
        secret = VaultSecret(path.read_bytes().strip())
    except OSError as exc:
        raise InputError(f"ANSIBLE_VAULT_PASSWORD_FILE {path}: {exc.strerror}: {remedy}") from None
    vault = VaultLib([(DEFAULT_VAULT_ID_MATCH, secret)])
    sealed = _read_file(ref, real)
    try:
        data: Any = yaml.safe_load(vault.decrypt(sealed))
    except Exception as exc:
        raise KloudError(
            f"secret reference {ref}: cannot open the vault ({type(exc).__name__})"
        ) from None
    if not isinstance(data, dict) or key not in data:
        raise InputError(f"secret reference {ref}: no key {key!r} in {real}")
    return str(data[key])
