"""Domain administrators with their own keys, on this machine: the key file checks, the key
lines (read back the way sshd reads them, run through a real shell), grant and revoke on a
real accounts database and keys file, the forced command's refusals, and the audit log.
The same path over a real sshd on a test cabinet is in test_e2e.py."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from kloudctl.errors import AdmissionRefused, Forbidden, InputError
from kloudctl.mail import accounts_db
from kloudctl.mail.accounts_db import (
    PROTOCOL,
    OpError,
    check_public_key,
    check_ssh_command,
    domain_admin_request,
    key_line,
    key_line_owner,
    serve_domain_admin,
)
from kloudctl.mail.store import LocalTransport, MailStore, hash_password, read_public_key

GiB = 1024**3
PASSWORD = "correct horse battery"


def keygen(tmp_path: Path, name: str, *args: str) -> Path:
    """A real key pair made by ssh-keygen; returns the private key's path (.pub beside)."""
    path = tmp_path / name
    subprocess.run(
        ["ssh-keygen", "-q", "-N", "", "-C", name, "-f", str(path), *args],
        check=True,
        capture_output=True,
    )
    return path


@pytest.fixture
def store(tmp_path: Path) -> MailStore:
    s = MailStore(LocalTransport(tmp_path / "accounts.sqlite"))
    for name in ("brieux.fr", "mortree.fr"):
        s.domain_add(name, max_mailboxes=5, total_quota=5 * GiB, default_quota=GiB, dkim=False)
    return s


def keys_file(store: MailStore) -> Path:
    assert isinstance(store.transport, LocalTransport)
    return store.transport.db.parent / "domain-admin-keys"


def audit_rows(store: MailStore) -> list[tuple[str | None, str, str, str]]:
    assert isinstance(store.transport, LocalTransport)
    with sqlite3.connect(store.transport.db) as db:
        return db.execute("SELECT actor, op, target, outcome FROM audit ORDER BY id").fetchall()


# --- the key file -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", [("-t", "ed25519"), ("-t", "ecdsa"), ("-t", "rsa", "-b", "3072")])
def test_real_public_keys_of_accepted_types_are_read(tmp_path: Path, kind: tuple[str, ...]) -> None:
    pub = keygen(tmp_path, "k", *kind).with_suffix(".pub")
    key_type, data = check_public_key(pub.read_text())
    assert pub.read_text().split()[:2] == [key_type, data]


def test_key_files_that_are_not_one_public_key_are_refused_naming_the_file(
    tmp_path: Path,
) -> None:
    ed = keygen(tmp_path, "ed", "-t", "ed25519")
    rsa = keygen(tmp_path, "rsa", "-t", "rsa", "-b", "1024")
    ed_pub = ed.with_suffix(".pub").read_text()
    ed_type, ed_data = ed_pub.split()[:2]
    cases = {
        "private": (ed.read_text(), "this is a private key"),
        "two": (ed_pub + rsa.with_suffix(".pub").read_text(), "found 2"),
        "empty": ("# nothing\n\n", "found 0"),
        "options": (f'command="/bin/sh" {ed_pub}', "without options"),
        "mislabelled": (f"ssh-rsa {ed_data}\n", "is a b'ssh-ed25519' key, not ssh-rsa"),
        "not-base64": (f"{ed_type} AAAA!!!!\n", "not a valid ssh-ed25519 key"),
        "truncated": (f"{ed_type} {ed_data[:20]}\n", "not a valid ssh-ed25519 key"),
        "rsa-1024": (rsa.with_suffix(".pub").read_text(), "need 2048 bits, this one has 1024"),
        "dss": ("ssh-dss AAAAB3NzaC1kc3MAAACBAP\n", "expected a public key line"),
    }
    for name, (text, message) in cases.items():
        path = tmp_path / f"{name}.pub"
        path.write_text(text)
        with pytest.raises(InputError) as refused:
            read_public_key(str(path), "--ssh-key")
        assert f"--ssh-key {path}: " in str(refused.value) and message in str(refused.value), name
        # The file's text is never repeated (a private key must not reach a terminal).
        assert ed_data not in str(refused.value) and "OPENSSH" not in str(refused.value)
    with pytest.raises(InputError, match="does not exist"):
        read_public_key(str(tmp_path / "missing.pub"), "--ssh-key")


# --- key lines ----------------------------------------------------------------------------

