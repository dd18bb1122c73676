"""`peers: auto` on a cabinet reached over SSH: `replication deploy` ships the controller's
recorded choice (the inventory's `replication_source__peer_choices`, which the
replication_source role writes to `<state>/peer-choices/`), and the cabinet's resolver
answers with it (`PeerResolver(shipped=...)`) for its own copies and for the copies it
hosts, without the controller's record store, and never chooses by itself.

Real registries and records, made by the real code on a "controller" fleet; the cabinet's
side is a separate folder holding only what the role puts there. The last tests run the
agent from the real cabinet bundle (Debian's python3, isolated), which knows it is on a
cabinet by the bundle's marker."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kloudctl.errors import KloudError
from kloudctl.federation.peers import NoShippedChoice, PeerResolver, load_record, record_path
from kloudctl.hosts import bundle
from kloudctl.model import load_fleet
from kloudctl.replication import agent_interface as ai
from kloudctl.replication.layout import Layout, sources_of
from tests.federation.test_peer_record import T0, federate, resolver
from tests.unit.inprocess import invoke


@dataclass
class Cabinet:
    """What the replication_source role leaves on one cabinet: the fleet's files, its
    replication state folder with the shipped choices, maybe a member's synced registry."""

    fleet: Path
    state: Path
    federation: Path

    def resolver(self) -> PeerResolver:
        return PeerResolver(load_fleet(self.fleet), self.federation, shipped=self.state)


def role_inputs(controller: Path) -> dict[str, Any]:
    """The inventory deploy hands Ansible (kloudctl.ansible_inventory), per cabinet."""
    from kloudctl import ansible_inventory

    hostvars: dict[str, Any] = ansible_inventory.load(controller)["hostvars"]
    return hostvars


def on_cabinet(controller: Path, base: Path, name: str) -> Cabinet:
    """Lay out `name` as the role does (tasks/install.yml, tasks/layout.yml), from the
    controller's inventory: no `.state` in the cabinet's fleet copy."""
    cabinet = Cabinet(base / name / "fleet", base / name / "state", base / name / "federation")
    for folder in ("cabinets", "backups"):
        shutil.copytree(controller / folder, cabinet.fleet / folder)
    Layout(cabinet.state).write_endpoints({"cabinets": {}})
    shipped = role_inputs(controller)[name]["replication_source__peer_choices"]
    for owner, record in shipped.items():
        path = record_path(cabinet.state, owner)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return cabinet


@pytest.fixture
def controller(example_fleet: Path) -> Path:
    """bocage federated; brieux `peers: auto`; deploy's first step recorded its choice."""
    federate(example_fleet)
    resolver(example_fleet).resolve("brieux", commit=True)
    return example_fleet


def test_the_inventory_carries_the_records_each_cabinet_needs(controller: Path) -> None:
    recorded = load_record(controller / ".state/federation", "brieux")
    assert recorded is not None and recorded.peers == ["saint-aubin"]
    hostvars = role_inputs(controller)
    # brieux's own, and saint-aubin's copy of it (saint-aubin replicates to mortree itself)
    assert hostvars["brieux"]["replication_source__peer_choices"] == {"brieux": recorded.to_dict()}
    assert hostvars["saint-aubin"]["replication_source__peer_choices"] == {
        "brieux": recorded.to_dict()
    }
    # mortree declares its peers and hosts no auto cabinet's copy: nothing to ship
    assert hostvars["mortree"]["replication_source__peer_choices"] == {}


def test_the_cabinet_answers_with_the_shipped_choice_alone(
    controller: Path, tmp_path: Path
) -> None:
    brieux = on_cabinet(controller, tmp_path / "cabinets", "brieux")
    assert not (brieux.fleet / ".state").exists() and not brieux.federation.exists()
    found = brieux.resolver().resolve("brieux", commit=True)
    assert (found.peers, found.verdict, found.warnings) == (["saint-aubin"], "shipped", {})
    assert found.why.startswith("chosen by the controller 2026-")
    assert "registry version 3" in found.why and "first choice: 'saint-aubin'" in found.why
    assert not brieux.federation.exists()  # nothing chosen, nothing recorded here
    # the peer side: saint-aubin hosts brieux's copy, by brieux's shipped record
    saint_aubin = on_cabinet(controller, tmp_path / "cabinets", "saint-aubin")
    hosting = saint_aubin.resolver()
    assert sources_of(hosting.fleet, "saint-aubin", hosting) == ["brieux"]
    assert hosting.peers("saint-aubin") == ["mortree"]  # declared, as named


def test_the_cabinet_never_chooses_again_by_itself(controller: Path, tmp_path: Path) -> None:
    brieux = on_cabinet(controller, tmp_path / "cabinets", "brieux")
    ran = invoke("--fleet", str(controller), "federation", "revoke", "saint-aubin",
                 "--reason", "left the federation")  # fmt: skip
    assert ran.code == 0, ran.output
    moved = resolver(controller, T0 + 60).resolve("brieux", commit=True)
    assert (moved.verdict, moved.peers) == ("moved", ["mortree"])  # on the controller
    # the cabinet, handed the new registry (a member's sync), reports and keeps its record
    shutil.copytree(controller / ".state/federation", brieux.federation)
    found = brieux.resolver().resolve("brieux", commit=True)
    assert (found.verdict, found.peers) == ("shipped", ["saint-aubin"])
    assert list(found.warnings) == ["saint-aubin"]
    warning = found.warnings["saint-aubin"]
    assert warning.startswith("shipped peer 'saint-aubin' was revoked in registry version 4")
    assert "until the controller chooses again (`kloudctl replication deploy brieux`" in warning
    shipped = load_record(brieux.state, "brieux")
    assert shipped is not None and shipped.peers == ["saint-aubin"]  # untouched
    # the next deploy ships the controller's new choice
    assert role_inputs(controller)["brieux"]["replication_source__peer_choices"]["brieux"][
        "peers"
    ] == ["mortree"]


