"""The accounts database's only writer: every change of domains, mailboxes, aliases,
administrators and DKIM keys, each in one transaction.

This module runs where the database is: in kloudctl's process for a local file, or on the
mail host, where the SSH transport sends this very source to `python3 -` (so it uses the
standard library only and never imports kloudctl). Results and errors are plain JSON data;
`kloudctl.mail.store` turns errors into kloudctl's exceptions. Password hashes arrive
already computed; plaintext passwords never reach this module.

Rights: `actor=None` is the operator (Kloud'Ici); any other actor is a domain administrator
and may act only on the domains listed for it in `admins`. Caps are the schema's triggers.
A domain administrator's own SSH key reaches this module through the mail role's forced
command (`domain_admin_main`), which sets the actor from the key line alone. Every change,
and every attempt beyond one's rights, is written to the `audit` table.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import inspect
import json
import os
import re
import shlex
import sqlite3
import struct
import subprocess
import sys
import tempfile
from typing import Any

DEFAULT_DB = "/var/lib/kloudctl-mail/accounts.sqlite"
DEFAULT_DKIM_DIR = "/var/lib/rspamd/dkim"
#: The domain administrators' keys: sshd reads them for the dedicated account (the mail
#: role's `Match User` block); root-owned, so that account cannot add a key of its own.
DEFAULT_KEYS_FILE = "/etc/kloudctl-mail/domain-admin-keys"
#: The forced command of every domain administrator's key (installed by the mail role).
ENTRY = "/usr/local/sbin/kloudctl-mail-admin"
#: The only remote command a domain administrator's client sends (ssh's SSH_ORIGINAL_COMMAND
#: on the host): anything else (a shell, another program, no command) is refused.
PROTOCOL = "kloudctl-mail-request/1"

_DOMAIN_RE = re.compile(r"([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")
# Local parts we hand out: lower-case ASCII, dots/dashes/underscores inside, no '+', which
# is the recipient delimiter.
_LOCAL_RE = re.compile(r"[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?")
_ANY_LOCAL_RE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}")
_SELECTOR_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
_HASH_PREFIX = "{ARGON2ID}$argon2id$"
_LOGIN_RE = re.compile(r"[^\s]{1,254}")

MIN_QUOTA = 1024**2  # 1 MiB
#: The largest size accepted anywhere (a mailbox's quota, a domain's total or default):
#: 1PiB, far above any commune's need and far below SQLite's INTEGER (2**63 - 1).
MAX_QUOTA = 1024**5
MAX_QUOTA_TEXT = "1PiB"
#: The largest cap on a domain's number of mailboxes.
MAX_MAILBOXES = 1_000_000
#: Operations that only read: they never create the database.
READS = {"domain_list", "admin_list", "mailbox_list", "alias_list", "dkim_list", "audit_list"}
#: What a domain administrator's key may ask for (the forced command refuses anything
#: else before the store runs). DKIM keys stay with the operator: their files belong to
#: rspamd, and a new key needs DNS work first.
DOMAIN_ADMIN_OPS = {
    "domain_list",
    "admin_list",
    "mailbox_add",
    "mailbox_add_many",
    "mailbox_passwd",
    "mailbox_quota",
    "mailbox_suspend",
    "mailbox_remove",
    "mailbox_list",
    "alias_add",
    "alias_remove",
    "alias_list",
    "dkim_list",
}
#: The only fields of a domain administrator's request: who acts and on which store is
#: fixed on the host (the key line, the role's configuration), never asked.
DOMAIN_ADMIN_FIELDS = {"op", "args"}
#: The largest request a domain administrator may send (a commune's mailbox import).
MAX_REQUEST = 16 * 1024**2
#: Public key types accepted for a domain administrator (what OpenSSH 9 accepts by
#: default), with the number of fields after the type in the key's data (RFC 4253,
#: 5656, 8709 and OpenSSH's PROTOCOL.u2f); RSA from 2048 bits.
KEY_TYPES = {
    "ssh-ed25519": 1,
    "ecdsa-sha2-nistp256": 2,
    "ecdsa-sha2-nistp384": 2,
    "ecdsa-sha2-nistp521": 2,
    "sk-ssh-ed25519@openssh.com": 2,
    "sk-ecdsa-sha2-nistp256@openssh.com": 3,
    "ssh-rsa": 2,
}
MIN_RSA_BITS = 2048


class OpError(Exception):
    """An operation refused; `kind` is one of input, not_found, refused, forbidden.

    This module also runs alone on the mail host, without kloudctl, so OpError cannot derive
    from kloudctl's tree: it is internal to the accounts store and never leaves it. On the
    mail host it becomes a JSON answer (`execute`); in kloudctl, `kloudctl.mail.store` maps
    that answer (or, for checks run locally, OpError itself through `store.check`) to
    `kloudctl.errors`."""

    def __init__(self, kind: str, message: str, field: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.field = field


# --- checks (also used by the CLI before prompting for a password) ----------------------


def check_domain(name: Any, field: str = "domain") -> str:
    if not isinstance(name, str) or not _DOMAIN_RE.fullmatch(name.strip().lower()):
        raise OpError("input", f"expected a domain name such as brieux.fr, got {name!r}", field)
    return name.strip().lower()


def check_mailbox_address(address: Any, field: str = "address") -> tuple[str, str]:
    """A new mailbox's address -> (address, domain), lower-cased."""
    if not isinstance(address, str) or address.count("@") != 1:
        raise OpError(
            "input", f"expected an address such as jean.dupont@brieux.fr, got {address!r}", field
        )
    local, domain = address.strip().lower().split("@")
    if not _LOCAL_RE.fullmatch(local) or ".." in local:
        raise OpError(
            "input",
            f"invalid local part {local!r}: use a-z, 0-9 and . _ - inside "
            "(no '+', it is the recipient delimiter), at most 64 characters",
            field,
        )
    return f"{local}@{check_domain(domain, field)}", domain


