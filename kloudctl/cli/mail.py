"""`kloudctl mail ...`: residents' mailboxes, aliases, domains, DKIM keys and DNS records."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
from pydantic_core import PydanticCustomError

from kloudctl import console
from kloudctl.cli.options import FleetContext, json_option
from kloudctl.errors import InputError
from kloudctl.mail.store import LocalTransport, MailStore, SshTransport, Transport
from kloudctl.model.types import format_size, parse_size


class MailContext:
    def __init__(
        self,
        fleet: FleetContext,
        db: str | None,
        host: str | None,
        cabinet: str | None,
        actor: str | None,
        ssh_key: str | None = None,
        known_hosts: str | None = None,
    ) -> None:
        self.fleet, self.db, self.host, self.cabinet, self.actor = fleet, db, host, cabinet, actor
        self.ssh_key, self.known_hosts = ssh_key, known_hosts

    def transport(self) -> Transport:
        given = [x for x in (self.db, self.host, self.cabinet) if x]
        if len(given) > 1:
            raise InputError("--db, --host and --cabinet: give only one")
        if self.db:
            return LocalTransport(Path(self.db))
        host = self.host
        if self.cabinet:
            mail = self.fleet.fleet().cabinet(self.cabinet).mail
            if mail is None:
                raise InputError(f"cabinet {self.cabinet} declares no mail service")
            host = f"root@{mail.hostname}"
        if not host:
            raise InputError(
                "where are the accounts? give --db FILE, --host [USER@]HOST[:PORT]"
                " or --cabinet NAME"
                " (or KLOUDCTL_MAIL_DB / KLOUDCTL_MAIL_HOST)"
            )
        user, _, rest = host.rpartition("@")
        name, _, port = rest.partition(":")
        if port and not port.isdigit():
            raise InputError(f"--host: bad port in {host!r}")
        return SshTransport(
            name,
            user=user or None,
            port=int(port) if port else None,
            key_filename=self.ssh_key,
            known_hosts=self.known_hosts,
        )

    def store(self) -> MailStore:
        return MailStore(self.transport(), actor=self.actor)


pass_mail = click.make_pass_decorator(MailContext)


def _size(value: str | None, field: str) -> int | None:
    if value is None:
        return None
    try:
        return parse_size(value)
    except PydanticCustomError as exc:
        raise InputError(f"{field}: {exc.message()}") from None


def _password(from_stdin: bool) -> str:
    """Read a password from stdin (one line) or a hidden prompt; never from argv."""
    if from_stdin:
        line = sys.stdin.readline()
        if not line:
            raise InputError("--password-stdin: nothing on standard input")
        return line.rstrip("\r\n")
    if not sys.stdin.isatty():
        raise InputError("no terminal to prompt for the password: use --password-stdin")
    value: str = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    return value


def _done(result: dict[str, Any], what: str) -> None:
    console.info(what if result.get("changed", True) else f"no change: {what}")


def _rows(
    title: str, rows: list[dict[str, Any]], as_json: bool, sizes: tuple[str, ...] = ()
) -> None:
    if as_json:
        console.emit_json(rows)
        return
    if not rows:
        console.info(f"{title}: none")
        return
    columns = list(rows[0])
    shown = [
        [
            format_size(r[c]) if c in sizes else ", ".join(r[c]) if isinstance(r[c], list) else r[c]
            for c in columns
        ]
        for r in rows
    ]
    console.show(console.table(title, columns, shown))


@click.group("mail")
@click.option("--db", envvar="KLOUDCTL_MAIL_DB", help="Accounts database file on this machine.")
@click.option(
    "--host", envvar="KLOUDCTL_MAIL_HOST", help="Mail host reached over SSH: [USER@]HOST[:PORT]."
)
@click.option("--cabinet", help="Cabinet whose mail host holds the accounts.")
@click.option(
    "--as",
    "actor",
    envvar="KLOUDCTL_MAIL_ADMIN",
    help="Act as this domain administrator (limited to the domains they manage).",
)
@click.option("--ssh-key", envvar="KLOUDCTL_MAIL_SSH_KEY", help="SSH private key for --host.")
@click.option(
    "--known-hosts",
    envvar="KLOUDCTL_MAIL_KNOWN_HOSTS",
    help="Accept only the host keys in this file (default: fabric's, ~/.ssh/known_hosts).",
)
@click.pass_context
def command(
    ctx: click.Context,
    db: str | None,
    host: str | None,
    cabinet: str | None,
    actor: str | None,
    ssh_key: str | None,
    known_hosts: str | None,
) -> None:
    """Residents' mailboxes on the communes' domains."""
    fleet = ctx.find_object(FleetContext) or FleetContext(None)
    ctx.obj = MailContext(fleet, db, host, cabinet, actor, ssh_key, known_hosts)


# --- domains --------------------------------------------------------------------------


@command.group("domain")
def domain() -> None:
    """Hosted mail domains and their caps."""


@domain.command("add")
@click.argument("name")
@click.option("--max-mailboxes", type=click.IntRange(min=1), required=True)
@click.option(
    "--total-quota", required=True, help="Total of the domain's mailbox quotas, e.g. 150GiB."
)
@click.option("--default-quota", default="2GiB", show_default=True)
@click.option("--no-dkim", is_flag=True, help="Do not create the domain's first DKIM key.")
@pass_mail
def domain_add(
    m: MailContext,
    name: str,
    max_mailboxes: int,
    total_quota: str,
    default_quota: str,
    no_dkim: bool,
) -> None:
    """Host a new domain (and create its first DKIM key)."""
    result = m.store().domain_add(
        name,
        max_mailboxes=max_mailboxes,
        total_quota=_size(total_quota, "--total-quota") or 0,
        default_quota=_size(default_quota, "--default-quota") or 0,
        dkim=not no_dkim,
    )
    _done(
        result,
        f"domain {result['domain']} added"
        + (f", DKIM selector {result['dkim']}" if result.get("dkim") else ""),
    )


@domain.command("list")
@json_option
@pass_mail
def domain_list(m: MailContext, as_json: bool) -> None:
    """Hosted domains with their use of the caps."""
    _rows(
        "Domains",
        m.store().domain_list(),
        as_json,
        ("quota_allocated", "total_quota", "default_quota"),
    )


# --- administrators -------------------------------------------------------------------


@command.group("admin")
def admin() -> None:
    """Per-domain administrators (they manage only their own domains)."""


@admin.command("add")
@click.argument("login")
@click.argument("domain_name")
@pass_mail
def admin_add(m: MailContext, login: str, domain_name: str) -> None:
    """Let LOGIN manage DOMAIN's mailboxes and aliases."""
    _done(m.store().admin_add(login, domain_name), f"{login} administers {domain_name}")


