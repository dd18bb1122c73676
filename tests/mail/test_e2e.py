"""Mail end to end on a test cabinet: the mail role applied twice by ansible-playbook, the
accounts created with `kloudctl mail` over SSH, real SMTP and IMAP clients (smtplib,
imaplib) from this machine over the podman network, a real authoritative DNS server
(NSD) serving the zone from `kloudctl mail dns plan`, dkimpy verifying against it.
Outbound mail goes to the cabinet's sink folder, never out."""

from __future__ import annotations

import json
import secrets
import smtplib
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import dkim
import dns.resolver
import pytest

from kloudctl.mail import dns as maildns
from kloudctl.testbed.mailbed import MailCabinet, mail_cabinet, message, podman_available
from scripts.demo_mail import kloudctl  # the CLI, run as the demo runs it
from tests.mail.nsd import Nsd, zone_text

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.podman,
    pytest.mark.skipif(not podman_available(), reason="needs root and podman"),
]

AUTH_FAILED = r"AUTHENTICATIONFAILED|[Aa]uthentication failed"
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


def add_mailbox(cab: MailCabinet, address: str, quota: str | None = None) -> str:
    """A mailbox with a fresh random password (returned, never printed)."""
    password = "pw-" + secrets.token_urlsafe(12)
    args = ["mailbox", "add", address, "--password-stdin"] + (["--quota", quota] if quota else [])
    done = kloudctl(cab, *args, stdin=password + "\n")
    assert done.returncode == 0, done.stderr
    return password


class World:
    def __init__(self, cab: MailCabinet) -> None:
        self.cab = cab
        self.pw: dict[str, str] = {}

    def send(self, sender: str, to: str, port: int = 587) -> str:
        """An authenticated submission as `sender` to `to`; returns the message's subject."""
        s = subject()
        self.cab.submit(port, sender, self.pw[sender], sender, [to], message(sender, to, s))
        return s


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with mail_cabinet(tmp_path_factory.mktemp("mail-e2e")) as cab:
        w = World(cab)
        for domain, cap in (("brieux.fr", "10"), ("mortree.fr", "5")):
            done = kloudctl(
                cab,
                "domain",
                "add",
                domain,
                "--max-mailboxes",
                cap,
                "--total-quota",
                "10GiB",
                "--default-quota",
                "1GiB",
            )
            assert done.returncode == 0, done.stderr
        for address in ("jean@brieux.fr", "marie@brieux.fr", "jean@mortree.fr", "paul@mortree.fr"):
            w.pw[address] = add_mailbox(cab, address)
        w.pw["petit@brieux.fr"] = add_mailbox(cab, "petit@brieux.fr", quota="1MiB")
        done = kloudctl(cab, "alias", "add", "info@brieux.fr", "jean@brieux.fr", "marie@brieux.fr")
        assert done.returncode == 0, done.stderr
        yield w


def subject() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


def test_roles_converge_twice_with_no_change(world: World) -> None:
    recap = world.cab.recap  # the second run, through ansible-runner (kloudctl.hosts.runner)
    assert recap.host == "brieux" and recap.ok > 0, recap
    assert recap.changed == 0 and recap.failed == 0 and recap.unreachable == 0, recap


def test_cli_created_mailbox_receives_via_587_and_465_and_reads_over_imap(world: World) -> None:
    cab, pw = world.cab, world.pw
    for port in (587, 465):
        s = world.send("marie@brieux.fr", "jean@brieux.fr", port)
        assert len(cab.wait_for("jean@brieux.fr", pw["jean@brieux.fr"], s)) == 1, port


def test_alias_fans_out_to_two_mailboxes(world: World) -> None:
    cab, pw = world.cab, world.pw
    s = world.send("paul@mortree.fr", "info@brieux.fr")
    for user in ("jean@brieux.fr", "marie@brieux.fr"):
        assert len(cab.wait_for(user, pw[user], s)) == 1, user