def check_any_address(address: Any, field: str = "destination") -> str:
    """An alias destination: any syntactically valid address (local or not)."""
    if not isinstance(address, str) or address.count("@") != 1:
        raise OpError("input", f"expected an e-mail address, got {address!r}", field)
    local, domain = address.strip().split("@")
    if not _ANY_LOCAL_RE.fullmatch(local) or local.startswith(".") or ".." in local:
        raise OpError("input", f"invalid local part in {address!r}", field)
    return f"{local}@{check_domain(domain, field)}".lower()


def check_quota(value: Any, field: str = "quota") -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < MIN_QUOTA:
        raise OpError("input", f"a quota must be at least 1MiB, got {value!r}", field)
    if value > MAX_QUOTA:
        raise OpError(
            "input",
            f"a quota must be at most {MAX_QUOTA_TEXT} ({MAX_QUOTA} bytes), got {value!r}",
            field,
        )
    return value


def check_max_mailboxes(value: Any, field: str = "max_mailboxes") -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_MAILBOXES:
        raise OpError("input", f"expected a number from 1 to {MAX_MAILBOXES}, got {value!r}", field)
    return value


def check_hash(value: Any) -> str:
    if not isinstance(value, str) or not value.startswith(_HASH_PREFIX):
        raise OpError("input", "password hash must be an {ARGON2ID} hash", "password")
    return value


def check_login(login: Any, field: str = "login") -> str:
    """An administrator's login: no spaces, no control characters (it is written in a
    key line and in logs)."""
    if (
        not isinstance(login, str)
        or not _LOGIN_RE.fullmatch(login)
        or any(ord(c) < 32 or ord(c) == 127 for c in login)
    ):
        raise OpError("input", f"invalid administrator login {login!r}", field)
    return login


def _ssh_string(blob: bytes, at: int) -> tuple[bytes, int]:
    if at + 4 > len(blob):
        raise ValueError("truncated")
    (size,) = struct.unpack(">I", blob[at : at + 4])
    if at + 4 + size > len(blob):
        raise ValueError("truncated")
    return blob[at + 4 : at + 4 + size], at + 4 + size


def check_public_key(text: Any, field: str = "public_key") -> tuple[str, str]:
    """One OpenSSH public key line, `TYPE BASE64 [COMMENT]`, of an accepted type ->
    (type, base64). Blank lines and # comments aside, exactly one line; no options (the
    key line's options are kloudctl's). Messages never repeat the text: a private key
    given by mistake must not end up in a terminal or a log."""
    if not isinstance(text, str):
        raise OpError("input", "expected the text of a public key", field)
    numbered = [
        (n, line.strip())
        for n, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.strip().startswith("#")
    ]
    if any("PRIVATE KEY" in line for _, line in numbered):
        raise OpError("input", "this is a private key: give the public one (.pub)", field)
    if len(numbered) != 1:
        raise OpError(
            "input", f"expected exactly one public key line, found {len(numbered)}", field
        )
    n, line = numbered[0]
    parts = line.split()
    if parts[0] not in KEY_TYPES:
        raise OpError(
            "input",
            f"line {n}: expected a public key line starting with its type"
            f" ({', '.join(KEY_TYPES)}), without options",
            field,
        )
    if len(parts) < 2:
        raise OpError("input", f"line {n}: the key's base64 data is missing", field)
    key_type, data = parts[0], parts[1]
    try:
        blob = base64.b64decode(data, validate=True)
        name, at = _ssh_string(blob, 0)
        if name.decode("ascii", "replace") != key_type:
            raise OpError(
                "input", f"line {n}: the key data is a {name[:40]!r} key, not {key_type}", field
            )
        fields = []
        for _ in range(KEY_TYPES[key_type]):
            field_value, at = _ssh_string(blob, at)
            fields.append(field_value)
        if at != len(blob) or (key_type.endswith("ed25519") and len(fields[0]) != 32):
            raise ValueError("not a key of its type")
        if key_type == "ssh-rsa":
            bits = int.from_bytes(fields[1], "big").bit_length()
            if bits < MIN_RSA_BITS:
                raise OpError(
                    "input", f"line {n}: RSA keys need {MIN_RSA_BITS} bits, this one has {bits}",
                    field,
                )  # fmt: skip
    except ValueError:  # binascii.Error too
        raise OpError(
            "input", f"line {n}: the key data is not a valid {key_type} key", field
        ) from None
    return key_type, data


def forced_command(login: str, entry: str = ENTRY) -> str:
    """The command sshd runs, through the account's shell, for `login`'s keys: the entry
    program with the login as its only argument, quoted for the shell."""
    return f"{entry} {shlex.quote(check_login(login))}"


def key_line(login: str, key_type: str, key_data: str, entry: str = ENTRY) -> str:
    """`login`'s authorized_keys line: `restrict` (no forwarding of any kind, no pty, no
    ~/.ssh/rc) and the forced command. Inside the option's double quotes sshd turns `\"`
    into `"` and keeps every other character as it is (auth-options.c), so only `"` is
    escaped."""
    command = forced_command(login, entry).replace('"', '\\"')
    return f'restrict,command="{command}" {key_type} {key_data} kloudctl-mail-admin'


_KEY_LINE_START = 'restrict,command="'


def key_line_owner(line: str, entry: str = ENTRY) -> tuple[str, str, str] | None:
    """(login, type, data) of a line `key_line` wrote, None for any other line. The
    command is read back the way sshd reads it: up to the first `"` not preceded by `\\`."""
    line = line.strip()
    if not line.startswith(_KEY_LINE_START):
        return None
    command, at = [], len(_KEY_LINE_START)
    while at < len(line) and line[at] != '"':
        if line.startswith('\\"', at):
            at += 1
        command.append(line[at])
        at += 1
    rest = line[at + 1 :].split()
    if at >= len(line) or len(rest) < 2 or line[at + 1 : at + 2] != " ":
        return None
    try:
        words = shlex.split("".join(command))
    except ValueError:
        return None
    if len(words) != 2 or words[0] != entry:
        return None
    return words[1], rest[0], rest[1]


