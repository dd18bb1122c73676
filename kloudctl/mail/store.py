"""The accounts store, reached through a transport: a local file (tests, the demo) or the
mail host over SSH (OpenSSH's client, `kloudctl.ssh`). Either way the same code
(`accounts_db`) runs next to the database, one transaction per operation, so adding a
mailbox needs no playbook run.

Passwords are hashed here, on the operator's side, into Dovecot's `{ARGON2ID}` scheme, and
only the hash travels (on stdin, never in a command line).
"""

from __future__ import annotations

import json
import os
import shlex
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Protocol, overload

from argon2 import PasswordHasher, Type

from kloudctl import files, ssh
from kloudctl.answers import dig, parse_json
from kloudctl.errors import (
    AdmissionRefused,
    ExternalError,
    Forbidden,
    InputError,
    KloudError,
    NotFound,
)
from kloudctl.mail import accounts_db
from kloudctl.mail.accounts_db import DEFAULT_DB, DEFAULT_DKIM_DIR, DEFAULT_KEYS_FILE, OpError
from kloudctl.model import Fleet
from kloudctl.model.types import parse_size
from kloudctl.netloc import parse_ssh_target

# Argon2id at OWASP's minimum (19 MiB, 2 passes, 1 lane). One lane because Dovecot 2.3
# verifies through libsodium, which only handles p=1.
_HASHER = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1, hash_len=32, type=Type.ID)
MIN_PASSWORD = 10
MAX_PASSWORD = 1024


def schema_text() -> str:
    return resources.files("kloudctl.mail").joinpath("schema.sql").read_text()


def hash_password(password: str) -> str:
    """Dovecot-ready hash: `{ARGON2ID}$argon2id$v=19$m=19456,t=2,p=1$...`."""
    if len(password) < MIN_PASSWORD:
        raise InputError(f"password: at least {MIN_PASSWORD} characters are required")
    if len(password) > MAX_PASSWORD:
        raise InputError(f"password: at most {MAX_PASSWORD} characters are accepted")
    if password != password.strip() or "\n" in password:
        raise InputError("password: no leading/trailing spaces or line breaks")
    # Any letter of any script is fine; control characters cannot be typed at a login
    # prompt, and lone surrogates are not text (they cannot be encoded to reach Dovecot).
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in password):
        raise InputError("password: control characters are not accepted")
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
        request["keys_file"] = str(self.db.parent / "domain-admin-keys")
        request["store_option"] = f"--db {shlex.quote(str(self.db))}"  # for hints
        return accounts_db.execute(request, schema_text())

    def describe(self) -> str:
        return str(self.db)


@dataclass
class SshTransport:
    """The database lives on the mail host: ship `accounts_db` to `python3 -` over SSH
    (kloudctl's one SSH path, `kloudctl.ssh`: OpenSSH's client, batch mode)."""

    host: str
    user: str | None = None
    port: int | None = None
    db: str = DEFAULT_DB
    dkim_dir: str = DEFAULT_DKIM_DIR
    sudo: bool = False
    key_filename: str | None = None
    #: Pin host keys from this file (unknown hosts refused); default: ssh's own
    #: (~/.ssh/known_hosts, and its StrictHostKeyChecking setting).
    known_hosts: str | None = None
    keys_file: str = DEFAULT_KEYS_FILE
    #: A domain administrator's key: the host's forced command runs the store as the
    #: login its key line names; only {op, args} is sent (no script, no actor, no paths).
    domain_admin: bool = False
    #: Seconds each request may take over SSH (status gives what is left of its budget).
    timeout: float = 300

    def target(self) -> ssh.SshTarget:
        options: list[str] = []
        if self.key_filename:
            options += ["-i", self.key_filename, "-o", "IdentitiesOnly=yes"]
        if self.known_hosts:
            options += [
                "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "StrictHostKeyChecking=yes",
            ]  # fmt: skip
        return ssh.SshTarget(self.host, self.user, self.port, tuple(options))

    def execute(self, request: dict[str, Any]) -> dict[str, Any]:
        if self.domain_admin:
            return self._ask_forced_command(request)
        request = {**request, "db": self.db, "dkim_dir": self.dkim_dir}
        request["keys_file"] = self.keys_file
        request["store_option"] = f"--host {shlex.quote(self.describe())}"  # for hints
        source = resources.files("kloudctl.mail").joinpath("accounts_db.py").read_text()
        script = f"{source}\n_remote_main({json.dumps(request)!r}, {schema_text()!r})\n"
        command = ("sudo -n " if self.sudo else "") + "python3 -"
        try:
            done = ssh.run(self.target(), command, stdin=script, timeout=self.timeout)
        except ssh.Unreachable as exc:
            raise ExternalError(f"cannot reach mail host {self.describe()}: {exc}") from None
        if done.returncode != 0:
            raise ExternalError(
                f"{shlex.quote(command)} failed on {self.describe()} (exit {done.returncode}): "
                f"{done.stderr.strip()[-500:]}"
            )
        return read_answer(self.describe(), done.stdout)

    def _ask_forced_command(self, request: dict[str, Any]) -> dict[str, Any]:
        """Send {op, args} as the request protocol's one command; the forced command
        answers a JSON line, exit 0 (done or refused by the store) or 2 (refused first)."""
        payload = json.dumps({"op": request["op"], "args": request.get("args", {})})
        try:
            done = ssh.run(self.target(), accounts_db.PROTOCOL, stdin=payload, timeout=self.timeout)
        except ssh.Unreachable as exc:
            raise ExternalError(f"cannot reach mail host {self.describe()}: {exc}") from None
        if done.returncode not in (0, 2) or not done.stdout.strip():
            raise ExternalError(
                f"the domain administrators' entry on {self.describe()} failed"
                f" (exit {done.returncode}): {ssh.last_line(done.stderr)}"
            )
        return read_answer(self.describe(), done.stdout)

    def describe(self) -> str:
        return self.target().describe()


