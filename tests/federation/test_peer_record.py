"""`replication.peers: auto`, resolved: the one resolver (`federation.peers.PeerResolver`)
gives a cabinet's effective peers, records the first choice, keeps it while the peer stays
an active member with enough spare disk (a new round-trip measurement never moves it), and
moves it, saying why, when the peer is revoked. Real registries, built with the real code;
no restic here (tests/federation/test_auto_peers.py copies with it)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from kloudctl.errors import InputError, KloudError
from kloudctl.federation import service
from kloudctl.federation.choice import record_rtts
from kloudctl.federation.keys import MemberKeys
from kloudctl.federation.peers import (
    NoEligiblePeer,
    NoRegistry,
    PeerResolver,
    load_record,
    record_path,
)
from kloudctl.model import load_fleet
from kloudctl.replication.layout import sources_of
from tests.federation.conftest import admit
from tests.unit.inprocess import invoke

TiB = 1024**4
T0 = 1_796_000_000.0


def federate_with_keys(root: Path) -> tuple[service.FederationState, dict[str, MemberKeys]]:
    """bocage: brieux coordinates; mortree (2 TiB spare) and saint-aubin (3 TiB) can each
    hold brieux's copy (960 GiB promised to its tenants); brieux declares `peers: auto`."""
    cabinet = root / "cabinets/brieux.yaml"
    cabinet.write_text(cabinet.read_text().replace("peers: [saint-aubin]", "peers: auto"))
    state = service.FederationState(root / ".state/federation")
    service.init(state, load_fleet(root), "bocage", None, "127.0.0.1:9")
    keys = {
        "mortree": admit(state, "mortree", 2 * TiB, 300),
        "saint-aubin": admit(state, "saint-aubin", 3 * TiB, 300),
    }
    return state, keys


def federate(root: Path) -> service.FederationState:
    return federate_with_keys(root)[0]


def measured_from_brieux(root: Path, trips: dict[str, float]) -> None:
    """What `federation status --interface kfed0` records on brieux after probing the mesh."""
    health = {commune: {"rtt_ms": ms} for commune, ms in trips.items()}
    record_rtts(root / ".state/federation", "brieux", "kfed0", health, now=T0)


def resolver(root: Path, now: float = T0) -> PeerResolver:
    return PeerResolver(load_fleet(root), clock=lambda: now)


def plan_text(root: Path) -> str:
    ran = invoke("--fleet", str(root), "plan", "brieux")
    assert ran.code == 0, ran.output
    return " ".join(re.sub("[│┃]", " ", ran.output).split())  # table cells, unboxed


@pytest.fixture
def fleet(example_fleet: Path) -> Path:
    federate(example_fleet)
    return example_fleet


def test_the_first_choice_is_recorded_only_by_a_command_that_copies(fleet: Path) -> None:
    folder = fleet / ".state/federation"
    looked = resolver(fleet).resolve("brieux")  # a read: nothing written
    assert (looked.peers, looked.verdict, looked.saved) == (["saint-aubin"], "first", False)
    assert not record_path(folder, "brieux").exists()
    made = resolver(fleet).resolve("brieux", commit=True)
    assert made.peers == ["saint-aubin"] and made.saved
    record = load_record(folder, "brieux")
    assert record is not None
    assert (record.peers, record.chosen_at, record.registry_version) == (["saint-aubin"], T0, 3)
    assert record.why.startswith("first choice: 'saint-aubin' (different site, spare disk 3TiB")
    assert "round-trip times not measured" in record.why
    # Declared peers are what the file names: no record, whatever the federation holds.
    assert resolver(fleet).resolve("mortree").peers == ["brieux"]
    assert not record_path(folder, "mortree").exists()


def test_a_new_round_trip_measurement_never_moves_the_copy(fleet: Path) -> None:
    resolver(fleet).resolve("brieux", commit=True)
    path = record_path(fleet / ".state/federation", "brieux")
    before = path.read_bytes()
    measured_from_brieux(fleet, {"mortree": 2.0, "saint-aubin": 9.5})  # mortree is nearer
    kept = resolver(fleet, now=T0 + 3600).resolve("brieux", commit=True)
    assert kept.choice is not None and kept.choice.chosen == ["mortree"]  # the ranking now
    assert (kept.peers, kept.verdict) == (["saint-aubin"], "kept")
    assert "kept (sticky): the ranking would now pick mortree" in kept.why
    assert "saint-aubin is still an active member with enough spare disk" in kept.why
    assert path.read_bytes() == before  # nothing rewritten
    text = plan_text(fleet)
    assert "registry version 3): saint-aubin" in text
    assert "Peer choice: recorded, kept: recorded" in text
    assert "saint-aubin saint-aubin kept (recorded)" in text
    assert "mortree mortree ranked first" in text