@admin.command("remove")
@click.argument("login")
@click.argument("domain_name")
@pass_mail
def admin_remove(m: MailContext, login: str, domain_name: str) -> None:
    """Withdraw LOGIN's rights on DOMAIN."""
    _done(
        m.store().admin_remove(login, domain_name), f"{login} no longer administers {domain_name}"
    )


@admin.command("list")
@json_option
@pass_mail
def admin_list(m: MailContext, as_json: bool) -> None:
    """Domain administrators."""
    _rows("Administrators", m.store().admin_list(), as_json)


# --- mailboxes ------------------------------------------------------------------------


@command.group("mailbox")
def mailbox() -> None:
    """Residents' mailboxes."""


password_stdin = click.option(
    "--password-stdin", is_flag=True, help="Read the password from the first line of stdin."
)


@mailbox.command("add")
@click.argument("address")
@click.option("--quota", help="Mailbox quota, e.g. 2GiB (default: the domain's).")
@password_stdin
@pass_mail
def mailbox_add(m: MailContext, address: str, quota: str | None, password_stdin: bool) -> None:
    """Create a mailbox; the password is prompted for (or read from stdin)."""
    size = _size(quota, "--quota")
    store = m.store()
    from kloudctl.mail import accounts_db
    from kloudctl.mail.store import check

    check(accounts_db.check_mailbox_address, address)  # before asking for a password
    result = store.mailbox_add(address, _password(password_stdin), size)
    _done(result, f"mailbox {result['address']} added, quota {format_size(result['quota'])}")


@mailbox.command("import")
@pass_mail
def mailbox_import(m: MailContext) -> None:
    """Create many mailboxes at once from stdin, one per line: ADDRESS PASSWORD [QUOTA].

    All are created or none (one transaction). Lines starting with # are skipped. Read from
    stdin only, so passwords never appear in a command line.
    """
    items: list[tuple[str, str, int | None]] = []
    problems = []
    for n, line in enumerate(sys.stdin, start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) not in (2, 3):
            problems.append(f"stdin:{n}: expected ADDRESS PASSWORD [QUOTA]")
            continue
        quota = _size(fields[2], f"stdin:{n}: quota") if len(fields) == 3 else None
        items.append((fields[0], fields[1], quota))
    if problems:
        raise InputError("\n".join(problems))
    if not items:
        raise InputError("stdin: no mailbox to import")
    result = m.store().mailbox_add_many(items)
    _done(result, f"{result['added']} mailbox(es) added")


