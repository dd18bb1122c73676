"""A mail test cabinet, shared by the mail end-to-end test, `bench/mail.py` and the demo
(`scripts/demo_mail.py`): a test cabinet (podman container running systemd, from the
project's Debian 12 image) with playbooks/mail.yml applied twice through kloudctl's one
Ansible path (ansible-runner, `kloudctl.hosts.runner`, with the fleet's inventory),
reached from this machine over the podman network (not loopback: Postfix and Dovecot
treat loopback as trusted).

The cabinet's accounts are managed with `kloudctl mail` over SSH by the callers (the test,
the bench, the demo): `MailCabinet.mail_options` names the options that reach it. kloudctl
never runs its own CLI.
"""

from __future__ import annotations

import email.message
import email.utils
import imaplib
import os
import shutil
import smtplib
import ssl
import subprocess
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from kloudctl.errors import ExternalError
from kloudctl.hosts.runner import HostRecap, run_playbook

if TYPE_CHECKING:
    from kloudctl.testbed.cabinets import Testbed

#: The checkout this module runs from: the example fleet, its playbooks and roles.
ROOT = Path(__file__).resolve().parents[2]

#: Baked into the test cabinet's image so the role's apt task finds them installed (test
#: cabinets have no Debian mirror).
MAIL_PACKAGES = (
    "postfix",
    "postfix-sqlite",
    "dovecot-core",
    "dovecot-imapd",
    "dovecot-lmtpd",
    "dovecot-sqlite",
    "rspamd",
    "nginx",
    "sqlite3",
    "openssl",
    # ACME client of the role's certificates (tasks/acme.yml).
    "certbot",
)

#: The example fleet's mail cabinet, run as a test cabinet.
CABINET = "brieux"
HOSTNAME = "mail.brieux.fr"
DOMAINS = ("brieux.fr", "mortree.fr")
ROLE_VARS = {
    "mail__hostname": HOSTNAME,
    "mail__domains": list(DOMAINS),
    "mail__postmaster": "postmaster@brieux.fr",
    # Never send anything out: outbound mail stays in the cabinet's sink folder.
    "mail__outbound": "sink",
    # No internet: modules that only query remote services are off.
    "mail__rspamd_disabled_modules": ["fuzzy_check", "rbl", "dcc", "asn"],
    # Nor to an ACME directory on the internet: ACME is off (the self-signed certificate)
    # unless a test points it at the Pebble it runs on its own test network.
    "mail__acme_directory": "",
}


def podman_available() -> bool:
    """Test cabinets can run here (root, podman configured as the testbed needs)."""
    if shutil.which("podman") is None or os.geteuid() != 0:
        return False
    from kloudctl.testbed.podman import PodmanUnavailable, preflight

    try:
        preflight()
    except PodmanUnavailable:
        return False
    return True