def test_two_communes_domains_stay_separate(world: World) -> None:
    cab, pw = world.cab, world.pw
    s = world.send("paul@mortree.fr", "jean@mortree.fr")
    assert len(cab.wait_for("jean@mortree.fr", pw["jean@mortree.fr"], s)) == 1
    assert cab.wait_for("jean@brieux.fr", pw["jean@brieux.fr"], s, timeout=2) == []
    # jean@brieux.fr's password does not open jean@mortree.fr.
    with pytest.raises(Exception, match=AUTH_FAILED):
        cab.imap("jean@mortree.fr", pw["jean@brieux.fr"])
    # Mortrée's administrator manages Mortrée only.
    assert kloudctl(cab, "admin", "add", "maire@mortree.fr", "mortree.fr").returncode == 0
    refused = kloudctl(cab, "mailbox", "list", "brieux.fr", actor="maire@mortree.fr")
    assert refused.returncode == 1 and "may not manage domain brieux.fr" in refused.stderr
    listed = kloudctl(cab, "mailbox", "list", "--json", actor="maire@mortree.fr")
    assert sorted(m["address"] for m in json.loads(listed.stdout)) == [
        "jean@mortree.fr",
        "paul@mortree.fr",
    ]


def test_relay_without_authentication_is_refused_but_inbound_is_accepted(world: World) -> None:
    cab, pw = world.cab, world.pw
    # From this machine to the cabinet's podman address: not in mynetworks.
    with smtplib.SMTP(cab.address, 25, timeout=30) as client:
        client.ehlo("outside.example")
        code, text = client.mail("someone@example.org")
        assert code == 250
        code, text = client.rcpt("victim@example.com")
        assert code == 554 and b"Relay access denied" in text
        client.rset()
        s = subject()
        client.sendmail(
            "someone@example.org",
            ["jean@brieux.fr"],
            message("someone@example.org", "jean@brieux.fr", s),
        )
    assert len(cab.wait_for("jean@brieux.fr", pw["jean@brieux.fr"], s)) == 1


def test_outbound_mail_goes_to_the_sink(world: World) -> None:
    cab = world.cab
    s = world.send("marie@brieux.fr", "ami@example.org")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if cab.sh(f"grep -l {s} /var/spool/kloudctl-mail-sink/*.eml", check=False).returncode == 0:
            return
        time.sleep(0.5)
    pytest.fail("outbound message not in the sink")


def test_sending_as_another_user_is_refused(world: World) -> None:
    cab, pw = world.cab, world.pw
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        cab.submit(
            587,
            "marie@brieux.fr",
            pw["marie@brieux.fr"],
            "jean@brieux.fr",
            ["paul@mortree.fr"],
            message("jean@brieux.fr", "paul@mortree.fr", subject()),
        )
    [(code, text)] = refused.value.recipients.values()
    assert code == 553 and b"not owned by user" in text


def test_auth_only_on_submission_and_only_after_starttls(world: World) -> None:
    cab = world.cab
    with smtplib.SMTP(cab.address, 25, timeout=30) as client:
        client.ehlo("outside.example")
        assert not client.has_extn("auth")
        client.starttls(context=cab.tls())
        client.ehlo("outside.example")
        assert not client.has_extn("auth")
    with smtplib.SMTP(cab.address, 587, timeout=30) as client:
        client.ehlo("outside.example")
        assert not client.has_extn("auth")
        code, _ = client.docmd("AUTH", "PLAIN AGplYW4AeA==")
        assert code in (503, 530, 538)
        client.starttls(context=cab.tls())
        client.ehlo("outside.example")
        assert "PLAIN" in client.esmtp_features["auth"].upper()


def test_tls_1_1_is_refused_everywhere(world: World) -> None:
    cab = world.cab
    old = cab.tls(maximum=ssl.TLSVersion.TLSv1_1)
    current = cab.tls(maximum=ssl.TLSVersion.TLSv1_2)
    for port in (587, 25):
        with smtplib.SMTP(cab.address, port, timeout=30) as client, pytest.raises(ssl.SSLError):
            client.starttls(context=old)
        with smtplib.SMTP(cab.address, port, timeout=30) as client:
            client.starttls(context=current)  # the control: TLS 1.2 works
    for port in (465, 993):
        with pytest.raises(ssl.SSLError):
            smtplib.SMTP_SSL(cab.address, port, context=old, timeout=30) if port == 465 else (
                __import__("imaplib").IMAP4_SSL(cab.address, port, ssl_context=old)
            )


