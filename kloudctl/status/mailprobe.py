"""A mail service's health, probed as residents' clients and other mail servers see it.

Per cabinet that declares mail, within the time left of its status budget (every socket
operation gets only what remains, so a server that says nothing, or dribbles, costs at most
that):

- SMTP on 25 and 587: connect, read the 220 banner, EHLO, STARTTLS offered and working;
- IMAPS on 993: the greeting, then `AUTHENTICATE PLAIN` as the cabinet's probe account (a
  dedicated mailbox whose password is a secret reference, read here and never shown); no
  probe account declared: said as such, nothing faked;
- the certificate each TLS service presents: days left, issuer, and whether it verifies
  against the system's roots (plus one more root when told, a test ACME directory's) for
  the mail host's name. One that does not, and names itself as its issuer, is the mail
  role's self-signed fallback (ACME could not be reached when it was made): "self-signed
  (fallback)";
- mailboxes per domain, read from the accounts store through its one transport
  (`kloudctl.mail.store`: the mail host over SSH, or a local file).

Every TLS handshake is first tried verifying; when that fails the service is reached again
without verifying, only to read what it presents (never to log in: the probe's password is
sent only over a connection that verified, or whose certificate is the self-signed
fallback the operator was told about by this very probe).
"""

from __future__ import annotations

import base64
import contextlib
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kloudctl.errors import KloudError

if TYPE_CHECKING:
    from kloudctl.mail.store import Transport

SMTP_PORTS = (25, 587)
IMAPS_PORT = 993
#: Below this many days left, a certificate needs attention (ACME renews at 30).
EXPIRY_WARNING_DAYS = 21
#: What the probe calls itself in EHLO (a name that can never be a real host, RFC 2606).
EHLO_NAME = "kloudctl-status.invalid"
#: Longest line a server may send before the probe gives up on it.
MAX_LINE = 8192
SELF_SIGNED = "self-signed (fallback)"
NO_PROBE_ACCOUNT = "no probe account"


class ProbeFailed(KloudError):
    """One check failed; the message says what the server did (or did not) answer."""


@dataclass(frozen=True)
class MailTarget:
    """How to probe one cabinet's mail service."""

    cabinet: str
    #: The name clients use: sent as SNI, checked against the certificate.
    hostname: str
    #: Where to connect: the hostname itself, or an address reaching it (a test cabinet).
    address: str
    probe_login: str | None = None
    #: The probe account's password, read only when the login is tried.
    probe_password: Callable[[], str] | None = None
    #: Where the accounts store is read for the mailboxes per domain (None: not read).
    accounts: Callable[[float], Transport] | None = None
    #: One more trust root besides the system's (a test ACME directory's).
    cafile: Path | None = None
    smtp_ports: tuple[int, ...] = SMTP_PORTS
    imaps_port: int = IMAPS_PORT


class _Line:
    """A socket read line by line, each operation bounded by the time left."""

    def __init__(self, sock: socket.socket, deadline: float, what: str) -> None:
        self.sock = sock
        self.deadline = deadline
        self.what = what
        self.buffer = b""

    def _budget(self) -> None:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise ProbeFailed(f"{self.what}: no answer within the time left")
        self.sock.settimeout(left)

    def readline(self) -> str:
        while b"\n" not in self.buffer:
            if len(self.buffer) > MAX_LINE:
                raise ProbeFailed(f"{self.what}: a line longer than {MAX_LINE} bytes")
            self._budget()
            try:
                chunk = self.sock.recv(4096)
            except TimeoutError:
                raise ProbeFailed(f"{self.what}: no answer within the time left") from None
            if not chunk:
                raise ProbeFailed(f"{self.what}: closed the connection")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.rstrip(b"\r").decode("utf-8", "replace")

    def send(self, data: bytes) -> None:
        self._budget()
        try:
            self.sock.sendall(data)
        except TimeoutError:
            raise ProbeFailed(f"{self.what}: could not send within the time left") from None

    def start_tls(self, context: ssl.SSLContext, hostname: str) -> None:
        if self.buffer:
            # Anything sent before the handshake would be read as if it came over TLS.
            raise ProbeFailed(f"{self.what}: sent data before the TLS handshake")
        self._budget()
        tls = context.wrap_socket(
            self.sock, server_hostname=hostname, do_handshake_on_connect=False
        )
        self.sock = tls
        try:
            tls.do_handshake()
        except TimeoutError:
            raise ProbeFailed(f"{self.what}: TLS handshake not done within the time left") from None

    def peer_certificate(self) -> bytes | None:
        if isinstance(self.sock, ssl.SSLSocket):
            return self.sock.getpeercert(binary_form=True)
        return None


