"""A mail test cabinet, shared by the mail end-to-end test, `bench/mail.py` and the demo
(`scripts/demo_mail.py`): a test cabinet (podman container running systemd, from the
project's Debian 12 image) with the mail role applied twice by the real ansible-playbook,
reached from this machine over the podman network (not loopback: Postfix and Dovecot treat
loopback as trusted).

The cabinet's accounts are managed with `kloudctl mail` over SSH by the callers (the test,
the bench, the demo): `MailCabinet.mail_options` names the options that reach it. kloudctl
never runs its own CLI.
"""

from __future__ import annotations

import email.message
import email.utils
import imaplib
import json
import os
import re
import shutil
import smtplib
import ssl
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from kloudctl.errors import ExternalError

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
)

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
    recap: list[str]

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


def run_playbook(address: str, state_dir: Path, ssh_key: Path, known_hosts: Path) -> list[str]:
    """ansible-playbook playbooks/mail.yml on the cabinet; returns the recap lines."""
    extra = {
        **ROLE_VARS,
        "mail_hosts": "all",
        "ansible_user": "root",
        "ansible_ssh_private_key_file": str(ssh_key),
        "ansible_ssh_common_args": (
            f"-o UserKnownHostsFile={known_hosts} -o StrictHostKeyChecking=yes"
        ),
    }
    vars_file = state_dir / "mail-vars.json"
    vars_file.write_text(json.dumps(extra))
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"}
    bin_dir = Path(sys.executable).parent
    done = subprocess.run(
        [
            str(bin_dir / "ansible-playbook"),
            "-i",
            f"{address},",
            "-e",
            f"@{vars_file}",
            "playbooks/mail.yml",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
    )
    if done.returncode != 0:
        raise ExternalError(f"playbook failed:\n{done.stdout[-6000:]}\n{done.stderr[-2000:]}")
    return [ln for ln in done.stdout.splitlines() if re.match(r"^\S+\s+:\s+ok=", ln)]


@contextmanager
def mail_cabinet(state_dir: Path, prefix: str = "kloudctl-mail-e2e") -> Iterator[MailCabinet]:
    from kloudctl.testbed import cabinets, image

    name = image.ensure_image(MAIL_PACKAGES)
    with cabinets.running(
        ["brieux"], prefix=prefix, state_dir=state_dir, image=name, hostnames={"brieux": HOSTNAME}
    ) as bed:
        host = bed.hosts["brieux"]
        # No DNS beyond the cabinet: lookups (rspamd, Postfix) fail at once, nothing leaks.
        bed.exec("brieux", "sh", "-c", "echo 'nameserver 127.0.0.1' > /etc/resolv.conf")
        recaps = [run_playbook(host.address, state_dir, bed.ssh_key, bed.known_hosts)]
        recaps.append(run_playbook(host.address, state_dir, bed.ssh_key, bed.known_hosts))
        cafile = state_dir / "mail-ca.pem"
        cafile.write_text(bed.exec("brieux", "cat", "/etc/kloudctl-mail/tls/cert.pem").stdout)
        yield MailCabinet(
            host.address,
            host.container,
            state_dir,
            bed.ssh_key,
            bed.known_hosts,
            cafile,
            recaps[1],
        )
