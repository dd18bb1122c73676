"""The report's words and the CSV's cells."""

from __future__ import annotations

from decimal import Decimal

from kloudctl.council import i18n, usage
from kloudctl.model.loader import load_fleet
from tests.council.conftest import REPO


def test_every_string_has_both_languages() -> None:
    for key, texts in i18n.STRINGS.items():
        assert set(texts) == set(i18n.LANGUAGES), key
        assert all(texts.values()), key


def test_ages_in_plain_words() -> None:
    assert i18n.duration(2 * 3600 + 59, "fr") == "2 heures"
    assert i18n.duration(86400, "fr") == "1 jour"
    assert i18n.duration(3 * 86400, "en") == "3 days"
    assert i18n.duration(30, "fr") == "moins d'une minute"


def test_csv_cell_starting_like_a_formula_stays_text() -> None:
    cabinet = load_fleet(REPO).cabinet("brieux")
    entry = usage.TenantUsage(
        tenant="x", display_name="=HYPERLINK(1)", level=2,
        quantities={"vcpu_days_reserved": Decimal(1)}, days_measured=Decimal(1),
        lines=[{"item": "vcpu_days_reserved", "quantity": Decimal(1),
                "unit_price": Decimal("0.05"), "amount": Decimal("0.05")}],
    )  # fmt: skip
    text = usage.to_csv(cabinet, "a", "b", [entry])
    assert ";'=HYPERLINK(1);" in text