def test_wrong_password_is_refused(world: World) -> None:
    cab = world.cab
    with pytest.raises(smtplib.SMTPAuthenticationError):
        cab.submit(
            587,
            "jean@brieux.fr",
            "not-the-password",
            "jean@brieux.fr",
            ["marie@brieux.fr"],
            message("jean@brieux.fr", "marie@brieux.fr", subject()),
        )
    with pytest.raises(Exception, match=AUTH_FAILED):
        cab.imap("jean@brieux.fr", "not-the-password")


def test_suspended_mailbox_cannot_log_in(world: World) -> None:
    cab, pw = world.cab, world.pw
    assert kloudctl(cab, "mailbox", "suspend", "paul@mortree.fr").returncode == 0
    try:
        with pytest.raises(Exception, match=AUTH_FAILED):
            cab.imap("paul@mortree.fr", pw["paul@mortree.fr"])
    finally:
        assert kloudctl(cab, "mailbox", "suspend", "--resume", "paul@mortree.fr").returncode == 0
    cab.imap("paul@mortree.fr", pw["paul@mortree.fr"]).logout()


def test_over_quota_is_refused_at_rcpt_time(world: World) -> None:
    cab, pw = world.cab, world.pw
    big = message("marie@brieux.fr", "petit@brieux.fr", subject(), "x" * 2_000_000)
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        cab.submit(
            587,
            "marie@brieux.fr",
            pw["marie@brieux.fr"],
            "marie@brieux.fr",
            ["petit@brieux.fr"],
            big,
            size=len(big),
        )
    [(code, text)] = refused.value.recipients.values()
    assert code == 552 and b"Mailbox is full" in text
    # Inbound on port 25 too.
    with smtplib.SMTP(cab.address, 25, timeout=30) as client:
        client.ehlo("outside.example")
        client.mail("someone@example.org", [f"SIZE={len(big)}"])
        code, text = client.rcpt("petit@brieux.fr")
        assert code == 552, text


def test_gtube_is_flagged_as_spam(world: World) -> None:
    cab = world.cab
    with smtplib.SMTP(cab.address, 25, timeout=30) as client:
        client.ehlo("outside.example")
        with pytest.raises(smtplib.SMTPDataError) as refused:
            client.sendmail(
                "someone@example.org",
                ["jean@brieux.fr"],
                message("someone@example.org", "jean@brieux.fr", subject(), GTUBE),
            )
    # rspamd's verdict for GTUBE is "reject": the milter refuses the message at DATA.
    assert refused.value.smtp_code == 554 and b"gtube" in refused.value.smtp_error.lower()


@pytest.fixture(scope="module")
def published(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nsd]:
    """brieux.fr's zone as planned by `kloudctl mail dns plan` (DKIM key read from the
    cabinet's accounts over SSH), served by NSD on loopback."""
    planned = kloudctl(
        world.cab,
        "dns",
        "plan",
        "brieux.fr",
        "--json",
        "--ipv4",
        world.cab.address,
        "--hostname",
        "mail.brieux.fr",
    )
    assert planned.returncode == 0, planned.stderr
    records = [maildns.Record(**r) for r in json.loads(planned.stdout)]
    reverse = records[-1].name.split(".", 1)[1]
    nsd = Nsd(
        tmp_path_factory.mktemp("nsd-e2e"),
        {
            "brieux.fr.": zone_text("brieux.fr.", [r for r in records if r.type != "PTR"]),
            reverse: zone_text(reverse, [r for r in records if r.type == "PTR"]),
        },
    )
    yield nsd
    nsd.stop()


