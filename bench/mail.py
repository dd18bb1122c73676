"""Mail benchmarks (not part of `make test`): run `python bench/mail.py [--quick]`.

1. `mailbox add` for 1,000 residents (target: under 30 s), on a local accounts file:
   one call per mailbox, and one `mailbox import` batch (hashing on every core). Baseline
   in the same process: the same 1,000 rows inserted with plain SQLite (no hashing, no
   checks), and argon2id hashing alone.
2. With a test cabinet (root and podman needed): the same batch over SSH, then a burst of
   1,000 messages: messages per second accepted on submission (587, STARTTLS + AUTH, one
   session per sender thread) and delivered to IMAP (until all are in the INBOX). Baseline:
   the same burst with the same client code to an in-process null SMTP server on loopback.
"""

from __future__ import annotations

import argparse
import secrets
import socketserver
import sqlite3
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kloudctl.mail.store import LocalTransport, MailStore, hash_password, schema_text  # noqa: E402
from kloudctl.testbed.mailbed import MailCabinet  # noqa: E402
from scripts.demo_mail import kloudctl  # noqa: E402  (the demo's way to run `kloudctl mail`)

GiB = 1024**3


def timed(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result


def add_mailbox(cab: MailCabinet, address: str) -> str:
    """A mailbox with a fresh random password (returned, never printed)."""
    password = "pw-" + secrets.token_urlsafe(12)
    done = kloudctl(cab, "mailbox", "add", address, "--password-stdin", stdin=password + "\n")
    assert done.returncode == 0, done.stderr
    return password


def row(label: str, value: float, unit: str, ratio: str = "") -> None:
    print(f"{label:<46} {value:10.2f} {unit:<6} {'ratio ' + ratio if ratio else ''}")


def residents(n: int, domain: str = "brieux.fr") -> list[tuple[str, str, int | None]]:
    return [(f"habitant{i:04d}@{domain}", secrets.token_urlsafe(12), None) for i in range(n)]


def new_store(tmp: Path, name: str, n: int) -> MailStore:
    store = MailStore(LocalTransport(tmp / f"{name}.sqlite"))
    store.domain_add(
        "brieux.fr", max_mailboxes=n + 10, total_quota=(n + 10) * GiB, default_quota=GiB, dkim=False
    )
    return store


def bench_mailbox_add(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        people = residents(n)

        # Baseline: plain SQLite, one transaction per row, no hashing, no checks.
        db = sqlite3.connect(tmp / "baseline.sqlite", isolation_level=None)
        db.executescript(schema_text())
        db.execute(
            "INSERT INTO domains VALUES ('brieux.fr', ?, ?, ?, 1, 'now')", (n + 10, n * GiB, GiB)
        )

        def raw() -> None:
            for address, _, _ in people:
                db.execute(
                    "INSERT INTO mailboxes (address, domain, password, quota, created)"
                    " VALUES (?, 'brieux.fr', 'x', ?, 'now')",
                    (address, GiB),
                )

        t_raw, _ = timed(raw)
        t_hash, _ = timed(lambda: [hash_password(p) for _, p, _ in people[:50]])
        t_hash = t_hash * n / 50

        store = new_store(tmp, "one-by-one", n)
        t_one, _ = timed(lambda: [store.mailbox_add(a, p, q) for a, p, q in people])
        store = new_store(tmp, "batch", n)
        t_batch, _ = timed(store.mailbox_add_many, people)

        print(f"\n== mailbox add, {n} residents (local accounts file)")
        row("baseline: plain SQLite inserts", t_raw, "s")
        row("baseline: argon2id hashing alone (from 50)", t_hash, "s")
        row(
            "kloudctl: one call per mailbox",
            t_one,
            "s",
            f"{t_one / t_raw:.0f}x SQLite, {t_one / t_hash:.2f}x hashing",
        )
        row(
            "kloudctl: one import batch",
            t_batch,
            "s",
            f"{t_batch / t_raw:.0f}x SQLite, {t_batch / t_hash:.2f}x hashing",
        )
        best = min(t_one, t_batch) * 1000 / n
        verdict = "met" if best < 30 else "NOT met"
        print(f"target: 1,000 mailboxes under 30 s: {verdict} ({best:.1f} s for 1,000)")


class NullSmtp(socketserver.StreamRequestHandler):
    """Accepts every message and throws it away (the baseline's server)."""

    def handle(self) -> None:
        w = self.wfile.write
        w(b"220 null ESMTP\r\n")
        data = False
        for line in self.rfile:
            if data:
                if line == b".\r\n":
                    data = False
                    w(b"250 ok\r\n")
                continue
            verb = line[:4].upper()
            if verb == b"EHLO":
                w(b"250-null\r\n250 SIZE 100000000\r\n")
            elif verb == b"DATA":
                data = True
                w(b"354 go\r\n")
            elif verb == b"QUIT":
                w(b"221 bye\r\n")
                return
            else:
                w(b"250 ok\r\n")


def burst(send_one, n: int, threads: int) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(send_one, range(threads), [n // threads] * threads))
    return time.perf_counter() - start


def bench_burst(n: int, threads: int) -> None:
    import smtplib

    from kloudctl.testbed.mailbed import mail_cabinet, message

    # Baseline: the same client code against a null server in this process.
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), NullSmtp)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]

    def send_null(_: int, count: int) -> None:
        with smtplib.SMTP("127.0.0.1", port) as client:
            for _i in range(count):
                client.sendmail(
                    "a@brieux.fr", ["b@brieux.fr"], message("a@brieux.fr", "b@brieux.fr", "x")
                )

    t_null = burst(send_null, n, threads)
    server.shutdown()

    with (
        tempfile.TemporaryDirectory() as tmp,
        mail_cabinet(Path(tmp), "kloudctl-mail-bench") as cab,
    ):
        for domain in ("brieux.fr", "mortree.fr"):
            kloudctl(
                cab, "domain", "add", domain, "--max-mailboxes", "2000", "--total-quota", "3000GiB"
            )
        people = residents(n)
        lines = "".join(f"{a} {p}\n" for a, p, _ in people)
        t_ssh, done = timed(kloudctl, cab, "mailbox", "import", stdin=lines)
        assert done.returncode == 0, done.stderr
        senders = [add_mailbox(cab, f"sender{i}@brieux.fr") for i in range(threads)]
        reader = add_mailbox(cab, "lecteur@mortree.fr")

        def send_real(i: int, count: int) -> None:
            user = f"sender{i}@brieux.fr"
            with smtplib.SMTP(cab.address, 587, timeout=60) as client:
                client.starttls(context=cab.tls())
                client.login(user, senders[i])
                for k in range(count):
                    client.sendmail(
                        user,
                        ["lecteur@mortree.fr"],
                        message(user, "lecteur@mortree.fr", f"burst {i}-{k}"),
                    )

        start = time.perf_counter()
        t_accept = burst(send_real, n, threads)
        sent = (n // threads) * threads
        delivered = 0
        while delivered < sent and time.perf_counter() - start < 600:
            conn = cab.imap("lecteur@mortree.fr", reader)
            _, data = conn.select("INBOX", readonly=True)
            delivered = int(data[0] or 0)
            conn.logout()
            if delivered < sent:
                time.sleep(0.5)
        t_deliver = time.perf_counter() - start

    print(f"\n== burst of {sent} messages, {threads} submission sessions")
    row("baseline: null SMTP server in-process", sent / t_null, "msg/s")
    row(
        "accepted on submission (587)",
        sent / t_accept,
        "msg/s",
        f"{t_null / t_accept:.3f}x baseline",
    )
    row(
        f"delivered to IMAP ({delivered}/{sent})",
        delivered / t_deliver,
        "msg/s",
        f"{t_null / t_deliver:.3f}x baseline",
    )
    print(f"\n== mailbox import of {n} residents over SSH: {t_ssh:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 instead of 1,000")
    parser.add_argument("--no-cabinet", action="store_true", help="skip the test-cabinet part")
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    n = 100 if args.quick else 1000
    bench_mailbox_add(n)
    if not args.no_cabinet:
        bench_burst(n, args.threads)


if __name__ == "__main__":
    main()
