"""The simulator's usage log: which methods each client used and what it answered; the
session report `kloudctl sim coverage --usage` reads; a test reaching a 501 fails."""

from __future__ import annotations

import json
import ssl
import textwrap
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from kloudctl.cli import cli
from kloudctl.proxmox.client import Client
from kloudctl.sim.testing import RunningSim, running_sim
from kloudctl.sim.usage import CLIENT_HEADER, client_of
from tests.sim.simhelpers import error_of, root_api

REPO = Path(__file__).resolve().parents[2]


def counts(sim: RunningSim) -> dict[tuple[str, str, str, int], int]:
    return dict(sim.simulator.usage.counts)


@pytest.fixture
def fresh_sim(sim_fleet):
    """A simulator of its own: its usage log starts empty."""
    with running_sim(["brieux"], fleet=sim_fleet, task_seconds=0.05) as sim:
        yield sim


@pytest.mark.expects_501
def test_each_client_and_status_is_counted_per_schema_method(fresh_sim):
    ep = fresh_sim["brieux"]
    root = root_api(ep)  # proxmoxer: requests' default User-Agent
    root.nodes("pve1").qemu.get()
    root.nodes("pve1").qemu.get()
    assert error_of(root.nodes("pve1").ceph.osd.get).status_code == 501
    own = Client.login(ep.url, ep.fingerprint, "root@pam", ep.root_password, component="status")
    own.get("nodes/pve2/qemu")
    got = counts(fresh_sim)
    assert got[("proxmoxer", "GET", "/nodes/{node}/qemu", 200)] == 2
    assert got[("proxmoxer", "GET", "/nodes/{node}/ceph/osd", 501)] == 1
    assert got[("proxmoxer", "POST", "/access/ticket", 200)] == 1
    assert got[("kloudctl:status", "GET", "/nodes/{node}/qemu", 200)] == 1
    assert got[("kloudctl:status", "POST", "/access/ticket", 200)] == 1
    # the 501 is kept as an event too, in order, for the test harness
    assert fresh_sim.simulator.usage.unimplemented == [
        ("proxmoxer", "GET", "/nodes/{node}/ceph/osd")
    ]


def test_a_label_header_names_the_client_and_failures_count_under_their_method(fresh_sim):
    ep = fresh_sim["brieux"]
    req = urllib.request.Request(
        f"{ep.url}/api2/json/nodes/pve1/qemu", headers={CLIENT_HEADER: "harness"}
    )
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # a 401 is all this asks for; no secret is sent
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(req, context=ctx, timeout=10)
    assert caught.value.code == 401
    assert counts(fresh_sim) == {("harness", "GET", "/nodes/{node}/qemu", 401): 1}


def test_a_playbook_run_is_named_while_the_harness_says_so(fresh_sim):
    ep = fresh_sim["brieux"]
    with fresh_sim.clients_named("ansible:community.proxmox"):
        root_api(ep).version.get()
    root_api(ep).version.get()
    got = counts(fresh_sim)
    assert got[("ansible:community.proxmox", "GET", "/version", 200)] == 1
    assert got[("proxmoxer", "GET", "/version", 200)] == 1


@pytest.mark.parametrize(
    ("label", "agent", "client"),
    [
        (None, "kloudctl/1.2.0 (pulumi-provider)", "kloudctl:pulumi-provider"),
        (None, "kloudctl/0.0.0+source", "kloudctl:core"),
        (None, "python-requests/2.32.3", "proxmoxer"),
        (None, "curl/8.0", "other"),
        ("ansible", "python-requests/2.32.3", "ansible"),
        ("bad label with spaces", "python-requests/2.32.3", "proxmoxer"),
    ],
)
def test_client_names(label, agent, client):
    assert client_of(label, agent) == client