@dataclass
class MailCabinet:
    address: str
    container: str
    state_dir: Path
    ssh_key: Path
    known_hosts: Path
    cafile: Path
    #: The second run's recap (a converged role changes nothing).
    recap: HostRecap

    # -- what reaches it -------------------------------------------------------------------

    def mail_options(self, actor: str | None = None) -> list[str]:
        """The options of `kloudctl mail` that reach this cabinet's accounts over SSH (as
        the operator, or as the domain administrator `actor`)."""
        options = [
            "--host",
            f"root@{self.address}",
            "--ssh-key",
            str(self.ssh_key),
            "--known-hosts",
            str(self.known_hosts),
        ]
        return [*options, "--as", actor] if actor else options

    def sh(self, script: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["podman", "exec", self.container, "sh", "-c", script],
            capture_output=True,
            text=True,
            check=check,
        )

    # -- clients ---------------------------------------------------------------------------

    def tls(self, maximum: ssl.TLSVersion | None = None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.cafile))
        ctx.check_hostname = False  # reached by address; the chain is still verified
        if maximum is not None:
            # Old protocols on purpose (to see them refused): lift the client's own floor.
            ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                ctx.minimum_version = ssl.TLSVersion.TLSv1
                ctx.maximum_version = maximum
        return ctx

    def submit(
        self,
        port: int,
        login: str,
        password: str,
        sender: str,
        rcpts: list[str],
        msg: bytes,
        size: int | None = None,
    ) -> None:
        if port == 465:
            client: smtplib.SMTP = smtplib.SMTP_SSL(
                self.address, 465, context=self.tls(), timeout=30
            )
        else:
            client = smtplib.SMTP(self.address, port, timeout=30)
            client.starttls(context=self.tls())
        with client:
            client.login(login, password)
            options = [f"SIZE={size}"] if size else []
            client.sendmail(sender, rcpts, msg, mail_options=options)

    def imap(self, user: str, password: str) -> imaplib.IMAP4_SSL:
        conn = imaplib.IMAP4_SSL(self.address, 993, ssl_context=self.tls(), timeout=30)
        # authenticate PLAIN: login() cannot send non-ASCII passwords.
        conn.authenticate("PLAIN", lambda _: f"\0{user}\0{password}".encode())
        return conn

    def wait_for(self, user: str, password: str, marker: str, timeout: float = 60) -> list[bytes]:
        """The raw messages in user's INBOX whose Subject contains marker (waits for one)."""
        deadline = time.monotonic() + timeout
        while True:
            conn = self.imap(user, password)
            try:
                conn.select("INBOX", readonly=True)
                _, data = conn.search(None, "SUBJECT", f'"{marker}"')
                found: list[bytes] = []
                for num in data[0].split():
                    _, parts = conn.fetch(num, "(RFC822)")
                    if not isinstance(parts[0], tuple):
                        raise ExternalError(f"IMAP FETCH {num!r} answered {parts[0]!r}")
                    found.append(parts[0][1])
            finally:
                conn.logout()
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.5)


def message(sender: str, to: str, subject: str, body: str = "Bonjour.\n") -> bytes:
    msg = email.message.EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, to, subject
    msg["Message-ID"] = email.utils.make_msgid(domain=sender.split("@")[1])
    msg["Date"] = email.utils.formatdate()
    msg.set_content(body)
    return msg.as_bytes()


def apply_mail_role(state_dir: Path, extravars: dict[str, object] | None = None) -> HostRecap:
    """playbooks/mail.yml on the running test cabinet (the testbed in `state_dir`),
    through the fleet's inventory, with ROLE_VARS and `extravars` over them; the cabinet's
    recap, or ExternalError with what failed."""
    from kloudctl.testbed.cabinets import STATE_FILE

    result = run_playbook(
        ROOT, "mail.yml", limit=[CABINET], testbed_state=state_dir / STATE_FILE,
        extravars={**ROLE_VARS, **(extravars or {})},
    )  # fmt: skip
    if result.failures or result.rc != 0:
        failures = "; ".join(f"{f.host}: {f.task}: {f.message}" for f in result.failures)
        raise ExternalError(
            f"{result.playbook} failed on the mail test cabinet (exit {result.rc}, status"
            f" {result.status}): {failures or 'no task failed, see ansible-runner'}"
        )
    return result.recaps[CABINET]


@contextmanager
def mail_cabinet(
    state_dir: Path,
    prefix: str = "kloudctl-mail-e2e",
    extravars: Callable[[Testbed], dict[str, object]] | None = None,
) -> Iterator[MailCabinet]:
    """A running mail test cabinet, the role applied twice; `extravars`, given the testbed
    (its gateway address...), returns role variables to set over ROLE_VARS."""
    from kloudctl.testbed import cabinets, image

    name = image.ensure_image(MAIL_PACKAGES)
    with cabinets.running(
        [CABINET], prefix=prefix, state_dir=state_dir, image=name, hostnames={CABINET: HOSTNAME}
    ) as bed:
        host = bed.hosts[CABINET]
        # No DNS beyond the cabinet: lookups (rspamd, Postfix) fail at once, nothing leaks.
        bed.exec(CABINET, "sh", "-c", "echo 'nameserver 127.0.0.1' > /etc/resolv.conf")
        more = extravars(bed) if extravars else None
        apply_mail_role(state_dir, more)
        recap = apply_mail_role(state_dir, more)
        cafile = state_dir / "mail-ca.pem"
        cafile.write_text(bed.exec(CABINET, "cat", "/etc/kloudctl-mail/tls/cert.pem").stdout)
        yield MailCabinet(
            host.address,
            host.container,
            state_dir,
            bed.ssh_key,
            bed.known_hosts,
            cafile,
            recap,
        )