def choose_transport(
    *,
    db: str | None,
    host: str | None,
    cabinet: str | None,
    fleet: Callable[[], Fleet],
    ssh_key: str | None = None,
    known_hosts: str | None = None,
    domain_admin: bool = False,
) -> Transport:
    """Where the accounts are: the database file `db` on this machine, the mail host
    `host` ([USER@]HOST[:PORT]) over SSH, or, as root over SSH, the mail host `cabinet`
    declares (the only case that reads the `fleet`). Exactly one of the three.
    `domain_admin`: `host` is reached with a domain administrator's key (forced command)."""
    given = [x for x in (db, host, cabinet) if x]
    if len(given) > 1:
        raise InputError("--db, --host and --cabinet: give only one")
    if domain_admin and not host:
        raise InputError(
            "--domain-admin: give --host ACCOUNT@HOST (the mail host's domain administrators'"
            " account) and --ssh-key YOUR_KEY"
        )
    if db:
        return LocalTransport(files.checked_path(db, "--db"))
    if cabinet:
        mail = fleet().cabinet(cabinet).mail
        if mail is None:
            raise InputError(f"cabinet {cabinet} declares no mail service")
        host = f"root@{mail.hostname}"
    if not host:
        raise InputError(
            "where are the accounts? give --db FILE, --host [USER@]HOST[:PORT]"
            " or --cabinet NAME"
            " (or KLOUDCTL_MAIL_DB / KLOUDCTL_MAIL_HOST)"
        )
    user, name, port = parse_ssh_target(host, "--host")
    remedy = "give the path of an existing file"
    for value, option in ((ssh_key, "--ssh-key"), (known_hosts, "--known-hosts")):
        if value:
            files.existing_store(value, option, remedy)
    return SshTransport(
        name,
        user=user,
        port=port,
        key_filename=ssh_key,
        known_hosts=known_hosts,
        domain_admin=domain_admin,
    )


def read_public_key(path: str, option: str) -> str:
    """The text of the public key file `path` (given as `option`), checked here so that a
    wrong file fails before the mail host is reached, with a message naming it."""
    checked = files.existing_store(path, option, "give the path of a public key file (.pub)")
    try:
        text = checked.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{option} {checked}: cannot read it as text ({exc})") from None
    try:
        accounts_db.check_public_key(text, "")
    except OpError as exc:
        raise InputError(f"{option} {checked}: {exc.message}") from None
    return text


def read_answer(where: str, out: str) -> dict[str, Any]:
    """The answer `accounts_db` printed on the mail host `where`: its last line, an object."""
    lines = out.strip().splitlines()
    tool = f"the accounts store at {where}"
    answer: dict[str, Any] = dig(tool, parse_json(tool, lines[-1] if lines else ""), kind=dict)
    return answer


def _raise(answer: dict[str, Any]) -> None:
    kind, message = answer.get("kind"), str(answer.get("message", "failed"))
    if kind == "not_found":
        raise NotFound(message)
    if kind == "refused":
        raise AdmissionRefused(message)
    if kind == "forbidden":
        raise Forbidden(message)
    if kind == "input":
        field = answer.get("field")
        raise InputError(f"{field}: {message}" if field and isinstance(field, str) else message)
    if kind == "external":
        raise ExternalError(message)
    raise KloudError(message)


def check(func: Any, *args: Any) -> Any:
    """Run one of accounts_db's checks here, raising kloudctl's InputError."""
    try:
        return func(*args)
    except OpError as exc:
        raise InputError(f"{exc.field}: {exc.message}" if exc.field else exc.message) from None


def check_address(address: str) -> None:
    """Refuse a malformed mailbox address here, before a password is asked for or hashed."""
    check(accounts_db.check_mailbox_address, address)


