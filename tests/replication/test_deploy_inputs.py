"""What `kloudctl replication deploy` hands to Ansible, checked without hosts: the roles'
inputs computed from the fleet, secrets only as lookups read on the controller at run
time, and bad input refused (exit 2) before anything runs."""

from __future__ import annotations

import json
from pathlib import Path

from kloudctl import ansible_inventory as inventory
from kloudctl.hosts.timers import on_calendar
from kloudctl.model import load_fleet
from kloudctl.replication.deploy import endpoint_entry
from kloudctl.replication.layout import Layout

REPO = Path(__file__).resolve().parents[2]


def test_roles_inputs_come_from_the_fleet_and_hold_no_secret(tmp_path: Path) -> None:
    fleet = load_fleet(REPO)
    inv = inventory.build(fleet)
    groups = {name: sorted(g["hosts"]) for name, g in inv["groups"].items()}
    assert groups["replication_sources"] == ["brieux", "mortree", "saint-aubin"]
    brieux = inv["hostvars"]["brieux"]
    assert brieux["replication_source__run_on_calendar"] == "hourly"
    [peer] = brieux["replication_source__peers"]
    assert peer["name"] == "saint-aubin"
    assert peer["url"] == "https://{{ hostvars['saint-aubin'].ansible_host }}:8000"
    assert isinstance(peer["url"], inventory.Template)  # the plugin trusts only these
    assert set(brieux["replication_source__secrets"]) == {
        "brieux.local.password",
        "brieux@saint-aubin.password",
        "brieux@saint-aubin.owner.password",
        "brieux@saint-aubin.rest",
    }
    for value in brieux["replication_source__secrets"].values():
        assert value.startswith("{{ lookup('ansible.builtin.file', kloudctl_replication_state")
    # Mortrée replicates to Brieux: Brieux hosts its copy and prunes it by age.
    [source] = brieux["replication_target__sources"]
    assert source["name"] == "mortree" and source["keep_within"] == "7d"
    assert "| regex_replace('^[^:]*:', '')" in source["htpasswd"]
    # Nothing in the inventory is a secret of the state folder.
    layout = Layout(tmp_path / "state")
    layout.ensure_secrets(fleet, ["brieux", "mortree"])
    text = json.dumps(inv["hostvars"])
    for path in layout.secrets.iterdir():
        assert path.read_text().strip().split(":")[-1] not in text


def test_on_calendar_follows_the_policy_interval() -> None:
    """The one computation (systemd reads its every calendar back in
    tests/federation/test_backup_calendar.py): an interval no calendar repeats evenly runs
    at the longest period that does, never less often."""
    assert on_calendar(3600) == "hourly"
    assert on_calendar(4 * 3600) == "00/4:00:00"
    assert on_calendar(7 * 3600) == "00/6:00:00"
    assert on_calendar(900) == "*:00/15:00"
    assert on_calendar(86400) == "daily"
    assert on_calendar(3 * 86400) == "daily"
    assert on_calendar(7 * 86400) == "weekly"


def test_endpoint_of_a_deployed_cabinet_says_how_ssh_reaches_it(tmp_path: Path) -> None:
    hostvars = {
        "ansible_host": "10.89.0.10",
        "ansible_user": "root",
        "ansible_ssh_private_key_file": "/k/id",
        "ansible_ssh_common_args": "-o UserKnownHostsFile=/k/known_hosts -o 'ConnectTimeout=5'",
    }
    entry = endpoint_entry(Layout(tmp_path), "beta", hostvars, hosts_copies=True)
    assert entry["ssh"]["options"] == [
        "-i", "/k/id", "-o", "UserKnownHostsFile=/k/known_hosts", "-o", "ConnectTimeout=5",
    ]  # fmt: skip
    assert entry["server"] == {
        "url": "https://10.89.0.10:8000",
        "cacert": str(tmp_path / "certs" / "beta.pem"),
    }
    assert "server" not in endpoint_entry(Layout(tmp_path), "a", hostvars, hosts_copies=False)


def test_deploy_refuses_an_unknown_cabinet_before_anything_runs(kloudctl, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    state = tmp_path / "state"
    result = kloudctl(
        "--fleet", str(REPO), "replication", "deploy", "brieu", "--no-testbed",
        "--state-dir", str(state),
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "no cabinet named 'brieu'" in result.stderr and "did you mean 'brieux'" in result.stderr
    assert not state.exists()


def test_a_cabinet_never_makes_its_own_keys(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    layout.write_endpoints({"generate_secrets": False, "cabinets": {}})
    try:
        layout.secret("alpha.local.password")
    except Exception as exc:  # NotFound: exit 2, naming the missing file
        assert "alpha.local.password is missing" in str(exc)
    else:
        raise AssertionError("a missing secret on a cabinet must be an error")
    assert not (tmp_path / "secrets" / "alpha.local.password").exists()


def test_a_deployed_cabinet_that_does_not_answer(kloudctl, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """alpha is deployed (endpoints say SSH) but nothing answers (loopback, closed port):
    `run` fails that step (exit 1: its only cabinet failed; 3 is for some failing among
    others), `status` says why (exit 1), `check` looks from the controller."""
    from kloudctl.testbed.fleets import make_fleet

    root = make_fleet(tmp_path / "fleet", ["alpha", "beta"])
    state = tmp_path / "state"
    ssh = {"address": "127.0.0.1", "options": ["-p", "1", "-o", "ConnectTimeout=3"]}
    Layout(state).write_endpoints({"cabinets": {"alpha": {"ssh": ssh}}})
    base = ("--fleet", str(root), "replication")
    tail = ("--state-dir", str(state))
    run = kloudctl(*base, "run", "alpha", "--json", *tail)
    assert run.returncode == 1, run.stderr
    [report] = json.loads(run.stdout)
    assert report["steps"][0]["step"] == "ssh" and "ssh root@127.0.0.1 failed" in run.stdout
    status = kloudctl(*base, "status", "alpha", *tail)
    assert status.returncode == 1 and "ssh root@127.0.0.1" in status.stdout, status.stderr
    check = kloudctl(*base, "check", "alpha", "--json", *tail)
    doc = json.loads(check.stdout)
    assert check.returncode == doc["code"] == 3, check.stdout  # no copy ever seen: UNKNOWN
    assert "cabinet alpha unreachable" in doc["jobs"][0]["reason"]
