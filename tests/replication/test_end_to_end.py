"""End to end with the real restic and real rest-servers on loopback.

Two cabinets, `alpha` and `beta`, replicate to each other. Each is simulated as a folder
(its files) plus its own rest-server on its own loopback address (127.0.0.x), started with
the flags the replication_target role uses: `--append-only --private-repos --tls` and one
htpasswd identity per source cabinet. The tests run in file order on one shared world,
the destructive ones last.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from kloudctl.cli import cli
from kloudctl.errors import ResticError
from kloudctl.model import load_fleet
from kloudctl.replication import restic as r
from kloudctl.replication import status as st
from kloudctl.replication.layout import AlreadyRunning, Layout
from kloudctl.replication.ops import Replicator
from kloudctl.replication.restic import Repo, Restic, parse_time
from kloudctl.replication.restoretest import restore_from_peer
from kloudctl.replication.serve import Loopback, loopback
from kloudctl.testbed.fleets import make_cabinet_files, make_fleet

pytestmark = pytest.mark.slow


@dataclass
class World:
    root: Path
    layout: Layout
    rep: Replicator
    servers: Loopback
    files: dict[str, Path]

    def cli(self, *args: str) -> tuple[int, str]:
        result = CliRunner().invoke(
            cli, ["--fleet", str(self.root), *args, "--state-dir", str(self.layout.state)]
        )
        return result.exit_code, result.output


@pytest.fixture(scope="module")
def world(
    restic_bin: str, rest_server_bin: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    base = tmp_path_factory.mktemp("e2e")
    root = make_fleet(base / "fleet", ["alpha", "beta"], rpo="6h")
    layout = Layout(base / "state")
    files = {}
    endpoints: dict[str, dict[str, dict[str, str]]] = {"cabinets": {}}
    for i, name in enumerate(["alpha", "beta"]):
        files[name] = base / "cabinet" / name
        make_cabinet_files(files[name], seed=i)
        endpoints["cabinets"][name] = {"root": str(files[name])}
    layout.write_endpoints(endpoints)
    fleet = load_fleet(root)
    with loopback(layout, fleet) as servers:
        rep = Replicator(fleet, layout, Restic(lock_backoff=(1.0, 2.0, 4.0)))
        yield World(root, layout, rep, servers, files)


def _lag(world: World, cabinet: str = "alpha") -> float:
    [job] = st.check(world.rep, [cabinet])
    assert job.lag is not None, job.reason
    return job.lag


def test_backup_copy_and_the_lag_falls_to_the_runs_age(world: World) -> None:
    code, out = world.cli("replication", "check", "alpha")
    assert code == st.CRITICAL, out  # nothing on the peer yet

    report = world.rep.run("alpha")
    assert report.ok, [s.detail for s in report.steps if not s.ok]
    steps = {s.name for s in report.steps}
    assert {"backup:paths", "backup:cmd:db", "copy:beta", "prune:local", "check:local"} <= steps
    # beta hosts alpha's copy: as its owner it prunes it by age.
    report_b = world.rep.run("beta")
    assert report_b.ok and "prune:hosted:alpha" in {s.name for s in report_b.steps}

    [row] = st.status_of(world.rep, "alpha")
    assert row["unreplicated"] == 0 and row["local_snapshots"] == 2 and row["peer_snapshots"] == 2
    # The copy's `original` is the local snapshot's id.
    assert row["newest_copied_original"] is not None

    time.sleep(2)
    world.rep.backup("alpha")  # new local snapshots, not yet on the peer
    [row] = st.status_of(world.rep, "alpha")
    assert row["unreplicated"] == 2
    lag_before = _lag(world)

    started = time.time()
    assert world.rep.run("alpha").ok
    lag_after = _lag(world)
    assert lag_after < lag_before
    assert lag_after <= time.time() - started + 1  # the age of this run's snapshot

    code, out = world.cli("replication", "check", "alpha")
    assert code == st.OK, out
    assert (
        out.startswith("REPLICATION OK - ")
        and "'lag_alpha_beta'=" in out
        and ";10800;21600;0" in out
    )


def test_check_reads_freshness_from_the_listing_without_a_key(world: World) -> None:
    """After a run nothing on the peer is unread: the check lists the snapshot files over
    the rest-server API and starts no restic (no scrypt). An id never read makes restic
    open the repository once; its time is then known."""
    started: list[int] = []
    rep = Replicator(world.rep.fleet, world.layout, Restic(on_start=started.append))
    [job] = st.check(rep, ["alpha"])
    assert job.code == st.OK and started == [], job
    state = world.layout.load_state("alpha")
    times = state["peer_snapshot_times"]["beta"]
    newest = max(times, key=times.__getitem__)
    del times[newest]
    world.layout.save_state("alpha", state)
    [again] = st.check(rep, ["alpha"])
    assert len(started) == 1 and again.newest_copied == job.newest_copied
    [third] = st.check(rep, ["alpha"])
    assert len(started) == 1 and third.code == st.OK


def test_source_credentials_cannot_delete_or_rewrite_on_the_peer(world: World) -> None:
    peer = world.layout.peer_repo("alpha", "beta")
    runner = Restic(lock_backoff=())
    before = r.snapshot_list(runner.run(peer, ["snapshots"]).document)
    assert before
    victim = before[0]["id"]

    # restic says so through its exit code: 1 (failed) or 3 (forget could not remove all).
    outcomes = {}
    for args in (["forget", victim], ["forget", "--keep-last", "1", "--prune"], ["prune"]):
        try:
            outcomes[args[-1]] = runner.run(peer, args).outcome.value
        except ResticError as exc:
            outcomes[args[-1]] = exc.code
    # restic 0.18.1 exits 0 here, printing `unable to remove ... 403`; the runner says warning.
    assert outcomes[victim] == "warning"
    assert outcomes["--prune"] in ("warning", 1)

    # Straight to the REST API, with alpha's identity: deleting a snapshot is refused, and
    # so is reading another cabinet's repository.
    server = world.layout.endpoint("beta").server
    assert server is not None
    user, password = r.read_credentials(peer.rest_credentials_file)  # type: ignore[arg-type]
    tls = {"auth": (user, password), "verify": str(server.cacert), "timeout": 10}
    deleted = requests.delete(f"{server.url}/alpha/snapshots/{victim}", **tls)  # type: ignore[arg-type]
    assert deleted.status_code == 403
    other = requests.get(f"{server.url}/beta/config", **tls)  # type: ignore[arg-type]
    assert other.status_code in (401, 403)
    anonymous = requests.get(f"{server.url}/alpha/config", verify=str(server.cacert), timeout=10)
    assert anonymous.status_code == 401

    after = r.snapshot_list(runner.run(peer, ["snapshots"]).document)
    assert {s["id"] for s in after} == {s["id"] for s in before}
    assert (runner.run(peer, ["check"]).summary or {}).get("num_errors") == 0


def test_peer_down_is_warning_then_critical_past_the_rpo(world: World, tmp_path: Path) -> None:
    beta = world.servers.servers["beta"]
    beta.stop()
    try:
        newest = _newest_copy_time(world)
        textfile = tmp_path / "metrics" / "replication.prom"
        textfile.parent.mkdir()  # kloudctl writes into an existing folder only
        code, out = world.cli(
            "replication", "check", "alpha", "--now", str(newest + 3600),
            "--prometheus-textfile", str(textfile),
        )  # fmt: skip
        assert code == st.WARNING, out
        assert "unreachable" in out
        metrics = textfile.read_text()
        assert 'kloudctl_replication_status{cabinet="alpha",peer="beta"} 1' in metrics
        assert 'kloudctl_replication_lag_seconds{cabinet="alpha",peer="beta"} 3600' in metrics
        assert "kloudctl_replication_last_success_timestamp_seconds" in metrics

        code, out = world.cli(
            "replication", "check", "alpha", "--now", str(newest + 7 * 3600), "--json"
        )
        assert code == st.CRITICAL, out
        data = json.loads(out)
        assert data["status"] == "CRITICAL" and data["jobs"][0]["peer_reachable"] is False

        os.environ["KLOUDCTL_NOW"] = str(newest + 4 * 3600)  # the clock can come from the env too
        try:
            code, out = world.cli("replication", "check", "--all")
        finally:
            del os.environ["KLOUDCTL_NOW"]
        assert code == st.WARNING, out
    finally:
        beta.start()
    code, out = world.cli("replication", "check", "alpha", "--now", str(newest + 4 * 3600))
    assert code == st.WARNING and "past half the RPO" in out, out


def _newest_copy_time(world: World) -> float:
    state = world.layout.load_state("alpha")
    return float(state["peer_seen"]["beta"]["newest_copied"])


def test_restore_test_from_the_peer(world: World) -> None:
    code, out = world.cli(
        "replication", "restore-test", "alpha", "--sample", "4", "--seed", "1", "--json"
    )
    assert code == 0, out
    [report] = json.loads(out)
    assert report["ok"] and len(report["files"]) == 4
    assert all(f["result"] == "identical" for f in report["files"])


def test_runs_never_overlap(world: World) -> None:
    with world.layout.run_lock("alpha"), pytest.raises(AlreadyRunning):
        world.rep.run("alpha")


def test_killed_backup_leaves_a_consistent_repository(world: World) -> None:
    """SIGKILL in the middle of a backup (data uploaded, no snapshot yet): `check` passes and
    the next run completes."""
    local = world.layout.local_repo("alpha")
    pids: list[int] = []
    killer = threading.Timer(3.0, lambda: os.kill(pids[0], signal.SIGKILL))
    runner = Restic(on_start=pids.append, lock_backoff=())
    killer.start()
    slow = ["sh", "-c", "head -c 40000000 /dev/urandom; sleep 20"]
    with pytest.raises(ResticError) as info:
        runner.run(local, r.backup_command_args(slow, filename="big.bin", host="alpha"))
    assert info.value.code == -signal.SIGKILL
    check = Restic().run(local, ["check"])
    assert (check.summary or {}).get("num_errors") == 0
    report = world.rep.run("alpha")
    assert report.ok, report.as_dict()


def test_a_corrupted_pack_is_detected(world: World) -> None:
    local = Path(world.layout.local_repo("alpha").location)
    # A pack the index references (the killed backup of the previous test may have left
    # unreferenced ones, which checks do not read and prune removes).
    runner, repo = Restic(), world.layout.local_repo("alpha")
    referenced = set()
    for line in runner.run(repo, ["list", "index"]).text:
        index = runner.run(repo, ["cat", "index", line.strip()]).document or {}
        referenced |= {p["id"] for p in index.get("packs", []) if p.get("blobs")}
    packs = sorted(p for p in (local / "data").rglob("*") if p.name in referenced)
    # Flip bytes inside one pack: only reading the data finds it, and the rotation of
    # daily slices reads every pack within read_data_days days.
    flipped = packs[len(packs) // 2]
    blob = bytearray(flipped.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    flipped.chmod(0o644)
    flipped.write_bytes(bytes(blob))
    rep = world.rep
    day = 86400
    start = time.time()
    found = False
    for n in range(8):
        rep.clock = str(start + n * day)
        step = rep.integrity("alpha", "local", rep.layout.local_repo("alpha"))
        if not step.ok:
            found = True
            break
    rep.clock = None
    assert found, "a week of daily slices must read the corrupted pack"
    code, out = world.cli("replication", "check", "alpha")
    assert code == st.CRITICAL and "integrity check failed: local" in out, out

    # Truncation is caught by the structural check of every run, no data read needed.
    other = next(p for p in packs if p != flipped)
    other.chmod(0o644)
    other.write_bytes(other.read_bytes()[:100])
    step = rep.integrity("alpha", "local", rep.layout.local_repo("alpha"))
    assert (not step.ok and "structural" in step.detail) or not step.ok


def test_restore_from_the_peer_after_the_source_repository_is_gone(
    world: World, tmp_path: Path
) -> None:
    local = Path(world.layout.local_repo("alpha").location)
    shutil.rmtree(local)
    target = tmp_path / "restored"
    source = world.files["alpha"] / "srv" / "data" / "file-3.bin"
    restore_from_peer(world.rep, "alpha", "beta", target, [str(source)])
    restored = target / str(source).lstrip("/")
    assert (
        hashlib.sha256(restored.read_bytes()).digest()
        == hashlib.sha256(source.read_bytes()).digest()
    )
    # The excluded scratch file was never backed up.
    assert not (restored.parent / "scratch.tmp").exists()


def test_snapshot_times_parse() -> None:
    assert parse_time("2026-11-21T21:35:54.083832404Z") == pytest.approx(
        1795296954.083832, abs=1e-5
    )
    assert parse_time("2026-11-21T22:35:54.5+01:00") == pytest.approx(1795296954.5)


def test_repo_without_password_source_is_refused() -> None:
    with pytest.raises(Exception, match="exactly one"):
        Repo("/x")
