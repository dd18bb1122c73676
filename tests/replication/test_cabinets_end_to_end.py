"""End to end on two test cabinets: real Debian hosts (podman, systemd, SSH), real restic and
rest-server, and kloudctl itself installed on them.

`kloudctl replication deploy` runs playbooks/replication.yml on `alpha` and `beta`, which
replicate to each other: each runs rest-server (append-only, private repositories, TLS,
bcrypt htpasswd) for the other's copies, and kloudctl, restic, its keys and systemd timers
for its own backups. The controller's `replication run|status|check|restore-test` then
execute on the cabinets over SSH; cron's view is `kloudctl replication check` run on the
cabinet itself. The tests run in file order on one shared pair, the destructive ones last.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kloudctl.replication import status as st
from kloudctl.replication.deploy import deploy
from kloudctl.replication.layout import Layout
from kloudctl.replication.restoretest import restore_from_peer
from kloudctl.testbed import cabinets, image
from kloudctl.testbed.fleets import make_fleet
from kloudctl.testbed.podman import podman_problem

pytestmark = [pytest.mark.podman, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
NAMES = ["alpha", "beta"]
STATE = "/var/lib/kloudctl/replication"
LOCAL_REPO = "/var/lib/kloudctl/restic"
RUN_UNIT = "kloudctl-replication-run.service"
#: restic on alpha's local repository, with alpha's key, as a shell command prefix.
ALPHA_LOCAL_RESTIC = (
    f"RESTIC_PASSWORD_FILE={STATE}/secrets/alpha.local.password restic -r {LOCAL_REPO} "
)


@dataclass
class Pair:
    root: Path
    layout: Layout
    bed: cabinets.Testbed
    deploys: list[dict[str, int]]

    def cli(self, *args: str) -> tuple[int, str]:
        """kloudctl on the controller (a separate process, as an engineer runs it)."""
        done = subprocess.run(
            [str(REPO / ".venv" / "bin" / "kloudctl"), "--fleet", str(self.root), *args,
             "--state-dir", str(self.layout.state)],
            capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        return done.returncode, done.stdout + done.stderr

    def sh(self, cabinet: str, script: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """A shell script on the cabinet, over SSH as root."""
        return self.bed.ssh(cabinet, "sh", "-c", script, check=check)

    def kloudctl(self, cabinet: str, *args: str) -> tuple[int, str]:
        """kloudctl on the cabinet itself, as its timers and cron run it."""
        command = ["kloudctl", "--fleet", "/etc/kloudctl/fleet", "replication", *args,
                   "--state-dir", STATE]  # fmt: skip
        done = self.bed.ssh(cabinet, *command, check=False)
        return done.returncode, done.stdout + done.stderr

    def check_json(self, cabinet: str, *extra: str) -> tuple[int, dict]:  # type: ignore[type-arg]
        code, out = self.kloudctl(cabinet, "check", cabinet, "--json", *extra)
        return code, json.loads(out)


def _make_files(pair_bed: cabinets.Testbed, cabinet: str, seed: int) -> None:
    script = (
        "set -e; mkdir -p /srv/data; "
        f"for i in 0 1 2 3 4 5 6 7; do head -c $((20000 + i * 9000 + {seed})) /dev/urandom "
        "> /srv/data/file-$i.bin; done; "
        "printf 'key = value\\n' > '/srv/data/config with spaces.conf'; "
        "echo excluded > /srv/data/scratch.tmp"
    )
    pair_bed.ssh(cabinet, "sh", "-c", script)


@pytest.fixture(scope="module")
def pair(
    restic_bin: str, rest_server_bin: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pair]:
    problem = podman_problem()
    if problem:
        pytest.skip(problem)
    name = image.ensure_image()
    base = tmp_path_factory.mktemp("cabinets")
    root = make_fleet(base / "fleet", NAMES, rpo="6h")
    for item in ("ansible.cfg", "inventory", "playbooks", "roles"):
        (root / item).symlink_to(REPO / item)
    layout = Layout(base / "state")
    bed_dir = base / "testbed"
    with cabinets.running(NAMES, prefix="kloudctl-repl-e2e", state_dir=bed_dir, image=name) as bed:
        for i, cabinet in enumerate(NAMES):
            _make_files(bed, cabinet, i)
        deploys = []
        for _ in range(2):  # the second run must change nothing
            result = deploy(root, layout, NAMES, testbed_state=bed_dir / "testbed.json")
            result.raise_for_status()
            deploys.append({h: r.changed for h, r in result.recaps.items()})
        yield Pair(root, layout, bed, deploys)


def test_deploy_installs_kloudctl_and_converges(pair: Pair) -> None:
    assert all(n > 0 for n in pair.deploys[0].values()), pair.deploys
    assert pair.deploys[1] == dict.fromkeys(NAMES, 0), "the second deploy changed something"
    for cabinet in NAMES:
        units = pair.sh(
            cabinet,
            "systemctl is-active kloudctl-rest-server.service kloudctl-replication-run.timer "
            "kloudctl-replication-check.timer kloudctl-prune-hosted.timer",
        )
        assert units.stdout.split() == ["active"] * 4
        assert "Monitoring-plugin check" in pair.kloudctl(cabinet, "check", "--help")[1]
        # Secrets on the cabinet are root's only; none is generated there.
        modes = pair.sh(cabinet, f"stat -c '%a %n' {STATE}/secrets {STATE}/secrets/*").stdout
        assert modes.splitlines()[0].startswith("700 ")
        assert all(line.startswith("600 ") for line in modes.splitlines()[1:])
    # The controller now reaches each cabinet over SSH and each rest-server over TLS.
    endpoints = pair.layout.endpoints()["cabinets"]
    assert set(endpoints) == set(NAMES)
    assert all(e["server"]["url"].startswith("https://") for e in endpoints.values())


def test_backup_copy_and_the_lag_falls_to_the_runs_age(pair: Pair) -> None:
    code, out = pair.cli("replication", "check", "alpha")
    assert code == st.CRITICAL and "repository does not exist" in out, out

    # What the timer runs, as systemd runs it.
    pair.sh("alpha", f"systemctl start {RUN_UNIT}")
    code, out = pair.cli("replication", "status", "alpha", "--json")
    assert code == 0, out
    [row] = json.loads(out)
    assert row["unreplicated"] == 0 and row["local_snapshots"] == 2, row
    assert row["peer_snapshots"] == 2 and row["newest_copied_original"], row

    time.sleep(2)
    _code, before = pair.check_json("alpha")
    lag_before = before["jobs"][0]["lag_seconds"]
    started = time.time()
    code, out = pair.cli("replication", "run", "alpha", "--json")
    assert code == 0, out
    steps = {s["step"] for s in json.loads(out)[0]["steps"]}
    assert {"backup:paths", "backup:cmd:db", "copy:beta", "prune:local", "check:local"} <= steps
    code, out = pair.cli("replication", "check", "alpha", "--json")
    assert code == st.OK, out
    lag_after = json.loads(out)["jobs"][0]["lag_seconds"]
    assert lag_after < lag_before
    assert lag_after <= time.time() - started + 1  # the age of this run's snapshot


def test_source_credentials_cannot_delete_or_rewrite_on_the_peer(pair: Pair) -> None:
    peer_url = pair.layout.endpoint("beta").server.url  # type: ignore[union-attr]
    secrets = f"{STATE}/secrets"
    # alpha's own identity and key to its copy on beta, as an intruder on alpha has them.
    as_alpha = (
        f"export RESTIC_PASSWORD_FILE={secrets}/alpha@beta.password "
        f"RESTIC_REST_USERNAME=alpha RESTIC_REST_PASSWORD=$(cut -d: -f2- {secrets}/alpha@beta.rest); "
        f"restic --cacert {STATE}/certs/beta.pem -r rest:{peer_url}/alpha/ "
    )  # fmt: skip
    owner = (
        "RESTIC_PASSWORD_FILE=/etc/kloudctl-rest-server/owner-keys/alpha.password "
        "restic --json -r /var/lib/kloudctl-rest-server/alpha "
    )
    before = json.loads(pair.sh("beta", owner + "snapshots").stdout)
    victim = before[0]["id"]
    forget = pair.sh("alpha", as_alpha + f"forget {victim} 2>&1", check=False)
    assert "403" in forget.stdout, forget.stdout
    prune = pair.sh("alpha", as_alpha + "forget --keep-last 1 --prune 2>&1", check=False)
    assert prune.returncode != 0 or "403" in prune.stdout, prune.stdout
    # Straight to the REST API: deleting is refused; another cabinet's folder is not ours.
    curl = (
        f"curl -s -o /dev/null -w '%{{http_code}}' --cacert {STATE}/certs/beta.pem "
        f"-u alpha:$(cut -d: -f2- {secrets}/alpha@beta.rest) "
    )
    deleted = pair.sh("alpha", curl + f"-X DELETE {peer_url}/alpha/snapshots/{victim}")
    assert deleted.stdout == "403"
    other = pair.sh("alpha", curl + f"{peer_url}/beta/config")
    assert other.stdout in ("401", "403", "404")
    after = json.loads(pair.sh("beta", owner + "snapshots").stdout)
    assert {s["id"] for s in after} == {s["id"] for s in before}
    assert pair.sh("beta", owner + "check").returncode == 0


def test_peer_down_is_warning_then_critical_past_the_rpo(pair: Pair) -> None:
    _code, doc = pair.check_json("alpha")
    newest = doc["jobs"][0]["newest_copied"]
    pair.sh("beta", "systemctl stop kloudctl-rest-server.service")
    try:
        code, doc = pair.check_json("alpha", "--now", str(newest + 3600))
        assert code == st.WARNING, doc
        assert doc["jobs"][0]["peer_reachable"] is False and "unreachable" in doc["summary"]
        code, doc = pair.check_json("alpha", "--now", str(newest + 7 * 3600))
        assert code == st.CRITICAL and "past the RPO" in doc["summary"], doc
        # The controller says the same (it asks the cabinet).
        code, out = pair.cli("replication", "check", "alpha", "--now", str(newest + 3600))
        assert code == st.WARNING, out
    finally:
        pair.sh("beta", "systemctl start kloudctl-rest-server.service")
    code, doc = pair.check_json("alpha", "--now", str(newest + 4 * 3600))
    assert code == st.WARNING and "past half the RPO" in doc["summary"], doc


def test_restore_test_from_the_peer(pair: Pair) -> None:
    code, out = pair.cli(
        "replication", "restore-test", "alpha", "--sample", "4", "--seed", "1", "--json"
    )
    assert code == 0, out
    [report] = json.loads(out)
    assert report["ok"] and len(report["files"]) == 4, report
    assert all(f["result"] == "identical" for f in report["files"]), report


def test_runs_never_overlap(pair: Pair) -> None:
    lock = f"{STATE}/cabinets/alpha/run.lock"
    # (blocking flock: a probe below holding the lock for an instant only delays it)
    pair.sh("alpha", f"nohup flock {lock} sleep 30 >/dev/null 2>&1 &")
    try:
        deadline = time.time() + 30
        # held once a second taker is refused (flock -n exits 1)
        while pair.sh("alpha", f"flock -n {lock} true", check=False).returncode == 0:
            assert time.time() < deadline, "the run lock was never taken"
            time.sleep(0.1)
        code, out = pair.kloudctl("alpha", "run", "alpha")
        assert code == 1 and "already in progress" in out, out
    finally:
        pair.sh("alpha", "pkill -f 'sleep 30'", check=False)


def test_killed_run_leaves_a_consistent_repository(pair: Pair) -> None:
    """SIGKILL to the whole run (kloudctl and restic) in the middle of a large backup:
    `restic check` passes and the next run completes."""
    pair.sh("alpha", "head -c 300000000 /dev/urandom > /srv/data/big.bin")
    # "running, locks held, packs written": the backup is under way once restic runs, holds
    # its lock in the repository and has written a pack since the start. ([r]: the pattern
    # must not match the probe's own shell.)
    probe = (
        "echo $(pgrep -f '[r]estic.*backup' >/dev/null && echo 1 || echo 0)"
        f" $(ls {LOCAL_REPO}/locks | wc -l) $(find {LOCAL_REPO}/data -type f | wc -l)"
    )
    packs_before = int(pair.sh("alpha", probe).stdout.split()[2])
    pair.sh("alpha", f"systemctl start --no-block {RUN_UNIT}")
    deadline = time.time() + 60
    while True:
        running, locks, packs = map(int, pair.sh("alpha", probe).stdout.split())
        if running and locks and packs > packs_before:
            break
        assert time.time() < deadline, "the backup was never seen writing to the repository"
        time.sleep(0.1)
    pair.sh("alpha", f"systemctl kill --signal=SIGKILL {RUN_UNIT}")
    state = pair.sh("alpha", f"systemctl show -p ActiveState,Result {RUN_UNIT}").stdout
    assert "Result=signal" in state or "ActiveState=failed" in state, state
    # The killed restic left its lock behind (it was killed mid-backup): `unlock` removes
    # stale locks only (the runner does the same before retrying), then the repository
    # must check clean.
    assert pair.sh("alpha", f"ls {LOCAL_REPO}/locks").stdout.split(), "no lock left behind"
    restic = ALPHA_LOCAL_RESTIC
    check = pair.sh("alpha", restic + "unlock 2>&1; " + restic + "check 2>&1", check=False)
    assert check.returncode == 0 and "no errors were found" in check.stdout, check.stdout
    code, out = pair.kloudctl("alpha", "run", "alpha", "--json")
    assert code == 0, out
    pair.sh("alpha", "rm -f /srv/data/big.bin")


def test_a_corrupted_pack_is_detected(pair: Pair) -> None:
    # A pack the index references (the killed run may have left unreferenced ones, which
    # checks do not read and prune removes).
    restic = ALPHA_LOCAL_RESTIC
    listed = pair.sh(
        "alpha", f"for i in $({restic} list index); do {restic} --json cat index $i; echo; done"
    ).stdout
    indexes, pos, decoder = [], 0, json.JSONDecoder()
    while listed[pos:].strip():
        pos += len(listed[pos:]) - len(listed[pos:].lstrip())
        index, pos = decoder.raw_decode(listed, pos)
        indexes.append(index)
    referenced = sorted(
        pack["id"] for index in indexes for pack in index.get("packs", []) if pack.get("blobs")
    )
    victim = referenced[len(referenced) // 2]
    flip = (
        "import pathlib\n"
        f"p = next(pathlib.Path('{LOCAL_REPO}/data').rglob('{victim}'))\n"
        "b = bytearray(p.read_bytes()); b[len(b) // 2] ^= 0xFF\n"
        "p.chmod(0o644); p.write_bytes(bytes(b)); print(p)\n"
    )
    pair.sh("alpha", f"python3 -c {shlex.quote(flip)}")
    start, day = time.time(), 86400
    found = None
    for n in range(8):  # daily slices of 1/7: the whole repository within a week
        # (days pass on the injected clock: the lag is CRITICAL anyway, look at the check)
        code, doc = pair.check_json("alpha", "--integrity", "--now", str(start + n * day))
        if doc["jobs"][0]["integrity"]["local"]["ok"] is False:
            found = doc
            break
    assert found is not None, "a week of daily slices must read the corrupted pack"
    assert code == st.CRITICAL and "integrity check failed: local" in found["summary"], found
    # Today, with a fresh copy on the peer, the failed check alone makes it CRITICAL.
    code, doc = pair.check_json("alpha")
    assert code == st.CRITICAL and "integrity check failed: local" in doc["summary"], doc


def test_restore_from_the_peer_after_the_source_repository_is_gone(
    pair: Pair, tmp_path: Path
) -> None:
    """alpha's repository is deleted; the controller restores from alpha's copy on beta,
    with the keys it keeps, byte-identical to alpha's file."""
    pair.sh("alpha", f"rm -rf {LOCAL_REPO}")
    from kloudctl.model import load_fleet
    from kloudctl.replication.ops import Replicator

    rep = Replicator(load_fleet(pair.root), pair.layout)
    target = tmp_path / "restored"
    restore_from_peer(rep, "alpha", "beta", target, ["/srv/data/file-3.bin"])
    restored = (target / "srv" / "data" / "file-3.bin").read_bytes()
    original = subprocess.run(
        ["podman", "exec", pair.bed.hosts["alpha"].container, "cat", "/srv/data/file-3.bin"],
        capture_output=True,
        check=True,
    ).stdout
    assert hashlib.sha256(restored).digest() == hashlib.sha256(original).digest()
    assert not (target / "srv" / "data" / "scratch.tmp").exists()