@mailbox.command("passwd")
@click.argument("address")
@password_stdin
@pass_mail
def mailbox_passwd(m: MailContext, address: str, password_stdin: bool) -> None:
    """Set a mailbox's password."""
    result = m.store().mailbox_passwd(address, _password(password_stdin))
    _done(result, f"password of {result['address']} changed")


@mailbox.command("quota")
@click.argument("address")
@click.argument("size")
@pass_mail
def mailbox_quota(m: MailContext, address: str, size: str) -> None:
    """Set a mailbox's quota (within the domain's total)."""
    result = m.store().mailbox_quota(address, _size(size, "SIZE") or 0)
    _done(result, f"quota of {result['address']} is {format_size(result['quota'])}")


@mailbox.command("suspend")
@click.argument("address")
@click.option("--resume", is_flag=True, help="Lift the suspension.")
@pass_mail
def mailbox_suspend(m: MailContext, address: str, resume: bool) -> None:
    """Suspend a mailbox: no login (IMAP, SMTP); mail is still received."""
    result = m.store().mailbox_suspend(address, not resume)
    _done(result, f"{result['address']} {'resumed' if resume else 'suspended'}")


@mailbox.command("remove")
@click.argument("address")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_mail
def mailbox_remove(m: MailContext, address: str, yes: bool) -> None:
    """Remove a mailbox's account (its stored mail stays on the host until purged)."""
    if not yes and not click.confirm(f"Remove mailbox {address}?", default=False):
        raise click.Abort()
    result = m.store().mailbox_remove(address)
    _done(result, f"mailbox {result['address']} removed")


@mailbox.command("list")
@click.argument("domain_name", required=False)
@json_option
@pass_mail
def mailbox_list(m: MailContext, domain_name: str | None, as_json: bool) -> None:
    """Mailboxes (of one domain, or of every domain you manage)."""
    _rows("Mailboxes", m.store().mailbox_list(domain_name), as_json, ("quota",))


# --- aliases --------------------------------------------------------------------------


@command.group("alias")
def alias() -> None:
    """Aliases: one address delivered to one or more others."""


@alias.command("add")
@click.argument("address")
@click.argument("destinations", nargs=-1, required=True)
@pass_mail
def alias_add(m: MailContext, address: str, destinations: tuple[str, ...]) -> None:
    """Deliver ADDRESS to each of DESTINATIONS."""
    result = m.store().alias_add(address, list(destinations))
    _done(result, f"alias {result['address']} -> {', '.join(result['destinations'])}")


@alias.command("remove")
@click.argument("address")
@click.argument("destination", required=False)
@pass_mail
def alias_remove(m: MailContext, address: str, destination: str | None) -> None:
    """Remove an alias (or only one of its destinations)."""
    result = m.store().alias_remove(address, destination)
    _done(result, f"alias {result['address']}: {result['removed']} destination(s) removed")


@alias.command("list")
@click.argument("domain_name", required=False)
@json_option
@pass_mail
def alias_list(m: MailContext, domain_name: str | None, as_json: bool) -> None:
    """Aliases (of one domain, or of every domain you manage)."""
    _rows("Aliases", m.store().alias_list(domain_name), as_json)


# --- DKIM -----------------------------------------------------------------------------


@command.group("dkim")
def dkim() -> None:
    """DKIM keys: rotate = new key published, then activated, then the old one retired."""


@dkim.command("rotate")
@click.argument("domain_name")
@click.option("--selector", help="Selector of the new key (default: k + UTC timestamp).")
@click.option("--activate", is_flag=True, help="Sign with it at once (only if DNS is ready).")
@pass_mail
def dkim_rotate(m: MailContext, domain_name: str, selector: str | None, activate: bool) -> None:
    """Create a new DKIM key for DOMAIN (publish it in DNS, then `dkim activate`)."""
    result = m.store().dkim_new(domain_name, selector, activate)
    _done(
        result,
        f"DKIM key {result['selector']} created for {result['domain']}"
        + (" and signing" if activate else "; publish it (`mail dns plan`), then activate it"),
    )


