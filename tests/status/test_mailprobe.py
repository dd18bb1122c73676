"""The mail probe against real SMTP and IMAP speakers on loopback.

The servers below are small, but real: TCP on 127.0.0.1, SMTP replies as RFC 5321 writes
them, STARTTLS and implicit TLS with certificates made by `kloudctl.tls`, IMAP's
AUTHENTICATE PLAIN checked against an account. The test cabinet with Postfix and Dovecot
(tests/mail/test_e2e.py) proves the same probe against the real servers; these cover what
that one cabinet cannot show at will: a silent server, a missing banner, a certificate
about to expire, a refused login, a server that stops answering.
"""

from __future__ import annotations

import base64
import datetime
import json
import shutil
import socket
import socketserver
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from kloudctl import tls
from kloudctl.cli import status as status_cli
from kloudctl.errors import KloudError
from kloudctl.mail.store import LocalTransport, MailStore
from kloudctl.model import load_fleet
from kloudctl.status import history, prometheus
from kloudctl.status.gather import CabinetStatus, Probes, gather, mail_targets
from kloudctl.status.mailprobe import NO_PROBE_ACCOUNT, SELF_SIGNED, MailTarget, probe
from kloudctl.testbed.simfleet import SimFleet

REPO = Path(__file__).resolve().parents[2]
HOST = "mail.brieux.fr"
LOGIN = "sonde@brieux.fr"
PASSWORD = "sonde-mot-de-passe-42"


@dataclass
class Behaviour:
    """How the fake-free little servers answer (changed per test)."""

    banner: bool = True
    starttls: bool = True
    silent: bool = False  # accept, then say nothing
    accounts: dict[str, str] = field(default_factory=lambda: {LOGIN: PASSWORD})
    logins: list[str] = field(default_factory=list)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a probe that gives up mid-way (its budget spent) resets the connection

    def __init__(self, handler: type[socketserver.StreamRequestHandler], ctx: ssl.SSLContext,
                 behaviour: Behaviour) -> None:  # fmt: skip
        super().__init__(("127.0.0.1", 0), handler)
        self.ctx = ctx
        self.behaviour = behaviour


class _Reader:
    """Lines from a socket that may be replaced by its TLS wrapping midway."""

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self.buffer = b""

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise StopIteration
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.rstrip(b"\r").decode()


