"""`kloudctl mail ...`: residents' mailboxes, aliases, domains, DKIM keys and DNS records."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict, TypeVar

import click

from kloudctl import console
from kloudctl.cli.options import FleetContext, confirmed, json_option
from kloudctl.errors import InputError
from kloudctl.mail.store import (
    MAX_MAILBOXES,
    QUOTAS,
    MailStore,
    check_address,
    choose_transport,
    parse_quota,
    read_import,
    read_public_key,
)
from kloudctl.model.types import format_size

if TYPE_CHECKING:
    from typing_extensions import Unpack

max_mailboxes_type = click.IntRange(1, MAX_MAILBOXES)

F = TypeVar("F", bound=Callable[..., Any])
Rows = list[dict[str, Any]]
#: What an action returns: the store's answer, and the sentence saying what was done.
Done = tuple[dict[str, Any], str]


@dataclass
class MailContext:
    """The `mail` group's options: where the accounts are, and who acts."""

    fleet: FleetContext
    db: str | None
    host: str | None
    cabinet: str | None
    actor: str | None
    ssh_key: str | None = None
    known_hosts: str | None = None
    domain_admin: bool = False

    def store(self) -> MailStore:
        transport = choose_transport(
            db=self.db,
            host=self.host,
            cabinet=self.cabinet,
            fleet=self.fleet.fleet,
            ssh_key=self.ssh_key,
            known_hosts=self.known_hosts,
            domain_admin=self.domain_admin,
        )
        return MailStore(transport, actor=self.actor)


pass_mail = click.make_pass_decorator(MailContext)


def _password(from_stdin: bool) -> str:
    """Read a password from stdin (one line) or a hidden prompt; never from argv."""
    if from_stdin:
        try:
            line = sys.stdin.readline()
        except UnicodeDecodeError:
            raise InputError("--password-stdin: the password is not UTF-8 text") from None
        if not line:
            raise InputError("--password-stdin: nothing on standard input")
        return line.rstrip("\r\n")
    if not sys.stdin.isatty():
        raise InputError("no terminal to prompt for the password: use --password-stdin")
    value: str = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    return value


def _done(result: dict[str, Any], what: str) -> None:
    if result.get("store_created"):  # the first write made the store: say where
        console.info(f"created the accounts database {result['store_created']}")
    console.info(what if result.get("changed", True) else f"no change: {what}")


def _action(
    group: click.Group, name: str, *arguments: str
) -> Callable[[Callable[..., Done]], click.Command]:
    """GROUP's command NAME, taking ARGUMENTS (and the options decorating it): the function
    gets the accounts store and their values, runs one operation and returns `Done`."""

    def decorate(act: Callable[..., Done]) -> click.Command:
        @functools.wraps(act)  # its docstring is the help, its options are the command's
        def run(m: MailContext, **values: Any) -> None:
            _done(*act(m.store(), **values))

        command: Callable[..., None] = pass_mail(run)
        for argument in reversed(arguments):
            command = click.argument(argument)(command)
        return group.command(name)(command)

    return decorate


def _rows(
    title: str,
    rows: Rows,
    as_json: bool,
    sizes: tuple[str, ...] = (),
    hidden: tuple[str, ...] = (),
) -> None:
    if as_json:
        console.emit_json(rows)
        return
    if not rows:
        console.info(f"{title}: none")
        return
    columns = [c for c in rows[0] if c not in hidden]
    # Rows come from the accounts store, maybe another version on the mail host: a column
    # missing from a row, or a size that is not a number, shows as it is rather than failing.
    shown = [[_cell(r.get(c), c in sizes) for c in columns] for r in rows]
    console.show(console.table(title, columns, shown))


def _cell(value: Any, size: bool) -> Any:
    if size and isinstance(value, int | float) and not isinstance(value, bool):
        return format_size(value)
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return value