def test_a_missing_shipped_record_says_redeploy(controller: Path, tmp_path: Path) -> None:
    brieux = on_cabinet(controller, tmp_path / "cabinets", "brieux")
    path = record_path(brieux.state, "brieux")
    path.unlink()
    # the controller's full state, registry included, is of no use: the cabinet never chooses
    shutil.copytree(controller / ".state/federation", brieux.federation)
    (brieux.federation / "peer-choices").rename(brieux.federation / "elsewhere")
    with pytest.raises(NoShippedChoice) as caught:
        brieux.resolver().resolve("brieux", commit=True)
    assert str(caught.value) == (
        f"cabinet 'brieux': replication.peers is auto, but the controller's choice is not here"
        f" ({path} is missing): redeploy from the controller (`kloudctl replication deploy"
        " brieux`): a cabinet never chooses its peers itself"
    )
    assert not path.exists() and not (brieux.federation / "peer-choices").exists()
    # the hosting side skips a source whose choice it was not given
    saint_aubin = on_cabinet(controller, tmp_path / "cabinets", "saint-aubin")
    record_path(saint_aubin.state, "brieux").unlink()
    assert saint_aubin.resolver().sources_of("saint-aubin") == []


@pytest.mark.parametrize(
    ("content", "named"),
    [
        ("[1]", "expected an object"),
        ('{"cabinet": "brieux", "peers": [], "chosen_at": 1, "registry_version": 3,'
         ' "why": "", "previous": []}', "field 'peers' is empty"),
        ('{"cabinet": "brieux", "peers": ["x"], "chosen_at": 1, "why": "", "previous": []}',
         "field 'registry_version' is missing or of the wrong type"),
        ('{"cabinet": "mortree", "peers": ["x"], "chosen_at": 1, "registry_version": 3,'
         ' "why": "", "previous": []}', "field 'cabinet' says 'mortree', not 'brieux'"),
    ],
)  # fmt: skip
def test_a_damaged_shipped_record_is_named(
    controller: Path, tmp_path: Path, content: str, named: str
) -> None:
    brieux = on_cabinet(controller, tmp_path / "cabinets", "brieux")
    path = record_path(brieux.state, "brieux")
    path.write_text(content)
    with pytest.raises(KloudError) as caught:
        brieux.resolver().resolve("brieux")
    message = str(caught.value)
    assert message.startswith(f"recorded peer choice {path}: ") and named in message
    assert message.endswith("redeploy from the controller (`kloudctl replication deploy"
                            " brieux`): a cabinet never chooses its peers itself")  # fmt: skip
    assert path.read_text() == content


# ---- the agent, from the real cabinet bundle


@pytest.fixture(scope="module")
def unpacked(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("bundle")
    with tarfile.open(bundle.build(folder / "bundles")) as tar:
        tar.extractall(folder / "opt", filter="data")
    return folder / "opt"


def ask_agent(unpacked: Path, cabinet: Cabinet, name: str) -> tuple[int, dict[str, Any]]:
    """A status request, as the controller sends it over SSH, to the agent as its launcher
    (roles/replication_source/templates/kloudctl-replication-agent.j2) runs it."""
    launcher = (
        f"import sys; sys.path.insert(0, {str(unpacked)!r}); "
        "from kloudctl.replication.agent import main; sys.exit(main())"
    )
    request = ai.Request(name, str(cabinet.fleet), str(cabinet.state), ai.StatusOptions())
    done = subprocess.run(
        ["/usr/bin/python3", "-I", "-S", "-c", launcher],
        input=json.dumps(request.as_dict()), capture_output=True, text=True,
        cwd=cabinet.state, env={"PATH": "/usr/bin:/bin",
                                "KLOUDCTL_FEDERATION_STATE": str(cabinet.federation)},
    )  # fmt: skip
    assert "Traceback" not in done.stderr, done.stderr
    answer: dict[str, Any] = json.loads(done.stdout)
    return done.returncode, answer


def test_the_bundles_agent_uses_the_shipped_choice(
    controller: Path, tmp_path: Path, unpacked: Path
) -> None:
    brieux = on_cabinet(controller, tmp_path / "cabinets", "brieux")
    code, answer = ask_agent(unpacked, brieux, "brieux")
    assert code == 1, answer  # nothing backed up yet: a row with its error
    [row] = answer["result"]
    assert (row["cabinet"], row["peer"], row["peer_warning"]) == ("brieux", "saint-aubin", None)
    # a member's synced registry that says saint-aubin was revoked: a warning, same peer
    ran = invoke("--fleet", str(controller), "federation", "revoke", "saint-aubin", "--reason", "x")
    assert ran.code == 0, ran.output
    shutil.copytree(controller / ".state/federation", brieux.federation)
    shutil.rmtree(brieux.federation / "peer-choices")  # a member holds no controller record
    code, answer = ask_agent(unpacked, brieux, "brieux")
    [row] = answer["result"]
    assert row["peer"] == "saint-aubin"
    assert row["peer_warning"].startswith("shipped peer 'saint-aubin' was revoked")
    # no shipped record: the agent refuses, saying what to do, and chooses nothing
    record_path(brieux.state, "brieux").unlink()
    code, answer = ask_agent(unpacked, brieux, "brieux")
    assert code == 1 and "redeploy from the controller" in answer["error"]["message"], answer
    assert not record_path(brieux.federation, "brieux").exists()
