"""Numbers, sizes and dates as a reader of each language writes them."""

from __future__ import annotations

from typing import Any

from kloudctl.model.types import format_size

GIB = 1024**3


def number(value: float | None, lang: str, digits: int = 1) -> str:
    if value is None:
        return "?"
    text = f"{value:,.{digits}f}"
    if lang == "fr":  # 1 234,5: a thin space between thousands, a decimal comma
        text = text.replace(",", "\u202f").replace(".", ",")
    return text


def size(value: float | None, lang: str) -> str:
    if value is None:
        return "?"
    text = format_size(value)
    return text.replace("iB", "io").replace(".", ",") if lang == "fr" else text


def money(value: Any, lang: str, currency: str = "EUR") -> str:
    if value is None:
        return "—"
    sign = "€" if currency == "EUR" else currency
    amount = f"{float(value):,.2f}"  # shown only: the figures are the Decimal strings
    if lang == "fr":
        return amount.replace(",", "\u202f").replace(".", ",") + f"\u00a0{sign}"
    return f"{sign}{amount}"