def _listing(
    group: click.Group,
    title: str,
    summary: str,
    read: Callable[[MailStore, str | None], Rows],
    *,
    of_domain: bool = True,
    sizes: tuple[str, ...] = (),
    hidden: tuple[str, ...] = (),
) -> None:
    """GROUP's `list` command: the rows `read` returns (with `of_domain`, of DOMAIN_NAME,
    or of every domain when it is left out), as a table or --json."""

    @json_option
    @pass_mail
    def list_(m: MailContext, as_json: bool, domain_name: str | None = None) -> None:
        _rows(title, read(m.store(), domain_name), as_json, sizes, hidden)

    if of_domain:
        list_ = click.argument("domain_name", required=False)(list_)
    group.command("list", help=summary)(list_)


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
    help="Operator only: act as this domain administrator, to see what they see (not a"
    " boundary: domain administrators use --domain-admin with their own key).",
)
@click.option("--ssh-key", envvar="KLOUDCTL_MAIL_SSH_KEY", help="SSH private key for --host.")
@click.option(
    "--known-hosts",
    envvar="KLOUDCTL_MAIL_KNOWN_HOSTS",
    help="Accept only the host keys in this file (default: ssh's own, ~/.ssh/known_hosts).",
)
@click.option(
    "--domain-admin",
    is_flag=True,
    envvar="KLOUDCTL_MAIL_DOMAIN_ADMIN",
    help="You are a domain administrator: --host is the mail host's domain administrators'"
    " account (kloudctl-domadm@HOST) and --ssh-key your own key; the host knows who you are.",
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
    domain_admin: bool,
) -> None:
    """Residents' mailboxes on the communes' domains."""
    if domain_admin and actor:
        raise InputError("--as and --domain-admin: with --domain-admin your key says who you are")
    fleet = ctx.find_object(FleetContext) or FleetContext(None)
    ctx.obj = MailContext(fleet, db, host, cabinet, actor, ssh_key, known_hosts, domain_admin)


@_action(command, "init")
def init(store: MailStore) -> Done:
    """Create the accounts database (read commands never create one)."""
    result = store.init()
    return result, f"accounts database {result['db']} ready"


# --- domains --------------------------------------------------------------------------


@command.group("domain")
def domain() -> None:
    """Hosted mail domains and their caps."""


@_action(domain, "add", "name")
@click.option(
    "--max-mailboxes",
    type=max_mailboxes_type,
    required=True,
    help=f"How many mailboxes the domain may have (1 to {MAX_MAILBOXES}).",
)
@click.option(
    "--total-quota",
    required=True,
    help=f"Total of the domain's mailbox quotas, e.g. 150GiB ({QUOTAS}).",
)
@click.option(
    "--default-quota", default="2GiB", show_default=True, help=f"Quota of a new mailbox ({QUOTAS})."
)
@click.option("--no-dkim", is_flag=True, help="Do not create the domain's first DKIM key.")
def domain_add(
    store: MailStore,
    name: str,
    max_mailboxes: int,
    total_quota: str,
    default_quota: str,
    no_dkim: bool,
) -> Done:
    """Host a new domain (and create its first DKIM key)."""
    result = store.domain_add(
        name,
        max_mailboxes=max_mailboxes,
        total_quota=parse_quota(total_quota, "--total-quota"),
        default_quota=parse_quota(default_quota, "--default-quota"),
        dkim=not no_dkim,
    )
    dkim = f", DKIM selector {result['dkim']}" if result.get("dkim") else ""
    return result, f"domain {result['domain']} added{dkim}"


