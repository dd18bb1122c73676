"""The DNS records a hosted mail domain needs, and a check of what resolvers answer.

`plan_records` is pure: the domain, the mail host's name and public IPv4, and the DKIM keys
published for the domain give the records (MX, SPF, DKIM, DMARC at p=none, MTA-STS,
TLS-RPT, RFC 6186/8314 SRV, autoconfig, and the PTR to ask the ISP for). `check_records`
asks one resolver (dnspython) and says, record by record, what is missing or wrong.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import asdict, dataclass
from typing import Any

import dns.exception
import dns.resolver
import dns.reversename

from kloudctl.errors import ExternalError, InputError, KloudError
from kloudctl.netloc import parse_ip_port

MTA_STS_MAX_AGE = 604800  # one week


@dataclass(frozen=True)
class Record:
    name: str  # absolute, with the trailing dot
    type: str
    value: str  # presentation format (TXT: the joined text, unquoted)
    purpose: str
    where: str = "zone"  # "zone" (publish in the domain's zone), "host-zone", "isp" (ask)

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class Finding:
    record: Record
    status: str  # ok, missing, wrong
    found: list[str]
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.record.name,
            "type": self.record.type,
            "expected": self.record.value,
            "purpose": self.record.purpose,
            "status": self.status,
            "found": self.found,
            "message": self.message,
        }


def mta_sts_policy(hostname: str, mode: str = "testing", max_age: int = MTA_STS_MAX_AGE) -> str:
    """The policy file served at https://mta-sts.DOMAIN/.well-known/mta-sts.txt (the mail
    role's nginx template renders the same four lines)."""
    return f"version: STSv1\nmode: {mode}\nmx: {hostname}\nmax_age: {max_age}\n"


def mta_sts_id(policy: str) -> str:
    # Changes whenever the policy changes, and only then (RFC 8461 §3.1).
    return hashlib.sha256(policy.encode()).hexdigest()[:20]


def _abs(name: str) -> str:
    return name.rstrip(".").lower() + "."


def plan_records(
    domain: str,
    hostname: str,
    ipv4: str,
    dkim: list[tuple[str, str]],
    report_address: str | None = None,
    mta_sts_mode: str = "testing",
) -> list[Record]:
    """Records for DOMAIN served by HOSTNAME at IPV4; `dkim` = [(selector, base64 DER)]."""
    try:
        ip = ipaddress.IPv4Address(ipv4)
    except ValueError:
        raise InputError(f"ipv4: expected an IPv4 address, got {ipv4!r}") from None
    d, host = _abs(domain), _abs(hostname)
    report = report_address or f"postmaster@{domain}"
    host_in_zone = host == d or host.endswith("." + d)
    records = [
        Record(d, "MX", f"10 {host}", "mail for the domain goes to the cabinet"),
        Record(
            host,
            "A",
            str(ip),
            "the mail host's address",
            "zone" if host_in_zone else "host-zone",
        ),
        Record(d, "TXT", "v=spf1 mx -all", "SPF: only the MX hosts send for the domain"),
    ]
    for selector, public_key in dkim:
        records.append(
            Record(
                f"{selector}._domainkey.{d}",
                "TXT",
                f"v=DKIM1; k=rsa; p={public_key}",
                f"DKIM public key (selector {selector})",
            )
        )
    policy = mta_sts_policy(hostname.rstrip("."), mta_sts_mode)
    records += [
        Record(
            f"_dmarc.{d}",
            "TXT",
            f"v=DMARC1; p=none; rua=mailto:{report}; fo=1",
            "DMARC, monitoring only (p=none) with aggregate reports",
        ),
        Record(f"mta-sts.{d}", "CNAME", host, "MTA-STS policy host (HTTPS on the cabinet)"),
        Record(f"_mta-sts.{d}", "TXT", f"v=STSv1; id={mta_sts_id(policy)}", "MTA-STS policy id"),
        Record(f"_smtp._tls.{d}", "TXT", f"v=TLSRPTv1; rua=mailto:{report}", "TLS reporting"),
        Record(f"_submission._tcp.{d}", "SRV", f"0 1 587 {host}", "RFC 6186: submission"),
        Record(f"_submissions._tcp.{d}", "SRV", f"0 1 465 {host}", "RFC 8314: implicit TLS"),
        Record(f"_imaps._tcp.{d}", "SRV", f"0 1 993 {host}", "RFC 6186: IMAP over TLS"),
        Record(f"_imap._tcp.{d}", "SRV", "0 0 0 .", "RFC 6186: no cleartext IMAP"),
        Record(f"_pop3._tcp.{d}", "SRV", "0 0 0 .", "RFC 6186: no POP3"),
        Record(f"_pop3s._tcp.{d}", "SRV", "0 0 0 .", "RFC 6186: no POP3S"),
        Record(f"autoconfig.{d}", "CNAME", host, "mail-client autoconfiguration"),
        Record(
            dns.reversename.from_address(str(ip)).to_text(),
            "PTR",
            host,
            "reverse DNS of the mail host: ask the ISP",
            "isp",
        ),
    ]
    return records