def test_revoking_the_chosen_peer_moves_the_choice_and_says_why(fleet: Path) -> None:
    state = service.FederationState(fleet / ".state/federation")
    resolver(fleet).resolve("brieux", commit=True)
    service.revoke(state, "saint-aubin", "left the federation")
    text = plan_text(fleet)  # the plan says it changes, and writes nothing
    assert "registry version 4): mortree" in text
    assert "Peer choice: recorded, CHANGES at the next `replication run` or `deploy`:" in text
    assert "'saint-aubin' was revoked in registry version 4: chose 'mortree'" in text
    assert "saint-aubin saint-aubin left" in text
    record = load_record(state.folder, "brieux")
    assert record is not None and record.peers == ["saint-aubin"]
    moved = resolver(fleet, now=T0 + 60).resolve("brieux", commit=True)
    assert (moved.peers, moved.verdict) == (["mortree"], "moved")
    assert "the copy already on saint-aubin stays there (append-only" in moved.why
    record = load_record(state.folder, "brieux")
    assert record is not None
    assert (record.peers, record.chosen_at, record.registry_version) == (["mortree"], T0 + 60, 4)
    [left] = record.previous
    assert left["peers"] == ["saint-aubin"] and left["chosen_at"] == T0
    assert left["left_at"] == T0 + 60
    assert left["why_left"] == "'saint-aubin' was revoked in registry version 4"
    # The peer side follows the same resolver: mortree now hosts brieux's copy.
    loaded = load_fleet(fleet)
    assert sources_of(loaded, "mortree") == ["brieux", "saint-aubin"]
    assert sources_of(loaded, "saint-aubin") == []


def test_no_registry_is_a_clear_error_and_no_peer(example_fleet: Path) -> None:
    cabinet = example_fleet / "cabinets/brieux.yaml"
    cabinet.write_text(cabinet.read_text().replace("peers: [saint-aubin]", "peers: auto"))
    with pytest.raises(NoRegistry) as caught:
        resolver(example_fleet).peers("brieux", commit=True)
    assert isinstance(caught.value, InputError)  # exit 2
    folder = example_fleet / ".state/federation"
    assert str(caught.value) == (
        "cabinet 'brieux': replication.peers is auto, but this fleet holds no registry of"
        f" federation 'bocage' in {folder} (`kloudctl federation init` on the coordinator,"
        " `federation join` on a member): no peer chosen, nothing copied"
    )
    assert not folder.exists()
    # The inventory and the hosting side skip it (its own run and deploy refuse).
    assert resolver(example_fleet).peers("brieux", strict=False) == []
    ran = invoke("--fleet", str(example_fleet), "replication", "run", "brieux")
    assert ran.code == 2, ran.output
    assert "cabinet 'brieux': replication.peers is auto, but this fleet holds no" in ran.flat()
    assert not (example_fleet / ".state").exists()  # nothing made


def test_no_eligible_member_is_a_clear_error_and_the_record_stays(fleet: Path) -> None:
    state = service.FederationState(fleet / ".state/federation")
    resolver(fleet).resolve("brieux", commit=True)
    before = record_path(state.folder, "brieux").read_bytes()
    service.revoke(state, "saint-aubin", "left")
    service.revoke(state, "mortree", "left")
    with pytest.raises(NoEligiblePeer) as caught:
        resolver(fleet).resolve("brieux", commit=True)
    message = str(caught.value)
    assert message.startswith(
        "cabinet 'brieux': replication.peers is auto, but no member of federation 'bocage'"
        " (registry version 5) can hold its copy (960GiB needed): brieux: the cabinet itself;"
        " mortree: revoked in the registry; saint-aubin: revoked in the registry"
    )
    assert message.endswith("the copy already on saint-aubin stays there")
    assert caught.value.exit_code == 1
    assert record_path(state.folder, "brieux").read_bytes() == before
    ran = invoke("--fleet", str(fleet), "replication", "run", "brieux")
    assert ran.code == 1, ran.output
    assert "no member of federation 'bocage' (registry version 5) can hold" in ran.flat()
    assert not (fleet / ".state/replication").exists()  # nothing backed up, nothing made
    text = plan_text(fleet)  # the plan still shows why each member is left
    assert "none: no member qualifies (`replication run` refuses)" in text