LOGINS = [
    "maire@brieux.fr",
    "l'adjoint@brieux.fr",
    'quote"d@brieux.fr',
    "back\\slash",
    'trailing\\"',
    "$(touch${IFS}pwned);`id`|x&&y>z",
    "mairie-équipe@brieux.fr",
]


@pytest.mark.parametrize("login", LOGINS)
def test_key_line_forces_the_entry_with_exactly_that_login(tmp_path: Path, login: str) -> None:
    line = key_line(login, "ssh-ed25519", "AAAAC3Nza", entry="/usr/local/sbin/kloudctl-mail-admin")
    assert line.startswith('restrict,command="/usr/local/sbin/kloudctl-mail-admin ')
    assert key_line_owner(line) == (login, "ssh-ed25519", "AAAAC3Nza")
    # sshd hands the option's text, with \" turned into ", to the account's shell (`sh -c`):
    # a real shell must see the entry and one argument, the login, whatever it holds.
    command = line[len('restrict,command="') :].split('" ssh-ed25519 ')[0].replace('\\"', '"')
    shown = subprocess.run(
        ["sh", "-c", command.replace("/usr/local/sbin/kloudctl-mail-admin", "printf '%s\\n'")],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    assert shown.stdout == login + "\n"
    assert list(tmp_path.iterdir()) == []  # nothing in the login ran


@pytest.mark.parametrize("login", ["", "two words", "tab\there", "new\nline", "nul\x00", 5])
def test_logins_that_cannot_be_a_key_line_are_refused(login: object) -> None:
    with pytest.raises(OpError, match="invalid administrator login"):
        key_line(login, "ssh-ed25519", "AAAA")  # type: ignore[arg-type]


def test_lines_not_written_by_kloudctl_have_no_owner() -> None:
    for line in [
        "ssh-ed25519 AAAA someone",
        'command="/usr/local/sbin/kloudctl-mail-admin x" ssh-ed25519 AAAA',
        'restrict,command="/bin/sh x" ssh-ed25519 AAAA',
        'restrict,command="/usr/local/sbin/kloudctl-mail-admin a b" ssh-ed25519 AAAA',
        'restrict,command="/usr/local/sbin/kloudctl-mail-admin x ssh-ed25519 AAAA',
    ]:
        assert key_line_owner(line) is None, line


# --- grant and revoke ---------------------------------------------------------------------


def test_grant_installs_one_forced_key_line_and_is_idempotent(
    store: MailStore, tmp_path: Path
) -> None:
    pub = keygen(tmp_path, "maire").with_suffix(".pub").read_text()
    first = store.admin_grant("maire@brieux.fr", "brieux.fr", pub)
    assert first["changed"] and first["key_added"]
    text = keys_file(store).read_text()
    [line] = text.splitlines()
    assert key_line_owner(line) == ("maire@brieux.fr", *pub.split()[:2])
    assert line.startswith("restrict,command=")
    again = store.admin_grant("maire@brieux.fr", "brieux.fr", pub)
    assert not again["changed"] and not again["key_added"]
    assert keys_file(store).read_text() == text
    # A second domain: rights change, the key is already there.
    second = store.admin_grant("maire@brieux.fr", "mortree.fr", pub)
    assert second["changed"] and not second["key_added"]
    assert keys_file(store).read_text() == text
    # One key, one administrator: someone else's grant with it is refused, nothing changes.
    with pytest.raises(AdmissionRefused, match=r"already maire@brieux\.fr's"):
        store.admin_grant("adjoint@brieux.fr", "brieux.fr", pub)
    assert keys_file(store).read_text() == text
    assert [r["login"] for r in store.admin_list()] == ["maire@brieux.fr"] * 2


def test_revoke_removes_keys_only_when_no_domain_is_left(store: MailStore, tmp_path: Path) -> None:
    keys_file(store).write_text("ssh-ed25519 AAAAkeptAsIs someone-else\n")
    maire = keygen(tmp_path, "maire").with_suffix(".pub").read_text()
    other = keygen(tmp_path, "other").with_suffix(".pub").read_text()
    store.admin_grant("maire@brieux.fr", "brieux.fr", maire)
    store.admin_grant("maire@brieux.fr", "mortree.fr", maire)
    store.admin_grant("adjoint@brieux.fr", "brieux.fr", other)
    partial = store.admin_revoke("maire@brieux.fr", "mortree.fr")
    assert partial["domains_left"] == ["brieux.fr"] and partial["keys_removed"] == 0
    assert len(keys_file(store).read_text().splitlines()) == 3
    full = store.admin_revoke("maire@brieux.fr")
    assert full["keys_removed"] == 1 and full["changed"]
    lines = keys_file(store).read_text().splitlines()
    assert lines[0] == "ssh-ed25519 AAAAkeptAsIs someone-else"
    assert [key_line_owner(ln) and key_line_owner(ln)[0] for ln in lines[1:]] == [  # type: ignore[index]
        "adjoint@brieux.fr"
    ]
    assert not store.admin_revoke("maire@brieux.fr")["changed"]  # a re-run converges


def test_only_the_operator_grants_revokes_and_reads_the_audit(
    store: MailStore, tmp_path: Path
) -> None:
    pub = keygen(tmp_path, "k").with_suffix(".pub").read_text()
    store.admin_add("maire@brieux.fr", "brieux.fr")
    admin = MailStore(store.transport, actor="maire@brieux.fr")
    with pytest.raises(Forbidden, match="operators only"):
        admin.admin_grant("maire@brieux.fr", "mortree.fr", pub)
    with pytest.raises(Forbidden, match="operators only"):
        admin.admin_revoke("maire@brieux.fr")
    with pytest.raises(Forbidden, match="operators only"):
        admin.audit_list()
    assert not keys_file(store).exists()


# --- the forced command ----------------------------------------------------------------


def test_only_the_request_protocol_is_accepted_as_ssh_command() -> None:
    check_ssh_command(PROTOCOL)
    for asked in [None, "", "/bin/sh -c id", "sh", f"{PROTOCOL} ; id", "scp -t /tmp"]:
        with pytest.raises(OpError) as refused:
            check_ssh_command(asked)
        assert refused.value.kind == "protocol", asked


@pytest.mark.parametrize(
    ("request_", "kind", "message"),
    [
        ({"op": "mailbox_list", "args": {}, "actor": None}, "forbidden", "may not set actor"),
        ({"op": "mailbox_list", "db": "/tmp/x"}, "forbidden", "may not set db"),
        ({"op": "dkim_new", "dkim_dir": "/tmp", "args": {}}, "forbidden", "may not set dkim_dir"),
        ({"op": "mailbox_list", "keys_file": "/root/x"}, "forbidden", "may not set keys_file"),
        ({"op": "dkim_new", "args": {}}, "forbidden", "dkim_new: operators only"),
        ({"op": "domain_add", "args": {}}, "forbidden", "operators only"),
        ({"op": "admin_grant", "args": {}}, "forbidden", "operators only"),
        ({"op": "audit_list", "args": {}}, "forbidden", "operators only"),
        ({"op": "init"}, "forbidden", "operators only"),
        ({"op": "drop_everything"}, "input", "unknown operation"),
        ({"op": "mailbox_list", "args": []}, "input", "must be an object"),
        (["mailbox_list"], "protocol", "a JSON object"),
        ("not json", "protocol", "not JSON"),
    ],
)
def test_requests_a_domain_admin_may_not_send_are_refused(
    request_: object, kind: str, message: str
) -> None:
    raw = request_ if isinstance(request_, str) else json.dumps(request_)
    with pytest.raises(OpError) as refused:
        domain_admin_request(raw)
    assert refused.value.kind == kind and message in refused.value.message


def served(store: MailStore, login: str, request: object) -> dict[str, object]:
    """The forced command's second stage, as it runs on the host, on this store."""
    assert isinstance(store.transport, LocalTransport)
    db = store.transport.db
    config = {"db": str(db), "dkim_dir": str(db.parent / "dkim"), "keys_file": str(db) + ".k"}
    raw = json.dumps(request)
    return serve_domain_admin(
        login, raw, config, (Path(accounts_db.__file__).parent / "schema.sql").read_text()
    )


def test_forced_command_runs_the_store_as_the_key_s_login_only(store: MailStore) -> None:
    store.admin_add("maire@brieux.fr", "brieux.fr")
    pw = hash_password(PASSWORD)
    add = {
        "op": "mailbox_add",
        "args": {"address": "jean@brieux.fr", "password": pw, "quota": None},
    }
    assert served(store, "maire@brieux.fr", add)["ok"]
    other = {
        "op": "mailbox_add",
        "args": {"address": "jean@mortree.fr", "password": pw, "quota": None},
    }
    refused = served(store, "maire@brieux.fr", other)
    assert refused["kind"] == "forbidden" and "may not manage domain mortree.fr" in str(refused)
    listing = served(
        store, "maire@brieux.fr", {"op": "mailbox_list", "args": {"domain": "mortree.fr"}}
    )
    assert listing["kind"] == "forbidden"
    # Claiming to be the operator (actor null) is refused, not obeyed.
    claimed = served(store, "maire@brieux.fr", {**other, "actor": None})
    assert claimed["kind"] == "forbidden" and "may not set actor" in str(claimed)
    mine = served(store, "maire@brieux.fr", {"op": "mailbox_list", "args": {"domain": None}})
    assert [m["address"] for m in mine["result"]] == ["jean@brieux.fr"]  # type: ignore[index]
    assert store.mailbox_list("mortree.fr") == []
    # Everything above is in the audit log, with who did it, and no password.
    rows = audit_rows(store)
    assert ("maire@brieux.fr", "mailbox_add", "jean@brieux.fr", "done") in rows
    assert ("maire@brieux.fr", "mailbox_add", "jean@mortree.fr", "forbidden") in rows
    assert ("maire@brieux.fr", "mailbox_list", "mortree.fr", "forbidden") in rows
    assert ("maire@brieux.fr", "request", "", "forbidden") in rows
    assert (None, "admin_add", "maire@brieux.fr brieux.fr", "done") in rows
    assert not any("ARGON2" in str(r) or PASSWORD in str(r) for r in rows)
    read = store.audit_list(actor="maire@brieux.fr")
    assert [(r["op"], r["outcome"]) for r in read] == [
        ("mailbox_add", "done"),
        ("mailbox_add", "forbidden"),
        ("mailbox_list", "forbidden"),
        ("request", "forbidden"),
    ]
    assert store.audit_list(limit=1)[0]["op"] == "request"


def test_existing_stores_gain_the_audit_table(tmp_path: Path) -> None:
    schema = (Path(accounts_db.__file__).parent / "schema.sql").read_text()
    before = re.sub(r"CREATE TABLE IF NOT EXISTS audit \(.*?\);", "", schema, flags=re.S)
    assert "audit" not in before.split("--")[0] and before != schema
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript(before)
        db.execute("PRAGMA user_version = 7")
    store = MailStore(LocalTransport(path))
    store.domain_add("brieux.fr", max_mailboxes=1, total_quota=GiB, default_quota=GiB, dkim=False)
    assert [(r["op"], r["target"], r["actor"]) for r in store.audit_list()] == [
        ("domain_add", "brieux.fr", "operator")
    ]


def test_cli_grant_revoke_audit_and_refusals(tmp_path: Path) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", "from kloudctl.cli import main; main()", "mail", "--db",
             str(tmp_path / "cli.sqlite"), *args],
            capture_output=True, text=True, check=False,
        )  # fmt: skip

    pub = keygen(tmp_path, "maire").with_suffix(".pub")
    assert cli("domain", "add", "brieux.fr", "--max-mailboxes", "5", "--total-quota", "5GiB",
               "--no-dkim").returncode == 0  # fmt: skip
    granted = cli(
        "admin", "grant", "maire@brieux.fr", "--domain", "brieux.fr", "--ssh-key", str(pub)
    )
    assert granted.returncode == 0 and "key installed" in granted.stderr + granted.stdout
    again = cli("admin", "grant", "maire@brieux.fr", "--domain", "brieux.fr", "--ssh-key", str(pub))
    assert again.returncode == 0 and "no change" in again.stderr + again.stdout
    private = tmp_path / "maire"
    wrong = cli("admin", "grant", "x@brieux.fr", "--domain", "brieux.fr", "--ssh-key", str(private))
    assert wrong.returncode == 2 and f"--ssh-key {private}: this is a private key" in wrong.stderr
    both = cli("--as", "x", "--domain-admin", "mailbox", "list")
    assert both.returncode == 2 and "your key says who you are" in both.stderr
    no_host = cli("--domain-admin", "mailbox", "list")
    assert no_host.returncode == 2 and "--domain-admin: give --host" in no_host.stderr
    revoked = cli("admin", "revoke", "maire@brieux.fr")
    assert revoked.returncode == 0 and "1 key(s) removed" in revoked.stderr + revoked.stdout
    assert (tmp_path / "domain-admin-keys").read_text() == ""
    audit = cli("audit", "--json")
    assert audit.returncode == 0, audit.stderr
    assert [(r["op"], r["outcome"]) for r in json.loads(audit.stdout)] == [
        ("domain_add", "done"),
        ("admin_grant", "done"),
        ("admin_grant", "done"),
        ("admin_revoke", "done"),
    ]