# --- the store ------------------------------------------------------------------------


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _init_hint(store_option: str) -> str:
    return f"`kloudctl mail {store_option + ' ' if store_option else ''}init` creates it"


def connect(
    path: str, schema: str, *, create: bool = True, store_option: str = ""
) -> sqlite3.Connection:
    """Open the database and apply the schema. A missing database is created only when
    `create` (a write), and only in an existing folder: a mistyped path creates nothing."""
    if not os.path.isfile(path):
        if os.path.lexists(path):
            raise OpError("input", f"accounts database {path} is not a regular file")
        if not create:
            raise OpError(
                "not_found",
                f"no accounts database at {path}: {_init_hint(store_option)} (or check the path)",
                "",
            )
        directory = os.path.dirname(path) or "."
        if not os.path.isdir(directory):
            raise OpError(
                "input",
                f"accounts database {path}: folder {directory} does not exist:"
                " create it first, or check the path",
                "",
            )
    db = sqlite3.connect(path, timeout=30, isolation_level=None)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA foreign_keys = ON")
    db.execute("PRAGMA busy_timeout = 30000")
    # Rollback journal (not WAL): readers (postfix via proxymap, dovecot's auth) only need
    # read access to the file and folder. The schema is applied when its text changes
    # (its hash is kept in user_version), not parsed again on every operation.
    version = int.from_bytes(hashlib.sha256(schema.encode()).digest()[:3], "big") or 1
    if db.execute("PRAGMA user_version").fetchone()[0] != version:
        db.executescript(schema)
        db.execute(f"PRAGMA user_version = {version}")
    return db


@contextlib.contextmanager
def _transaction(db: sqlite3.Connection) -> Any:
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _size_text(n: int) -> str:
    for unit, factor in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2)):
        if n >= factor:
            value = n / factor
            return f"{value:.0f}{unit}" if value == int(value) else f"{value:.1f}{unit}"
    return f"{n}B"


