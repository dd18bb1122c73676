"""The usage statement against a history written here with known values; every
expectation is computed by hand in the comments, not by the statement's own code. The
CLI runs for real (subprocess) on a copy of the example fleet, whose brieux declares
`billing: {vcpu_day: "0.05", ram_gib_day: "0.02", disk_gib_day: "0.001"}`."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from tests.council.conftest import GIB, HOUR, write_history

MIB = 1024**2


def _run(fleet: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kloudctl", "--fleet", str(fleet), "report", "brieux",
         "--history", str(fleet / "history.sqlite"), *args],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def _known_history(fleet: Path) -> None:
    """8 samples 6 hours apart, starting 3 days ago. Each stands for 6 h (0.25 day) until
    the next; the last one for at most twice the usual gap, 12 h (0.5 day), which ends
    well before now. Sample 2 is unreachable: its 6 h are not measured.
    Measured days: 6 x 0.25 + 0.5 = 2.0."""
    base = time.time() - 3 * 86400
    rows = []
    for k in range(8):
        down = k == 2
        tenants = [
            # Boulangerie: 2 vCPU, 2 GiB RAM; disk 40 GiB, 50 GiB from sample 4 on; using
            # half a core throughout.
            {"tenant": "boulangerie-leroy", "vcpu_reserved": 2, "ram_reserved_bytes": 2 * GIB,
             "disk_reserved_bytes": (50 if k >= 4 else 40) * GIB, "cpu_used_cores": 0.5,
             "ram_used_bytes": GIB, "disk_used_bytes": 10 * GIB},
            # Comité des fêtes: 1 vCPU, 128 MiB, 10 GiB disk.
            {"tenant": "comite-des-fetes", "vcpu_reserved": 1, "ram_reserved_bytes": 128 * MIB,
             "disk_reserved_bytes": 10 * GIB},
            # The council (level 1): measured, never priced.
            {"tenant": "council", "vcpu_reserved": 6, "ram_reserved_bytes": 10 * GIB,
             "disk_reserved_bytes": 632 * GIB},
            # A pool the file does not declare, with a hostile name: shown, not priced.
            {"tenant": "<script>", "declared": 0, "vcpu_reserved": 1,
             "ram_reserved_bytes": GIB, "disk_reserved_bytes": GIB},
        ]  # fmt: skip
        rows.append({
            "cabinet": "brieux", "taken_at": base + k * 6 * HOUR, "reachable": 0 if down else 1,
            "error": "timed out" if down else None, "replication_state": "ok",
            "power_estimated_watts": 200.0, "tenants": [] if down else tenants,
        })  # fmt: skip
    write_history(fleet / "history.sqlite", rows)


def test_usage_statement_totals_by_hand(fleet_copy: Path) -> None:
    _known_history(fleet_copy)
    result = _run(fleet_copy, "--format", "json")
    assert result.returncode == 0, result.stderr
    usage = {u["tenant"]: u for u in json.loads(result.stdout)["usage"]}

    leroy = usage["boulangerie-leroy"]
    assert leroy["days_measured"] == "2.0000"
    assert leroy["vcpu_days_reserved"] == "4.0000"  # 2 vCPU x 2.0 days
    assert leroy["vcpu_days_used"] == "1.0000"  # 0.5 core x 2.0 days
    assert leroy["ram_gib_days_reserved"] == "4.0000"  # 2 GiB x 2.0 days
    assert leroy["ram_gib_days_used"] == "2.0000"  # 1 GiB x 2.0 days
    # 40 GiB x 3 samples x 0.25 (samples 0, 1, 3) + 50 GiB x (3 x 0.25 + 0.5) = 30 + 62.5
    assert leroy["disk_gib_days_reserved"] == "92.5000"
    assert leroy["disk_gib_days_used"] == "20.0000"  # 10 GiB x 2.0 days
    # 4 x 0.05 = 0.20; 4 x 0.02 = 0.08; 92.5 x 0.001 = 0.0925 -> 0.09
    assert [line["amount"] for line in leroy["lines"]] == ["0.20", "0.08", "0.09"]
    assert leroy["amount"] == "0.37"

    fetes = usage["comite-des-fetes"]
    # 1 x 2.0 = 2.0 -> 0.10; 0.125 GiB x 2.0 = 0.25 GiB-days x 0.02 = 0.005 -> 0.01 (half
    # up, where banker's rounding would give 0.00); 10 x 2.0 = 20 x 0.001 = 0.02
    assert fetes["ram_gib_days_reserved"] == "0.2500"
    assert [line["amount"] for line in fetes["lines"]] == ["0.10", "0.01", "0.02"]
    assert fetes["amount"] == "0.13"

    assert usage["council"]["vcpu_days_reserved"] == "12.0000"  # 6 x 2.0
    assert usage["council"]["amount"] is None  # level 1: the council does not bill itself
    assert usage["<script>"]["amount"] is None
    assert all(u["mailboxes"] is None for u in usage.values())  # not recorded, not guessed


def test_usage_csv_for_accounting(fleet_copy: Path) -> None:
    _known_history(fleet_copy)
    result = _run(fleet_copy, "--usage", "--csv")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout), delimiter=";"))
    assert {r["tenant"] for r in rows} == {"boulangerie-leroy", "comite-des-fetes"}
    assert len(rows) == 6  # 2 clients x (vCPU, RAM, disk)
    by = {(r["tenant"], r["item"]): r for r in rows}
    disk = by["boulangerie-leroy", "disk_gib_days_reserved"]
    assert (disk["quantity"], disk["unit"], disk["unit_price"], disk["amount"]) == (
        "92.5000", "GiB-day", "0.001", "0.09")  # fmt: skip
    assert all(r["currency"] == "EUR" for r in rows)
    # The accounting total is the sum of the lines: 0.37 + 0.13
    from decimal import Decimal

    assert sum(Decimal(r["amount"]) for r in rows) == Decimal("0.50")


def test_usage_statement_table(fleet_copy: Path) -> None:
    _known_history(fleet_copy)
    result = _run(fleet_copy, "--usage", "--lang", "en")
    assert result.returncode == 0, result.stderr
    assert "Boulangerie Leroy" in result.stdout
    assert "Total: €0.50" in result.stdout


def test_csv_needs_usage_and_nothing_is_written(fleet_copy: Path) -> None:
    _known_history(fleet_copy)
    result = _run(fleet_copy, "--csv")
    assert result.returncode == 2
    assert "--csv goes with --usage" in result.stderr
    assert not (fleet_copy / ".state").exists()


def _with_rented_mail(fleet: Path) -> None:
    """Brieux's file, edited: the bakery rents the mailboxes of its own domain (the file's
    price list says 1.50 a mailbox-month)."""
    path = fleet / "cabinets" / "brieux.yaml"
    text = path.read_text()
    text = text.replace(
        "  domains: [brieux.fr, mortree.fr]\n",
        "  domains: [brieux.fr, mortree.fr, boulangerie-leroy.fr]\n"
        "  billed_to: {boulangerie-leroy.fr: boulangerie-leroy}\n",
    )
    path.write_text(text)


def _history_with_mailboxes(fleet: Path) -> None:
    """The known history above, plus mailbox samples: boulangerie-leroy.fr (billed to the
    bakery) 2 mailboxes in samples 0-3, 3 from sample 4 on; brieux.fr (the commune's own)
    10 throughout. Sample 2 (Proxmox unreachable) still read the accounts store."""
    _known_history(fleet)
    db = sqlite3.connect(fleet / "history.sqlite")
    try:
        ids = [i for (i,) in db.execute("SELECT id FROM samples ORDER BY taken_at")]
        for k, sample_id in enumerate(ids):
            db.execute(
                "INSERT INTO mailbox_samples VALUES (?, ?, ?, ?)",
                (sample_id, "boulangerie-leroy.fr", "boulangerie-leroy", 3 if k >= 4 else 2),
            )
            db.execute(
                "INSERT INTO mailbox_samples VALUES (?, ?, ?, ?)",
                (sample_id, "brieux.fr", None, 10),
            )
        db.execute("UPDATE samples SET mail_state = 'ok'")
        db.commit()
    finally:
        db.close()


def test_mailbox_days_billed_by_hand(fleet_copy: Path) -> None:
    _with_rented_mail(fleet_copy)
    _history_with_mailboxes(fleet_copy)
    result = _run(fleet_copy, "--format", "json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    usage = {u["tenant"]: u for u in report["usage"]}
    leroy = usage["boulangerie-leroy"]
    # Samples 0-3 stand for 0.25 day each (sample 2 too: the accounts store answered):
    # 2 x 4 x 0.25 = 2.0; samples 4-6: 3 x 3 x 0.25 = 2.25; sample 7: 3 x 0.5 = 1.5.
    assert leroy["mailbox_days"] == "5.7500"
    assert leroy["mailboxes"] == 3  # the last sample
    # 5.75 / 30 = 0.19166.. -> 0.1917 mailbox-month x 1.50 = 0.28755 -> 0.29
    mail_line = leroy["lines"][-1]
    assert (mail_line["item"], mail_line["quantity"], mail_line["amount"]) == (
        "mailbox_months", "0.1917", "0.29")  # fmt: skip
    assert leroy["amount"] == "0.66"  # 0.37 (as above) + 0.29
    # The commune's own domain counts for the council: 10 x (7 x 0.25 + 0.5) = 22.5, unpriced.
    assert usage["council"]["mailbox_days"] == "22.5000"
    assert usage["council"]["amount"] is None
    assert usage["comite-des-fetes"]["mailbox_days"] is None  # no mailbox of its own
    assert [line["item"] for line in usage["comite-des-fetes"]["lines"]][-1] != "mailbox_months"
    # The report's mail section: the last sample's mailboxes per domain, and the health.
    assert report["mail"]["mailboxes"] == {"boulangerie-leroy.fr": 3, "brieux.fr": 10}
    assert report["mail"]["health"] == "ok"


def test_mailboxes_in_the_french_report_and_csv(fleet_copy: Path) -> None:
    _with_rented_mail(fleet_copy)
    _history_with_mailboxes(fleet_copy)
    md_report = _run(fleet_copy, "--format", "md")
    assert md_report.returncode == 0, md_report.stderr
    assert (
        "13 boîtes ouvertes : 3 pour boulangerie-leroy.fr, 10 pour brieux.fr." in md_report.stdout
    )
    assert "État de la messagerie au dernier relevé : tout fonctionne." in md_report.stdout
    assert r"| 3 \(boîtes-jours : 5,75\) |" in md_report.stdout  # Markdown escapes ( )
    result = _run(fleet_copy, "--usage", "--csv")
    rows = list(csv.DictReader(io.StringIO(result.stdout), delimiter=";"))
    line = next(r for r in rows if r["item"] == "mailbox_months")
    assert (line["tenant"], line["quantity"], line["unit"], line["unit_price"], line["amount"]) == (
        "boulangerie-leroy", "0.1917", "mailbox-month", "1.50", "0.29")  # fmt: skip


def test_billed_to_an_unknown_tenant_is_bad_input(fleet_copy: Path) -> None:
    path = fleet_copy / "cabinets" / "brieux.yaml"
    path.write_text(path.read_text().replace(
        "  domains: [brieux.fr, mortree.fr]\n",
        "  domains: [brieux.fr, mortree.fr]\n  billed_to: {mortree.fr: boulangerie-lerox}\n"))  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "kloudctl", "--fleet", str(fleet_copy), "validate"],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2
    line = next(x for x in done.stderr.splitlines() if "billed_to" in x)
    assert "brieux.yaml:" in line and "mail.billed_to.mortree.fr" in line
    assert "no tenant boulangerie-lerox on this cabinet; did you mean 'boulangerie-leroy'?" in line
