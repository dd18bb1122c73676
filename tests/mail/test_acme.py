"""The mail role's certificates from a real ACME directory, end to end on a test cabinet.

Pebble (Let's Encrypt's ACME test server, tests/mail/pebble.py) runs on this machine bound
to the test network's gateway and resolves the mail names through a real NSD; its HTTP-01
validation reaches the cabinet's nginx on port 80. Clients trust ONLY Pebble's root (from
its management API) and verify chain and host name: openssl s_client, smtplib (STARTTLS on
587), imaplib (993), and HTTPS for the MTA-STS policy. The tests run in order on one
cabinet: the directory unreachable first (self-signed fallback), then Pebble started."""

from __future__ import annotations

import http.client
import imaplib
import json
import smtplib
import socket
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from kloudctl.mail.dns import Record
from kloudctl.testbed import cabinets
from kloudctl.testbed.mailbed import (
    DOMAINS,
    HOSTNAME,
    MailCabinet,
    apply_mail_role,
    mail_cabinet,
    message,
    podman_available,
)
from scripts.demo_mail import kloudctl  # the CLI, run as the demo runs it
from tests.mail.nsd import Nsd, zone_text
from tests.mail.pebble import Pebble, listener_certificate

pytestmark = [
    pytest.mark.slow,
    pytest.mark.podman,
    pytest.mark.skipif(not podman_available(), reason="needs root and podman"),
]

STATUS = "/var/lib/kloudctl-mail/tls-status.json"
MTA_STS = f"mta-sts.{DOMAINS[0]}"


def acme_vars(gateway: str, work: Path) -> dict[str, object]:
    """The role's ACME settings: Pebble's directory on the gateway (fixed before Pebble runs,
    so the cabinet starts with the directory unreachable), its listener's certificate as
    the CA to trust it with."""
    listener, _ = listener_certificate(work / "pebble", gateway)
    return {
        "mail__acme_directory": f"https://{gateway}:{Pebble.DIRECTORY_PORT}/dir",
        "mail__acme_email": "postmaster@brieux.fr",
        "mail__acme_ca_bundle": str(listener),
    }


@dataclass
class Acme:
    cab: MailCabinet
    gateway: str
    work: Path
    pebble: Pebble | None = None
    nsd: Nsd | None = None
    #: Pebble's root, once it runs: the only CA the clients trust.
    root: Path | None = None
    passwords: dict[str, str] = field(default_factory=dict)

    @property
    def role_vars(self) -> dict[str, object]:
        return acme_vars(self.gateway, self.work)

    def status(self) -> dict[str, object]:
        answer: dict[str, object] = json.loads(self.cab.sh(f"cat {STATUS}").stdout)
        return answer

    def trusting_pebble(self) -> ssl.SSLContext:
        assert self.root is not None
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # no system CAs: Pebble's root only
        ctx.load_verify_locations(cafile=str(self.root))
        return ctx


@pytest.fixture(scope="module")
def acme(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Acme]:
    work = tmp_path_factory.mktemp("mail-acme")
    with mail_cabinet(
        work, prefix="kloudctl-mail-acme", extravars=lambda bed: acme_vars(bed.gateway, work)
    ) as cab:
        a = Acme(cab, cabinets.Testbed.load(work).gateway, work)
        done = kloudctl(
            cab, "domain", "add", DOMAINS[0], "--max-mailboxes", "5", "--total-quota", "5GiB"
        )
        assert done.returncode == 0, done.stderr
        for user in ("jean", "marie"):
            address = f"{user}@{DOMAINS[0]}"
            a.passwords[address] = "pw-" + uuid.uuid4().hex
            done = kloudctl(
                cab,
                "mailbox",
                "add",
                address,
                "--password-stdin",
                stdin=a.passwords[address] + "\n",
            )
            assert done.returncode == 0, done.stderr
        try:
            yield a
        finally:
            if a.pebble is not None:
                a.pebble.stop()
            if a.nsd is not None:
                a.nsd.stop()


# -- clients reaching the cabinet's address under the certificate's names -------------------


class PinnedSMTP(smtplib.SMTP):
    """SMTP to `address`, verifying the certificate against the name given as host."""

    def __init__(self, address: str, host: str, port: int) -> None:
        self.pinned = address
        super().__init__(host, port, timeout=30)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        return socket.create_connection((self.pinned, port), timeout)


class PinnedIMAP(imaplib.IMAP4_SSL):
    def __init__(self, address: str, host: str, ctx: ssl.SSLContext) -> None:
        self.pinned = address
        super().__init__(host, 993, ssl_context=ctx, timeout=30)

    def _create_socket(self, timeout: float | None) -> socket.socket:
        sock = socket.create_connection((self.pinned, 993), timeout)
        return self.ssl_context.wrap_socket(sock, server_hostname=self.host)


class PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, address: str, host: str, ctx: ssl.SSLContext) -> None:
        self.pinned, self.ctx = address, ctx
        super().__init__(host, 443, context=ctx, timeout=30)

    def connect(self) -> None:
        sock = socket.create_connection((self.pinned, 443), self.timeout)
        self.sock = self.ctx.wrap_socket(sock, server_hostname=self.host)


def smtp_serial(a: Acme, port: int = 587) -> str:
    """STARTTLS on `port` verified against Pebble's root and the mail host name; the
    certificate's serial."""
    with PinnedSMTP(a.cab.address, HOSTNAME, port) as client:
        client.starttls(context=a.trusting_pebble())
        sock = client.sock
        assert isinstance(sock, ssl.SSLSocket)
        cert = sock.getpeercert()
        return str(cert["serialNumber"])


def s_client(a: Acme, port: int, name: str, *extra: str) -> subprocess.CompletedProcess[str]:
    assert a.root is not None
    return subprocess.run(
        ["openssl", "s_client", "-connect", f"{a.cab.address}:{port}", "-servername", name,
         "-verify_hostname", name, "-verify_return_error",
         "-CAfile", str(a.root), "-no-CApath", "-no-CAstore", *extra],
        input="", capture_output=True, text=True, timeout=30,
    )  # fmt: skip


# -- the tests, in order -------------------------------------------------------------------


def test_unreachable_directory_falls_back_to_self_signed_without_failing(acme: Acme) -> None:
    # The fixture applied the role twice while nothing listened on the directory's port.
    recap = acme.cab.recap
    assert recap.failed == 0 and recap.changed == 0 and recap.unreachable == 0, recap
    status = acme.status()
    assert status["source"] == "self-signed" and status["fallback"] is True, status
    assert status["directory"] == acme.role_vars["mail__acme_directory"]
    assert "refused" in str(status["error"]).lower() or "connect" in str(status["error"]).lower()
    subject_issuer = acme.cab.sh(
        "openssl x509 -in /etc/kloudctl-mail/tls/cert.pem -noout -subject -issuer"
    ).stdout.splitlines()
    subject, issuer = (line.split("=", 1)[1] for line in subject_issuer)
    assert subject == issuer and "kloudctl self-signed fallback" in subject, subject_issuer
    # The renewal timer is armed to try again.
    assert acme.cab.sh("systemctl is-active kloudctl-mail-acme.timer").stdout.strip() == "active"
    assert acme.cab.sh("systemctl is-enabled certbot.timer", check=False).stdout.strip() == "masked"


def test_the_timer_s_run_replaces_the_fallback_once_the_directory_answers(acme: Acme) -> None:
    address = acme.cab.address
    zones = {
        f"{d}.": zone_text(
            f"{d}.",
            [Record("mail", "A", address, "mail host"), Record("mta-sts", "A", address, "policy")],
        )
        for d in DOMAINS
    }
    acme.nsd = Nsd(acme.work / "nsd", zones)
    acme.pebble = Pebble(acme.work / "pebble", acme.gateway, acme.nsd.server)
    acme.root = acme.work / "pebble-root.pem"
    acme.root.write_text(acme.pebble.root())
    # What kloudctl-mail-acme.timer starts.
    done = acme.cab.sh("systemctl start kloudctl-mail-acme.service", check=False)
    assert done.returncode == 0, (done.stderr, acme.pebble.log_text())
    status = acme.status()
    assert status["source"] == "acme" and status["fallback"] is False, status
    assert status["error"] == ""
    journal = acme.cab.sh("journalctl -u kloudctl-mail-acme.service -o cat").stdout
    assert "kloudctl-mail-acme: installed" in journal, journal


def test_role_converges_on_the_acme_certificate(acme: Acme) -> None:
    before = acme.status()
    recap = apply_mail_role(acme.work, acme.role_vars)
    assert recap.failed == 0 and recap.changed == 0, recap
    assert acme.status() == before