@dkim.command("activate")
@click.argument("domain_name")
@click.argument("selector")
@pass_mail
def dkim_activate(m: MailContext, domain_name: str, selector: str) -> None:
    """Sign DOMAIN's mail with SELECTOR's key (the previous one stays published)."""
    _done(
        m.store().dkim_activate(domain_name, selector), f"{domain_name} now signs with {selector}"
    )


@dkim.command("retire")
@click.argument("domain_name")
@click.argument("selector")
@pass_mail
def dkim_retire(m: MailContext, domain_name: str, selector: str) -> None:
    """Stop publishing an old key (after its signatures have aged out)."""
    _done(m.store().dkim_retire(domain_name, selector), f"{selector} of {domain_name} retired")


@dkim.command("list")
@click.argument("domain_name", required=False)
@json_option
@pass_mail
def dkim_list(m: MailContext, domain_name: str | None, as_json: bool) -> None:
    """DKIM keys and their state."""
    rows = m.store().dkim_list(domain_name)
    if not as_json:
        rows = [{k: v for k, v in r.items() if k != "public_key"} for r in rows]
    _rows("DKIM keys", rows, as_json)


# --- DNS ------------------------------------------------------------------------------


@command.group("dns")
def dns_group() -> None:
    """DNS records of a hosted domain: what to publish, and whether it is published."""


def _dns_records(
    m: MailContext, domain_name: str, hostname: str | None, ipv4: str | None, no_dkim: bool
) -> list[Any]:
    from kloudctl.mail import dns

    if no_dkim:
        keys: list[dict[str, Any]] = []
    else:
        keys = m.store().dkim_list(domain_name)
    fleet = None
    if hostname is None or ipv4 is None:
        fleet = m.fleet.fleet()
    return dns.plan_for_domain(fleet, domain_name, keys, hostname, ipv4)


dns_options = [
    click.option(
        "--hostname", help="Mail host name (default: from the cabinet declaring the domain)."
    ),
    click.option("--ipv4", help="Mail host's public IPv4 (default: the cabinet's WAN address)."),
    click.option("--no-dkim", is_flag=True, help="Leave DKIM out (no accounts store at hand)."),
]


def _dns_opts(f: Any) -> Any:
    for option in reversed(dns_options):
        f = option(f)
    return f


@dns_group.command("plan")
@click.argument("domain_name")
@_dns_opts
@json_option
@pass_mail
def dns_plan(
    m: MailContext,
    domain_name: str,
    hostname: str | None,
    ipv4: str | None,
    no_dkim: bool,
    as_json: bool,
) -> None:
    """Records to publish for DOMAIN (zone snippet, or --json)."""
    from kloudctl.mail import dns

    records = _dns_records(m, domain_name, hostname, ipv4, no_dkim)
    if as_json:
        console.emit_json([r.as_dict() for r in records])
    else:
        sys.stdout.write(dns.zone_snippet(domain_name, records))


@dns_group.command("check")
@click.argument("domain_name")
@click.option("--resolver", help="Ask this resolver: IP[:PORT] (default: the system's).")
@_dns_opts
@json_option
@pass_mail
def dns_check(
    m: MailContext,
    domain_name: str,
    resolver: str | None,
    hostname: str | None,
    ipv4: str | None,
    no_dkim: bool,
    as_json: bool,
) -> None:
    """Compare DOMAIN's published records with the plan; exit 1 if any is missing or wrong."""
    from kloudctl.errors import KloudError
    from kloudctl.mail import dns

    records = _dns_records(m, domain_name, hostname, ipv4, no_dkim)
    findings = dns.check_records(records, dns.make_resolver(resolver))
    bad = [f for f in findings if f.status != "ok"]
    if as_json:
        console.emit_json([f.as_dict() for f in findings])
    else:
        rows = [
            [f.record.name, f.record.type, f.status, f.message or f.record.purpose]
            for f in findings
        ]
        console.show(
            console.table(f"DNS of {domain_name}", ["name", "type", "status", "note"], rows)
        )
    if bad:
        raise KloudError(
            f"{len(bad)} record(s) missing or wrong for {domain_name}: "
            + "; ".join(f"{f.record.name} {f.record.type} {f.status}" for f in bad)
        )
    console.info(f"all {len(findings)} records of {domain_name} are published as planned")
