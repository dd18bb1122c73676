"""The accounts store, reached through a transport: a local file (tests, the demo) or the
mail host over SSH (fabric). Either way the same code (`accounts_db`) runs next to the
database, one transaction per operation, so adding a mailbox needs no playbook run.

Passwords are hashed here, on the operator's side, into Dovecot's `{ARGON2ID}` scheme, and
only the hash travels (on stdin, never in a command line).
"""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

from argon2 import PasswordHasher, Type

from kloudctl.errors import (
    AdmissionRefused,
    ExternalError,
    Forbidden,
    InputError,
    KloudError,
    NotFound,
)
from kloudctl.mail import accounts_db
from kloudctl.mail.accounts_db import DEFAULT_DB, DEFAULT_DKIM_DIR, OpError

# Argon2id at OWASP's minimum (19 MiB, 2 passes, 1 lane). One lane because Dovecot 2.3
# verifies through libsodium, which only handles p=1.
_HASHER = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1, hash_len=32, type=Type.ID)
MIN_PASSWORD = 10


def schema_text() -> str:
    return resources.files("kloudctl.mail").joinpath("schema.sql").read_text()


def hash_password(password: str) -> str:
    """Dovecot-ready hash: `{ARGON2ID}$argon2id$v=19$m=19456,t=2,p=1$...`."""
    if len(password) < MIN_PASSWORD:
        raise InputError(f"password: at least {MIN_PASSWORD} characters are required")
    if password != password.strip() or "\n" in password:
        raise InputError("password: no leading/trailing spaces or line breaks")
    return "{ARGON2ID}" + _HASHER.hash(password)


def verify_password(stored: str, password: str) -> bool:
    try:
        return _HASHER.verify(stored.removeprefix("{ARGON2ID}"), password)
    except Exception:
        return False


class Transport(Protocol):
    def execute(self, request: dict[str, Any]) -> dict[str, Any]: ...

    def describe(self) -> str: ...


@dataclass
class LocalTransport:
    """The database is a file on this machine (tests, demo, or kloudctl run on the host)."""

    db: Path
    dkim_dir: Path | None = None

    def execute(self, request: dict[str, Any]) -> dict[str, Any]:
        dkim_dir = self.dkim_dir or self.db.parent / "dkim"
        request = {**request, "db": str(self.db), "dkim_dir": str(dkim_dir)}
        return accounts_db.execute(request, schema_text())

    def describe(self) -> str:
        return str(self.db)


@dataclass
class SshTransport:
    """The database lives on the mail host: ship `accounts_db` to `python3 -` over SSH."""

    host: str
    user: str | None = None
    port: int | None = None
    db: str = DEFAULT_DB
    dkim_dir: str = DEFAULT_DKIM_DIR
    sudo: bool = False
    key_filename: str | None = None
    #: Pin host keys from this file (unknown hosts refused); default: ~/.ssh/known_hosts
    #: as SSH itself would, through fabric.
    known_hosts: str | None = None
    connect_kwargs: dict[str, Any] = field(default_factory=dict)

    def execute(self, request: dict[str, Any]) -> dict[str, Any]:
        from fabric import Connection  # imported late: slow, and only needed here

        request = {**request, "db": self.db, "dkim_dir": self.dkim_dir}
        source = resources.files("kloudctl.mail").joinpath("accounts_db.py").read_text()
        script = f"{source}\n_remote_main({json.dumps(request)!r}, {schema_text()!r})\n"
        command = ("sudo -n " if self.sudo else "") + "python3 -"
        kwargs = dict(self.connect_kwargs)
        if self.key_filename:
            kwargs.update(key_filename=self.key_filename, look_for_keys=False, allow_agent=False)
        try:
            conn = Connection(self.host, user=self.user, port=self.port, connect_kwargs=kwargs)
            if self.known_hosts:
                from paramiko import RejectPolicy

                conn.client.load_host_keys(self.known_hosts)
                conn.client.set_missing_host_key_policy(RejectPolicy())
            with conn:
                # The script goes in one write on the channel's stdin (invoke's in_stream
                # forwards it byte by byte with a pause: minutes for 30 kB).
                conn.open()
                stdin, stdout, stderr = conn.client.exec_command(command, timeout=300)
                stdin.write(script.encode())
                stdin.flush()
                stdin.channel.shutdown_write()
                out, err = stdout.read().decode(), stderr.read().decode()
                exited = stdout.channel.recv_exit_status()
        except Exception as exc:
            raise ExternalError(f"cannot reach mail host {self.describe()}: {exc}") from None
        if exited != 0:
            raise ExternalError(
                f"{shlex.quote(command)} failed on {self.describe()} (exit {exited}): "
                f"{err.strip()[-500:]}"
            )
        try:
            answer: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise ExternalError(f"unexpected answer from {self.describe()}") from None
        return answer

    def describe(self) -> str:
        who = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port else ""
        return f"{who}{self.host}{port}"