def test_openssl_verifies_chain_and_name_on_smtp_imap_and_https(acme: Acme) -> None:
    for port, name, extra in (
        (587, HOSTNAME, ("-starttls", "smtp")),
        (25, HOSTNAME, ("-starttls", "smtp")),
        (993, HOSTNAME, ()),
        (443, MTA_STS, ()),
        (443, f"mta-sts.{DOMAINS[1]}", ()),
    ):
        done = s_client(acme, port, name, *extra)
        assert done.returncode == 0 and "Verify return code: 0 (ok)" in done.stdout, (
            port, name, done.stdout[-600:], done.stderr[-600:],
        )  # fmt: skip
    # The controls: another name, or another trust anchor, is refused.
    wrong = s_client(acme, 993, "imap.example.org")
    assert wrong.returncode != 0 and "hostname mismatch" in (wrong.stdout + wrong.stderr)
    listener = acme.work / "pebble" / "listener.pem"
    untrusted = subprocess.run(
        ["openssl", "s_client", "-connect", f"{acme.cab.address}:993", "-verify_return_error",
         "-CAfile", str(listener), "-no-CApath", "-no-CAstore"],
        input="", capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert untrusted.returncode != 0


def test_python_clients_trusting_only_pebble_verify_smtp_imap_and_mta_sts(acme: Acme) -> None:
    ctx = acme.trusting_pebble()
    user = f"jean@{DOMAINS[0]}"
    with PinnedSMTP(acme.cab.address, HOSTNAME, 587) as client:
        client.starttls(context=ctx)
        client.login(user, acme.passwords[user])
    imap = PinnedIMAP(acme.cab.address, HOSTNAME, ctx)
    imap.authenticate("PLAIN", lambda _: f"\0{user}\0{acme.passwords[user]}".encode())
    imap.logout()
    https = PinnedHTTPS(acme.cab.address, MTA_STS, ctx)
    https.request("GET", "/.well-known/mta-sts.txt", headers={"Host": MTA_STS})
    answer = https.getresponse()
    body = answer.read().decode()
    https.close()
    assert answer.status == 200 and body.startswith("version: STSv1"), body
    assert f"mx: {HOSTNAME}" in body
    # The control: the default trust store (no Pebble root) refuses the same certificate.
    with (
        PinnedSMTP(acme.cab.address, HOSTNAME, 587) as client,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        client.starttls(context=ssl.create_default_context())


def test_forced_renewal_reloads_without_dropping_mail(acme: Acme) -> None:
    sender, rcpt = f"marie@{DOMAINS[0]}", f"jean@{DOMAINS[0]}"
    serial_before = smtp_serial(acme)
    main_pids = acme.cab.sh(
        "systemctl show -p MainPID --value postfix@- dovecot nginx"
    ).stdout.split()
    run = uuid.uuid4().hex[:8]
    sent: list[str] = []
    errors: list[BaseException] = []
    retried: list[int] = []
    stop = threading.Event()

    def send_loop() -> None:
        ctx = acme.trusting_pebble()
        while not stop.is_set():
            subject = f"renewal-{run}-{len(sent)}"
            try:
                with PinnedSMTP(acme.cab.address, HOSTNAME, 587) as client:
                    client.starttls(context=ctx)
                    client.login(sender, acme.passwords[sender])
                    client.sendmail(sender, [rcpt], message(sender, rcpt, subject))
                sent.append(subject)
            except smtplib.SMTPRecipientsRefused as refused:
                # A 4xx is "try again" (Dovecot's quota-status policy service is briefly
                # away while Dovecot reloads): every MTA and mail client retries; so does
                # this loop. A 5xx would be a dropped message.
                codes = [code for code, _ in refused.recipients.values()]
                if not all(400 <= code < 500 for code in codes):
                    errors.append(refused)
                    return
                retried.append(codes[0])
            except BaseException as error:  # any other failure is a dropped message
                errors.append(error)
                return

    sender_thread = threading.Thread(target=send_loop)
    sender_thread.start()
    try:
        time.sleep(1)  # mail flowing before the renewal starts
        renewed = acme.cab.sh("/usr/local/sbin/kloudctl-mail-acme --force", check=False)
        time.sleep(1)  # and after it
    finally:
        stop.set()
        sender_thread.join(60)
    assert renewed.returncode == 0 and "installed" in renewed.stdout, renewed
    assert errors == [], errors
    assert len(sent) >= 3 and len(retried) <= 3, (sent, retried)
    serial_after = smtp_serial(acme)
    assert serial_after != serial_before
    assert acme.status()["serial"] == serial_after
    # Reloaded, not restarted: the same main processes serve.
    assert (
        acme.cab.sh("systemctl show -p MainPID --value postfix@- dovecot nginx").stdout.split()
        == main_pids
    )

    # Every message sent around the renewal is in the mailbox (delivery is asynchronous). A
    # delivery that met Dovecot's LMTP mid-reload is deferred, not lost: Postfix keeps it in
    # its queue, and `postqueue -f` retries it now instead of minutes later.
    def delivered() -> int:
        conn = PinnedIMAP(acme.cab.address, HOSTNAME, acme.trusting_pebble())
        conn.authenticate("PLAIN", lambda _: f"\0{rcpt}\0{acme.passwords[rcpt]}".encode())
        conn.select("INBOX", readonly=True)
        _, data = conn.search(None, "SUBJECT", f'"renewal-{run}-"')
        conn.logout()
        return len(data[0].split())

    queued = ""
    for flush in (False, True):
        if flush:
            queued = acme.cab.sh("postqueue -j").stdout
            acme.cab.sh("postqueue -f")
        deadline = time.monotonic() + 30
        while delivered() != len(sent) and time.monotonic() < deadline:
            time.sleep(0.5)
        if delivered() == len(sent):
            break
    assert delivered() == len(sent), (delivered(), len(sent), queued)
    bounced = acme.cab.sh("grep -rl 'Undelivered Mail' /var/vmail || true").stdout
    assert bounced == "", bounced