def _txt_chunks(text: str) -> str:
    return " ".join(f'"{text[i : i + 255]}"' for i in range(0, len(text), 255))


def zone_snippet(domain: str, records: list[Record]) -> str:
    lines = [f"; mail records for {domain} (kloudctl mail dns plan)"]
    for r in records:
        value = _txt_chunks(r.value) if r.type == "TXT" else r.value
        line = f"{r.name:<40} 3600 IN {r.type:<5} {value}"
        if r.where == "zone":
            lines.append(line)
        elif r.where == "host-zone":
            lines.append(f"; in the mail host's own zone: {line}")
        else:
            lines.append(f"; ask the ISP for the reverse record: {line}")
    return "\n".join(lines) + "\n"


# --- check ----------------------------------------------------------------------------


def make_resolver(server: str | None, timeout: float = 3.0) -> dns.resolver.Resolver:
    """`server` = IP or IP:PORT ([v6]:PORT); None = the system's resolvers."""
    if server is None:
        resolver = dns.resolver.Resolver()
    else:
        host, port = parse_ip_port(server, "--resolver")
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [host]
        resolver.port = port or 53
    resolver.lifetime = timeout
    resolver.timeout = timeout
    return resolver


def _answers(resolver: dns.resolver.Resolver, name: str, rtype: str) -> list[Any]:
    try:
        return list(resolver.resolve(name, rtype, raise_on_no_answer=False) or [])
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    except dns.resolver.NoNameservers as exc:
        raise ExternalError(f"no resolver answered for {name} {rtype}: {exc}") from None
    except dns.exception.Timeout:
        raise ExternalError(f"resolver timed out for {name} {rtype}") from None


def _txt(rdata: Any) -> str:
    return b"".join(rdata.strings).decode(errors="replace")


def _tags(text: str) -> dict[str, str]:
    tags = {}
    for part in text.split(";"):
        key, _, value = part.strip().partition("=")
        if key:
            tags[key.strip().lower()] = "".join(value.split())
    return tags