@_action(domain, "set", "name")
@click.option(
    "--max-mailboxes",
    type=max_mailboxes_type,
    help=f"How many mailboxes the domain may have (1 to {MAX_MAILBOXES}).",
)
@click.option("--total-quota", help=f"Total of the domain's mailbox quotas ({QUOTAS}).")
@click.option("--default-quota", help=f"Quota of a new mailbox ({QUOTAS}).")
def domain_set(
    store: MailStore,
    name: str,
    max_mailboxes: int | None,
    total_quota: str | None,
    default_quota: str | None,
) -> Done:
    """Change a domain's caps; refused below what its mailboxes already use."""
    result = store.domain_set(
        name,
        max_mailboxes=max_mailboxes,
        total_quota=parse_quota(total_quota, "--total-quota"),
        default_quota=parse_quota(default_quota, "--default-quota"),
    )
    return result, (
        f"domain {result['domain']}: at most {result['max_mailboxes']} mailboxes, total quota"
        f" {format_size(result['total_quota'])}, default quota"
        f" {format_size(result['default_quota'])}"
    )


_listing(
    domain,
    "Domains",
    "Hosted domains with their use of the caps.",
    lambda store, _: store.domain_list(),
    of_domain=False,
    sizes=("quota_allocated", "total_quota", "default_quota"),
)


# --- administrators -------------------------------------------------------------------


@command.group("admin")
def admin() -> None:
    """Per-domain administrators (they manage only their own domains)."""


@_action(admin, "add", "login", "domain_name")
def admin_add(store: MailStore, login: str, domain_name: str) -> Done:
    """Let LOGIN manage DOMAIN's mailboxes and aliases."""
    return store.admin_add(login, domain_name), f"{login} administers {domain_name}"


@_action(admin, "remove", "login", "domain_name")
def admin_remove(store: MailStore, login: str, domain_name: str) -> Done:
    """Withdraw LOGIN's rights on DOMAIN."""
    result = store.admin_remove(login, domain_name)
    return result, f"{login} no longer administers {domain_name}"


@_action(admin, "grant", "login")
@click.option("--domain", "domain_name", required=True, help="The domain LOGIN will manage.")
@click.option(
    "--ssh-key",
    "public_key",
    required=True,
    help="LOGIN's public key file (.pub): it will reach only kloudctl's mail commands, as LOGIN.",
)
def admin_grant(store: MailStore, login: str, domain_name: str, public_key: str) -> Done:
    """Let LOGIN manage DOMAIN with their own SSH key (a forced command on the mail host)."""
    result = store.admin_grant(login, domain_name, read_public_key(public_key, "--ssh-key"))
    key = "; key installed" if result["key_added"] else "; key already installed"
    return result, f"{login} administers {domain_name}{key}"


@_action(admin, "revoke", "login")
@click.option("--domain", "domain_name", help="Only this domain (default: every domain).")
def admin_revoke(store: MailStore, login: str, domain_name: str | None) -> Done:
    """Withdraw LOGIN's rights (on DOMAIN, or everywhere); with no domain left, their keys
    are removed and the mail host refuses them."""
    result = store.admin_revoke(login, domain_name)
    left = result["domains_left"]
    still = f"; still administers {', '.join(left)}" if left else ""
    keys = f"; {result['keys_removed']} key(s) removed" if result["keys_removed"] else ""
    return result, f"{login}: rights withdrawn{keys}{still}"


_listing(
    admin,
    "Administrators",
    "Domain administrators.",
    lambda store, _: store.admin_list(),
    of_domain=False,
)


@command.command("audit")
@click.option("--limit", type=click.IntRange(1, 100_000), default=100, show_default=True)
@click.option("--actor", help="Only what this domain administrator did or tried.")
@json_option
@pass_mail
def audit(m: MailContext, limit: int, actor: str | None, as_json: bool) -> None:
    """Who changed what, and what was refused (newest last; operators only)."""
    _rows("Audit", m.store().audit_list(limit, actor), as_json)


# --- mailboxes ------------------------------------------------------------------------


@command.group("mailbox")
def mailbox() -> None:
    """Residents' mailboxes."""


password_stdin = click.option(
    "--password-stdin", is_flag=True, help="Read the password from the first line of stdin."
)


