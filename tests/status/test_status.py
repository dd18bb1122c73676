"""`kloudctl status` against a simulated fleet: what it reports, and how it fails.

The cabinets are the Proxmox VE simulator's (real HTTPS, real faults injected through its
control endpoint); an unreachable cabinet is a closed loopback port. The commands run as a
user runs them (a subprocess of the real CLI), except the time bounds, which are read from
`gather` in this process: the cabinet's own elapsed time and the whole gathering's.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from kloudctl.capacity import plan_cabinet
from kloudctl.proxmox.client import ApiTarget, Client, ProxmoxError, RetryPolicy
from kloudctl.status import history
from kloudctl.status.gather import gather
from kloudctl.testbed.simfleet import SimFleet
from tests.status.conftest import PER_TENANT, targets_with_closed, tenants_of

CABINETS = ["brieux", "mortree", "saint-aubin"]


def status(kloudctl: Any, fleet: SimFleet, *args: str, env: dict[str, str] | None = None) -> Any:
    return kloudctl("--fleet", str(fleet.root), "status", *args, env=env)


def by_cabinet(stdout: str) -> dict[str, dict[str, Any]]:
    return {c["cabinet"]: c for c in json.loads(stdout)}


def test_every_cabinet_is_reported_with_guests_by_tenant_and_state(
    sims: SimFleet, kloudctl: Any
) -> None:
    done = status(kloudctl, sims, "--all", "--json", "--no-history")
    assert done.returncode == 0, done.stderr
    found = by_cabinet(done.stdout)
    assert sorted(found) == CABINETS
    for name, cab in found.items():
        model = sims.fleet().cabinet(name)
        assert cab["reachable"] and cab["error"] is None
        assert cab["version"] == "9.1.3"
        assert [n["name"] for n in cab["nodes"]] == [n.name for n in model.hardware.nodes]
        assert all(n["online"] for n in cab["nodes"])
        tenants = {t["tenant"]: t for t in cab["tenants"]}
        assert sorted(tenants) == sorted(tenants_of(sims, name))
        for t in model.tenants:
            usage = tenants[t.name]
            assert usage["guests"] == {"stopped": 1, "running": PER_TENANT - 1}
            assert usage["vcpu_quota"] == t.quota.vcpu
            # populate_guests gives 1 and 2 cores alternately, 1 GiB each, 4 GiB disks
            assert usage["vcpu_reserved"] == sum(1 + i % 2 for i in range(PER_TENANT))
            assert usage["ram_reserved"] == PER_TENANT * 1024**3
            assert usage["disk_reserved"] == PER_TENANT * 4 * 1024**3
        plan = plan_cabinet(model)
        for r in plan.resources:
            assert cab["capacity"][r.name]["reserved"] == r.reserved
            assert cab["capacity"][r.name]["capacity"] == r.capacity
        assert cab["capacity"]["RAM"]["used"] > 0
        assert cab["power"]["budget_watts"] == model.power.budget_watts
        assert cab["power"]["planned_watts"] == round(plan.power.estimated_watts, 1)
        idle = model.power.other_watts + sum(n.idle_watts for n in model.hardware.nodes)
        assert idle < cab["power"]["estimated_watts"] < plan.power.peak_watts
        assert cab["power"]["measured"] == "not measured"  # no SSH target: not deployed
        assert cab["replication"] == {"state": "not set up"}
        assert cab["federation"]["state"] == "not set up"
        assert cab["mail"]["state"] == ("not probed" if model.mail else "not set up")


def test_table_for_people(sims: SimFleet, kloudctl: Any) -> None:
    done = status(kloudctl, sims, "--no-history")
    assert done.returncode == 0, done.stderr
    for name in CABINETS:
        assert name in done.stdout
    assert "PVE 9.1.3" in done.stdout and "Tenants" in done.stdout


def test_an_unreachable_cabinet_is_listed_the_others_reported_exit_3(
    sims: SimFleet, kloudctl: Any, tmp_path: Path
) -> None:
    targets = targets_with_closed(sims, "mortree", tmp_path)
    env = {"KLOUDCTL_PROXMOX_TARGETS": str(targets)}
    done = status(kloudctl, sims, "--json", "--no-history", "--timeout", "3", env=env)
    assert done.returncode == 3, done.stderr
    found = by_cabinet(done.stdout)
    assert not found["mortree"]["reachable"]
    assert "cannot reach Proxmox" in found["mortree"]["error"]
    assert found["brieux"]["reachable"] and found["saint-aubin"]["reachable"]
    assert "status failed for: mortree" in done.stderr
    # The table says so too.
    table = status(kloudctl, sims, "--no-history", "--timeout", "3", env=env)
    assert table.returncode == 3
    assert re.search(r"mortree.*UNREACHABLE", table.stdout)


def test_a_cabinet_answering_5xx_is_retried_within_its_budget_then_reported(
    sims: SimFleet,
) -> None:
    sims.fault("saint-aubin", kind="error_rate", rate=1.0)
    started = time.monotonic()
    found = {s.cabinet: s for s in gather(sims.fleet(), CABINETS, timeout=2.0)}
    took = time.monotonic() - started
    bad = found["saint-aubin"]
    assert not bad.reachable
    assert bad.error is not None and "503" in bad.error
    assert bad.retries >= 1
    assert found["brieux"].reachable and found["mortree"].reachable
    # The client's backoff alone would wait 0.1 + 0.2 + 0.4 s; bounded by the 2 s budget.
    assert bad.elapsed < 2.0 + 0.5 and took < 2.0 + 1.0


def test_the_deadline_bounds_the_clients_retries(sims: SimFleet) -> None:
    """A policy whose pauses alone add up to 15.5 s, against a cabinet answering 503 to
    everything: with a 1.5 s deadline the call fails when the next pause would pass it."""
    policy = RetryPolicy(attempts=8, first_delay=0.5, max_delay=3.0)
    client = Client(
        ApiTarget.from_inputs(sims.targets["saint-aubin"]),
        policy,
        deadline=time.monotonic() + 1.5,
    )
    sims.fault("saint-aubin", kind="error_rate", rate=1.0)
    started = time.monotonic()
    with pytest.raises(ProxmoxError, match="Service Unavailable"):
        client.get("version")
    assert time.monotonic() - started < 1.5
    assert 1 <= client.retries < policy.attempts - 1
    # Past the deadline, no request starts at all.
    sims.fault("saint-aubin", kind="clear")
    client.deadline = time.monotonic()
    with pytest.raises(ProxmoxError, match=r"no answer .* in the time given"):
        client.get("version")


def test_latency_past_the_timeout_never_holds_the_run(sims: SimFleet, kloudctl: Any) -> None:
    sims.fault("brieux", kind="latency", ms=30_000)
    started = time.monotonic()
    found = {s.cabinet: s for s in gather(sims.fleet(), CABINETS, timeout=1.5)}
    took = time.monotonic() - started
    assert not found["brieux"].reachable
    assert found["mortree"].reachable and found["saint-aubin"].reachable
    # 30 s of latency, a 1.5 s budget: the run ends with the budget, not the latency.
    assert found["brieux"].elapsed < 1.5 + 0.5 and took < 1.5 + 1.0
    # The command as a whole, interpreter start included, ends long before the latency
    # would: no worker is left waiting on the slow cabinet at exit.
    started = time.monotonic()
    done = status(kloudctl, sims, "--json", "--no-history", "--timeout", "1.5")
    assert time.monotonic() - started < 20
    assert done.returncode == 3
    assert not by_cabinet(done.stdout)["brieux"]["reachable"]


def test_latency_within_the_timeout_is_only_slower(sims: SimFleet) -> None:
    sims.fault("mortree", kind="latency", ms=300)
    found = {s.cabinet: s for s in gather(sims.fleet(), CABINETS, timeout=5)}
    assert all(s.reachable for s in found.values())
    assert found["mortree"].elapsed >= 0.6  # two calls, 300 ms each


def test_no_cabinet_reachable_is_exit_1(sims: SimFleet, kloudctl: Any, tmp_path: Path) -> None:
    """Each failure at once: a closed port, 5xx, and latency past the budget."""
    targets = targets_with_closed(sims, "mortree", tmp_path)
    sims.fault("saint-aubin", kind="error_rate", rate=1.0)
    sims.fault("brieux", kind="latency", ms=30_000)
    env = {"KLOUDCTL_PROXMOX_TARGETS": str(targets)}
    done = status(kloudctl, sims, "--json", "--no-history", "--timeout", "1.5", env=env)
    assert done.returncode == 1, done.stderr
    assert not any(c["reachable"] for c in json.loads(done.stdout))


def test_bad_input_changes_nothing(sims: SimFleet, kloudctl: Any, tmp_path: Path) -> None:
    store = history.default_path(sims.root)
    done = status(kloudctl, sims, "nowhere")
    assert done.returncode == 2
    assert "nowhere" in done.stderr
    done = status(kloudctl, sims, "--prometheus-textfile", str(tmp_path))
    assert done.returncode == 2
    assert "--prometheus-textfile" in done.stderr and "not a regular file" in done.stderr
    done = status(kloudctl, sims, "--prometheus-textfile", str(tmp_path / "no" / "m.prom"))
    assert done.returncode == 2
    done = status(kloudctl, sims, "brieux", "--all")
    assert done.returncode == 2
    done = status(kloudctl, sims, "--timeout", "0")
    assert done.returncode == 2
    assert not store.exists()


# -- Prometheus textfile ------------------------------------------------------------------

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL_VALUE = r'"(?:[^"\\\n]|\\\\|\\"|\\n)*"'
_SAMPLE = re.compile(
    rf"^(?P<name>{_NAME})(?:\{{(?P<labels>[a-zA-Z_][a-zA-Z0-9_]*={_LABEL_VALUE}"
    rf"(?:,[a-zA-Z_][a-zA-Z0-9_]*={_LABEL_VALUE})*)\}})? (?P<value>-?[0-9.e+-]+|NaN|[+-]Inf)$"
)


def parse_exposition(text: str) -> dict[str, list[tuple[str, float]]]:
    """A strict reader of the text format (0.0.4): every family once, HELP then TYPE then
    its samples, names prefixed kloudctl_, no duplicate series. Returns name -> samples."""
    assert text.endswith("\n") and "\n\n" not in text
    families: dict[str, list[tuple[str, float]]] = {}
    current = None
    series: set[str] = set()
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("# HELP "):
            name = line.split(" ")[2]
            assert re.fullmatch(_NAME, name) and name.startswith("kloudctl_"), line
            assert name not in families, f"family {name} twice"
            assert lines[i + 1] == f"# TYPE {name} gauge", lines[i + 1]
            families[name], current = [], name
            i += 2
            continue
        match = _SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        assert match["name"] == current, f"{line!r} outside its family"
        key = f"{match['name']}{{{match['labels'] or ''}}}"
        assert key not in series, f"series twice: {key}"
        series.add(key)
        families[current].append((match["labels"] or "", float(match["value"])))
        i += 1
    return families


def test_prometheus_textfile(sims: SimFleet, kloudctl: Any, tmp_path: Path) -> None:
    path = tmp_path / "kloudctl_status.prom"
    path.write_text("old\n")
    path.chmod(0o640)  # made by someone else for node_exporter: the mode stays
    targets = targets_with_closed(sims, "mortree", tmp_path)
    env = {"KLOUDCTL_PROXMOX_TARGETS": str(targets)}
    done = status(
        kloudctl, sims, "--no-history", "--timeout", "3", "--prometheus-textfile", str(path),
        env=env,
    )  # fmt: skip
    assert done.returncode == 3, done.stderr
    assert path.stat().st_mode & 0o777 == 0o640
    families = parse_exposition(path.read_text())
    up = dict(families["kloudctl_status_up"])
    assert up == {
        'cabinet="brieux"': 1.0, 'cabinet="mortree"': 0.0, 'cabinet="saint-aubin"': 1.0,
    }  # fmt: skip
    tenants = len(tenants_of(sims, "brieux")) + len(tenants_of(sims, "saint-aubin"))
    guests = families["kloudctl_guests"]
    stopped = [v for labels, v in guests if 'state="stopped"' in labels]
    assert sum(v for _, v in guests) == tenants * PER_TENANT
    assert sum(stopped) == tenants  # one stopped guest per tenant
    assert all('cabinet="mortree"' not in labels for labels, _ in guests)
    # Unknown values are left out, never written as 0.
    assert not any('cabinet="mortree"' in lb for lb, _ in families["kloudctl_ram_used_bytes"])
    assert any('cabinet="mortree"' in lb for lb, _ in families["kloudctl_power_budget_watts"])


def test_label_values_are_escaped() -> None:
    from kloudctl.status.gather import CabinetStatus
    from kloudctl.status.prometheus import render

    odd = CabinetStatus('a"b\\c\nd', 0.0)
    families = parse_exposition(render([odd]))
    assert families["kloudctl_status_up"] == [('cabinet="a\\"b\\\\c\\nd"', 0.0)]
