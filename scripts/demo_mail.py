"""`make demo`, mail stage: a test cabinet with the mail role, the example communes'
domains, a few residents' mailboxes, and one message sent and read end to end.
Needs root and podman (test cabinets); skipped otherwise."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kloudctl.testbed.mailbed import MailCabinet, mail_cabinet, message  # noqa: E402


def kloudctl(
    cab: MailCabinet, *args: str, stdin: str = "", actor: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`kloudctl mail ARGS` on the test cabinet's accounts, over SSH, as a user runs it (as
    the operator, or as the domain administrator `actor`). The mail tests and the mail
    bench run the CLI through this too."""
    cmd = [
        sys.executable,
        "-c",
        "from kloudctl.cli import main; main()",
        "--fleet",
        str(ROOT),
        "mail",
        *cab.mail_options(actor),
        *args,
    ]
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True)


def add_mailbox(cab: MailCabinet, address: str) -> str:
    """A mailbox with a fresh random password (returned, never printed)."""
    password = "pw-" + secrets.token_urlsafe(12)
    done = kloudctl(cab, "mailbox", "add", address, "--password-stdin", stdin=password + "\n")
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(done.returncode)
    return password


def show(done) -> None:  # type: ignore[no-untyped-def]
    sys.stdout.write(done.stdout)
    sys.stderr.write(done.stderr)
    if done.returncode != 0:
        raise SystemExit(done.returncode)


@contextlib.contextmanager
def _state_dir() -> Iterator[str]:
    """The mail cabinet's state (keys, artifacts): removed after, unless KLOUDCTL_DEMO_KEEP
    asks to leave it for inspection (the secrets sweep reads it)."""
    if os.environ.get("KLOUDCTL_DEMO_KEEP"):
        yield tempfile.mkdtemp(prefix="kloudctl-demo-mail.")
        return
    with tempfile.TemporaryDirectory() as tmp:
        yield tmp


def _hand_over(passwords: dict[str, str]) -> None:
    """The residents' new passwords go to them, never to the output: with
    KLOUDCTL_DEMO_SECRETS set, into a 0600 file there (what the secrets sweep looks for)."""
    folder = os.environ.get("KLOUDCTL_DEMO_SECRETS")
    if folder:
        from kloudctl import files

        path = Path(folder) / "mailbox-passwords.json"
        files.write_atomic(path, json.dumps(passwords), mode=0o600, what="mailbox passwords")


def main() -> None:
    if os.geteuid() != 0 or shutil.which("podman") is None:
        print("mail demo skipped: needs root and podman for a test cabinet")
        return
    prefix = os.environ.get("KLOUDCTL_DEMO_PREFIX", "kloudctl-demo") + "-mail"
    with _state_dir() as tmp, mail_cabinet(Path(tmp), prefix) as cab:
        print(
            f"test cabinet mail.brieux.fr at {cab.address}: mail role applied twice"
            f" (second run: ok={cab.recap.ok} changed={cab.recap.changed}"
            f" failed={cab.recap.failed})"
        )
        show(
            kloudctl(
                cab,
                "domain",
                "add",
                "brieux.fr",
                "--max-mailboxes",
                "600",
                "--total-quota",
                "150GiB",
            )
        )
        show(
            kloudctl(
                cab,
                "domain",
                "add",
                "mortree.fr",
                "--max-mailboxes",
                "200",
                "--total-quota",
                "50GiB",
            )
        )
        passwords = {
            a: add_mailbox(cab, a)
            for a in ("jean.dupont@brieux.fr", "marie.leroy@brieux.fr", "paul.martin@mortree.fr")
        }
        _hand_over(passwords)
        show(
            kloudctl(
                cab,
                "alias",
                "add",
                "mairie@brieux.fr",
                "jean.dupont@brieux.fr",
                "marie.leroy@brieux.fr",
            )
        )
        show(kloudctl(cab, "mailbox", "list"))
        show(kloudctl(cab, "domain", "list"))
        show(kloudctl(cab, "dns", "plan", "mortree.fr"))
        sender, rcpt = "paul.martin@mortree.fr", "mairie@brieux.fr"
        cab.submit(
            587,
            sender,
            passwords[sender],
            sender,
            [rcpt],
            message(
                sender, rcpt, "Demande de salle des fêtes", "Bonjour, la salle est-elle libre ?\n"
            ),
        )
        for reader in ("jean.dupont@brieux.fr", "marie.leroy@brieux.fr"):
            [raw] = cab.wait_for(reader, passwords[reader], "Demande de salle")
            signed = "DKIM-signed by mortree.fr" if b"d=mortree.fr" in raw else "not signed"
            print(f"{reader} read the message over IMAP ({len(raw)} bytes, {signed})")
        print(json.dumps({"mail demo": "ok"}))


if __name__ == "__main__":
    main()
