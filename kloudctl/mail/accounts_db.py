"""The accounts database's only writer: every change of domains, mailboxes, aliases,
administrators and DKIM keys, each in one transaction.

This module runs where the database is: in kloudctl's process for a local file, or on the
mail host, where the SSH transport sends this very source to `python3 -` (so it uses the
standard library only and never imports kloudctl). Results and errors are plain JSON data;
`kloudctl.mail.store` turns errors into kloudctl's exceptions. Password hashes arrive
already computed; plaintext passwords never reach this module.

Rights: `actor=None` is the operator (Kloud'Ici); any other actor is a domain administrator
and may act only on the domains listed for it in `admins`. Caps are the schema's triggers.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
from typing import Any

DEFAULT_DB = "/var/lib/kloudctl-mail/accounts.sqlite"
DEFAULT_DKIM_DIR = "/var/lib/rspamd/dkim"

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
READS = {"domain_list", "admin_list", "mailbox_list", "alias_list", "dkim_list"}


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
    ) -> None:
        self.db = db
        self.actor = actor
        self.dkim_dir = dkim_dir
        #: How the command line named this store (`--db PATH`), repeated in hints.
        self.store_option = store_option

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
        with _transaction(self.db):
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
        with _transaction(self.db):
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
        with _transaction(self.db):
            self._domain_row(domain)
            cur = self.db.execute(
                "INSERT OR IGNORE INTO admins (login, domain) VALUES (?, ?)", (login, domain)
            )
        return {"login": login, "domain": domain, "changed": cur.rowcount > 0}

    def admin_remove(self, login: str, domain: str) -> dict[str, Any]:
        self._require_operator("remove administrators")
        domain = check_domain(domain)
        with _transaction(self.db):
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

    # mailboxes ------------------------------------------------------------------------

    def mailbox_add(self, address: str, password: str, quota: int | None) -> dict[str, Any]:
        address, domain = check_mailbox_address(address)
        check_hash(password)
        if quota is not None:
            check_quota(quota)
        with _transaction(self.db):
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
        with _transaction(self.db):
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
        with _transaction(self.db):
            row = self._mailbox(address)
            self.db.execute(
                "UPDATE mailboxes SET password = ? WHERE address = ?", (password, row["address"])
            )
        return {"address": row["address"], "changed": True}

    def mailbox_quota(self, address: str, quota: int) -> dict[str, Any]:
        check_quota(quota)
        with _transaction(self.db):
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
        with _transaction(self.db):
            row = self._mailbox(address)
            changed = bool(row["suspended"]) != bool(suspended)
            self.db.execute(
                "UPDATE mailboxes SET suspended = ? WHERE address = ?",
                (int(bool(suspended)), row["address"]),
            )
        return {"address": row["address"], "suspended": bool(suspended), "changed": changed}

    def mailbox_remove(self, address: str) -> dict[str, Any]:
        with _transaction(self.db):
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
        with _transaction(self.db):
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
        with _transaction(self.db):
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
                "not_found", f"no alias {address}" + (f" -> {destination}" if destination else "")
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
        domain = check_domain(domain)
        if not isinstance(selector, str) or not _SELECTOR_RE.fullmatch(selector):
            raise OpError("input", f"invalid DKIM selector {selector!r}", "selector")
        with _transaction(self.db):
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
        domain = check_domain(domain)
        with _transaction(self.db):
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
        domain = check_domain(domain)
        with _transaction(self.db):
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

OPERATIONS = {
    "init",
    "domain_add",
    "domain_set",
    "domain_list",
    "admin_add",
    "admin_remove",
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
    "dkim_new",
    "dkim_activate",
    "dkim_retire",
    "dkim_list",
}


def execute(request: dict[str, Any], schema: str) -> dict[str, Any]:
    """Run one request {op, args, actor, db, dkim_dir} -> {ok, result} or {ok: False, ...}."""
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
    try:
        if op == "init":
            result: Any = {"db": path, "changed": not existed}
        else:
            dkim_dir = request.get("dkim_dir") or DEFAULT_DKIM_DIR
            accounts = Accounts(db, request.get("actor"), dkim_dir, store_option)
            result = getattr(accounts, op)(**request.get("args", {}))
        if not existed and isinstance(result, dict):
            result["store_created"] = path
        answer = {"ok": True, "result": result}
    except OpError as exc:
        answer = {"ok": False, "kind": exc.kind, "message": exc.message, "field": exc.field}
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