#: The quotas the store accepts, the way options' help and messages say them.
QUOTAS = f"from 1MiB to {accounts_db.MAX_QUOTA_TEXT}"
#: The most mailboxes a domain may be allowed.
MAX_MAILBOXES = accounts_db.MAX_MAILBOXES


@overload
def parse_quota(value: str, field: str) -> int: ...
@overload
def parse_quota(value: None, field: str) -> None: ...
def parse_quota(value: str | None, field: str) -> int | None:
    """A quota given as text (2GiB) in bytes, within `QUOTAS`; None stays None. Checked
    before any work, with a message naming `field`."""
    if value is None:
        return None
    try:
        size: int | None = parse_size(value, field)
    except InputError:
        size = None
    if size is None or not accounts_db.MIN_QUOTA <= size <= accounts_db.MAX_QUOTA:
        raise InputError(f"{field}: expected a size {QUOTAS} such as 2GiB, got {value!r}")
    return size


def read_import(lines: Iterable[str], source: str = "stdin") -> list[tuple[str, str, int | None]]:
    """The mailboxes of `mailbox import`'s text, for `MailStore.mailbox_add_many`: one a
    line, ADDRESS PASSWORD [QUOTA]; blank lines and lines starting with # are skipped.
    Every malformed line is named (`source:line`); nothing is returned unless all are good."""
    try:
        numbered = list(enumerate(lines, start=1))
    except UnicodeDecodeError:
        raise InputError(f"{source}: not UTF-8 text") from None
    items: list[tuple[str, str, int | None]] = []
    problems = []
    for n, line in numbered:
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) not in (2, 3):
            problems.append(f"{source}:{n}: expected ADDRESS PASSWORD [QUOTA]")
            continue
        quota = parse_quota(fields[2], f"{source}:{n}: quota") if len(fields) == 3 else None
        items.append((fields[0], fields[1], quota))
    if problems:
        raise InputError("\n".join(problems))
    if not items:
        raise InputError(f"{source}: no mailbox to import")
    return items


#: The fields of each operation's answer (of each row, for a `*_list`) that kloudctl reads.
_FIELDS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "domain_add": {"domain": str},
    "mailbox_add": {"address": str, "quota": int},
    "mailbox_add_many": {"added": int},
    "mailbox_passwd": {"address": str},
    "mailbox_quota": {"address": str, "quota": int},
    "mailbox_suspend": {"address": str},
    "mailbox_remove": {"address": str},
    "alias_add": {"address": str, "destinations": list},
    "alias_remove": {"address": str, "removed": int},
    "admin_grant": {"login": str, "domain": str, "key_added": bool},
    "admin_revoke": {"login": str, "keys_removed": int, "domains_left": list},
    "audit_list": {"at": str, "actor": str, "op": str, "target": str, "outcome": str},
    "dkim_new": {"domain": str, "selector": str},
    "dkim_list": {"domain": str, "selector": str, "state": str, "public_key": str},
}


class MailStore:
    """Every operation on the accounts, as the operator (`actor=None`) or as a domain
    administrator (`actor="login"`)."""

    def __init__(self, transport: Transport, actor: str | None = None) -> None:
        self.transport = transport
        self.actor = actor

    def _call(self, op: str, **args: Any) -> Any:
        """`op`'s result: the rows of a `*_list`, an object for every other operation, with
        the fields kloudctl reads (`_FIELDS`) checked; the store may run on another host,
        at another version."""
        answer = self.transport.execute({"op": op, "args": args, "actor": self.actor})
        tool = f"the accounts store at {self.transport.describe()} ({op})"
        if not dig(tool, answer, "ok", kind=bool, default=False):
            _raise(dig(tool, answer, kind=dict))
        if op.endswith("_list"):
            items = dig(tool, answer, "result", kind=list)
            for i, _ in enumerate(items):
                dig(tool, answer, "result", i, kind=dict)
        else:
            items = [dig(tool, answer, "result", kind=dict)]
        for item in items:
            for name, kind in _FIELDS.get(op, {}).items():
                dig(tool, item, name, kind=kind)
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

    def admin_grant(self, login: str, domain: str, public_key: str) -> dict[str, Any]:
        return self._call("admin_grant", login=login, domain=domain, public_key=public_key)

    def admin_revoke(self, login: str, domain: str | None = None) -> dict[str, Any]:
        return self._call("admin_revoke", login=login, domain=domain)

    def audit_list(self, limit: int = 100, actor: str | None = None) -> list[dict[str, Any]]:
        return self._call("audit_list", limit=limit, actor=actor)

    # mailboxes
    def mailbox_add(self, address: str, password: str, quota: int | None = None) -> dict[str, Any]:
        check_address(address)
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
            check_address(address)
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

    # the store itself
    def init(self) -> dict[str, Any]:
        """Create the accounts database (read commands never do; the first write may)."""
        return self._call("init")
