"""The usage statement of a cabinet's clients over a period, and its price.

Quantities integrate the history's tenant samples over time (see `samples.pieces`):
vCPU-days = vCPUs x days, GiB-days = GiB x days, for what the tenant's guests reserve
(their declared sizes: what the council rents) and what Proxmox measured them using. Only
time the cabinet answered counts: while it was unreachable nothing is known, and the
statement says how many days were measured.

Money is `decimal.Decimal`, never a float: each quantity is kept to 4 decimals, each line's
amount is quantity x unit price rounded to the cent (half up, as French invoices do), and
the total is the sum of the rounded lines, so the CSV adds up exactly. Only level-2
clients are priced; billing is on what is reserved.

Mailboxes: the history's mailbox samples (one per domain, with the tenant the cabinet file
bills it to, `mail.billed_to`; none named: the commune's own, shown under its level-1
tenant) integrate the same way into mailbox-days, whether or not the Proxmox API answered
(the accounts store is read apart). Priced per month (`billing.mailbox_month`) as a
commercial month of 30 days: mailbox-months = mailbox-days / 30, billed only when that
price is set. A history without mailbox samples (before version 2, or no mail) shows
mailboxes as not recorded, never billed by guess.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from kloudctl.council.samples import pieces
from kloudctl.model.schema import Billing, Cabinet

GIB = 1024**3
DAY = 86400
#: Days in the month mailboxes are priced by (a commercial month).
MONTH_DAYS = Decimal(30)
QUANTITY = Decimal("0.0001")
CENT = Decimal("0.01")

#: (key, history column, divisor) of each measured quantity.
_QUANTITIES = (
    ("vcpu_days_reserved", "vcpu_reserved", 1),
    ("vcpu_days_used", "cpu_used_cores", 1),
    ("ram_gib_days_reserved", "ram_reserved_bytes", GIB),
    ("ram_gib_days_used", "ram_used_bytes", GIB),
    ("disk_gib_days_reserved", "disk_reserved_bytes", GIB),
    ("disk_gib_days_used", "disk_used_bytes", GIB),
)
#: What is billed: (quantity key, price field of `Billing`).
_BILLED = (
    ("vcpu_days_reserved", "vcpu_day"),
    ("ram_gib_days_reserved", "ram_gib_day"),
    ("disk_gib_days_reserved", "disk_gib_day"),
)


@dataclass
class TenantUsage:
    tenant: str
    display_name: str
    level: int | None
    quantities: dict[str, Decimal]
    days_measured: Decimal
    lines: list[dict[str, Any]] = field(default_factory=list)
    amount: Decimal | None = None
    #: Mailbox-days over the period; None: no mailbox was recorded for this tenant.
    mailbox_days: Decimal | None = None
    #: Mailboxes in the last sample of the period that recorded them.
    mailboxes: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "display_name": self.display_name,
            "level": self.level,
            "days_measured": str(self.days_measured),
            **{k: str(v) for k, v in self.quantities.items()},
            "mailboxes": self.mailboxes,
            "mailbox_days": None if self.mailbox_days is None else str(self.mailbox_days),
            "lines": [
                {
                    **line,
                    "quantity": str(line["quantity"]),
                    "unit_price": str(line["unit_price"]),
                    "amount": str(line["amount"]),
                }
                for line in self.lines
            ],
            "amount": None if self.amount is None else str(self.amount),
        }


def _decimal(value: float) -> Decimal:
    return Decimal(repr(float(value)))


def usage(
    cabinet: Cabinet, samples: list[dict[str, Any]], start: float, end: float
) -> list[TenantUsage]:
    """Per tenant (declared ones first, in the file's order, then any found only in the
    history), its quantities over [start, end) and, with a price list, its amount."""
    raw: dict[str, dict[str, Decimal]] = {}
    seconds_seen: dict[str, Decimal] = {}
    for piece in pieces(samples, start, end):
        if not piece.sample["reachable"]:
            continue
        seconds = _decimal(piece.seconds)
        for t in piece.sample["tenants"]:
            acc = raw.setdefault(t["tenant"], {k: Decimal(0) for k, _, _ in _QUANTITIES})
            for key, column, divisor in _QUANTITIES:
                acc[key] += _decimal(t[column]) * seconds / divisor
            seconds_seen[t["tenant"]] = seconds_seen.get(t["tenant"], Decimal(0)) + seconds
    declared = {t.name: t for t in cabinet.tenants}
    mail_days, mail_last = _mailboxes(cabinet, samples, start, end)
    known = set(raw) | set(mail_days)
    order = [t.name for t in cabinet.tenants] + sorted(known - set(declared))
    found = []
    for name in order:
        tenant = declared.get(name)
        quantities = {
            key: (raw.get(name, {}).get(key, Decimal(0)) / DAY).quantize(QUANTITY, ROUND_HALF_UP)
            for key, _, _ in _QUANTITIES
        }
        entry = TenantUsage(
            tenant=name,
            display_name=tenant.display_name if tenant else name,
            level=tenant.level if tenant else None,
            quantities=quantities,
            days_measured=(seconds_seen.get(name, Decimal(0)) / DAY).quantize(QUANTITY),
        )
        if name in mail_days:
            entry.mailbox_days = (mail_days[name] / DAY).quantize(QUANTITY, ROUND_HALF_UP)
            entry.mailboxes = mail_last[name]
        # Level-2 clients are billed; the council itself (level 1) and guests in pools the
        # file does not declare are shown, never priced.
        if cabinet.billing is not None and entry.level == 2:
            _price(entry, cabinet.billing)
        found.append(entry)
    return found


def _mailboxes(
    cabinet: Cabinet, samples: list[dict[str, Any]], start: float, end: float
) -> tuple[dict[str, Decimal], dict[str, int]]:
    """Per tenant: mailbox-seconds over [start, end), and the mailboxes of the last sample
    that recorded any. A domain billed to no tenant counts for the council (level 1)."""
    council = next((t.name for t in cabinet.tenants if t.level == 1), None)
    seconds: dict[str, Decimal] = {}
    last: dict[str, int] = {}
    for piece in pieces(samples, start, end):
        rows = piece.sample.get("mailboxes") or []
        if not rows:
            continue
        counts: dict[str, int] = {}
        for row in rows:
            owner = row["tenant"] or council or "(commune)"
            counts[owner] = counts.get(owner, 0) + int(row["mailboxes"])
        for owner, count in counts.items():
            seconds[owner] = seconds.get(owner, Decimal(0)) + count * _decimal(piece.seconds)
        for owner in set(last) - set(counts):
            last[owner] = 0  # its domains left the store
        last.update(counts)
    return seconds, last


def _price(entry: TenantUsage, billing: Billing) -> None:
    for key, price_field in _BILLED:
        unit_price: Decimal = getattr(billing, price_field)
        quantity = entry.quantities[key]
        entry.lines.append({
            "item": key,
            "quantity": quantity,
            "unit_price": unit_price,
            "amount": (quantity * unit_price).quantize(CENT, ROUND_HALF_UP),
        })  # fmt: skip
    if billing.mailbox_month > 0 and entry.mailbox_days is not None:
        months = (entry.mailbox_days / MONTH_DAYS).quantize(QUANTITY, ROUND_HALF_UP)
        entry.lines.append({
            "item": "mailbox_months",
            "quantity": months,
            "unit_price": billing.mailbox_month,
            "amount": (months * billing.mailbox_month).quantize(CENT, ROUND_HALF_UP),
        })  # fmt: skip
    entry.amount = sum((line["amount"] for line in entry.lines), Decimal(0))


CSV_COLUMNS = [
    "cabinet", "period_start", "period_end", "tenant", "client", "item", "quantity", "unit",
    "unit_price", "currency", "amount",
]  # fmt: skip
_UNITS = {
    "vcpu_days_reserved": "vCPU-day",
    "ram_gib_days_reserved": "GiB-day",
    "disk_gib_days_reserved": "GiB-day",
    "mailbox_months": "mailbox-month",
}


def _cell(text: str) -> str:
    # A name starting like a formula would run as one in a spreadsheet: kept as text.
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def to_csv(cabinet: Cabinet, start: str, end: str, entries: list[TenantUsage]) -> str:
    """One line per client and billed item, for accounting software: `;` separated (what
    French spreadsheets and accounting tools expect), decimal point, UTF-8."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    currency = cabinet.billing.currency if cabinet.billing else ""
    for e in entries:
        for line in e.lines:
            writer.writerow([
                cabinet.name, start, end, _cell(e.tenant), _cell(e.display_name), line["item"],
                line["quantity"], _UNITS[line["item"]], line["unit_price"], currency,
                line["amount"],
            ])  # fmt: skip
    return out.getvalue()
