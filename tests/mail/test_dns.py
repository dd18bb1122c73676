"""`mail dns plan/check` against a real authoritative server (NSD) serving generated zones.

Each test zone `dN.test.` holds the complete plan minus record N: the check must pass on
the complete zone and name exactly the removed record on every other one.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kloudctl.mail import dns as maildns
from kloudctl.mail.store import LocalTransport, MailStore
from tests.mail.nsd import Nsd, zone_text

pytestmark = pytest.mark.skipif(not shutil.which("nsd"), reason="needs nsd (apt-packages.txt)")

FAKE_KEY = base64.b64encode(b"\x30" + bytes(range(200)) * 2).decode()  # 400+ bytes: 2 strings


def plan(domain: str, i: int) -> list[maildns.Record]:
    return maildns.plan_records(domain, f"mail.{domain}", f"203.0.113.{10 + i}", [("k1", FAKE_KEY)])


N_RECORDS = len(plan("x.test", 0))
REVERSE = "113.0.203.in-addr.arpa."


@pytest.fixture(scope="module")
def nsd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nsd]:
    zones: dict[str, list[maildns.Record]] = {REVERSE: []}
    # d0.test: complete. dN.test (N >= 1): without record N-1.
    for i in range(N_RECORDS + 1):
        domain = f"d{i}.test"
        records = plan(domain, i)
        kept = [r for k, r in enumerate(records) if k != i - 1]
        zones[f"{domain}."] = [r for r in kept if r.type != "PTR"]
        zones[REVERSE] += [r for r in kept if r.type == "PTR"]
    # wrong.test: every record present, some with wrong values.
    wrong = plan("wrong.test", 99)
    bad = {
        "MX": "10 mx.elsewhere.example.",
        "TXT": None,
        "SRV": "0 1 25 mail.wrong.test.",
    }
    served = []
    for r in wrong:
        if r.type == "MX":
            r = maildns.Record(r.name, r.type, bad["MX"], r.purpose)
        elif r.name.startswith("wrong.test") and r.type == "TXT":
            r = maildns.Record(r.name, r.type, "v=spf1 +all", r.purpose)
        elif r.name.startswith("_submission._tcp"):
            r = maildns.Record(r.name, r.type, bad["SRV"] or "", r.purpose)
        served.append(r)
    zones["wrong.test."] = [r for r in served if r.type != "PTR"]
    zones[REVERSE] += [r for r in served if r.type == "PTR"]
    texts = {origin: zone_text(origin, records) for origin, records in zones.items()}
    server = Nsd(tmp_path_factory.mktemp("nsd"), texts)
    yield server
    server.stop()


def test_complete_zone_passes(nsd: Nsd) -> None:
    findings = maildns.check_records(plan("d0.test", 0), maildns.make_resolver(nsd.server))
    assert [f.message for f in findings if f.status != "ok"] == []
    assert len(findings) == N_RECORDS


def test_each_removed_record_is_named(nsd: Nsd) -> None:
    resolver = maildns.make_resolver(nsd.server)
    for i in range(1, N_RECORDS + 1):
        records = plan(f"d{i}.test", i)
        removed = records[i - 1]
        bad = [f for f in maildns.check_records(records, resolver) if f.status != "ok"]
        assert [(f.record.name, f.record.type, f.status) for f in bad] == [
            (removed.name, removed.type, "missing")
        ], f"removed {removed.name} {removed.type}"


def test_wrong_values_are_named_with_what_was_found(nsd: Nsd) -> None:
    findings = maildns.check_records(plan("wrong.test", 99), maildns.make_resolver(nsd.server))
    bad = {(f.record.type, f.record.name): f for f in findings if f.status != "ok"}
    assert set(bad) == {
        ("MX", "wrong.test."),
        ("TXT", "wrong.test."),
        ("SRV", "_submission._tcp.wrong.test."),
    }
    assert all(f.status == "wrong" for f in bad.values())
    assert bad[("MX", "wrong.test.")].found == ["10 mx.elsewhere.example."]
    assert "v=spf1 +all" in bad[("TXT", "wrong.test.")].message


def test_plan_has_every_record_kind() -> None:
    records = maildns.plan_records("brieux.fr", "mail.brieux.fr", "203.0.113.10", [("k1", "AAAA")])
    kinds = {(r.type, r.name.split(".")[0]) for r in records}
    for expected in [
        ("MX", "brieux"),
        ("TXT", "k1"),
        ("TXT", "_dmarc"),
        ("TXT", "_mta-sts"),
        ("TXT", "_smtp"),
        ("SRV", "_submission"),
        ("SRV", "_imaps"),
        ("CNAME", "autoconfig"),
        ("CNAME", "mta-sts"),
        ("PTR", "10"),
    ]:
        assert expected in kinds
    dmarc = next(r for r in records if r.name.startswith("_dmarc"))
    assert "p=none" in dmarc.value and "rua=mailto:postmaster@brieux.fr" in dmarc.value
    snippet = maildns.zone_snippet("brieux.fr", records)
    assert "; ask the ISP for the reverse record: 10.113.0.203.in-addr.arpa." in snippet


def test_cli_check_on_the_example_fleet(tmp_path: Path) -> None:
    """The CLI end to end: the example fleet's brieux.fr, its DKIM key from a real store,
    the zone generated from `dns plan --json` and served by NSD; then one record removed."""
    db = tmp_path / "accounts.sqlite"
    store = MailStore(LocalTransport(db))
    store.domain_add("brieux.fr", max_mailboxes=10, total_quota=2**34, default_quota=2**30)
    root = Path(__file__).resolve().parents[2]

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-c",
                "from kloudctl.cli import main; main()",
                "--fleet",
                str(root),
                "mail",
                "--db",
                str(db),
                "dns",
                *args,
            ],
            capture_output=True,
            text=True,
            check=False,
        )

    import json

    planned = cli("plan", "brieux.fr", "--json")
    assert planned.returncode == 0, planned.stderr
    records = [maildns.Record(**r) for r in json.loads(planned.stdout)]
    zone = [r for r in records if r.type != "PTR"]
    ptr = [r for r in records if r.type == "PTR"]
    for name, served in [("full", zone), ("no-dmarc", [r for r in zone if "_dmarc" not in r.name])]:
        nsd = Nsd(
            tmp_path / name,
            {"brieux.fr.": zone_text("brieux.fr.", served), REVERSE: zone_text(REVERSE, ptr)},
        )
        try:
            checked = cli("check", "brieux.fr", "--resolver", nsd.server)
        finally:
            nsd.stop()
        if name == "full":
            assert checked.returncode == 0, checked.stdout + checked.stderr
            assert "are published as planned" in checked.stderr
        else:
            assert checked.returncode == 1
            assert "_dmarc.brieux.fr. TXT missing" in checked.stderr
