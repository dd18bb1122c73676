"""`replication.peers: auto`, end to end: brieux declares `peers: auto` in a federation
whose registry this fleet holds (built with the real code), and `kloudctl replication run`
copies with the real restic to the chosen member's real rest-server on loopback (the flags
of the replication_target role: append-only, private repositories, TLS). The choice is
recorded and kept when a new round-trip measurement ranks another member first; revoking
the chosen member moves it (plan and run say so; the old copy stays where it is); with no
eligible member left, the run refuses and changes nothing.

The tests run in file order on one shared world.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kloudctl.federation.peers import load_record
from kloudctl.model import load_fleet
from kloudctl.replication.layout import Layout
from kloudctl.replication.ops import Replicator
from kloudctl.replication.serve import loopback
from kloudctl.testbed.fleets import make_cabinet_files
from tests.federation.test_peer_record import federate, measured_from_brieux
from tests.unit.inprocess import Ran, invoke, tree

pytestmark = pytest.mark.slow


@dataclass
class World:
    root: Path
    layout: Layout

    def k(self, *args: str) -> Ran:
        return invoke("--fleet", str(self.root), *args)

    def run(self) -> tuple[Ran, list[dict[str, object]]]:
        ran = self.k("replication", "run", "brieux", "--json")
        steps = json.loads(ran.stdout)[0]["steps"] if ran.code in (0, 1) and ran.stdout else []
        return ran, steps

    def snapshots_on(self, peer: str) -> list[dict[str, object]]:
        """brieux's snapshots in its copy on `peer`, as restic lists them."""
        return Replicator(load_fleet(self.root), self.layout).peer_snapshots("brieux", peer)

    def hosted(self, peer: str) -> Path:
        """The folder where `peer`'s rest-server keeps brieux's copy."""
        return self.layout.cabinet_dir(peer) / "rest-server" / "data" / "brieux"

    def plan(self) -> str:
        ran = self.k("plan", "brieux")
        assert ran.code == 0, ran.output
        return " ".join(re.sub("[│┃]", " ", ran.output).split())


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    for tool in ("restic", "rest-server"):
        assert shutil.which(tool), f"{tool} not on PATH: `make tools` builds it into .tools/bin"
    base = tmp_path_factory.mktemp("auto")
    root = base / "fleet"
    for folder in ("cabinets", "backups"):
        shutil.copytree(Path(__file__).resolve().parents[2] / folder, root / folder)
    federate(root)  # bocage: mortree (2 TiB spare) and saint-aubin (3 TiB) qualify
    files = base / "cabinet" / "brieux"
    make_cabinet_files(files)
    for path in ("var/lib/vz/dump", "var/lib/kloudctl"):  # the standard policy's paths
        (files / path).mkdir(parents=True)
    layout = Layout.for_fleet(root)
    layout.write_endpoints({"cabinets": {"brieux": {"root": str(files)}}})
    yield World(root, layout)


def test_run_copies_to_the_chosen_member(world: World) -> None:
    with loopback(world.layout, load_fleet(world.root)):
        ran, steps = world.run()
        assert ran.code == 0, ran.output
    by_name = {s["step"]: s for s in steps}
    assert str(by_name["peers:auto"]["detail"]).startswith(
        "first: first choice: 'saint-aubin' (different site, spare disk 3TiB >= 960GiB"
    )
    assert by_name["copy:saint-aubin"]["ok"] and "copy:mortree" not in by_name
    assert by_name["copy:saint-aubin"]["copied"] == 1
    record = load_record(world.root / ".state/federation", "brieux")
    assert record is not None and record.peers == ["saint-aubin"]
    with loopback(world.layout, load_fleet(world.root)):
        assert len(world.snapshots_on("saint-aubin")) == 1
    assert (world.hosted("saint-aubin") / "config").is_file()
    assert not world.hosted("mortree").exists()


def test_a_nearer_member_measured_later_does_not_move_the_copy(world: World) -> None:
    measured_from_brieux(world.root, {"mortree": 1.5, "saint-aubin": 12.0})
    text = world.plan()
    assert "registry version 3): saint-aubin" in text
    assert "kept (sticky): the ranking would now pick mortree" in text
    with loopback(world.layout, load_fleet(world.root)):
        ran, steps = world.run()
        assert ran.code == 0, ran.output
        assert len(world.snapshots_on("saint-aubin")) == 2
        # check and status read the same choice: the copy on saint-aubin, fresh.
        check = world.k("replication", "check", "brieux", "--json")
        assert check.code == 0, check.output
        assert [j["peer"] for j in json.loads(check.stdout)["jobs"]] == ["saint-aubin"]
        status = world.k("replication", "status", "brieux")
        assert status.code == 0 and "saint-aubin" in status.output, status.output
        assert "mortree" not in status.output
    by_name = {s["step"]: s for s in steps}
    assert str(by_name["peers:auto"]["detail"]).startswith("kept: recorded ")
    assert by_name["copy:saint-aubin"]["copied"] == 1 and "copy:mortree" not in by_name
    assert not world.hosted("mortree").exists()


def test_revoking_the_chosen_member_moves_the_copy_and_says_why(world: World) -> None:
    ran = world.k("federation", "revoke", "saint-aubin", "--reason", "left the federation")
    assert ran.code == 0, ran.output
    old_copy = tree(world.hosted("saint-aubin"))
    text = world.plan()
    assert "registry version 4): mortree" in text
    assert "CHANGES at the next `replication run` or `deploy`: 'saint-aubin' was revoked" in text
    # mortree's rest-server must now accept brieux (`replication serve` or deploy again).
    with loopback(world.layout, load_fleet(world.root)):
        ran, steps = world.run()
        assert ran.code == 0, ran.output
        on_mortree = world.snapshots_on("mortree")
    by_name = {s["step"]: s for s in steps}
    detail = str(by_name["peers:auto"]["detail"])
    assert detail.startswith("moved: 'saint-aubin' was revoked in registry version 4: chose")
    assert "the copy already on saint-aubin stays there (append-only" in detail
    assert by_name["copy:mortree"]["copied"] == 3 and "copy:saint-aubin" not in by_name
    assert len(on_mortree) == 3  # the whole history, re-sent to the new peer
    assert tree(world.hosted("saint-aubin")) == old_copy  # the old copy is left as it was
    record = load_record(world.root / ".state/federation", "brieux")
    assert record is not None and record.peers == ["mortree"]
    assert [p["peers"] for p in record.previous] == [["saint-aubin"]]
    assert "brieux brieux" in world.plan() and "mortree mortree chosen" in world.plan()


def test_no_eligible_member_refuses_and_changes_nothing(world: World) -> None:
    assert world.k("federation", "revoke", "mortree").code == 0
    with loopback(world.layout, load_fleet(world.root)):
        # Everything: the local repository, both copies, the record, the servers' files.
        before = tree(world.root / ".state")
        ran, _ = world.run()
        assert ran.code == 1, ran.output
        assert tree(world.root / ".state") == before
    assert (
        "cabinet 'brieux': replication.peers is auto, but no member of federation 'bocage'"
        " (registry version 5) can hold its copy (960GiB needed)"
    ) in ran.flat()
    assert "the copy already on mortree stays there" in ran.flat()
    record = load_record(world.root / ".state/federation", "brieux")
    assert record is not None and record.peers == ["mortree"]