def test_dkim_signature_verifies_against_the_published_key(world: World, published: Nsd) -> None:
    cab, pw = world.cab, world.pw
    s = world.send("marie@brieux.fr", "jean@brieux.fr")
    [raw] = cab.wait_for("jean@brieux.fr", pw["jean@brieux.fr"], s)
    assert b"DKIM-Signature:" in raw and b"d=brieux.fr" in raw
    resolver = maildns.make_resolver(published.server)

    def dnsfunc(name: bytes, timeout: float = 5) -> bytes:
        try:
            answer = resolver.resolve(name.decode().rstrip("."), "TXT")
        except dns.resolver.NXDOMAIN:
            return b""
        return b"".join(b"".join(r.strings) for r in answer)

    assert dkim.verify(raw, dnsfunc=dnsfunc)
    assert not dkim.verify(raw.replace(b"Bonjour", b"Bonsoir"), dnsfunc=dnsfunc)


def test_dns_check_passes_on_the_published_zone(world: World, published: Nsd) -> None:
    checked = kloudctl(
        world.cab,
        "dns",
        "check",
        "brieux.fr",
        "--resolver",
        published.server,
        "--ipv4",
        world.cab.address,
        "--hostname",
        "mail.brieux.fr",
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_web_serves_mta_sts_policy_and_autoconfig(world: World) -> None:
    cab = world.cab
    policy = cab.sh(
        "curl -sk --resolve mta-sts.brieux.fr:443:127.0.0.1 "
        "https://mta-sts.brieux.fr/.well-known/mta-sts.txt"
    ).stdout
    assert policy == maildns.mta_sts_policy("mail.brieux.fr")
    config = cab.sh(
        "curl -s --resolve autoconfig.mortree.fr:80:127.0.0.1 "
        "http://autoconfig.mortree.fr/mail/config-v1.1.xml"
    ).stdout
    assert "<domain>mortree.fr</domain>" in config and "<port>993</port>" in config


def test_bare_newline_cannot_smuggle_a_second_message(world: World) -> None:
    """smtpd_forbid_bare_newline = yes (Postfix 3.7.11: "normalize"): only <CR><LF>.<CR><LF>
    ends DATA, so a bare-LF "end of data" followed by SMTP commands stays message text."""
    cab, pw = world.cab, world.pw
    s = subject()
    with smtplib.SMTP(cab.address, 25, timeout=30) as client:
        client.ehlo("outside.example")
        assert client.mail("someone@example.org")[0] == 250
        assert client.rcpt("jean@brieux.fr")[0] == 250
        assert client.docmd("DATA")[0] == 354
        client.send(
            f"Subject: {s}\r\nFrom: someone@example.org\r\n\r\nhello\n.\n"
            "MAIL FROM:<admin@brieux.fr>\nRCPT TO:<marie@brieux.fr>\nDATA\nsmuggled\n"
            "\r\n.\r\n".encode()
        )
        code, _ = client.getreply()
    assert code == 250
    [raw] = cab.wait_for("jean@brieux.fr", pw["jean@brieux.fr"], s)
    assert b"RCPT TO:<marie@brieux.fr>" in raw  # the "commands" were only text
    assert cab.wait_for("marie@brieux.fr", pw["marie@brieux.fr"], "smuggled", timeout=2) == []


# --- domain administrators with their own keys (OpenSSH forced commands) ----------------

DOMADM = "kloudctl-domadm"  # the mail role's mail__domain_admin_user
MAIRE = "maire@brieux.fr"
#: A login that only survives the key line and the account's shell if both are quoted right.
ODD_LOGIN = "l'adjoint\"$(id)`id`@brieux.fr"


def keygen(folder: Path, name: str) -> Path:
    key = folder / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)],
        check=True,
        capture_output=True,
    )
    return key