def test_control_endpoint_serves_the_usage_and_stop_writes_it(sim_fleet, tmp_path):
    with running_sim(["brieux"], fleet=sim_fleet, state_dir=tmp_path) as sim:
        ep = sim["brieux"]
        root_api(ep).version.get()
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # the fingerprint is checked in test_sim_auth.py
        req = urllib.request.Request(
            f"{ep.url}/_sim/usage", headers={"X-Sim-Control": sim.simulator.control_token}
        )
        with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
            served = json.loads(resp.read())
    assert {"client": "proxmoxer", "method": "GET", "path": "/version", "status": 200,
            "count": 1} in served["records"]  # fmt: skip
    assert json.loads((tmp_path / "usage.json").read_text()) == served


@pytest.mark.expects_501
def test_coverage_shows_methods_per_client_and_the_501s(fresh_sim, tmp_path):
    ep = fresh_sim["brieux"]
    root = root_api(ep)
    root.nodes("pve1").qemu.get()
    error_of(root.nodes("pve1").ceph.osd.get)
    usage = tmp_path / "usage.json"
    usage.write_text(json.dumps(fresh_sim.simulator.usage.to_report()))
    out = CliRunner().invoke(cli, ["sim", "coverage", "--usage", str(usage), "--json"])
    assert out.exit_code == 0, out.output
    used = json.loads(out.output)["usage"]
    (proxmoxer,) = used["clients"]
    assert proxmoxer["client"] == "proxmoxer"
    by_path = {(m["method"], m["path"]): m for m in proxmoxer["methods"]}
    assert by_path[("GET", "/nodes/{node}/qemu")]["statuses"] == {"200": 1}
    assert by_path[("GET", "/nodes/{node}/qemu")]["simulated"] is True
    assert by_path[("GET", "/nodes/{node}/ceph/osd")]["simulated"] is False
    assert used["unimplemented"] == [
        {"client": "proxmoxer", "method": "GET", "path": "/nodes/{node}/ceph/osd"}
    ]
    text = CliRunner().invoke(cli, ["sim", "coverage", "--usage", str(usage)]).output
    assert "Methods used by proxmoxer" in text
    assert "501 answered" in text and "/nodes/{node}/ceph/osd" in text


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{\n  nope", "line 2: not JSON"),
        ('{"version": 1, "records": [{"client": "x"}]}', "records[0].method: expected a string"),
        ('{"version": 9, "records": []}', "version: expected 1"),
    ],
)
def test_coverage_refuses_a_bad_usage_file(tmp_path, kloudctl, content, message):
    usage = tmp_path / "usage.json"
    usage.write_text(content)
    out = kloudctl("sim", "coverage", "--usage", str(usage))
    assert out.returncode == 2, out.stderr
    assert str(usage) in out.stderr and message in out.stderr
    assert "Traceback" not in out.stderr


def test_a_test_reaching_a_501_fails_naming_the_method(pytester, monkeypatch):
    """The harness itself (tests/conftest.py), in a pytest run of its own."""
    pytester.makeconftest("from tests.conftest import *  # noqa: F403\n")
    pytester.makepyfile(
        test_reach=textwrap.dedent(
            """
            import pytest
            from tests.sim.simhelpers import error_of, root_api

            def test_reaches(pve_sim):
                error_of(root_api(pve_sim["brieux"]).nodes("pve1").ceph.osd.get)

            @pytest.mark.expects_501
            def test_means_to(pve_sim):
                error_of(root_api(pve_sim["brieux"]).nodes("pve1").ceph.mon.get)

            def test_clean(pve_sim):
                root_api(pve_sim["brieux"]).version.get()
            """
        )
    )
    report = pytester.path / "usage.json"
    monkeypatch.setenv("KLOUDCTL_SIM_USAGE", str(report))
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-W", "ignore::urllib3.exceptions.InsecureRequestWarning",
        "-o", "markers=expects_501: on purpose",
    )  # fmt: skip
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        ["*test_reach.py::test_reaches reached methods the simulator does not simulate (501):"
         " GET /nodes/{node}/ceph/osd (by proxmoxer)*"]
    )  # fmt: skip
    written = json.loads(report.read_text())
    assert [(e["path"], e["test"].split("::")[-1]) for e in written["unimplemented"]] == [
        ("/nodes/{node}/ceph/osd", "test_reaches"),
        ("/nodes/{node}/ceph/mon", "test_means_to"),
    ]