def _raise(answer: dict[str, Any]) -> None:
    kind, message = answer.get("kind"), answer.get("message", "failed")
    if kind == "not_found":
        raise NotFound(message)
    if kind == "refused":
        raise AdmissionRefused(message)
    if kind == "forbidden":
        raise Forbidden(message)
    if kind == "input":
        raise InputError(message)
    if kind == "external":
        raise ExternalError(message)
    raise KloudError(message)


def check(func: Any, *args: Any) -> Any:
    """Run one of accounts_db's checks here, raising kloudctl's InputError."""
    try:
        return func(*args)
    except OpError as exc:
        raise InputError(f"{exc.field}: {exc.message}" if exc.field else exc.message) from None


class MailStore:
    """Every operation on the accounts, as the operator (`actor=None`) or as a domain
    administrator (`actor="login"`)."""

    def __init__(self, transport: Transport, actor: str | None = None) -> None:
        self.transport = transport
        self.actor = actor

    def _call(self, op: str, **args: Any) -> Any:
        answer = self.transport.execute({"op": op, "args": args, "actor": self.actor})
        if not answer.get("ok"):
            _raise(answer)
        return answer["result"]

    # domains
    def domain_add(
        self,
        name: str,
        *,
        max_mailboxes: int,
        total_quota: int,
        default_quota: int,
        dkim: bool = True,
    ) -> dict[str, Any]:
        result: dict[str, Any] = self._call(
            "domain_add",
            name=name,
            max_mailboxes=max_mailboxes,
            total_quota=total_quota,
            default_quota=default_quota,
        )
        if dkim:
            result["dkim"] = self.dkim_new(result["domain"], activate=True)["selector"]
        return result

    def domain_set(self, name: str, **caps: int | None) -> dict[str, Any]:
        return self._call("domain_set", name=name, **caps)

    def domain_list(self) -> list[dict[str, Any]]:
        return self._call("domain_list")

    def admin_add(self, login: str, domain: str) -> dict[str, Any]:
        return self._call("admin_add", login=login, domain=domain)

    def admin_remove(self, login: str, domain: str) -> dict[str, Any]:
        return self._call("admin_remove", login=login, domain=domain)

    def admin_list(self) -> list[dict[str, Any]]:
        return self._call("admin_list")

    # mailboxes
    def mailbox_add(self, address: str, password: str, quota: int | None = None) -> dict[str, Any]:
        check(accounts_db.check_mailbox_address, address)
        return self._call(
            "mailbox_add", address=address, password=hash_password(password), quota=quota
        )

    def mailbox_add_many(
        self, mailboxes: list[tuple[str, str, int | None]], workers: int = 0
    ) -> dict[str, Any]:
        """[(address, password, quota or None)] in one call and one transaction. Hashing
        (the slow part, by design) runs on `workers` threads (default: one per core);
        argon2 releases the GIL."""
        for address, _, _ in mailboxes:
            check(accounts_db.check_mailbox_address, address)
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
            hashes = list(pool.map(hash_password, [p for _, p, _ in mailboxes]))
        items = [
            {"address": a, "password": h, "quota": q}
            for (a, _, q), h in zip(mailboxes, hashes, strict=True)
        ]
        return self._call("mailbox_add_many", mailboxes=items)

    def mailbox_passwd(self, address: str, password: str) -> dict[str, Any]:
        return self._call("mailbox_passwd", address=address, password=hash_password(password))

    def mailbox_quota(self, address: str, quota: int) -> dict[str, Any]:
        return self._call("mailbox_quota", address=address, quota=quota)

    def mailbox_suspend(self, address: str, suspended: bool = True) -> dict[str, Any]:
        return self._call("mailbox_suspend", address=address, suspended=suspended)

    def mailbox_remove(self, address: str) -> dict[str, Any]:
        return self._call("mailbox_remove", address=address)

    def mailbox_list(self, domain: str | None = None) -> list[dict[str, Any]]:
        return self._call("mailbox_list", domain=domain)

    # aliases
    def alias_add(self, address: str, destinations: list[str]) -> dict[str, Any]:
        return self._call("alias_add", address=address, destinations=list(destinations))

    def alias_remove(self, address: str, destination: str | None = None) -> dict[str, Any]:
        return self._call("alias_remove", address=address, destination=destination)

    def alias_list(self, domain: str | None = None) -> list[dict[str, Any]]:
        return self._call("alias_list", domain=domain)

    # DKIM
    def dkim_new(
        self, domain: str, selector: str | None = None, activate: bool = False
    ) -> dict[str, Any]:
        if selector is None:
            import datetime

            selector = "k" + datetime.datetime.now(datetime.UTC).strftime("%Y%m%d%H%M%S")
        return self._call("dkim_new", domain=domain, selector=selector, activate=activate)

    def dkim_activate(self, domain: str, selector: str) -> dict[str, Any]:
        return self._call("dkim_activate", domain=domain, selector=selector)

    def dkim_retire(self, domain: str, selector: str) -> dict[str, Any]:
        return self._call("dkim_retire", domain=domain, selector=selector)

    def dkim_list(self, domain: str | None = None) -> list[dict[str, Any]]:
        return self._call("dkim_list", domain=domain)
