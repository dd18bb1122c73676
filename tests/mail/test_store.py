"""The accounts store on a real SQLite file, through the same code that runs on the host."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from kloudctl.errors import AdmissionRefused, Forbidden, InputError, NotFound
from kloudctl.mail.store import LocalTransport, MailStore, verify_password

GiB = 1024**3
MiB = 1024**2
PASSWORD = "correct horse battery"


@pytest.fixture
def store(tmp_path: Path) -> MailStore:
    s = MailStore(LocalTransport(tmp_path / "accounts.sqlite"))
    s.domain_add("brieux.fr", max_mailboxes=3, total_quota=5 * GiB, default_quota=GiB, dkim=False)
    s.domain_add("mortree.fr", max_mailboxes=9, total_quota=9 * GiB, default_quota=GiB, dkim=False)
    return s


def rows(store: MailStore, sql: str, *args: object) -> list[tuple]:
    assert isinstance(store.transport, LocalTransport)
    with sqlite3.connect(store.transport.db) as db:
        return db.execute(sql, args).fetchall()


def test_mailbox_hash_is_dovecot_argon2id_and_verifies(store: MailStore) -> None:
    store.mailbox_add("Jean.Dupont@Brieux.fr", PASSWORD)
    [(address, stored, quota)] = rows(store, "SELECT address, password, quota FROM mailboxes")
    assert address == "jean.dupont@brieux.fr"
    assert stored.startswith("{ARGON2ID}$argon2id$v=19$m=19456,t=2,p=1$")
    assert PASSWORD not in stored and verify_password(stored, PASSWORD)
    assert quota == 1 * GiB  # the domain's default


def test_caps_are_enforced_by_the_database_itself(store: MailStore) -> None:
    store.mailbox_add("a@brieux.fr", PASSWORD, 2 * GiB)
    store.mailbox_add("b@brieux.fr", PASSWORD, 1 * GiB)
    with pytest.raises(AdmissionRefused, match="total quota"):
        store.mailbox_add("c@brieux.fr", PASSWORD, 3 * GiB)
    with pytest.raises(AdmissionRefused, match="total quota"):
        store.mailbox_quota("b@brieux.fr", 4 * GiB)
    store.mailbox_add("c@brieux.fr", PASSWORD, 1 * GiB)
    with pytest.raises(AdmissionRefused, match="maximum number of mailboxes"):
        store.mailbox_add("d@brieux.fr", PASSWORD, 1 * MiB)
    with pytest.raises(AdmissionRefused, match="more than the new caps"):
        store.domain_set("brieux.fr", max_mailboxes=2)
    # Even a writer bypassing kloudctl cannot break the caps: they are triggers.
    with (
        pytest.raises(sqlite3.IntegrityError, match="cap:max_mailboxes"),
        sqlite3.connect(
            store.transport.db  # type: ignore[attr-defined]
        ) as db,
    ):
        db.execute(
            "INSERT INTO mailboxes (address, domain, password, quota, created)"
            " VALUES ('x@brieux.fr', 'brieux.fr', 'h', 1, 'now')"
        )


@pytest.mark.parametrize(
    ("address", "error", "match"),
    [
        ("jean@nowhere.fr", NotFound, "unknown domain nowhere.fr"),
        ("jean", InputError, "expected an address"),
        ("jean+x@brieux.fr", InputError, "recipient delimiter"),
        ("je..an@brieux.fr", InputError, "invalid local part"),
        ("jean@brieux", InputError, "domain name"),
    ],
)
def test_bad_addresses_are_refused_with_clear_errors(
    store: MailStore, address: str, error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        store.mailbox_add(address, PASSWORD)
    assert rows(store, "SELECT count(*) FROM mailboxes") == [(0,)]


def test_bad_quota_and_weak_password_are_refused(store: MailStore) -> None:
    with pytest.raises(InputError, match="at least 1MiB"):
        store.mailbox_add("a@brieux.fr", PASSWORD, 1000)
    with pytest.raises(InputError, match="at least 10 characters"):
        store.mailbox_add("a@brieux.fr", "short")


def test_domain_admin_manages_only_their_domain(store: MailStore) -> None:
    store.admin_add("maire@mortree.fr", "mortree.fr")
    admin = MailStore(store.transport, actor="maire@mortree.fr")
    admin.mailbox_add("paul@mortree.fr", PASSWORD)
    admin.alias_add("mairie@mortree.fr", ["paul@mortree.fr"])
    with pytest.raises(Forbidden, match=r"may not manage domain brieux\.fr"):
        admin.mailbox_add("paul@brieux.fr", PASSWORD)
    with pytest.raises(Forbidden):
        admin.domain_add("evil.fr", max_mailboxes=1, total_quota=GiB, default_quota=GiB)
    with pytest.raises(Forbidden):
        admin.admin_add("maire@mortree.fr", "brieux.fr")
    with pytest.raises(Forbidden):
        admin.mailbox_list("brieux.fr")
    assert [d["domain"] for d in admin.domain_list()] == ["mortree.fr"]
    store.mailbox_add("jean@brieux.fr", PASSWORD)
    assert [m["address"] for m in admin.mailbox_list()] == ["paul@mortree.fr"]


def test_aliases_fan_out_and_follow_removals(store: MailStore) -> None:
    store.mailbox_add("jean@brieux.fr", PASSWORD)
    store.mailbox_add("marie@brieux.fr", PASSWORD)
    store.alias_add("info@brieux.fr", ["jean@brieux.fr", "marie@brieux.fr"])
    assert store.alias_list("brieux.fr") == [
        {"address": "info@brieux.fr", "destinations": ["jean@brieux.fr", "marie@brieux.fr"]}
    ]
    with pytest.raises(AdmissionRefused, match="is a mailbox"):
        store.alias_add("jean@brieux.fr", ["marie@brieux.fr"])
    with pytest.raises(NotFound, match="does not exist"):
        store.alias_add("x@brieux.fr", ["ghost@brieux.fr"])
    # Postfix reads the fan-out as one row per destination.
    assert sorted(rows(store, "SELECT destination FROM aliases WHERE address = 'info@brieux.fr'"))
    store.mailbox_remove("marie@brieux.fr")
    assert store.alias_list()[0]["destinations"] == ["jean@brieux.fr"]
    store.alias_remove("info@brieux.fr")
    assert store.alias_list() == []


def test_suspend_passwd_and_lookup_views(store: MailStore) -> None:
    store.mailbox_add("jean@brieux.fr", PASSWORD)
    store.alias_add("contact@brieux.fr", ["jean@brieux.fr"])
    assert rows(store, "SELECT login FROM postfix_senders WHERE sender = 'contact@brieux.fr'") == [
        ("jean@brieux.fr",)
    ]
    assert store.mailbox_suspend("jean@brieux.fr")["changed"] is True
    assert store.mailbox_suspend("jean@brieux.fr")["changed"] is False
    assert rows(store, "SELECT suspended FROM dovecot_users") == [(1,)]
    assert rows(store, "SELECT * FROM postfix_senders") == []
    store.mailbox_passwd("jean@brieux.fr", "another long secret")
    [(stored,)] = rows(store, "SELECT password FROM mailboxes")
    assert verify_password(stored, "another long secret")


def test_dkim_rotation_publishes_before_signing(store: MailStore, tmp_path: Path) -> None:
    assert store.dkim_list("brieux.fr") == []
    store.dkim_new("brieux.fr", activate=True)
    [first] = store.dkim_list("brieux.fr")
    assert first["state"] == "active"
    store.dkim_new("brieux.fr", "k2")
    selectors = (tmp_path / "dkim" / "selectors.map").read_text()
    assert f"brieux.fr {first['selector']}" in selectors  # still signing with the old key
    store.dkim_activate("brieux.fr", "k2")
    assert "brieux.fr k2\n" in (tmp_path / "dkim" / "selectors.map").read_text()
    with pytest.raises(AdmissionRefused, match="cannot be retired"):
        store.dkim_retire("brieux.fr", "k2")
    store.dkim_retire("brieux.fr", first["selector"])
    states = {k["selector"]: k["state"] for k in store.dkim_list("brieux.fr")}
    assert states == {first["selector"]: "retired", "k2": "active"}
    key = tmp_path / "dkim" / "brieux.fr.k2.key"
    assert key.stat().st_mode & 0o077 in (0, 0o040)  # never world-readable


def run_cli(tmp_path: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "from kloudctl.cli import main; main()",
            "mail",
            "--db",
            str(tmp_path / "cli.sqlite"),
            *args,
        ],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )


def test_cli_exit_codes_and_password_never_in_argv(tmp_path: Path) -> None:
    ok = run_cli(
        tmp_path,
        "domain",
        "add",
        "brieux.fr",
        "--max-mailboxes",
        "5",
        "--total-quota",
        "5GiB",
        "--no-dkim",
    )
    assert ok.returncode == 0, ok.stderr
    added = run_cli(
        tmp_path, "mailbox", "add", "jean@brieux.fr", "--password-stdin", stdin=PASSWORD + "\n"
    )
    assert added.returncode == 0, added.stderr
    assert PASSWORD not in added.stdout + added.stderr
    no_password = run_cli(tmp_path, "mailbox", "add", "marie@brieux.fr")
    assert no_password.returncode == 2 and "--password-stdin" in no_password.stderr
    for args, message in [
        (("mailbox", "add", "x@nowhere.fr", "--password-stdin"), "unknown domain nowhere.fr"),
        (("mailbox", "add", "bad address", "--password-stdin"), "expected an address"),
        (("mailbox", "quota", "jean@brieux.fr", "lots"), "expected a size"),
        (("mailbox", "add", "--password", "x", "a@brieux.fr"), "No such option"),
    ]:
        result = run_cli(tmp_path, *args, stdin=PASSWORD + "\n")
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr
    listed = run_cli(tmp_path, "mailbox", "list", "--json")
    assert '"jean@brieux.fr"' in listed.stdout


def test_read_commands_never_create_the_store(tmp_path: Path) -> None:
    missing = MailStore(LocalTransport(tmp_path / "typo" / "mail.db"))
    with pytest.raises(
        NotFound, match=r"no accounts database at .*typo/mail\.db: `kloudctl mail --db"
    ):
        missing.domain_list()
    with pytest.raises(InputError, match=r"folder .*typo does not exist"):
        missing.domain_add("x.fr", max_mailboxes=1, total_quota=GiB, default_quota=GiB, dkim=False)
    assert not (tmp_path / "typo").exists()
    fresh = MailStore(LocalTransport(tmp_path / "mail.db"))
    with pytest.raises(NotFound):
        fresh.mailbox_list()
    with pytest.raises(InputError):  # a refused first write leaves no empty store behind
        fresh.domain_add("not a domain", max_mailboxes=1, total_quota=GiB, default_quota=GiB)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    assert fresh.init() == {"db": str(tmp_path / "mail.db"), "changed": True,
                            "store_created": str(tmp_path / "mail.db")}  # fmt: skip
    assert fresh.init()["changed"] is False and fresh.domain_list() == []


def test_numbers_past_the_documented_maxima_are_input_errors(store: MailStore) -> None:
    """Was `OverflowError: Python int too large to convert to SQLite INTEGER`, exit 1."""
    huge = 9999999 * 1024**4
    with pytest.raises(InputError, match=r"quota: a quota must be at most 1PiB"):
        store.mailbox_add("a@brieux.fr", PASSWORD, huge)
    with pytest.raises(InputError, match=r"total_quota: a quota must be at most 1PiB"):
        store.domain_add("x.fr", max_mailboxes=1, total_quota=huge, default_quota=GiB)
    with pytest.raises(InputError, match=r"max_mailboxes: expected a number from 1 to 1000000"):
        store.domain_add("x.fr", max_mailboxes=10**23, total_quota=GiB, default_quota=GiB)
    with pytest.raises(InputError, match="at most 1PiB"):
        store.mailbox_quota("a@brieux.fr", 2**63)
    with pytest.raises(InputError, match="at most 1PiB"):
        store.mailbox_add_many([("a@brieux.fr", PASSWORD, huge)])
    with pytest.raises(InputError, match="at most 1PiB"):
        store.domain_set("brieux.fr", total_quota=2**70)
    assert rows(store, "SELECT count(*) FROM mailboxes") == [(0,)]


def test_domain_set_changes_caps_and_a_full_domain_says_how(store: MailStore) -> None:
    store.domain_set("brieux.fr", max_mailboxes=1)
    store.mailbox_add("a@brieux.fr", PASSWORD)
    with pytest.raises(
        AdmissionRefused,
        match=r"maximum number of mailboxes \(1 of 1\): raise it with "
        r"`kloudctl mail --db .*accounts\.sqlite domain set brieux\.fr --max-mailboxes N`",
    ):
        store.mailbox_add("b@brieux.fr", PASSWORD)
    done = store.domain_set("brieux.fr", max_mailboxes=2, default_quota=2 * GiB)
    assert done == {"domain": "brieux.fr", "max_mailboxes": 2, "total_quota": 5 * GiB,
                    "default_quota": 2 * GiB, "changed": True}  # fmt: skip
    assert store.domain_set("brieux.fr", max_mailboxes=2)["changed"] is False
    assert store.mailbox_add("b@brieux.fr", PASSWORD)["quota"] == 2 * GiB
    with pytest.raises(AdmissionRefused, match=r"total quota would be exceeded \(3GiB of 5GiB"):
        store.mailbox_add("c@brieux.fr", PASSWORD, 3 * GiB)
    with pytest.raises(AdmissionRefused, match="more than the new caps"):
        store.domain_set("brieux.fr", total_quota=2 * GiB, default_quota=GiB)
    with pytest.raises(InputError, match="would exceed the total quota"):
        store.domain_set("brieux.fr", default_quota=6 * GiB)
    with pytest.raises(InputError, match="nothing to change"):
        store.domain_set("brieux.fr")
    admin = MailStore(store.transport, actor="maire@brieux.fr")
    with pytest.raises(Forbidden):
        admin.domain_set("brieux.fr", max_mailboxes=9)


def test_passwords_of_any_script_but_no_control_characters(store: MailStore) -> None:
    store.mailbox_add("a@brieux.fr", "mot de passe très sûr ✓")
    for bad, match in [("\ud800" * 12, "control characters"), ("tab\there long", "control"),
                       ("x" * 1025, "at most 1024")]:  # fmt: skip
        with pytest.raises(InputError, match=match):
            store.mailbox_add("b@brieux.fr", bad)