def as_domain_admin(
    cab: MailCabinet, key: Path, *args: str, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    """`kloudctl mail` as a domain administrator runs it: their own key, the mail host's
    domain administrators' account, --domain-admin (and no --as)."""
    options = ["--host", f"{DOMADM}@{cab.address}", "--ssh-key", str(key)]
    options += ["--known-hosts", str(cab.known_hosts), "--domain-admin"]
    return subprocess.run(
        [sys.executable, "-c", "from kloudctl.cli import main; main()", "mail", *options, *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )


def raw_ssh(
    cab: MailCabinet, key: Path, *args: str, stdin: str = "", timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """OpenSSH's client with the administrator's key, asking for anything (`args`)."""
    return subprocess.run(
        ["ssh", "-i", str(key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
         "-o", f"UserKnownHostsFile={cab.known_hosts}", "-o", "StrictHostKeyChecking=yes",
         "-l", DOMADM, *args],
        input=stdin, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def maire_key(world: World, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """brieux.fr's administrator, granted with their own key by the operator."""
    key = keygen(tmp_path_factory.mktemp("domadm"), "maire")
    for _ in range(2):  # the second grant changes nothing
        done = kloudctl(
            world.cab, "admin", "grant", MAIRE, "--domain", "brieux.fr", "--ssh-key", f"{key}.pub"
        )
        assert done.returncode == 0, done.stderr
    assert "no change" in done.stderr + done.stdout
    keys = world.cab.sh("cat /etc/kloudctl-mail/domain-admin-keys").stdout.splitlines()
    assert len(keys) == 1 and keys[0].startswith('restrict,command="/usr/local/sbin/')
    return key


def test_domain_admin_key_adds_and_removes_own_domain_mailboxes(
    world: World, maire_key: Path
) -> None:
    cab = world.cab
    password = "pw-" + secrets.token_urlsafe(12)
    added = as_domain_admin(
        cab, maire_key, "mailbox", "add", "conseil@brieux.fr", "--password-stdin",
        stdin=password + "\n",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    cab.imap("conseil@brieux.fr", password).logout()  # a real mailbox, at once
    listed = as_domain_admin(cab, maire_key, "mailbox", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    addresses = [m["address"] for m in json.loads(listed.stdout)]
    assert "conseil@brieux.fr" in addresses and all(a.endswith("@brieux.fr") for a in addresses)
    removed = as_domain_admin(cab, maire_key, "mailbox", "remove", "conseil@brieux.fr", "--yes")
    assert removed.returncode == 0, removed.stderr
    with pytest.raises(Exception, match=AUTH_FAILED):
        cab.imap("conseil@brieux.fr", password)
    audit = kloudctl(cab, "audit", "--json", "--actor", MAIRE)
    assert audit.returncode == 0, audit.stderr
    done = [(r["op"], r["target"]) for r in json.loads(audit.stdout) if r["outcome"] == "done"]
    assert done[-2:] == [
        ("mailbox_add", "conseil@brieux.fr"),
        ("mailbox_remove", "conseil@brieux.fr"),
    ]
    assert password not in audit.stdout and "ARGON2" not in audit.stdout


def test_domain_admin_key_cannot_touch_or_list_another_domain(
    world: World, maire_key: Path
) -> None:
    cab = world.cab
    add = as_domain_admin(
        cab, maire_key, "mailbox", "add", "intrus@mortree.fr", "--password-stdin",
        stdin="pw-" + secrets.token_urlsafe(12) + "\n",
    )  # fmt: skip
    assert add.returncode == 1 and "may not manage domain mortree.fr" in add.stderr
    listed = as_domain_admin(cab, maire_key, "mailbox", "list", "mortree.fr")
    assert listed.returncode == 1 and "may not manage domain mortree.fr" in listed.stderr
    suspend = as_domain_admin(cab, maire_key, "mailbox", "suspend", "paul@mortree.fr")
    assert suspend.returncode == 1 and "may not manage domain mortree.fr" in suspend.stderr
    dkim = as_domain_admin(cab, maire_key, "dkim", "rotate", "brieux.fr")
    assert dkim.returncode == 1 and "dkim_new: operators only" in dkim.stderr
    # The request protocol by hand: claiming to be the operator is refused, not obeyed.
    claim = json.dumps({"op": "domain_add", "args": {}, "actor": None})
    forged = raw_ssh(cab, maire_key, cab.address, "kloudctl-mail-request/1", stdin=claim)
    answer = json.loads(forged.stdout)
    assert answer["kind"] == "forbidden" and "may not set actor" in answer["message"]
    operator_view = kloudctl(cab, "mailbox", "list", "mortree.fr", "--json")
    assert "intrus@mortree.fr" not in operator_view.stdout
    audit = json.loads(kloudctl(cab, "audit", "--json", "--actor", MAIRE).stdout)
    refused = {(r["op"], r["target"]) for r in audit if r["outcome"] == "forbidden"}
    assert {("mailbox_add", "intrus@mortree.fr"), ("mailbox_list", "mortree.fr"),
            ("mailbox_suspend", "paul@mortree.fr"), ("request", "")} <= refused  # fmt: skip


def test_domain_admin_key_gives_no_shell_no_other_command_no_pty_no_forwarding(
    world: World, maire_key: Path
) -> None:
    cab = world.cab
    for command in (["/bin/sh", "-c", "id"], ["id"], ["cat", "/etc/shadow"]):
        shell = raw_ssh(cab, maire_key, cab.address, *command)
        assert shell.returncode == 2, shell
        assert json.loads(shell.stdout)["kind"] == "protocol" and "uid=" not in shell.stdout
        assert "root:" not in shell.stdout
    login = raw_ssh(cab, maire_key, "-T", cab.address)  # a login shell, without a tty
    assert login.returncode == 2 and "asked for no command (a login shell)" in login.stdout
    # With a tty forced (-tt), the host refuses the tty and the client gives up (255).
    tty = raw_ssh(cab, maire_key, "-tt", cab.address)
    assert tty.returncode == 255 and "PTY allocation request failed" in tty.stderr, tty
    assert tty.stdout == ""
    # Port forwarding: a direct channel (-W, as -L opens), and a remote listener (-R).
    direct = raw_ssh(cab, maire_key, "-W", "127.0.0.1:25", cab.address)
    assert direct.returncode == 255 and "administratively prohibited" in direct.stderr, direct
    remote = raw_ssh(
        cab, maire_key, "-N", "-o", "ExitOnForwardFailure=yes", "-R", "0:127.0.0.1:22",
        cab.address,
    )  # fmt: skip
    assert remote.returncode == 255 and "forwarding failed" in remote.stderr, remote
    # -L: the local listener opens, but nothing comes through it (no SMTP banner).
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    tunnel = subprocess.Popen(
        ["ssh", "-i", str(maire_key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
         "-o", f"UserKnownHostsFile={cab.known_hosts}", "-o", "StrictHostKeyChecking=yes",
         "-N", "-L", f"127.0.0.1:{port}:127.0.0.1:25", f"{DOMADM}@{cab.address}"],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                conn = socket.create_connection(("127.0.0.1", port), timeout=10)
                break
            except OSError:
                assert tunnel.poll() is None and time.monotonic() < deadline, "no -L listener"
                time.sleep(0.2)
        with conn:
            assert conn.recv(100) == b""  # closed at once: the channel was refused
    finally:
        # ssh normally leaves at once on SIGTERM; on a loaded machine it once did not within
        # 30 s, so it is killed after a grace period: the refusal is already in its stderr.
        tunnel.terminate()
        try:
            _, stderr = tunnel.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            tunnel.kill()
            _, stderr = tunnel.communicate(timeout=30)
    assert "administratively prohibited" in stderr
    # The control: the same port answers SMTP when reached for real.
    with socket.create_connection((cab.address, 25), timeout=10) as smtp:
        assert smtp.recv(3) == b"220"


def test_logins_with_quotes_and_shell_characters_reach_the_store_as_themselves(
    world: World, tmp_path_factory: pytest.TempPathFactory
) -> None:
    cab = world.cab
    key = keygen(tmp_path_factory.mktemp("odd"), "odd")
    done = kloudctl(
        cab, "admin", "grant", ODD_LOGIN, "--domain", "mortree.fr", "--ssh-key", f"{key}.pub"
    )
    assert done.returncode == 0, done.stderr
    listed = as_domain_admin(cab, key, "mailbox", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert {m["address"].split("@")[1] for m in json.loads(listed.stdout)} == {"mortree.fr"}
    audit = json.loads(kloudctl(cab, "audit", "--json", "--limit", "5").stdout)
    assert (ODD_LOGIN, "mailbox_list") not in [(r["actor"], r["op"]) for r in audit]  # reads
    refused = as_domain_admin(cab, key, "mailbox", "list", "brieux.fr")
    assert refused.returncode == 1
    audit = json.loads(kloudctl(cab, "audit", "--json", "--limit", "1").stdout)
    assert audit[-1]["actor"] == ODD_LOGIN and audit[-1]["outcome"] == "forbidden"
    assert kloudctl(cab, "admin", "revoke", ODD_LOGIN).returncode == 0


def test_after_revoke_the_key_is_refused(world: World, maire_key: Path) -> None:
    cab = world.cab
    revoked = kloudctl(cab, "admin", "revoke", MAIRE)
    assert revoked.returncode == 0 and "1 key(s) removed" in revoked.stderr + revoked.stdout
    refused = raw_ssh(cab, maire_key, cab.address, "kloudctl-mail-request/1", stdin="{}")
    assert refused.returncode == 255 and "Permission denied (publickey)" in refused.stderr
    listed = as_domain_admin(cab, maire_key, "mailbox", "list")
    assert listed.returncode == 1 and "Permission denied" in listed.stderr
    assert cab.sh("cat /etc/kloudctl-mail/domain-admin-keys").stdout == ""
    admins = json.loads(kloudctl(cab, "admin", "list", "--json").stdout)
    assert MAIRE not in [a["login"] for a in admins]


def test_status_mail_probe_against_the_real_servers(world: World) -> None:
    """`kloudctl status`'s mail probe against Postfix, Dovecot and the accounts store of the
    test cabinet (as root over SSH): banners and STARTTLS on 25 and 587, the probe
    account's IMAPS login, the role's self-signed certificate named as the fallback it is
    (no ACME directory here), and the mailboxes per domain as `mailbox list` counts them."""
    from dataclasses import replace

    from kloudctl.mail.store import SshTransport
    from kloudctl.status.mailprobe import SELF_SIGNED, MailTarget, probe
    from kloudctl.testbed.mailbed import HOSTNAME

    cab = world.cab
    password = add_mailbox(cab, "sonde@brieux.fr")

    def accounts(left: float) -> SshTransport:
        return SshTransport(cab.address, user="root", key_filename=str(cab.ssh_key),
                            known_hosts=str(cab.known_hosts), timeout=left)  # fmt: skip

    target = MailTarget("brieux", HOSTNAME, cab.address, probe_login="sonde@brieux.fr",
                        probe_password=lambda: password, accounts=accounts)  # fmt: skip
    found = probe(target, time.monotonic() + 60)
    assert [s["banner"].startswith(f"220 {HOSTNAME} ESMTP") for s in found["smtp"]] == [True] * 2
    assert [(s["port"], s["starttls"], s["error"]) for s in found["smtp"]] == [
        (25, True, None), (587, True, None)]  # fmt: skip
    assert found["imap"]["login"] == "ok"
    cert = found["certificate"]
    # the role's fallback names itself so (tasks/tls.yml), and is its own issuer
    assert (cert["issuer"], cert["trust"], cert["self_signed"]) == (
        f"CN={HOSTNAME},O=kloudctl self-signed fallback", SELF_SIGNED, True)  # fmt: skip
    assert 3640 < cert["days_left"] <= 3650  # mail__tls_selfsigned_days
    assert found["state"] == "attention" and found["problems"] == [
        f"the certificate is {SELF_SIGNED}"
    ]
    listed = kloudctl(cab, "mailbox", "list", "--json")
    counts: dict[str, int] = {}
    for m in json.loads(listed.stdout):
        counts[m["address"].split("@")[1]] = counts.get(m["address"].split("@")[1], 0) + 1
    assert found["mailboxes"] == counts and counts["brieux.fr"] >= 4

    # Trusting the cabinet's own certificate (as clients given Pebble's root would trust an
    # ACME one): all is well.
    trusted = probe(replace(target, cafile=cab.cafile), time.monotonic() + 60)
    assert trusted["certificate"]["trust"] == "trusted" and trusted["state"] == "ok"
    # A wrong password is refused by Dovecot, and said so.
    refused = probe(replace(target, probe_password=lambda: "not-the-password-42"),
                    time.monotonic() + 60)  # fmt: skip
    assert refused["imap"]["login"] == "refused"
    assert "IMAP login of sonde@brieux.fr: refused" in refused["problems"]