@contextlib.contextmanager
def _connect(address: str, port: int, deadline: float, what: str) -> Iterator[_Line]:
    left = deadline - time.monotonic()
    if left <= 0:
        raise ProbeFailed(f"{what}: no time left to connect")
    try:
        sock = socket.create_connection((address, port), timeout=left)
    except TimeoutError:
        raise ProbeFailed(f"{what}: no connection within the time left") from None
    except OSError as exc:
        raise ProbeFailed(f"{what}: cannot connect ({exc.strerror or exc})") from None
    conn = _Line(sock, deadline, what)
    try:
        yield conn
    finally:
        conn.sock.close()


def _smtp_reply(conn: _Line) -> tuple[int, list[str]]:
    """One SMTP reply (RFC 5321 4.2: `NNN-text` lines, then `NNN text`)."""
    lines = []
    while True:
        line = conn.readline()
        code, sep = line[:3], line[3:4]
        if not code.isdigit() or sep not in ("-", " ", ""):
            raise ProbeFailed(f"{conn.what} answered {line[:80]!r}, not an SMTP reply")
        lines.append(line[4:])
        if sep != "-":
            return int(code), lines


def _tls_contexts(cafile: Path | None) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(verifying: the system's roots and `cafile`, host name checked; reading only)."""
    verifying = ssl.create_default_context()
    if cafile is not None:
        verifying.load_verify_locations(cafile=str(cafile))
    reading = ssl.create_default_context()
    reading.check_hostname = False
    reading.verify_mode = ssl.CERT_NONE
    return verifying, reading


@dataclass
class _Seen:
    """What the TLS handshakes showed."""

    certificates: list[bytes]
    verify_errors: list[str]


def _with_tls(
    opening: Callable[[], contextlib.AbstractContextManager[_Line]],
    target: MailTarget,
    seen: _Seen,
    use: Callable[[_Line, bool], Any],
) -> Any:
    """Open the service, start TLS verifying; when verifying fails, open it again and
    read what it presents. `use(conn, verified)` then speaks the protocol over TLS."""
    verifying, reading = _tls_contexts(target.cafile)
    with opening() as conn:
        try:
            conn.start_tls(verifying, target.hostname)
        except ssl.SSLCertVerificationError as exc:
            seen.verify_errors.append(str(exc.verify_message))
        except (ssl.SSLError, OSError) as exc:
            raise ProbeFailed(f"{conn.what}: TLS handshake failed ({exc})") from None
        else:
            seen.certificates.append(conn.peer_certificate() or b"")
            return use(conn, True)
    with opening() as conn:
        try:
            conn.start_tls(reading, target.hostname)
        except (ssl.SSLError, OSError) as exc:
            raise ProbeFailed(f"{conn.what}: TLS handshake failed ({exc})") from None
        seen.certificates.append(conn.peer_certificate() or b"")
        return use(conn, False)


def _smtp(target: MailTarget, port: int, deadline: float, seen: _Seen) -> dict[str, Any]:
    what = f"SMTP on {target.hostname}:{port}"
    found: dict[str, Any] = {"port": port, "banner": None, "starttls": None, "error": None}

    @contextlib.contextmanager
    def opening() -> Iterator[_Line]:
        with _connect(target.address, port, deadline, what) as conn:
            code, lines = _smtp_reply(conn)
            if code != 220:
                raise ProbeFailed(f"{what}: greeted with {code} {' '.join(lines)[:80]!r}, not 220")
            found["banner"] = f"220 {lines[0]}"[:200]
            conn.send(f"EHLO {EHLO_NAME}\r\n".encode())
            code, lines = _smtp_reply(conn)
            if code != 250:
                raise ProbeFailed(f"{what}: EHLO answered {code}, not 250")
            found["starttls"] = any(e.split()[:1] == ["STARTTLS"] for e in lines[1:])
            if not found["starttls"]:
                raise ProbeFailed(f"{what}: STARTTLS not offered")
            conn.send(b"STARTTLS\r\n")
            code, lines = _smtp_reply(conn)
            if code != 220:
                raise ProbeFailed(f"{what}: STARTTLS answered {code}, not 220")
            yield conn

    def quit_(conn: _Line, verified: bool) -> None:
        with contextlib.suppress(ProbeFailed, OSError):
            conn.send(b"QUIT\r\n")

    try:
        _with_tls(opening, target, seen, quit_)
    except ProbeFailed as exc:
        found["error"] = str(exc)
    return found


def _imap(target: MailTarget, deadline: float, seen: _Seen) -> dict[str, Any]:
    port = target.imaps_port
    what = f"IMAPS on {target.hostname}:{port}"
    found: dict[str, Any] = {"port": port, "greeting": None, "login": None, "error": None}

    @contextlib.contextmanager
    def opening() -> Iterator[_Line]:
        with _connect(target.address, port, deadline, what) as conn:
            yield conn

    def login(conn: _Line, verified: bool) -> None:
        greeting = conn.readline()
        if not greeting.startswith("* OK"):
            raise ProbeFailed(f"{what}: greeted with {greeting[:80]!r}, not '* OK'")
        found["greeting"] = greeting[:200]
        if target.probe_login is None or target.probe_password is None:
            found["login"] = NO_PROBE_ACCOUNT
            return
        if not verified and not _self_signed(seen.certificates[-1]):
            # A certificate neither trusted nor the known fallback: keep the password.
            found["login"] = "not tried: the certificate does not verify"
            return
        password = target.probe_password()
        conn.send(b"a1 AUTHENTICATE PLAIN\r\n")
        line = conn.readline()
        if not line.startswith("+"):
            raise ProbeFailed(f"{what}: AUTHENTICATE PLAIN answered {line[:80]!r}")
        plain = f"\0{target.probe_login}\0{password}".encode()
        conn.send(base64.b64encode(plain) + b"\r\n")
        while True:
            line = conn.readline()
            if line.startswith("a1 "):
                break
        status = line[3:].split(" ", 1)[0]
        found["login"] = "ok" if status == "OK" else "refused"
        with contextlib.suppress(ProbeFailed, OSError):
            conn.send(b"a2 LOGOUT\r\n")

    # Implicit TLS: the handshake is the first thing on the connection.
    try:
        _with_tls(opening, target, seen, login)
    except ProbeFailed as exc:
        found["error"] = str(exc)
    except KloudError as exc:  # the probe's password could not be read
        found["login"] = f"password not read: {exc}"
    return found


def _self_signed(der: bytes) -> bool:
    from cryptography import x509  # only where mail is probed: status starts without it

    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return False
    return cert.issuer == cert.subject


def _certificate(seen: _Seen, now: float) -> dict[str, Any] | None:
    """The certificate that expires first among those presented, with its trust."""
    from cryptography import x509

    certs = []
    for der in dict.fromkeys(seen.certificates):
        with contextlib.suppress(ValueError):
            certs.append(x509.load_der_x509_certificate(der))
    if not certs:
        return None
    cert = min(certs, key=lambda c: c.not_valid_after_utc)
    expires = cert.not_valid_after_utc.timestamp()
    if not seen.verify_errors:
        trust = "trusted"
    elif cert.issuer == cert.subject and "mismatch" not in seen.verify_errors[0].lower():
        # Its own issuer and no root trusts it (a trusted one for another name says so).
        trust = SELF_SIGNED
    else:
        trust = f"not trusted ({seen.verify_errors[0]})"
    return {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "self_signed": cert.issuer == cert.subject,
        "trust": trust,
        "expires_at": expires,
        "days_left": round((expires - now) / 86400, 1),
        "distinct": len(certs),
    }


def _mailboxes(target: MailTarget, deadline: float) -> tuple[dict[str, int] | None, str | None]:
    if target.accounts is None:
        return None, None
    from kloudctl.mail.store import MailStore  # argon2 and the store: only when used

    left = deadline - time.monotonic()
    if left <= 0:
        return None, "no time left to read the accounts store"
    try:
        rows = MailStore(target.accounts(left)).domain_list()
    except KloudError as exc:
        return None, " ".join(str(exc).split())
    counts = {}
    for row in rows:
        count = row.get("mailboxes")
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            return None, f"the accounts store answered mailboxes={count!r} for {row.get('domain')}"
        counts[str(row.get("domain"))] = count
    return counts, None


def probe(target: MailTarget, deadline: float, *, now: float | None = None) -> dict[str, Any]:
    """The health of `target`'s mail service, read until `deadline` (time.monotonic())."""
    seen = _Seen([], [])
    smtp = [_smtp(target, port, deadline, seen) for port in target.smtp_ports]
    imap = _imap(target, deadline, seen)
    cert = _certificate(seen, time.time() if now is None else now)
    mailboxes, mailboxes_error = _mailboxes(target, deadline)
    problems = []
    for s in smtp:
        if s["error"]:
            problems.append(s["error"])
    if imap["error"]:
        problems.append(imap["error"])
    elif imap["login"] not in ("ok", NO_PROBE_ACCOUNT):
        problems.append(f"IMAP login of {target.probe_login}: {imap['login']}")
    if cert is not None:
        if cert["days_left"] < 0:
            problems.append(f"the certificate expired {-cert['days_left']:g} days ago")
        elif cert["days_left"] < EXPIRY_WARNING_DAYS:
            problems.append(f"the certificate expires in {cert['days_left']:g} days")
        if cert["trust"] != "trusted":
            problems.append(f"the certificate is {cert['trust']}")
    if mailboxes_error:
        problems.append(f"mailboxes not read: {mailboxes_error}")
    up = all(s["banner"] for s in smtp) and imap["greeting"] is not None
    return {
        "state": "ok" if not problems else "attention" if up else "down",
        "up": up,
        "hostname": target.hostname,
        "smtp": smtp,
        "imap": imap,
        "certificate": cert,
        "mailboxes": mailboxes,
        "problems": problems,
    }