class _Smtp(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        b = self.server.behaviour
        sock: Any = self.request
        if b.silent:
            time.sleep(5)
            return
        if b.banner:
            sock.sendall(f"220 {HOST} ESMTP test\r\n".encode())
        else:
            sock.sendall(b"554 5.3.2 not accepting mail\r\n")
            return
        reader = _Reader(sock)
        for line in reader:
            verb = line.split(" ", 1)[0].upper()
            if verb == "EHLO":
                ext = ["PIPELINING", "SIZE 10240000"] + (["STARTTLS"] if b.starttls else [])
                reply = [f"250-{HOST}"] + [f"250-{e}" for e in ext[:-1]] + [f"250 {ext[-1]}"]
                sock.sendall(("\r\n".join(reply) + "\r\n").encode())
            elif verb == "STARTTLS":
                sock.sendall(b"220 2.0.0 Ready to start TLS\r\n")
                try:
                    sock = reader.sock = self.server.ctx.wrap_socket(sock, server_side=True)
                except (ssl.SSLError, OSError):
                    return  # the client refused the certificate: it closes, so do we
            elif verb == "QUIT":
                sock.sendall(b"221 2.0.0 Bye\r\n")
                return
            else:
                sock.sendall(b"502 5.5.2 Error: command not recognized\r\n")


class _Imaps(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        b = self.server.behaviour
        try:
            sock: Any = self.server.ctx.wrap_socket(self.request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        if b.silent:
            time.sleep(5)
            return
        sock.sendall(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] ready\r\n")
        lines = _Reader(sock)
        for line in lines:
            tag, _, command = line.partition(" ")
            if command.upper() == "AUTHENTICATE PLAIN":
                sock.sendall(b"+ \r\n")
                _, login, password = base64.b64decode(next(lines)).decode().split("\0")
                b.logins.append(login)
                if b.accounts.get(login) == password:
                    sock.sendall(f"{tag} OK Logged in\r\n".encode())
                else:
                    sock.sendall(f"{tag} NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
                                 .encode())  # fmt: skip
            elif command.upper() == "LOGOUT":
                sock.sendall(f"* BYE\r\n{tag} OK Logout completed.\r\n".encode())
                return
            else:
                sock.sendall(f"{tag} BAD unknown\r\n".encode())


@dataclass
class MailHost:
    behaviour: Behaviour
    smtp_ports: tuple[int, int]
    imaps_port: int
    cert: Path

    def target(self, **changes: Any) -> MailTarget:
        values: dict[str, Any] = {
            "cabinet": "brieux",
            "hostname": HOST,
            "address": "127.0.0.1",
            "probe_login": LOGIN,
            "probe_password": lambda: PASSWORD,
            "cafile": self.cert,
            "smtp_ports": self.smtp_ports,
            "imaps_port": self.imaps_port,
        }
        return MailTarget(**{**values, **changes})


def _serve(tmp_path: Path, behaviour: Behaviour, valid_for_days: float = 365) -> Iterator[MailHost]:
    cert, key = tls.self_signed(
        HOST, "127.0.0.1", [HOST], as_trust_root=True,
        valid_for=datetime.timedelta(days=valid_for_days),
    )  # fmt: skip
    (tmp_path / "cert.pem").write_bytes(cert)
    (tmp_path / "key.pem").write_bytes(key)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    servers = [_Server(_Smtp, ctx, behaviour), _Server(_Smtp, ctx, behaviour),
               _Server(_Imaps, ctx, behaviour)]  # fmt: skip
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for t in threads:
        t.start()
    try:
        yield MailHost(
            behaviour,
            (servers[0].server_address[1], servers[1].server_address[1]),
            servers[2].server_address[1],
            tmp_path / "cert.pem",
        )
    finally:
        for s in servers:
            s.shutdown()
            s.server_close()


@pytest.fixture
def mailhost(tmp_path: Path) -> Iterator[MailHost]:
    yield from _serve(tmp_path, Behaviour())


def test_healthy_service(mailhost: MailHost, tmp_path: Path) -> None:
    # The accounts store is a real one (a local file): two domains, three mailboxes.
    store = MailStore(LocalTransport(tmp_path / "accounts.sqlite"))
    for domain in ("brieux.fr", "mortree.fr"):
        store.domain_add(domain, max_mailboxes=10, total_quota=10 * 1024**3, default_quota=1024**3)
    for address in ("jean@brieux.fr", "marie@brieux.fr", "paul@mortree.fr"):
        store.mailbox_add(address, "un-mot-de-passe-long")
    target = mailhost.target(accounts=lambda left: LocalTransport(tmp_path / "accounts.sqlite"))
    found = probe(target, time.monotonic() + 10)
    assert found["state"] == "ok", found["problems"]
    assert found["up"] is True
    assert [s["banner"] for s in found["smtp"]] == [f"220 {HOST} ESMTP test"] * 2
    assert [s["starttls"] for s in found["smtp"]] == [True, True]
    assert found["imap"]["login"] == "ok" and mailhost.behaviour.logins == [LOGIN]
    cert = found["certificate"]
    assert cert["trust"] == "trusted" and cert["issuer"] == f"CN={HOST}"
    assert 364 <= cert["days_left"] <= 365
    assert found["mailboxes"] == {"brieux.fr": 2, "mortree.fr": 1}
    assert PASSWORD not in json.dumps(found)


def test_self_signed_fallback_is_named(mailhost: MailHost) -> None:
    # The same certificate, not given as a trust root: it verifies against nothing.
    found = probe(mailhost.target(cafile=None), time.monotonic() + 10)
    assert found["certificate"]["trust"] == SELF_SIGNED
    assert found["certificate"]["self_signed"] is True
    assert found["state"] == "attention"
    assert f"the certificate is {SELF_SIGNED}" in found["problems"]
    # The fallback is known: the probe still logs in (the service works).
    assert found["imap"]["login"] == "ok"


def test_certificate_for_another_name_is_not_trusted(mailhost: MailHost) -> None:
    found = probe(mailhost.target(hostname="mail.mortree.fr"), time.monotonic() + 10)
    assert found["certificate"]["trust"].startswith("not trusted (")
    assert "mismatch" in found["certificate"]["trust"].lower()


def test_certificate_expiring_soon(tmp_path: Path) -> None:
    for host in _serve(tmp_path, Behaviour(), valid_for_days=4.5):
        found = probe(host.target(), time.monotonic() + 10)
        assert found["certificate"]["days_left"] == 4.5  # rounded to a tenth
        assert found["state"] == "attention"
        assert "the certificate expires in 4.5 days" in found["problems"]
        text = prometheus.render([_status(found)])
        expiry = _metric(text, 'kloudctl_mail_certificate_expiry_seconds{cabinet="brieux"}')
        assert expiry == pytest.approx(found["certificate"]["expires_at"])
        assert 4.4 * 86400 < expiry - time.time() <= 4.5 * 86400


def test_banner_missing(tmp_path: Path) -> None:
    for host in _serve(tmp_path, Behaviour(banner=False)):
        found = probe(host.target(), time.monotonic() + 10)
        assert found["state"] == "down" and found["up"] is False
        assert [s["banner"] for s in found["smtp"]] == [None, None]
        assert "greeted with 554" in found["smtp"][0]["error"]
        text = prometheus.render([_status(found)])
        assert _metric(text, 'kloudctl_mail_up{cabinet="brieux"}') == 0
        port = found["smtp"][0]["port"]
        assert _metric(text, f'kloudctl_mail_smtp_up{{cabinet="brieux",port="{port}"}}') == 0


def test_starttls_not_offered(tmp_path: Path) -> None:
    for host in _serve(tmp_path, Behaviour(starttls=False)):
        found = probe(host.target(), time.monotonic() + 10)
        assert [s["starttls"] for s in found["smtp"]] == [False, False]
        assert found["state"] == "attention"
        assert any("STARTTLS not offered" in p for p in found["problems"])


def test_login_refused(tmp_path: Path) -> None:
    for host in _serve(tmp_path, Behaviour(accounts={LOGIN: "another-password"})):
        found = probe(host.target(), time.monotonic() + 10)
        assert found["imap"]["login"] == "refused"
        assert found["state"] == "attention"
        assert f"IMAP login of {LOGIN}: refused" in found["problems"]
        text = prometheus.render([_status(found)])
        assert _metric(text, 'kloudctl_mail_imap_login_ok{cabinet="brieux"}') == 0


def test_no_probe_account_is_said(mailhost: MailHost) -> None:
    found = probe(mailhost.target(probe_login=None, probe_password=None), time.monotonic() + 10)
    assert found["imap"]["login"] == NO_PROBE_ACCOUNT and mailhost.behaviour.logins == []
    assert found["state"] == "ok"
    assert "kloudctl_mail_imap_login_ok{" not in prometheus.render([_status(found)])


def test_silent_server_costs_at_most_the_time_left(tmp_path: Path) -> None:
    for host in _serve(tmp_path, Behaviour(silent=True)):
        started = time.monotonic()
        found = probe(host.target(), started + 1.0)
        took = time.monotonic() - started
        # Every socket operation is given only what is left of the budget: three services
        # that never answer take that budget once, not three times.
        assert took < 1.0 + 0.5
        assert found["state"] == "down"
        assert all("time left" in s["error"] for s in found["smtp"])


def test_closed_ports_are_down(tmp_path: Path) -> None:
    closed = []
    for _ in range(3):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            closed.append(s.getsockname()[1])
    target = MailTarget("brieux", HOST, "127.0.0.1", smtp_ports=(closed[0], closed[1]),
                        imaps_port=closed[2])  # fmt: skip
    found = probe(target, time.monotonic() + 5)
    assert found["state"] == "down" and found["certificate"] is None
    assert "cannot connect" in found["smtp"][0]["error"]


def _status(mail: dict[str, Any]) -> CabinetStatus:
    return CabinetStatus("brieux", time.time(), mail={"domains": ["brieux.fr"], **mail})


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in the textfile")


def test_status_probes_mail_beside_the_api_within_its_budget(
    sims: SimFleet, mailhost: MailHost, tmp_path: Path
) -> None:
    """brieux's API answers 503 to everything: its mail is probed all the same (in its own
    thread, within the cabinet's budget), and the sample, the textfile and the table say
    what was found."""
    store = MailStore(LocalTransport(tmp_path / "accounts.sqlite"))
    store.domain_add("brieux.fr", max_mailboxes=5, total_quota=1024**3, default_quota=1024**2)
    store.mailbox_add("jean@brieux.fr", "un-mot-de-passe-long")
    target = mailhost.target(accounts=lambda left: LocalTransport(tmp_path / "accounts.sqlite"))
    sims.fault("brieux", kind="error_rate", rate=1.0)
    started = time.monotonic()
    [s] = gather(sims.fleet(), ["brieux"], timeout=3.0, probes=Probes(mail={"brieux": target}))
    assert time.monotonic() - started < 3.0 + 1.0
    assert not s.reachable
    assert s.mail["state"] == "ok" and s.mail["mailboxes"] == {"brieux.fr": 1}
    assert s.mail["domains"] == ["brieux.fr", "mortree.fr"]  # as the cabinet file declares
    assert json.loads(json.dumps(s.as_dict()))["mail"]["imap"]["login"] == "ok"
    text = prometheus.render([s])
    assert _metric(text, 'kloudctl_mail_up{cabinet="brieux"}') == 1
    assert _metric(text, 'kloudctl_mail_mailboxes{cabinet="brieux",domain="brieux.fr"}') == 1
    assert _metric(text, 'kloudctl_mail_certificate_trusted{cabinet="brieux"}') == 1
    line = status_cli._mail(s)
    assert line.startswith("ok: SMTP ") and "IMAP login ok" in line and "brieux.fr 1" in line
    history.append(tmp_path / "h.sqlite", [s])
    [row] = history.read_samples(tmp_path / "h.sqlite")
    assert row["mail_state"] == "ok"
    assert [(m["domain"], m["tenant"], m["mailboxes"]) for m in row["mailboxes"]] == [
        ("brieux.fr", None, 1)
    ]


def test_mail_targets_from_the_fleet(tmp_path: Path) -> None:
    """What `status` probes: each declared mail service by its host name, the probe
    account's password read from its secret reference only when asked; none for a cabinet
    a simulator stands for (its mail host is not in this world)."""
    root = tmp_path / "fleet"
    for part in ("cabinets", "backups"):
        shutil.copytree(REPO / part, root / part)
    (root / "secrets").mkdir()
    (root / "secrets" / "sonde").write_text(PASSWORD + "\n")
    path = root / "cabinets" / "brieux.yaml"
    path.write_text(path.read_text().replace(
        "  postmaster: postmaster@brieux.fr\n",
        "  postmaster: postmaster@brieux.fr\n"
        "  probe: {address: sonde@brieux.fr, password: file:secrets/sonde}\n"))  # fmt: skip
    targets = mail_targets(load_fleet(root))
    target = targets["brieux"]
    assert (target.cabinet, target.hostname, target.address) == (
        "brieux", "mail.brieux.fr", "mail.brieux.fr")  # fmt: skip
    assert target.probe_login == "sonde@brieux.fr"
    assert target.probe_password is not None and target.probe_password() == PASSWORD
    (root / ".state" / "sim").mkdir(parents=True)
    (root / ".state" / "sim" / "targets.json").write_text('{"brieux": {}}')
    assert "brieux" not in mail_targets(load_fleet(root))
    assert set(mail_targets(load_fleet(root))) == set(targets) - {"brieux"}


def test_a_probe_account_outside_the_mail_domains_is_bad_input(tmp_path: Path) -> None:
    root = tmp_path / "fleet"
    for part in ("cabinets", "backups"):
        shutil.copytree(REPO / part, root / part)
    path = root / "cabinets" / "brieux.yaml"
    path.write_text(path.read_text().replace(
        "  postmaster: postmaster@brieux.fr\n",
        "  postmaster: postmaster@brieux.fr\n"
        "  probe: {address: sonde@example.org, password: file:secrets/sonde}\n"))  # fmt: skip
    with pytest.raises(KloudError) as refused:
        load_fleet(root)
    assert "probe.address sonde@example.org: not in the mail domains" in str(refused.value.problems)
    assert "brieux.yaml" in str(refused.value.problems)