class Accounts:
    def __init__(
        self,
        db: sqlite3.Connection,
        actor: str | None,
        dkim_dir: str,
        store_option: str = "",
        keys_file: str = DEFAULT_KEYS_FILE,
    ) -> None:
        self.db = db
        self.actor = actor
        self.dkim_dir = dkim_dir
        #: How the command line named this store (`--db PATH`), repeated in hints.
        self.store_option = store_option
        self.keys_file = keys_file
        #: The operation running and what it is about, for the audit row (`execute`).
        self.audit_entry: tuple[str, str] | None = None

    @contextlib.contextmanager
    def _write(self) -> Any:
        """One transaction, with its audit row: a change is committed with the record of
        who made it, or not at all."""
        with _transaction(self.db):
            yield
            if self.audit_entry is not None:
                audit(self.db, self.actor, *self.audit_entry, "done")

    def _cap_error(self, exc: sqlite3.IntegrityError, domain: str) -> OpError:
        """The cap the database refused, the domain's numbers, and how to raise it."""
        text = str(exc)
        row = self.db.execute(
            "SELECT d.max_mailboxes, d.total_quota, count(m.address) AS used,"
            " coalesce(sum(m.quota), 0) AS allocated"
            " FROM domains d LEFT JOIN mailboxes m ON m.domain = d.name WHERE d.name = ?",
            (domain,),
        ).fetchone()
        option = f"{self.store_option} " if self.store_option else ""

        def raise_with(flag: str) -> str:
            if self.actor is not None:
                return "ask the operator to raise it"
            return f"raise it with `kloudctl mail {option}domain set {domain} {flag}`"

        if "cap:max_mailboxes" in text:
            return OpError(
                "refused",
                f"domain {domain} has reached its maximum number of mailboxes"
                f" ({row['used']} of {row['max_mailboxes']}): {raise_with('--max-mailboxes N')}",
            )
        if "cap:total_quota" in text:
            return OpError(
                "refused",
                f"domain {domain}'s total quota would be exceeded"
                f" ({_size_text(row['allocated'])} of {_size_text(row['total_quota'])} already"
                f" allocated): give a smaller quota, or {raise_with('--total-quota SIZE')}",
            )
        if "cap:domain_shrink" in text:
            return OpError(
                "refused",
                f"domain {domain} already uses more than the new caps ({row['used']}"
                f" mailbox(es), {_size_text(row['allocated'])} allocated)",
            )
        return OpError("refused", f"refused by the database: {text}")

    # rights ---------------------------------------------------------------------------

    def _require_operator(self, what: str) -> None:
        if self.actor is not None:
            raise OpError("forbidden", f"{self.actor} may not {what}: operators only")

    def _domain_row(self, domain: str) -> sqlite3.Row:
        row = self.db.execute("SELECT * FROM domains WHERE name = ?", (domain,)).fetchone()
        if row is None:
            raise OpError("not_found", f"unknown domain {domain} (see `kloudctl mail domain list`)")
        return row

    def _may_manage(self, domain: str) -> sqlite3.Row:
        row = self._domain_row(domain)
        if self.actor is not None:
            allowed = self.db.execute(
                "SELECT 1 FROM admins WHERE login = ? AND domain = ?", (self.actor, domain)
            ).fetchone()
            if allowed is None:
                raise OpError("forbidden", f"{self.actor} may not manage domain {domain}")
        return row

    def _visible_domains(self) -> list[str]:
        if self.actor is None:
            rows = self.db.execute("SELECT name FROM domains ORDER BY name")
        else:
            rows = self.db.execute(
                "SELECT domain FROM admins WHERE login = ? ORDER BY domain", (self.actor,)
            )
        return [r[0] for r in rows]

    def _mailbox(self, address: str) -> sqlite3.Row:
        address = address.strip().lower()
        if "@" not in address:
            raise OpError("input", f"expected an address, got {address!r}", "address")
        self._may_manage(check_domain(address.split("@", 1)[1], "address"))
        row = self.db.execute("SELECT * FROM mailboxes WHERE address = ?", (address,)).fetchone()
        if row is None:
            raise OpError("not_found", f"no mailbox {address}")
        return row

    # domains --------------------------------------------------------------------------

    def domain_add(
        self, name: str, max_mailboxes: int, total_quota: int, default_quota: int
    ) -> dict[str, Any]:
        self._require_operator("add domains")
        name = check_domain(name)
        check_max_mailboxes(max_mailboxes)
        check_quota(total_quota, "total_quota")
        check_quota(default_quota, "default_quota")
        if default_quota > total_quota:
            raise OpError("input", "the default quota exceeds the total quota", "default_quota")
        with self._write():
            if self.db.execute("SELECT 1 FROM domains WHERE name = ?", (name,)).fetchone():
                raise OpError("refused", f"domain {name} already exists")
            self.db.execute(
                "INSERT INTO domains (name, max_mailboxes, total_quota, default_quota, created)"
                " VALUES (?, ?, ?, ?, ?)",
                (name, max_mailboxes, total_quota, default_quota, _now()),
            )
        return {"domain": name, "changed": True}

    def domain_set(
        self,
        name: str,
        max_mailboxes: int | None = None,
        total_quota: int | None = None,
        default_quota: int | None = None,
    ) -> dict[str, Any]:
        """Change a domain's caps (those given; None keeps one). Lowering a cap below what
        the domain already uses is refused by the schema's trigger."""
        self._require_operator("change domain caps")
        name = check_domain(name)
        if max_mailboxes is None and total_quota is None and default_quota is None:
            raise OpError(
                "input", "nothing to change: give --max-mailboxes, --total-quota or --default-quota"
            )
        if max_mailboxes is not None:
            check_max_mailboxes(max_mailboxes)
        if total_quota is not None:
            check_quota(total_quota, "total_quota")
        if default_quota is not None:
            check_quota(default_quota, "default_quota")
        with self._write():
            row = self._domain_row(name)
            caps = {
                "max_mailboxes": row["max_mailboxes"] if max_mailboxes is None else max_mailboxes,
                "total_quota": row["total_quota"] if total_quota is None else total_quota,
                "default_quota": row["default_quota"] if default_quota is None else default_quota,
            }
            if caps["default_quota"] > caps["total_quota"]:
                raise OpError(
                    "input",
                    f"the default quota ({_size_text(caps['default_quota'])}) would exceed the"
                    f" total quota ({_size_text(caps['total_quota'])})",
                    "default_quota",
                )
            changed = any(caps[k] != row[k] for k in caps)
            if changed:
                try:
                    self.db.execute(
                        "UPDATE domains SET max_mailboxes = ?, total_quota = ?, default_quota = ?"
                        " WHERE name = ?",
                        (caps["max_mailboxes"], caps["total_quota"], caps["default_quota"], name),
                    )
                except sqlite3.IntegrityError as exc:
                    raise self._cap_error(exc, name) from None
        return {"domain": name, **caps, "changed": changed}

    def domain_list(self) -> list[dict[str, Any]]:
        visible = set(self._visible_domains())
        rows = self.db.execute(
            "SELECT d.*, count(m.address) AS mailboxes, coalesce(sum(m.quota), 0) AS quota_used"
            " FROM domains d LEFT JOIN mailboxes m ON m.domain = d.name"
            " GROUP BY d.name ORDER BY d.name"
        )
        return [
            {
                "domain": r["name"],
                "mailboxes": r["mailboxes"],
                "max_mailboxes": r["max_mailboxes"],
                "quota_allocated": r["quota_used"],
                "total_quota": r["total_quota"],
                "default_quota": r["default_quota"],
                "active": bool(r["active"]),
            }
            for r in rows
            if r["name"] in visible
        ]

    # administrators -------------------------------------------------------------------

    def admin_add(self, login: str, domain: str) -> dict[str, Any]:
        self._require_operator("appoint administrators")
        if not isinstance(login, str) or not _LOGIN_RE.fullmatch(login):
            raise OpError("input", f"invalid administrator login {login!r}", "login")
        domain = check_domain(domain)
        with self._write():
            self._domain_row(domain)
            cur = self.db.execute(
                "INSERT OR IGNORE INTO admins (login, domain) VALUES (?, ?)", (login, domain)
            )
        return {"login": login, "domain": domain, "changed": cur.rowcount > 0}

    def admin_remove(self, login: str, domain: str) -> dict[str, Any]:
        self._require_operator("remove administrators")
        domain = check_domain(domain)
        with self._write():
            cur = self.db.execute(
                "DELETE FROM admins WHERE login = ? AND domain = ?", (login, domain)
            )
            if cur.rowcount == 0:
                raise OpError("not_found", f"{login} is not an administrator of {domain}")
        return {"login": login, "domain": domain, "changed": True}

    def admin_list(self) -> list[dict[str, Any]]:
        visible = set(self._visible_domains())
        rows = self.db.execute("SELECT login, domain FROM admins ORDER BY domain, login")
        return [dict(r) for r in rows if r["domain"] in visible]

    def admin_grant(self, login: str, domain: str, public_key: str) -> dict[str, Any]:
        """Let `login` manage `domain` (`admin_add`) and let their key reach the store,
        as them only, through the forced command (`key_line`). Granting the same key
        again changes nothing; a key is one administrator's only."""
        self._require_operator("grant administrators")
        login, domain = check_login(login), check_domain(domain)
        key_type, key_data = check_public_key(public_key)
        with self._write():
            self._domain_row(domain)
            cur = self.db.execute(
                "INSERT OR IGNORE INTO admins (login, domain) VALUES (?, ?)", (login, domain)
            )
            lines = _read_lines(self.keys_file)
            owners = {(o[1], o[2]): o[0] for o in map(key_line_owner, lines) if o}
            owner = owners.get((key_type, key_data))
            if owner is not None and owner != login:
                raise OpError("refused", f"this key is already {owner}'s: each needs their own")
            if owner is None:
                lines.append(key_line(login, key_type, key_data))
                _atomic_write(self.keys_file, "".join(f"{ln}\n" for ln in lines), 0o644)
        return {
            "login": login,
            "domain": domain,
            "key_added": owner is None,
            "changed": cur.rowcount > 0 or owner is None,
        }

    def admin_revoke(self, login: str, domain: str | None = None) -> dict[str, Any]:
        """Withdraw `login`'s rights on `domain` (on every domain when None); once they
        have no domain left, their keys go too, and sshd refuses them."""
        self._require_operator("revoke administrators")
        login = check_login(login)
        with self._write():
            if domain is not None:
                domain = check_domain(domain)
                cur = self.db.execute(
                    "DELETE FROM admins WHERE login = ? AND domain = ?", (login, domain)
                )
            else:
                cur = self.db.execute("DELETE FROM admins WHERE login = ?", (login,))
            left = [r[0] for r in self.db.execute(
                "SELECT domain FROM admins WHERE login = ? ORDER BY domain", (login,)
            )]  # fmt: skip
            keys_removed = 0
            if not left:
                lines = _read_lines(self.keys_file)
                kept = [ln for ln in lines if (key_line_owner(ln) or ("",))[0] != login]
                keys_removed = len(lines) - len(kept)
                if keys_removed:
                    _atomic_write(self.keys_file, "".join(f"{ln}\n" for ln in kept), 0o644)
        return {
            "login": login,
            "domain": domain,
            "rights_removed": cur.rowcount,
            "keys_removed": keys_removed,
            "domains_left": left,
            "changed": cur.rowcount > 0 or keys_removed > 0,
        }

    def audit_list(self, limit: int = 100, actor: str | None = None) -> list[dict[str, Any]]:
        """The newest `limit` audit rows (of `actor` only, if given), oldest first."""
        self._require_operator("read the audit log")
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 100_000:
            raise OpError("input", f"expected a number from 1 to 100000, got {limit!r}", "limit")
        where, args = ("WHERE actor = ?", (actor, limit)) if actor else ("", (limit,))
        rows = self.db.execute(
            f"SELECT at, actor, op, target, outcome, detail FROM audit {where}"
            " ORDER BY id DESC LIMIT ?",
            args,
        ).fetchall()
        return [{**dict(r), "actor": r["actor"] or "operator"} for r in reversed(rows)]

    # mailboxes ------------------------------------------------------------------------

    def mailbox_add(self, address: str, password: str, quota: int | None) -> dict[str, Any]:
        address, domain = check_mailbox_address(address)
        check_hash(password)
        if quota is not None:
            check_quota(quota)
        with self._write():
            row = self._may_manage(domain)
            quota = row["default_quota"] if quota is None else quota
            if self.db.execute("SELECT 1 FROM mailboxes WHERE address = ?", (address,)).fetchone():
                raise OpError("refused", f"mailbox {address} already exists")
            if self.db.execute("SELECT 1 FROM aliases WHERE address = ?", (address,)).fetchone():
                raise OpError("refused", f"{address} is already an alias")
            try:
                self.db.execute(
                    "INSERT INTO mailboxes (address, domain, password, quota, created)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (address, domain, password, quota, _now()),
                )
            except sqlite3.IntegrityError as exc:
                raise self._cap_error(exc, domain) from None
        return {"address": address, "quota": quota, "changed": True}

    def mailbox_add_many(self, mailboxes: list[dict[str, Any]]) -> dict[str, Any]:
        """Many mailboxes in one transaction (all or none), e.g. a commune's residents."""
        checked = []
        for i, item in enumerate(mailboxes):
            address, domain = check_mailbox_address(item.get("address"), f"line {i + 1}")
            check_hash(item.get("password"))
            quota = item.get("quota")
            if quota is not None:
                check_quota(quota, f"line {i + 1}")
            checked.append((address, domain, item["password"], quota))
        if len({c[0] for c in checked}) != len(checked):
            raise OpError("input", "the same address appears twice", "address")
        with self._write():
            defaults = {}
            for address, domain, _, _ in checked:
                if domain not in defaults:
                    defaults[domain] = self._may_manage(domain)["default_quota"]
                if self.db.execute(
                    "SELECT 1 FROM mailboxes WHERE address = ? UNION "
                    "SELECT 1 FROM aliases WHERE address = ?",
                    (address, address),
                ).fetchone():
                    raise OpError("refused", f"{address} already exists")
            now = _now()
            for address, domain, password, quota in checked:
                try:
                    self.db.execute(
                        "INSERT INTO mailboxes (address, domain, password, quota, created)"
                        " VALUES (?, ?, ?, ?, ?)",
                        (
                            address,
                            domain,
                            password,
                            defaults[domain] if quota is None else quota,
                            now,
                        ),
                    )
                except sqlite3.IntegrityError as exc:
                    raise self._cap_error(exc, domain) from None
        return {"added": len(checked), "changed": bool(checked)}

    def mailbox_passwd(self, address: str, password: str) -> dict[str, Any]:
        check_hash(password)
        with self._write():
            row = self._mailbox(address)
            self.db.execute(
                "UPDATE mailboxes SET password = ? WHERE address = ?", (password, row["address"])
            )
        return {"address": row["address"], "changed": True}

    def mailbox_quota(self, address: str, quota: int) -> dict[str, Any]:
        check_quota(quota)
        with self._write():
            row = self._mailbox(address)
            if row["quota"] == quota:
                return {"address": row["address"], "quota": quota, "changed": False}
            try:
                self.db.execute(
                    "UPDATE mailboxes SET quota = ? WHERE address = ?", (quota, row["address"])
                )
            except sqlite3.IntegrityError as exc:
                raise self._cap_error(exc, row["domain"]) from None
        return {"address": row["address"], "quota": quota, "changed": True}

    def mailbox_suspend(self, address: str, suspended: bool) -> dict[str, Any]:
        with self._write():
            row = self._mailbox(address)
            changed = bool(row["suspended"]) != bool(suspended)
            self.db.execute(
                "UPDATE mailboxes SET suspended = ? WHERE address = ?",
                (int(bool(suspended)), row["address"]),
            )
        return {"address": row["address"], "suspended": bool(suspended), "changed": changed}

    def mailbox_remove(self, address: str) -> dict[str, Any]:
        with self._write():
            row = self._mailbox(address)
            self.db.execute("DELETE FROM mailboxes WHERE address = ?", (row["address"],))
            cur = self.db.execute("DELETE FROM aliases WHERE destination = ?", (row["address"],))
        return {"address": row["address"], "changed": True, "alias_targets_removed": cur.rowcount}

    def mailbox_list(self, domain: str | None) -> list[dict[str, Any]]:
        domains = [self._may_manage(check_domain(domain))["name"]] if domain else None
        visible = domains or self._visible_domains()
        out = []
        for name in visible:
            rows = self.db.execute(
                "SELECT address, quota, suspended, created FROM mailboxes WHERE domain = ?"
                " ORDER BY address",
                (name,),
            )
            out += [
                {
                    "address": r["address"],
                    "quota": r["quota"],
                    "suspended": bool(r["suspended"]),
                    "created": r["created"],
                }
                for r in rows
            ]
        return out

    # aliases --------------------------------------------------------------------------

    def alias_add(self, address: str, destinations: list[str]) -> dict[str, Any]:
        address, domain = check_mailbox_address(address)
        if not destinations:
            raise OpError("input", "an alias needs at least one destination", "destination")
        targets = [check_any_address(d) for d in destinations]
        if address in targets:
            raise OpError("input", f"alias {address} cannot point to itself", "destination")
        with self._write():
            self._may_manage(domain)
            if self.db.execute("SELECT 1 FROM mailboxes WHERE address = ?", (address,)).fetchone():
                raise OpError("refused", f"{address} is a mailbox; an alias cannot shadow it")
            for target in targets:
                t_domain = target.split("@", 1)[1]
                local = self.db.execute(
                    "SELECT 1 FROM domains WHERE name = ?", (t_domain,)
                ).fetchone()
                if (
                    local
                    and not self.db.execute(
                        "SELECT 1 FROM mailboxes WHERE address = ? UNION "
                        "SELECT 1 FROM aliases WHERE address = ?",
                        (target, target),
                    ).fetchone()
                ):
                    raise OpError(
                        "not_found",
                        f"destination {target} is in a hosted domain but does not exist",
                    )
            added = 0
            for target in targets:
                cur = self.db.execute(
                    "INSERT OR IGNORE INTO aliases (address, domain, destination) VALUES (?, ?, ?)",
                    (address, domain, target),
                )
                added += cur.rowcount
        return {"address": address, "destinations": targets, "changed": added > 0}

    def alias_remove(self, address: str, destination: str | None) -> dict[str, Any]:
        address, domain = check_mailbox_address(address)
        with self._write():
            self._may_manage(domain)
            if destination:
                cur = self.db.execute(
                    "DELETE FROM aliases WHERE address = ? AND destination = ?",
                    (address, check_any_address(destination)),
                )
            else:
                cur = self.db.execute("DELETE FROM aliases WHERE address = ?", (address,))
            if cur.rowcount == 0:
                raise OpError(
                    "not_found",
                    f"no alias {address}" + (f" -> {destination}" if destination else ""),
                )
        return {"address": address, "removed": cur.rowcount, "changed": True}

    def alias_list(self, domain: str | None) -> list[dict[str, Any]]:
        domains = [self._may_manage(check_domain(domain))["name"]] if domain else None
        out = []
        for name in domains or self._visible_domains():
            rows = self.db.execute(
                "SELECT address, group_concat(destination, ',') AS destinations FROM aliases"
                " WHERE domain = ? GROUP BY address ORDER BY address",
                (name,),
            )
            out += [
                {"address": r["address"], "destinations": sorted(r["destinations"].split(","))}
                for r in rows
            ]
        return out

    # DKIM -----------------------------------------------------------------------------

    def dkim_new(self, domain: str, selector: str, activate: bool) -> dict[str, Any]:
        """Make a new key: published first; active (signing) at once only if asked (for a
        domain's first key, or after the new public key has been published in DNS)."""
        self._require_operator("change DKIM keys")  # rspamd's files, and DNS work first
        domain = check_domain(domain)
        if not isinstance(selector, str) or not _SELECTOR_RE.fullmatch(selector):
            raise OpError("input", f"invalid DKIM selector {selector!r}", "selector")
        with self._write():
            self._may_manage(domain)
            if self.db.execute(
                "SELECT 1 FROM dkim_keys WHERE domain = ? AND selector = ?", (domain, selector)
            ).fetchone():
                raise OpError("refused", f"DKIM selector {selector} already exists for {domain}")
            public = _generate_key(self.dkim_dir, domain, selector)
            self.db.execute(
                "INSERT INTO dkim_keys (domain, selector, public_key, state, created)"
                " VALUES (?, ?, ?, 'published', ?)",
                (domain, selector, public, _now()),
            )
            if activate:
                self._activate(domain, selector)
        self._write_selector_map()
        return {"domain": domain, "selector": selector, "active": activate, "changed": True}

    def dkim_activate(self, domain: str, selector: str) -> dict[str, Any]:
        self._require_operator("change DKIM keys")  # rspamd's files, and DNS work first
        domain = check_domain(domain)
        with self._write():
            self._may_manage(domain)
            row = self._dkim_key(domain, selector)
            changed = row["state"] != "active"
            self._activate(domain, selector)
        self._write_selector_map()
        return {"domain": domain, "selector": selector, "changed": changed}

    def _dkim_key(self, domain: str, selector: str) -> Any:
        row = self.db.execute(
            "SELECT state FROM dkim_keys WHERE domain = ? AND selector = ?", (domain, selector)
        ).fetchone()
        if row is None:
            raise OpError("not_found", f"no DKIM selector {selector} for {domain}")
        return row

    def _activate(self, domain: str, selector: str) -> None:
        # The previous active key stays published (signatures in flight still verify)
        # until `dkim retire`.
        self.db.execute(
            "UPDATE dkim_keys SET state = 'published' WHERE domain = ? AND state = 'active'",
            (domain,),
        )
        self.db.execute(
            "UPDATE dkim_keys SET state = 'active' WHERE domain = ? AND selector = ?",
            (domain, selector),
        )

    def dkim_retire(self, domain: str, selector: str) -> dict[str, Any]:
        self._require_operator("change DKIM keys")  # rspamd's files, and DNS work first
        domain = check_domain(domain)
        with self._write():
            self._may_manage(domain)
            row = self._dkim_key(domain, selector)
            if row["state"] == "active":
                raise OpError("refused", "the active key cannot be retired: activate another first")
            self.db.execute(
                "UPDATE dkim_keys SET state = 'retired' WHERE domain = ? AND selector = ?",
                (domain, selector),
            )
        return {"domain": domain, "selector": selector, "changed": row["state"] != "retired"}

    def dkim_list(self, domain: str | None) -> list[dict[str, Any]]:
        domains = [self._may_manage(check_domain(domain))["name"]] if domain else None
        out = []
        for name in domains or self._visible_domains():
            rows = self.db.execute(
                "SELECT domain, selector, public_key, state, created FROM dkim_keys"
                " WHERE domain = ? ORDER BY created, selector",
                (name,),
            )
            out += [dict(r) for r in rows]
        return out

    def _write_selector_map(self) -> None:
        rows = self.db.execute("SELECT domain, selector FROM rspamd_selectors ORDER BY domain")
        text = "".join(f"{r[0]} {r[1]}\n" for r in rows)
        _atomic_write(os.path.join(self.dkim_dir, "selectors.map"), text, 0o644)