def test_a_peer_short_of_disk_loses_the_copy(example_fleet: Path) -> None:
    """Spare disk is the other condition for keeping a peer: saint-aubin measures (and signs,
    with its own key) a spare disk under what brieux's tenants are promised."""
    state, keys = federate_with_keys(example_fleet)
    resolver(example_fleet).resolve("brieux", commit=True)
    registry = state.store.load()
    changes = {"capacity": {"spare_disk_declared": 3 * TiB, "spare_disk_measured": 100 * 1024**3,
                            "power_headroom_declared": 300}}  # fmt: skip
    body = {"commune": "saint-aubin", "changes": changes}
    state.store.accept(registry.append("update", "saint-aubin", body, keys["saint-aubin"]), "t")
    moved = resolver(example_fleet).resolve("brieux", commit=True)
    assert (moved.peers, moved.verdict) == (["mortree"], "moved")
    assert moved.why.startswith(
        "'saint-aubin' has spare disk 100GiB < 960GiB needed: chose 'mortree'"
    )


@pytest.mark.parametrize(
    ("content", "named"),
    [
        ("{", "unreadable"),
        ("[]", "expected an object"),
        ('{"cabinet": "brieux"}', "field 'peers' is missing or of the wrong type"),
        (
            '{"cabinet": "brieux", "peers": [3], "chosen_at": 1, "registry_version": 3,'
            ' "why": "", "previous": []}',
            "field 'peers[0]': expected a cabinet name, got 3",
        ),
        (
            '{"cabinet": "mortree", "peers": ["x"], "chosen_at": 1, "registry_version": 3,'
            ' "why": "", "previous": []}',
            "field 'cabinet' says 'mortree', not 'brieux'",
        ),
    ],
)
def test_a_damaged_record_is_named(fleet: Path, content: str, named: str) -> None:
    path = record_path(fleet / ".state/federation", "brieux")
    path.parent.mkdir(parents=True)
    path.write_text(content)
    with pytest.raises(KloudError) as caught:
        resolver(fleet).resolve("brieux", commit=True)
    assert str(caught.value).startswith(f"recorded peer choice {path}: ")
    assert named in str(caught.value)
    assert path.read_text() == content  # left for the operator to fix or delete
    ran = invoke("--fleet", str(fleet), "replication", "run", "brieux")
    assert ran.code == 1 and f"recorded peer choice {path}: " in ran.flat(), ran.output


def test_the_inventory_and_the_roles_follow_the_choice(fleet: Path) -> None:
    from kloudctl import ansible_inventory

    resolver(fleet).resolve("brieux", commit=True)
    inventory = ansible_inventory.load(fleet)
    brieux = inventory["hostvars"]["brieux"]
    assert brieux["kloudctl_replication_peers"] == ["saint-aubin"]
    assert [p["name"] for p in brieux["replication_source__peers"]] == ["saint-aubin"]
    assert "brieux@saint-aubin.rest" in brieux["replication_source__secrets"]
    hosted = inventory["hostvars"]["saint-aubin"]["replication_target__sources"]
    assert [s["name"] for s in hosted] == ["brieux"]
    assert "saint-aubin" in inventory["groups"]["replication_targets"]["hosts"]
    data = json.loads(invoke("--fleet", str(fleet), "plan", "brieux", "--json").stdout)
    effective = data["replication_peers"]["effective"]
    assert effective["peers"] == ["saint-aubin"] and effective["verdict"] == "kept"


def test_the_cabinet_list_shows_where_an_auto_cabinet_replicates(example_fleet: Path) -> None:
    def replicates_to() -> str:
        ran = invoke("--fleet", str(example_fleet), "cabinet", "list", "--json")
        assert ran.code == 0, ran.output
        return next(r["replicates_to"] for r in json.loads(ran.stdout) if r["cabinet"] == "brieux")

    cabinet = example_fleet / "cabinets/brieux.yaml"
    cabinet.write_text(cabinet.read_text().replace("peers: [saint-aubin]", "peers: auto"))
    assert replicates_to() == "auto (none: no federation registry)"
    state = service.FederationState(example_fleet / ".state/federation")
    service.init(state, load_fleet(example_fleet), "bocage", None, "127.0.0.1:9")
    assert replicates_to() == "auto (none: no eligible member)"
    admit(state, "mortree", 2 * TiB, 300)
    assert replicates_to() == "auto (mortree)"
