"""`replication.peers: auto`: kloudctl chooses peers among the federation's members from
the registry (spare disk, power headroom, another site, round-trip time) and the plan
shows the choice and why; the model accepts `auto` only with a federation."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from kloudctl.federation import service
from kloudctl.federation.choice import (
    RTT_FILE,
    RttRecord,
    choose_peers,
    measured_rtts,
    record_rtts,
)
from kloudctl.federation.registry import Registry
from kloudctl.model import load_fleet
from tests.federation.conftest import admit
from tests.unit.inprocess import invoke

TiB = 1024**4


@pytest.fixture
def auto_fleet(example_fleet: Path) -> Path:
    cabinet = example_fleet / "cabinets/brieux.yaml"
    cabinet.write_text(cabinet.read_text().replace("peers: [saint-aubin]", "peers: auto"))
    return example_fleet


def _federate(root: Path) -> tuple[service.FederationState, Registry]:
    state = service.FederationState(root / ".state/federation")
    service.init(state, load_fleet(root), "bocage", None, "127.0.0.1:9")
    admit(state, "mortree", 100 * 1024**3, 400)  # too little disk for brieux's tenants
    admit(state, "saint-aubin", 3 * TiB, 300)
    admit(state, "ecouche", 5 * TiB, 10)  # no power headroom
    admit(state, "argentan", 4 * TiB, 200)
    registry = state.store.load()
    _, keys, _ = state.coordinator()
    revoked = registry.append("revoke", "brieux", {"commune": "argentan", "reason": "x"}, keys)
    state.store.accept(revoked, "test")
    return state, revoked


def test_the_plan_shows_the_chosen_peer_and_why(auto_fleet: Path) -> None:
    assert invoke("--fleet", str(auto_fleet), "validate").code == 0
    _federate(auto_fleet)
    ran = invoke("--fleet", str(auto_fleet), "plan", "brieux")
    assert ran.code == 0, ran.output
    text = " ".join(re.sub("[│┃]", " ", ran.output).split())  # table cells, unboxed
    assert "Replication peers (auto, federation 'bocage', registry version 6): saint-aubin" in text
    assert "promised 960GiB of disk" in text
    assert "mortree mortree no spare disk 100GiB < 960GiB needed" in text
    assert "ecouche ecouche no power headroom 10 W < 15 W needed" in text
    assert "argentan argentan no revoked in the registry" in text
    assert "brieux brieux no the cabinet itself" in text
    assert "saint-aubin saint-aubin chosen different site, spare disk 3TiB >= 960GiB" in text
    data = json.loads(invoke("--fleet", str(auto_fleet), "plan", "brieux", "--json").stdout)
    assert data["replication_peers"]["chosen"] == ["saint-aubin"]
    assert [c["commune"] for c in data["replication_peers"]["candidates"] if c["eligible"]] == [
        "saint-aubin"
    ]


def test_without_a_registry_the_plan_says_none_was_chosen(auto_fleet: Path) -> None:
    ran = invoke("--fleet", str(auto_fleet), "plan", "brieux")
    assert ran.code == 0, ran.output
    assert "Replication peers (auto): none chosen: this fleet holds no federation registry" in (
        ran.flat()
    )


def test_round_trip_time_then_spare_disk_decide(auto_fleet: Path) -> None:
    _, registry = _federate(auto_fleet)
    brieux = load_fleet(auto_fleet).cabinet("brieux")
    # a second eligible member, with more spare disk than saint-aubin (3 TiB)
    state = service.FederationState(auto_fleet / ".state/federation")
    admit(state, "sees", 6 * TiB, 100)
    registry = state.store.load()
    assert choose_peers(registry, brieux).chosen == ["sees"]  # no RTT: most spare disk
    measured = {"saint-aubin": 4.2, "sees": 11.0}
    assert choose_peers(registry, brieux, rtt_ms=measured).chosen == ["saint-aubin"]
    assert choose_peers(registry, brieux, rtt_ms=measured, count=2).chosen == [
        "saint-aubin",
        "sees",
    ]


def test_auto_needs_a_federation(auto_fleet: Path) -> None:
    cabinet = auto_fleet / "cabinets/brieux.yaml"
    text = cabinet.read_text()
    start = text.index("federation:\n  name: bocage")
    cabinet.write_text(text[:start])
    ran = invoke("--fleet", str(auto_fleet), "validate")
    assert ran.code == 2
    line = text[: text.index("peers: auto")].count("\n") + 1
    assert (
        f"cabinets/brieux.yaml:{line}:10 replication.peers: peers: auto chooses among the"
        " members of the cabinet's federation: declare `federation:` or name the peers"
    ) in ran.flat()


def test_a_word_other_than_auto_is_refused(auto_fleet: Path) -> None:
    cabinet = auto_fleet / "cabinets/brieux.yaml"
    cabinet.write_text(cabinet.read_text().replace("peers: auto", "peers: automatic"))
    ran = invoke("--fleet", str(auto_fleet), "validate")
    assert ran.code == 2
    assert "replication.peers: expected a list, got 'automatic'" in ran.flat()


def _plan_text(root: Path) -> str:
    ran = invoke("--fleet", str(root), "plan", "brieux")
    assert ran.code == 0, ran.output
    return " ".join(re.sub("[│┃]", " ", ran.output).split())  # table cells, unboxed


def _measured(root: Path, by: str, trips: dict[str, float | None]) -> None:
    """What `federation status --interface kfed0` records after probing over the mesh."""
    health = {commune: {"rtt_ms": ms} for commune, ms in trips.items()}
    record_rtts(root / ".state/federation", by, "kfed0", health, now=T0)


T0 = 1_796_000_000.0  # a fixed measurement time


def test_the_plan_ranks_by_the_round_trips_last_measured_from_this_cabinet(
    auto_fleet: Path,
) -> None:
    state, _ = _federate(auto_fleet)
    admit(state, "sees", 6 * TiB, 100)  # more spare disk than saint-aubin (3 TiB)
    text = _plan_text(auto_fleet)  # nothing measured yet: the most spare disk decides
    assert "registry version 7): sees" in text and "Round-trip times: not measured" in text
    assert "round-trip time not measured (`federation status --interface`" in text
    _measured(auto_fleet, "brieux", {"mortree": 2.0, "saint-aubin": 4.2, "sees": 11.0})
    text = _plan_text(auto_fleet)
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(T0))
    assert "registry version 7): saint-aubin" in text
    assert f"Round-trip times: measured over the mesh (kfed0) from 'brieux' at {when}" in text
    assert "saint-aubin saint-aubin chosen different site, spare disk 3TiB" in text
    assert "round-trip time 4.2 ms" in text and "round-trip time 11.0 ms" in text
    # Only the last measurement counts: sees is now the nearer, and a member the probe did
    # not reach is "not measured" and ranks after every measured one.
    _measured(auto_fleet, "brieux", {"saint-aubin": None, "sees": 3.5})
    data = json.loads(invoke("--fleet", str(auto_fleet), "plan", "brieux", "--json").stdout)
    peers = data["replication_peers"]
    assert peers["chosen"] == ["sees"]
    assert peers["rtt_source"].startswith("measured over the mesh (kfed0) from 'brieux'")
    by_commune = {c["commune"]: c for c in peers["candidates"]}
    assert by_commune["sees"]["rtt_ms"] == 3.5 and by_commune["saint-aubin"]["rtt_ms"] is None


def test_round_trips_measured_from_another_cabinet_are_not_used(auto_fleet: Path) -> None:
    state, _ = _federate(auto_fleet)
    admit(state, "sees", 6 * TiB, 100)
    # Measured from mortree: its links say nothing about brieux's.
    _measured(auto_fleet, "mortree", {"saint-aubin": 1.0, "sees": 30.0})
    text = _plan_text(auto_fleet)
    assert "registry version 7): sees" in text
    assert "Round-trip times: not measured from this cabinet (the record in" in text
    assert "was measured from 'mortree')" in text


def test_a_damaged_round_trip_record_is_named(auto_fleet: Path) -> None:
    _federate(auto_fleet)
    path = auto_fleet / ".state/federation" / RTT_FILE
    _measured(auto_fleet, "brieux", {"saint-aubin": 4.2})
    assert measured_rtts(path.parent) == RttRecord("brieux", "kfed0", T0, {"saint-aubin": 4.2})
    data = json.loads(path.read_text())
    data["rtt_ms"]["saint-aubin"] = "fast"
    path.write_text(json.dumps(data))
    ran = invoke("--fleet", str(auto_fleet), "plan", "brieux")
    assert ran.code == 1, ran.output
    assert f"{path}: field 'rtt_ms.saint-aubin': expected milliseconds, got 'fast'" in ran.flat()
    path.write_text("{")
    ran = invoke("--fleet", str(auto_fleet), "plan", "brieux")
    assert ran.code == 1 and f"{path}: unreadable" in ran.flat(), ran.output
