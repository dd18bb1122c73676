"""`replication.peers: auto`: kloudctl chooses peers among the federation's members from
the registry (spare disk, power headroom, another site, round-trip time) and the plan
shows the choice and why; the model accepts `auto` only with a federation."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from kloudctl.federation import service
from kloudctl.federation.choice import choose_peers
from kloudctl.federation.keys import MemberKeys
from kloudctl.federation.registry import Registry
from kloudctl.model import load_fleet
from tests.unit.inprocess import invoke

TiB = 1024**4


def _admit(state: service.FederationState, commune: str, disk: int | None, watts: int) -> None:
    """Admit `commune` straight into the coordinator's registry (the join protocol is
    tested in test_invites; here only the registry's figures matter)."""
    registry = state.store.load()
    newcomer = MemberKeys.generate()
    doc = {
        "commune": commune, "cabinet": commune, "endpoints": [],
        "wireguard_key": newcomer.wireguard_public, "signing_key": newcomer.signing_public,
        "mesh_address": registry.next_address(),
        "capacity": {"spare_disk_declared": disk, "power_headroom_declared": watts},
    }  # fmt: skip
    _, keys, _ = state.coordinator()
    state.store.accept(registry.append("admit", "brieux", {"member": doc}, keys), "test")


@pytest.fixture
def auto_fleet(example_fleet: Path) -> Path:
    cabinet = example_fleet / "cabinets/brieux.yaml"
    cabinet.write_text(cabinet.read_text().replace("peers: [saint-aubin]", "peers: auto"))
    return example_fleet


def _federate(root: Path) -> tuple[service.FederationState, Registry]:
    state = service.FederationState(root / ".state/federation")
    service.init(state, load_fleet(root), "bocage", None, "127.0.0.1:9")
    _admit(state, "mortree", 100 * 1024**3, 400)  # too little disk for brieux's tenants
    _admit(state, "saint-aubin", 3 * TiB, 300)
    _admit(state, "ecouche", 5 * TiB, 10)  # no power headroom
    _admit(state, "argentan", 4 * TiB, 200)
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
    _admit(state, "sees", 6 * TiB, 100)
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