def _read_lines(path: str) -> list[str]:
    """The lines of a text file (none if it does not exist yet)."""
    try:
        with open(path, encoding="utf-8") as f:
            return [ln.rstrip("\n") for ln in f if ln.strip()]
    except FileNotFoundError:
        return []


def audit(
    db: sqlite3.Connection, actor: str | None, op: str, target: str, outcome: str, detail: str = ""
) -> None:
    """One audit row (within the caller's transaction, if any)."""
    db.execute(
        "INSERT INTO audit (at, actor, op, target, outcome, detail) VALUES (?, ?, ?, ?, ?, ?)",
        (_now(), actor, op, target[:500], outcome, detail[:500]),
    )


def audit_target(args: Any) -> str:
    """What a request is about, for the audit log: addresses, domains, logins; never a
    password or a key."""
    if not isinstance(args, dict):
        return ""
    if isinstance(args.get("mailboxes"), list):
        addresses = [str(m.get("address")) for m in args["mailboxes"] if isinstance(m, dict)]
        return ", ".join(addresses)
    parts = [
        str(args[k])
        for k in ("address", "name", "login", "domain", "selector")
        if args.get(k) is not None
    ]
    return " ".join(parts)


def _atomic_write(path: str, text: str, mode: int) -> None:
    """kloudctl.files.write_atomic's rules, in the standard library only (this module runs
    on the mail host, where kloudctl is not installed): rspamd's own folder, a temporary
    file, fsync, rename."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _generate_key(dkim_dir: str, domain: str, selector: str) -> str:
    """An RSA-2048 key in `$domain.$selector.key` (rspamd's path pattern), readable by
    rspamd only; returns the public key as base64 DER."""
    os.makedirs(dkim_dir, exist_ok=True)
    path = os.path.join(dkim_dir, f"{domain}.{selector}.key")
    old = os.umask(0o077)
    try:
        subprocess.run(
            [
                "openssl",
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
                path,
            ],
            check=True,
            capture_output=True,
        )
    finally:
        os.umask(old)
    with contextlib.suppress(KeyError, PermissionError):
        import grp

        os.chown(path, 0, grp.getgrnam("_rspamd").gr_gid)
        os.chmod(path, 0o640)
    der = subprocess.run(
        ["openssl", "pkey", "-in", path, "-pubout", "-outform", "DER"],
        check=True,
        capture_output=True,
    ).stdout
    return base64.b64encode(der).decode()


# --- dispatch -------------------------------------------------------------------------

#: Every operation: what a domain administrator may ask, and what only the operator may.
OPERATIONS = DOMAIN_ADMIN_OPS | {
    "init",
    "domain_add",
    "domain_set",
    "admin_add",
    "admin_remove",
    "admin_grant",
    "admin_revoke",
    "audit_list",
    "dkim_new",
    "dkim_activate",
    "dkim_retire",
}


def execute(request: dict[str, Any], schema: str) -> dict[str, Any]:
    """Run one request {op, args, actor, db, dkim_dir, keys_file} -> {ok, result} or
    {ok: False, kind, message, field}."""
    op = request.get("op")
    if op not in OPERATIONS:
        return {"ok": False, "kind": "input", "message": f"unknown operation {op!r}", "field": ""}
    path = request.get("db") or DEFAULT_DB
    store_option = request.get("store_option") or ""
    existed = os.path.lexists(path)
    try:
        db = connect(path, schema, create=op not in READS, store_option=store_option)
    except OpError as exc:
        return {"ok": False, "kind": exc.kind, "message": exc.message, "field": exc.field}
    except (sqlite3.Error, OSError) as exc:
        if not existed:
            _remove_database(path)
        kind = "input" if "not a database" in str(exc) else "external"
        return {"ok": False, "kind": kind, "message": f"cannot open accounts {path}: {exc}"}
    answer: dict[str, Any]
    actor, args = request.get("actor"), request.get("args", {})
    try:
        if op == "init":
            result: Any = {"db": path, "changed": not existed}
        else:
            dkim_dir = request.get("dkim_dir") or DEFAULT_DKIM_DIR
            keys_file = request.get("keys_file") or DEFAULT_KEYS_FILE
            accounts = Accounts(db, actor, dkim_dir, store_option, keys_file)
            if op not in READS:
                accounts.audit_entry = (op, audit_target(args))
            if not isinstance(args, dict):
                raise OpError("input", "the request's args must be an object", "args")
            method = getattr(accounts, op)
            try:
                inspect.signature(method).bind(**args)
            except TypeError as exc:  # arguments the operation does not take
                raise OpError("input", f"{op}: {exc}") from None
            result = method(**args)
        if not existed and isinstance(result, dict):
            result["store_created"] = path
        answer = {"ok": True, "result": result}
    except OpError as exc:
        answer = {"ok": False, "kind": exc.kind, "message": exc.message, "field": exc.field}
        # An attempt beyond one's rights is recorded. Invalid input is not: it is refused
        # before anything happens, and leaves the store as it was (exit 2 promises that).
        if existed and exc.kind == "forbidden":
            with contextlib.suppress(sqlite3.Error):
                audit(db, actor, op, audit_target(args), exc.kind, exc.message)
    except (sqlite3.Error, OSError, subprocess.CalledProcessError) as exc:
        answer = {"ok": False, "kind": "external", "message": f"{type(exc).__name__}: {exc}"}
    finally:
        db.close()
    if not existed and not answer["ok"]:
        _remove_database(path)  # a refused first write leaves nothing behind
    return answer


def _remove_database(path: str) -> None:
    for name in (path, path + "-journal"):
        with contextlib.suppress(OSError):
            os.unlink(name)


def _remote_main(request_json: str, schema: str) -> None:  # pragma: no cover - on the host
    sys.stdout.write(json.dumps(execute(json.loads(request_json), schema)) + "\n")


# --- a domain administrator's forced command --------------------------------------------
#
# sshd runs `ENTRY LOGIN` (the key line's command) as the dedicated unprivileged account.
# That first stage only checks that the client speaks the request protocol, then runs
# itself again as root through sudo (one exact rule of the mail role), with the same
# LOGIN: the second stage reads the request, refuses anything but {op, args} of a domain
# administrator's operations, and runs the store as LOGIN. Who acts comes from the key
# line alone; which store, from the role's configuration on the host.


def check_ssh_command(original: str | None) -> None:
    """The command the client asked for (SSH_ORIGINAL_COMMAND): only the protocol's."""
    if original != PROTOCOL:
        asked = "no command (a login shell)" if original is None else "another command"
        raise OpError(
            "protocol",
            f"this key only answers kloudctl's mail requests; it was asked for {asked}",
        )


def domain_admin_request(raw: str) -> tuple[str, dict[str, Any]]:
    """A domain administrator's request -> (op, args); OpError for anything else."""
    if len(raw) > MAX_REQUEST:
        raise OpError("input", f"the request exceeds {MAX_REQUEST} bytes")
    try:
        request = json.loads(raw)
    except ValueError:
        raise OpError("protocol", "the request is not JSON") from None
    if not isinstance(request, dict):
        raise OpError("protocol", "the request must be a JSON object")
    extra = sorted(set(request) - DOMAIN_ADMIN_FIELDS)
    if extra:
        raise OpError(
            "forbidden",
            f"a domain administrator's request may not set {', '.join(map(str, extra))}",
        )
    op, args = request.get("op"), request.get("args", {})
    if op not in OPERATIONS:
        raise OpError("input", f"unknown operation {op!r}")
    if op not in DOMAIN_ADMIN_OPS:
        raise OpError("forbidden", f"{op}: operators only")
    if not isinstance(args, dict):
        raise OpError("input", "the request's args must be an object", "args")
    return op, args


def serve_domain_admin(login: str, raw: str, config: dict[str, str], schema: str) -> dict[str, Any]:
    """The second stage (as root): `login`'s request `raw` run on the store `config`
    names ({db, dkim_dir, keys_file}), every refusal recorded in the audit log."""
    try:
        op, args = domain_admin_request(raw)
    except OpError as exc:
        if exc.kind not in ("forbidden", "protocol"):
            return {"ok": False, "kind": exc.kind, "message": exc.message, "field": exc.field}
        with contextlib.suppress(OpError, sqlite3.Error, OSError):
            db = connect(config["db"], schema, create=False)
            try:
                audit(db, login, "request", "", exc.kind, exc.message)
            finally:
                db.close()
        return {"ok": False, "kind": exc.kind, "message": exc.message, "field": exc.field}
    request = {"op": op, "args": args, "actor": login, **config}
    return execute(request, schema)


def domain_admin_main(
    argv: list[str], config_path: str, sudo: str = "/usr/bin/sudo"
) -> int:  # pragma: no cover - runs on the mail host; its parts are tested
    """The entry program: `ENTRY LOGIN`, JSON request on stdin, JSON answer on stdout."""

    def answer(reply: dict[str, Any], code: int) -> int:
        sys.stdout.write(json.dumps(reply) + "\n")
        if not reply.get("ok"):
            sys.stderr.write(f"kloudctl-mail-admin: {reply.get('message')}\n")
        return code

    try:
        if len(argv) != 1:
            raise OpError("protocol", "expected one argument: the administrator's login")
        login = check_login(argv[0])
        if os.geteuid() != 0:
            check_ssh_command(os.environ.get("SSH_ORIGINAL_COMMAND"))
            os.execv(sudo, [sudo, "-n", "--", ENTRY, login])
        with open(config_path, encoding="utf-8") as f:
            config = json.load(f)
        with open(config.pop("schema"), encoding="utf-8") as f:
            schema = f.read()
    except OpError as exc:
        subprocess.run(  # the journal keeps refused attempts that never reach the store
            ["logger", "-p", "auth.warning", "-t", "kloudctl-mail-admin",
             f"refused {argv[:1]!r}: {exc.message}"],
            check=False,
        )  # fmt: skip
        return answer({"ok": False, "kind": exc.kind, "message": exc.message, "field": ""}, 2)
    return answer(serve_domain_admin(login, sys.stdin.read(MAX_REQUEST + 1), config, schema), 0)