def _check_one(resolver: dns.resolver.Resolver, r: Record) -> Finding:
    def result(status: str, found: list[str], message: str) -> Finding:
        return Finding(r, status, found, message)

    if r.type == "TXT":
        prefix = r.value.split(";")[0].split()[0]  # v=spf1, v=DKIM1, v=DMARC1, ...
        texts = [_txt(a) for a in _answers(resolver, r.name, "TXT")]
        mine = [t for t in texts if t.lower().startswith(prefix.lower())]
        if not mine:
            return result("missing", texts, f"no {prefix} TXT record at {r.name}")
        if len(mine) > 1:
            return result("wrong", mine, f"{len(mine)} {prefix} records at {r.name}: keep one")
        want, got = _tags(r.value), _tags(mine[0])
        if prefix.lower() == "v=spf1":
            same = " ".join(mine[0].split()).lower() == r.value.lower()
        elif prefix.lower() == "v=dkim1":
            same = got.get("p") == want["p"]
        else:
            same = all(got.get(k) == v for k, v in want.items() if k != "fo")
        if not same:
            return result("wrong", mine, f"{r.name} TXT is {mine[0]!r}, expected {r.value!r}")
        return result("ok", mine, "")
    if r.type == "MX":
        found = [
            f"{a.preference} {a.exchange.to_text().lower()}"
            for a in _answers(resolver, r.name, "MX")
        ]
        want_host = r.value.split()[1]
        if not found:
            return result("missing", [], f"no MX record for {r.name}")
        if not any(f.split()[1] == want_host for f in found):
            return result("wrong", found, f"MX of {r.name} does not name {want_host}")
        return result("ok", found, "")
    if r.type == "A":
        found = [a.address for a in _answers(resolver, r.name, "A")]
        if not found:
            return result("missing", [], f"no A record for {r.name}")
        if r.value not in found:
            return result("wrong", found, f"{r.name} resolves to {', '.join(found)}, not {r.value}")
        return result("ok", found, "")
    if r.type == "CNAME":
        cnames = [a.target.to_text().lower() for a in _answers(resolver, r.name, "CNAME")]
        if cnames:
            if r.value in cnames:
                return result("ok", cnames, "")
            return result("wrong", cnames, f"{r.name} is an alias of {cnames[0]}, not {r.value}")
        # An A record to the mail host's address does the same job.
        addresses = [a.address for a in _answers(resolver, r.name, "A")]
        host_addresses = [a.address for a in _answers(resolver, r.value, "A")]
        if addresses and set(addresses) & set(host_addresses):
            return result("ok", addresses, "")
        if addresses:
            return result("wrong", addresses, f"{r.name} does not point to {r.value}")
        return result("missing", [], f"no CNAME (or A) record for {r.name}")
    if r.type == "SRV":
        found = [
            f"{a.priority} {a.weight} {a.port} {a.target.to_text().lower()}"
            for a in _answers(resolver, r.name, "SRV")
        ]
        srv = r.value.split()
        if not found:
            return result("missing", [], f"no SRV record at {r.name}")
        if not any(f.split()[2:] == srv[2:] for f in found):
            return result("wrong", found, f"SRV at {r.name} should be port {srv[2]} on {srv[3]}")
        return result("ok", found, "")
    if r.type == "PTR":
        found = [a.target.to_text().lower() for a in _answers(resolver, r.name, "PTR")]
        if not found:
            return result(
                "missing", [], f"no reverse DNS (PTR) at {r.name}: ask the ISP for {r.value}"
            )
        if r.value not in found:
            return result("wrong", found, f"reverse DNS is {found[0]}, ask the ISP for {r.value}")
        return result("ok", found, "")
    raise ValueError(f"unknown record type {r.type}")


def check_records(records: list[Record], resolver: dns.resolver.Resolver) -> list[Finding]:
    return [_check_one(resolver, r) for r in records]


def raise_for_findings(domain: str, findings: list[Finding]) -> None:
    """`KloudError` (exit 1) naming every record of `domain` that is missing or wrong."""
    bad = [f for f in findings if f.status != "ok"]
    if bad:
        raise KloudError(
            f"{len(bad)} record(s) missing or wrong for {domain}: "
            + "; ".join(f"{f.record.name} {f.record.type} {f.status}" for f in bad)
        )


def plan_for_domain(
    fleet: Any,
    domain: str,
    dkim_keys: list[dict[str, Any]],
    hostname: str | None = None,
    ipv4: str | None = None,
) -> list[Record]:
    """Records for a hosted domain: host and address from the cabinet that declares the
    domain (unless given), DKIM keys from the accounts store (published or active)."""
    from kloudctl.mail.accounts_db import OpError, check_domain

    try:  # names go into a zone file and DNS queries: refuse what is not a name
        domain = check_domain(domain.strip().rstrip("."))
        if hostname is not None:
            hostname = check_domain(hostname.strip().rstrip("."), "--hostname")
    except OpError as exc:
        raise InputError(f"{exc.field}: {exc.message}") from None
    if hostname is None or ipv4 is None:
        cabinet = None
        if fleet is not None:
            cabinet = next(
                (c for c in fleet if c.mail is not None and domain in c.mail.domains), None
            )
        if cabinet is None:
            raise InputError(
                f"domain {domain} is not declared in any cabinet's mail.domains;"
                " give --hostname and --ipv4"
            )
        hostname = hostname or cabinet.mail.hostname
        ipv4 = ipv4 or str(cabinet.networks.wan.address.ip)
    keys = [
        (k["selector"], k["public_key"])
        for k in dkim_keys
        if k["domain"] == domain and k["state"] in ("published", "active")
    ]
    return plan_records(domain, hostname, ipv4, keys)