@mailbox.command("add")
@click.argument("address")
@click.option("--quota", help=f"Mailbox quota, e.g. 2GiB ({QUOTAS}; default: the domain's).")
@password_stdin
@pass_mail
def mailbox_add(m: MailContext, address: str, quota: str | None, password_stdin: bool) -> None:
    """Create a mailbox; the password is prompted for (or read from stdin)."""
    size = parse_quota(quota, "--quota")
    store = m.store()
    check_address(address)  # before asking for a password
    result = store.mailbox_add(address, _password(password_stdin), size)
    _done(result, f"mailbox {result['address']} added, quota {format_size(result['quota'])}")


@mailbox.command("import")
@pass_mail
def mailbox_import(m: MailContext) -> None:
    """Create many mailboxes at once from stdin, one per line: ADDRESS PASSWORD [QUOTA].

    All are created or none (one transaction). Lines starting with # are skipped. Read from
    stdin only, so passwords never appear in a command line.
    """
    mailboxes = read_import(sys.stdin)
    result = m.store().mailbox_add_many(mailboxes)
    _done(result, f"{result['added']} mailbox(es) added")


@_action(mailbox, "passwd", "address")
@password_stdin
def mailbox_passwd(store: MailStore, address: str, password_stdin: bool) -> Done:
    """Set a mailbox's password."""
    result = store.mailbox_passwd(address, _password(password_stdin))
    return result, f"password of {result['address']} changed"


@_action(mailbox, "quota", "address", "size")
def mailbox_quota(store: MailStore, address: str, size: str) -> Done:
    """Set a mailbox's quota to SIZE (1MiB to 1PiB, within the domain's total)."""
    result = store.mailbox_quota(address, parse_quota(size, "SIZE"))
    return result, f"quota of {result['address']} is {format_size(result['quota'])}"


@_action(mailbox, "suspend", "address")
@click.option("--resume", is_flag=True, help="Lift the suspension.")
def mailbox_suspend(store: MailStore, address: str, resume: bool) -> Done:
    """Suspend a mailbox: no login (IMAP, SMTP); mail is still received."""
    result = store.mailbox_suspend(address, not resume)
    return result, f"{result['address']} {'resumed' if resume else 'suspended'}"


@mailbox.command("remove")
@click.argument("address")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_mail
def mailbox_remove(m: MailContext, address: str, yes: bool) -> None:
    """Remove a mailbox's account (its stored mail stays on the host until purged)."""
    if not confirmed(f"Remove mailbox {address}?", yes=yes):
        console.info("nothing removed")
        return
    result = m.store().mailbox_remove(address)
    _done(result, f"mailbox {result['address']} removed")


_listing(
    mailbox,
    "Mailboxes",
    "Mailboxes (of one domain, or of every domain you manage).",
    MailStore.mailbox_list,
    sizes=("quota",),
)


# --- aliases --------------------------------------------------------------------------


@command.group("alias")
def alias() -> None:
    """Aliases: one address delivered to one or more others."""


@_action(alias, "add", "address")
@click.argument("destinations", nargs=-1, required=True)
def alias_add(store: MailStore, address: str, destinations: tuple[str, ...]) -> Done:
    """Deliver ADDRESS to each of DESTINATIONS."""
    result = store.alias_add(address, list(destinations))
    return result, f"alias {result['address']} -> {', '.join(result['destinations'])}"


@_action(alias, "remove", "address")
@click.argument("destination", required=False)
def alias_remove(store: MailStore, address: str, destination: str | None) -> Done:
    """Remove an alias (or only one of its destinations)."""
    result = store.alias_remove(address, destination)
    return result, f"alias {result['address']}: {result['removed']} destination(s) removed"


_listing(
    alias,
    "Aliases",
    "Aliases (of one domain, or of every domain you manage).",
    MailStore.alias_list,
)


# --- DKIM -----------------------------------------------------------------------------


@command.group("dkim")
def dkim() -> None:
    """DKIM keys: rotate = new key published, then activated, then the old one retired."""


@_action(dkim, "rotate", "domain_name")
@click.option("--selector", help="Selector of the new key (default: k + UTC timestamp).")
@click.option("--activate", is_flag=True, help="Sign with it at once (only if DNS is ready).")
def dkim_rotate(store: MailStore, domain_name: str, selector: str | None, activate: bool) -> Done:
    """Create a new DKIM key for DOMAIN (publish it in DNS, then `dkim activate`)."""
    result = store.dkim_new(domain_name, selector, activate)
    then = " and signing" if activate else "; publish it (`mail dns plan`), then activate it"
    return result, f"DKIM key {result['selector']} created for {result['domain']}{then}"


@_action(dkim, "activate", "domain_name", "selector")
def dkim_activate(store: MailStore, domain_name: str, selector: str) -> Done:
    """Sign DOMAIN's mail with SELECTOR's key (the previous one stays published)."""
    result = store.dkim_activate(domain_name, selector)
    return result, f"{domain_name} now signs with {selector}"


@_action(dkim, "retire", "domain_name", "selector")
def dkim_retire(store: MailStore, domain_name: str, selector: str) -> Done:
    """Stop publishing an old key (after its signatures have aged out)."""
    return store.dkim_retire(domain_name, selector), f"{selector} of {domain_name} retired"


_listing(
    dkim, "DKIM keys", "DKIM keys and their state.", MailStore.dkim_list, hidden=("public_key",)
)


# --- DNS ------------------------------------------------------------------------------


@command.group("dns")
def dns_group() -> None:
    """DNS records of a hosted domain: what to publish, and whether it is published."""


class MailHost(TypedDict):
    """Where a domain's mail host is (`dns_options`), and whether to plan DKIM records."""

    hostname: str | None
    ipv4: str | None
    no_dkim: bool


def _dns_records(
    m: MailContext, domain_name: str, hostname: str | None, ipv4: str | None, no_dkim: bool
) -> list[Any]:
    from kloudctl.mail import dns

    keys = [] if no_dkim else m.store().dkim_list(domain_name)
    fleet = m.fleet.fleet() if hostname is None or ipv4 is None else None
    return dns.plan_for_domain(fleet, domain_name, keys, hostname, ipv4)


dns_options = [
    click.option(
        "--hostname", help="Mail host name (default: from the cabinet declaring the domain)."
    ),
    click.option("--ipv4", help="Mail host's public IPv4 (default: the cabinet's WAN address)."),
    click.option("--no-dkim", is_flag=True, help="Leave DKIM out (no accounts store at hand)."),
]


def _dns_opts(f: F) -> F:
    for option in reversed(dns_options):
        f = option(f)
    return f


@dns_group.command("plan")
@click.argument("domain_name")
@_dns_opts
@json_option
@pass_mail
def dns_plan(m: MailContext, domain_name: str, as_json: bool, **host: Unpack[MailHost]) -> None:
    """Records to publish for DOMAIN (zone snippet, or --json)."""
    from kloudctl.mail import dns

    records = _dns_records(m, domain_name, **host)
    if as_json:
        console.emit_json([r.as_dict() for r in records])
    else:
        console.text(dns.zone_snippet(domain_name, records))


@dns_group.command("check")
@click.argument("domain_name")
@click.option("--resolver", help="Ask this resolver: IP[:PORT] (default: the system's).")
@_dns_opts
@json_option
@pass_mail
def dns_check(
    m: MailContext, domain_name: str, resolver: str | None, as_json: bool, **host: Unpack[MailHost]
) -> None:
    """Compare DOMAIN's published records with the plan; exit 1 if any is missing or wrong."""
    from kloudctl.mail import dns

    records = _dns_records(m, domain_name, **host)
    findings = dns.check_records(records, dns.make_resolver(resolver))
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
    dns.raise_for_findings(domain_name, findings)
    console.info(f"all {len(findings)} records of {domain_name} are published as planned")
