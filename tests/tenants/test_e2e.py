"""End to end: the real Pulumi engine and our dynamic providers against `kloudctl sim`.

Nothing is mocked: the Pulumi CLI (built by the tools step) runs the inline program, its
dynamic-provider shim runs our providers, which talk HTTPS (pinned fingerprint, API
tokens) to the simulator. One simulator and one applied fleet are shared by the module:
the `sim` fixture applies the three example cabinets once, and every test that changes the
fleet leaves it converged (the declaration applied, every tenant and cabinet present), so
no test depends on another having run before it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("kloudctl.sim.server", reason="needs the simulator (kloudctl sim)")

from kloudctl.errors import AdmissionRefused, ApplyFailed, InputError, NotFound, StackBusy
from kloudctl.tenants.engine import TenantsStack, find_pulumi, pulumi_env, state_paths
from kloudctl.tenants.simtargets import bootstrap_target
from kloudctl.testbed.simfleet import CABINETS, SimFleet, start_sim_fleet

try:
    find_pulumi()
except Exception:  # pragma: no cover - depends on the tools step
    pytest.skip("needs the Pulumi CLI (make tools)", allow_module_level=True)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.pulumi,
    # the tests' own root/tenant clients do not pin the simulator's certificate
    pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning"),
    # Pulumi's inline-program host closes its callback server after the loop is gone
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]
GIB = 1024**3
ROOT = Path(__file__).resolve().parents[2]
KLOUDCTL = str(Path(sys.executable).parent / "kloudctl")


@pytest.fixture(scope="module")
def first_applies(tmp_path_factory) -> Iterator[tuple[SimFleet, dict[str, Any]]]:
    """The simulator serving the example fleet, and the result of applying each of its
    cabinets once: what every test of the module starts from."""
    workdir = tmp_path_factory.mktemp("tenants-e2e")
    fleet = start_sim_fleet(workdir, bootstrap=bootstrap_target)
    old = os.environ.get("KLOUDCTL_PROXMOX_TARGETS")
    os.environ.pop("KLOUDCTL_PROXMOX_TARGETS", None)
    try:
        yield fleet, {cabinet: run(fleet, cabinet, "apply") for cabinet in CABINETS}
    finally:
        fleet.stop()
        if old is not None:
            os.environ["KLOUDCTL_PROXMOX_TARGETS"] = old


@pytest.fixture
def sim(first_applies: tuple[SimFleet, dict[str, Any]]) -> SimFleet:
    """The module's simulator, its three example cabinets applied."""
    return first_applies[0]


def run(sim: SimFleet, cabinet: str, action: str, **kw):
    return TenantsStack(sim.fleet(), sim.root, cabinet).run(action, **kw)


def cli(sim: SimFleet, *args: str, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [KLOUDCTL, "--fleet", str(sim.root), *args],
        capture_output=True,
        text=True,
        timeout=600,
        **kw,
    )


def ops(result, name: str) -> set[str]:
    return {
        s.op for s in result.steps if s.name == name and s.status != "planned" and s.op != "same"
    }


# --- apply and no-op ----------------------------------------------------------------------


def test_apply_the_three_example_cabinets(first_applies):
    sim, results = first_applies
    for cabinet in CABINETS:
        result = results[cabinet]
        assert result.changes.get("create", 0) > 0, result.changes
        declared = sim.fleet().cabinet(cabinet)
        guests = sim.guests(cabinet)
        api = sim.root_api(cabinet)
        pools = {p["poolid"] for p in api.pools.get()}
        for tenant in declared.tenants:
            assert tenant.name in pools
            for vm in tenant.vms:
                guest = guests[vm.name]
                assert guest["pool"] == tenant.name
                config = api.nodes(guest["node"]).qemu(guest["vmid"]).config.get()
                assert int(str(config["memory"]).split(",")[0].split("=")[-1]) == vm.memory // 2**20
                assert int(config["cores"]) == vm.cores
                assert "tag=" in config["net0"] and "firewall=1" in config["net0"]
                assert config["ipconfig0"].startswith("ip=")
                assert int(config["onboot"]) == 1


def test_second_plan_shows_zero_changes(sim):
    for cabinet in CABINETS:
        result = run(sim, cabinet, "plan")
        assert result.changed == 0, result.changes


def test_plain_pulumi_cli_runs_the_same_project_and_sees_no_change(sim, tmp_path):
    """`pulumi preview` in a copy of pulumi/ (the language host, not the Automation API),
    on kloudctl's stack and state: the same program, so nothing to change."""
    project = tmp_path / "project"
    project.mkdir()
    venv = Path(sys.executable).parent.parent
    text = (ROOT / "pulumi" / "Pulumi.yaml").read_text()
    (project / "Pulumi.yaml").write_text(text.replace("../.venv", str(venv)))
    shutil.copy(ROOT / "pulumi" / "__main__.py", project)
    state = sim.root / ".state" / "pulumi"
    shutil.copy(state / "work" / "Pulumi.brieux.yaml", project)
    env = {**os.environ, **pulumi_env(state_paths(sim.root))}
    done = subprocess.run(
        [find_pulumi(), "preview", "--stack", "brieux", "--non-interactive", "--expect-no-changes"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert sim.targets["brieux"]["secret"] not in done.stdout + done.stderr


def test_no_secret_in_plaintext_state(sim):
    state = sim.root / ".state" / "pulumi"
    passphrase = state / "passphrase"
    assert passphrase.stat().st_mode & 0o777 == 0o600
    blob = "\n".join(
        p.read_text(errors="replace")
        for p in state.rglob("*")
        if p.is_file() and p != passphrase and p.stat().st_size < 50_000_000
    )
    outputs = TenantsStack(sim.fleet(), sim.root, "brieux").outputs()
    tenant_secrets = list(outputs["token_secrets"].values())
    assert tenant_secrets and all(tenant_secrets)
    for secret in [t["secret"] for t in sim.targets.values()] + tenant_secrets:
        assert secret not in blob


def test_cli_plan_prints_no_changes(sim):
    done = cli(sim, "tenants", "plan", "brieux")
    assert done.returncode == 0, done.stderr
    assert "no changes" in done.stdout
    secret = sim.targets["brieux"]["secret"]
    assert secret not in done.stdout + done.stderr


# --- isolation ------------------------------------------------------------------------------


def test_tenant_token_is_refused_on_another_tenants_guests(sim):
    done = cli(sim, "tenant", "token", "brieux", "boulangerie-leroy", "--json")
    assert done.returncode == 0, done.stderr
    import json

    creds = json.loads(done.stdout)
    assert creds["PROXMOX_TOKEN_ID"] == "boulangerie-leroy@pve!kloudctl"
    api = sim.api_as("brieux", creds["PROXMOX_TOKEN_ID"], creds["PROXMOX_TOKEN_SECRET"])
    guests = sim.guests("brieux")
    own, other = guests["leroy-shop"], guests["brieux-web"]
    assert api.nodes(own["node"]).qemu(own["vmid"]).config.get()["name"] == "leroy-shop"
    from proxmoxer.core import ResourceException

    with pytest.raises(ResourceException) as refused:
        api.nodes(other["node"]).qemu(other["vmid"]).config.get()
    assert refused.value.status_code == 403
    with pytest.raises(ResourceException):
        api.nodes(other["node"]).qemu(other["vmid"]).config.put(memory=512)
    visible = {g.get("name") for g in api.cluster.resources.get(type="vm")}
    assert "leroy-shop" in visible and "brieux-web" not in visible


def test_a_guest_moved_by_ha_causes_no_drift(sim):
    web = sim.guests("brieux")["brieux-web"]
    sim.fault("brieux", kind="move_guest", vmid=web["vmid"])
    assert sim.guests("brieux")["brieux-web"]["node"] != web["node"]
    run(sim, "brieux", "refresh")
    assert run(sim, "brieux", "plan").changed == 0


# --- changes ---------------------------------------------------------------------------------


def test_memory_change_updates_in_place(sim):
    before = sim.guests("brieux")["brieux-web"]
    sim.edit(
        "brieux",
        "name: brieux-web, template: debian-12-cloud, cores: 2, memory: 2GiB",
        "name: brieux-web, template: debian-12-cloud, cores: 2, memory: 3GiB",
    )
    result = run(sim, "brieux", "apply")
    assert ops(result, "brieux-web") == {"update"}, result.steps
    after = sim.guests("brieux")["brieux-web"]
    assert after["vmid"] == before["vmid"]
    config = sim.root_api("brieux").nodes(after["node"]).qemu(after["vmid"]).config.get()
    assert str(config["memory"]).endswith("3072")
    assert run(sim, "brieux", "plan").changed == 0


def test_disk_shrink_is_refused_with_a_clear_error(sim):
    # brieux-web's disk (the only guest with this load), whatever its memory is now
    sim.edit("brieux", "disk: 32GiB, load: 0.15,", "disk: 16GiB, load: 0.15,")
    try:
        with pytest.raises(ApplyFailed) as failed:
            run(sim, "brieux", "plan")
        assert "cannot shrink from 32GiB to 16GiB" in str(failed.value)
    finally:
        sim.edit("brieux", "disk: 16GiB, load: 0.15,", "disk: 32GiB, load: 0.15,")


def test_template_change_replaces_the_guest(sim):
    api = sim.root_api("brieux")
    template = next(g for g in api.cluster.resources.get(type="vm") if g.get("template"))
    node = api.nodes(template["node"])
    node.qemu(template["vmid"]).clone.post(newid=9001, name="debian-12-cloud-v2", full=1)
    _wait_unlocked(api, template["node"], 9001)
    node.qemu(9001).template.post()
    sim.edit(
        "brieux",
        "template: debian-12-cloud\n        cores: 2\n        memory: 3GiB",
        "template: debian-12-cloud-v2\n        cores: 2\n        memory: 3GiB",
    )
    result = run(sim, "brieux", "apply")
    assert "replace" in ops(result, "fetes-nextcloud") or {
        "create-replacement",
        "delete-replaced",
    } <= ops(result, "fetes-nextcloud"), result.steps
    assert "fetes-nextcloud" in sim.guests("brieux")
    assert run(sim, "brieux", "plan").changed == 0


def _wait_unlocked(api, node, vmid, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if "lock" not in api.nodes(node).qemu(vmid).config.get():
                return
        except Exception:
            pass
        time.sleep(0.1)
    raise AssertionError(f"guest {vmid} still locked")


def test_removing_a_tenant_destroys_its_pool_guests_and_identities(sim):
    path = sim.cabinet_file("brieux")
    text = path.read_text()
    start = text.index("  - name: comite-des-fetes")
    end = text.index("\nmail:", start) + 1
    path.write_text(text[:start] + text[end:])
    try:
        run(sim, "brieux", "apply")
        api = sim.root_api("brieux")
        assert "comite-des-fetes" not in {p["poolid"] for p in api.pools.get()}
        assert "fetes-nextcloud" not in sim.guests("brieux")
        assert "comite-des-fetes@pve" not in {u["userid"] for u in api.access.users.get()}
        assert "tenant-comite-des-fetes" not in {g["groupid"] for g in api.access.groups.get()}
        assert not [a for a in api.access.acl.get() if "comite-des-fetes" in a.get("ugid", "")]
        # the other tenants are untouched
        assert {"brieux-web", "leroy-shop"} <= set(sim.guests("brieux"))
    finally:  # the tenant comes back, for the tests that use it
        path.write_text(text)
        run(sim, "brieux", "apply")
    assert "fetes-nextcloud" in sim.guests("brieux")


# --- faults -------------------------------------------------------------------------------


def test_injected_5xx_and_lock_timeouts_are_survived(sim):
    web = sim.guests("saint-aubin")["staubin-web"]
    sim.fault("saint-aubin", kind="error_rate", rate=0.25)
    sim.fault("saint-aubin", kind="lock_timeout", vmid=web["vmid"])
    sim.fault("saint-aubin", kind="no_worker_upid", count=2)
    sim.fault("saint-aubin", kind="status_400", count=3)
    clear = threading.Timer(2.0, lambda: sim.fault("saint-aubin", kind="clear"))
    clear.start()
    try:
        sim.edit(
            "saint-aubin",
            "staubin-web, template: debian-12-cloud, cores: 2",
            "staubin-web, template: debian-12-cloud, cores: 3",
        )
        result = run(sim, "saint-aubin", "apply")
        assert result.changed >= 1
    finally:
        clear.join()
        sim.fault("saint-aubin", kind="clear")
    assert run(sim, "saint-aubin", "plan").changed == 0


def test_task_failure_fails_the_apply_with_proxmox_message_and_rerun_converges(sim):
    sim.fault("mortree", kind="task_failure", count=1, message="storage 'local-lvm' is full")
    sim.edit("mortree", "memory: 2GiB, disk: 32GiB", "memory: 2GiB, disk: 40GiB")
    try:
        with pytest.raises(ApplyFailed) as failed:
            run(sim, "mortree", "apply")
        assert "storage 'local-lvm' is full" in str(failed.value)
    finally:
        sim.fault("mortree", kind="clear")
    run(sim, "mortree", "apply")
    assert run(sim, "mortree", "plan").changed == 0


def _kill_marked(marker: str) -> None:
    """SIGKILL every process whose environment holds `marker` (what a killed run left)."""
    needle = marker.encode() + b"\0"
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if needle in environ.read_bytes():
                os.kill(int(environ.parent.name), signal.SIGKILL)
        except (OSError, ValueError):
            pass  # gone already, or not ours to read


def test_a_run_killed_mid_apply_is_recovered_by_the_next(sim):
    # One guest stays locked, so the run is surely still going when it is killed.
    files = sim.guests("mortree")["mortree-files"]
    sim.fault("mortree", kind="lock_timeout", vmid=files["vmid"])
    sim.fault("mortree", kind="latency", ms=50)
    text = sim.cabinet_file("mortree").read_text()
    sim.cabinet_file("mortree").write_text(text.replace("cores: 2", "cores: 1"))
    # Every process of the run inherits this marker, so the plugins Pulumi started (which
    # outlive an engine killed by SIGKILL, in their own process groups) are found after.
    marker = f"KLOUDCTL_TEST_RUN={uuid.uuid4().hex}"
    proc = subprocess.Popen(
        [KLOUDCTL, "--fleet", str(sim.root), "tenants", "apply", "mortree"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, marker.split("=")[0]: marker.split("=")[1]},
    )
    try:
        _wait_for_lock(sim.root, "mortree", proc)
        _wait_for_first_change(sim, proc)  # inside the update: some guests done, some not
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        _kill_marked(marker)
    assert _locks(sim.root, "mortree"), "the killed run should have left its lock"
    sim.fault("mortree", kind="clear")
    result = run(sim, "mortree", "apply")
    assert any("recovered" in w for w in result.warnings), result.warnings
    assert run(sim, "mortree", "plan").changed == 0
    names = [g["name"] for g in sim.root_api("mortree").cluster.resources.get(type="vm")]
    assert len(names) == len(set(names)), names  # nothing duplicated
    assert not _locks(sim.root, "mortree")


def _locks(root: Path, cabinet: str) -> list[Path]:
    return list((root / ".state/pulumi/backend").glob(f".pulumi/locks/**/{cabinet}/*.json"))


def _wait_for_first_change(sim: SimFleet, proc, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    api = sim.root_api("mortree")
    while time.monotonic() < deadline and proc.poll() is None:
        for guest in sim.guests("mortree").values():
            if guest["name"] in ("foot-site", "mortree-files"):
                continue
            if int(api.nodes(guest["node"]).qemu(guest["vmid"]).config.get()["cores"]) == 1:
                return
        time.sleep(0.05)
    raise AssertionError("the apply changed nothing before it ended")


def _wait_for_lock(root: Path, cabinet: str, proc, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if list(
            (root / ".state" / "pulumi" / "backend").glob(f".pulumi/locks/**/{cabinet}/*.json")
        ):
            return
        time.sleep(0.1)
    raise AssertionError("the apply never took the stack lock")


# --- errors mapped to exit codes ---------------------------------------------------------


def test_admission_refuses_before_pulumi_is_touched(sim):
    # 8 vCPU become 998: within the schema's range, far beyond the cabinet's capacity.
    sim.edit("saint-aubin", "quota: {vcpu: ", "quota: {vcpu: 99")
    try:
        with pytest.raises(AdmissionRefused):
            run(sim, "saint-aubin", "apply")
        done = cli(sim, "tenants", "plan", "saint-aubin")
        assert done.returncode == 2 and "plan refused" in done.stderr
    finally:
        sim.edit("saint-aubin", "quota: {vcpu: 99", "quota: {vcpu: ")


def test_concurrent_update_and_missing_stack_are_mapped(sim, tmp_path):
    locks = sim.root / ".state/pulumi/backend/.pulumi/locks/organization/kloudctl-tenants/brieux"
    locks.mkdir(parents=True, exist_ok=True)
    import json
    import socket

    lock = locks / "held.json"
    lock.write_text(
        json.dumps(
            {
                "pid": os.getpid(),
                "hostname": socket.gethostname(),
                "username": "test",
                "timestamp": "now",
            }
        )
    )
    try:
        with pytest.raises(StackBusy):
            run(sim, "brieux", "apply")
        done = cli(sim, "tenants", "apply", "brieux")
        assert done.returncode == 1 and "another run" in done.stderr
    finally:
        lock.unlink()
    env = {**os.environ, "KLOUDCTL_PULUMI_STATE": str(tmp_path / "empty-state")}
    done = cli(sim, "tenants", "refresh", "brieux", env=env)
    assert done.returncode == 2 and "nothing was applied yet" in done.stderr
    with pytest.raises(NotFound):
        os.environ["KLOUDCTL_PULUMI_STATE"] = str(tmp_path / "empty-state")
        try:
            run(sim, "brieux", "refresh")
        finally:
            del os.environ["KLOUDCTL_PULUMI_STATE"]


def test_destroy_removes_every_tenant_object(sim):
    try:
        done = cli(sim, "tenants", "destroy", "saint-aubin", "--yes")
        assert done.returncode == 0, done.stderr
        api = sim.root_api("saint-aubin")
        assert sim.guests("saint-aubin") == {}
        assert [p["poolid"] for p in api.pools.get()] == []
        assert {u["userid"] for u in api.access.users.get()} == {"root@pam", "kloudctl@pve"}
        assert [g["group"] for g in api.cluster.firewall.groups.get()] == []
        template = [g for g in api.cluster.resources.get(type="vm") if g.get("template")]
        assert template, "the template is not kloudctl's: it stays"
    finally:  # applied again, for the tests that use saint-aubin
        run(sim, "saint-aubin", "apply")


# --- containers (issue 15): saint-aubin's council and music school declare LXC containers ---

MIB = 1024**2
# The music school's containers, as the example declares them
_AGENDA = (
    "    containers:\n"
    "      - name: musique-agenda\n"
    '        template: "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst"\n'
    "        cores: 1\n"
    "        memory: 512MiB\n"
    "        disk: 8GiB\n"
    "        load: 0.05\n"
    "        tags: [agenda]\n"
)


def _tenant_api(sim: SimFleet, cabinet: str, tenant: str):
    """The tenant's own API client, with the token Pulumi made for it."""
    outputs = TenantsStack(sim.fleet(), sim.root, cabinet).outputs()
    token_id = outputs["tenants"][tenant]["token_id"]
    return sim.api_as(cabinet, token_id, outputs["token_secrets"][tenant])


def _wait_task(api, node: str, upid: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = api.nodes(node).tasks(upid).status.get()
        if status["status"] == "stopped":
            return status["exitstatus"]
        time.sleep(0.05)
    raise AssertionError(f"task {upid} still running")


def test_containers_are_made_from_their_template_in_the_tenants_pool_vlan_and_firewall(
    first_applies,
):
    from kloudctl.capacity import plan_cabinet

    sim, results = first_applies
    steps = {s.name: s for s in results["saint-aubin"].steps if s.status != "planned"}
    cabinet = sim.fleet().cabinet("saint-aubin")
    plans = {t.name: t for t in plan_cabinet(cabinet).tenants}
    api = sim.root_api("saint-aubin")
    guests = sim.guests("saint-aubin")
    declared = [(t, ct) for t in cabinet.tenants for ct in t.containers]
    assert {ct.name for _, ct in declared} == {"staubin-dns", "musique-agenda"}
    for tenant, ct in declared:
        plan = plans[tenant.name]
        (cplan,) = [c for c in plan.containers if c.name == ct.name]
        assert (steps[ct.name].op, steps[ct.name].kind) == ("create", "container")
        guest = guests[ct.name]
        assert (guest["type"], guest["pool"], guest["vmid"]) == ("lxc", tenant.name, cplan.vmid)
        ct_api = api.nodes(guest["node"]).lxc(guest["vmid"])
        config = ct_api.config.get()
        assert config["hostname"] == ct.name and config["ostype"] == "debian"
        assert (int(config["cores"]), int(config["memory"])) == (ct.cores, ct.memory // MIB)
        assert config["rootfs"].startswith("local-lvm:vm-")
        assert config["rootfs"].endswith(f",size={ct.disk // GIB}G")
        assert int(config["unprivileged"]) == 1 and int(config["onboot"]) == 1
        net = dict(part.split("=", 1) for part in config["net0"].split(","))
        assert (net["bridge"], net["tag"], net["firewall"]) == ("vmbr0", str(plan.vlan), "1")
        assert (net["ip"], net["gw"]) == (str(cplan.address), str(plan.gateway))
        assert int(ct_api.firewall.options.get()["enable"]) == 1
        rules = ct_api.firewall.rules.get()
        assert [(r["type"], r["action"]) for r in rules] == [("group", f"kc-{plan.vlan}")]
    # made by a `vzcreate` task from the vztmpl volume, as `pct create` does
    tasks = api.nodes(guests["staubin-dns"]["node"]).tasks.get(typefilter="vzcreate")
    assert str(guests["staubin-dns"]["vmid"]) in {t["id"] for t in tasks}


def test_a_tenant_token_manages_its_own_containers_and_no_other(sim):
    from proxmoxer.core import ResourceException

    musique = _tenant_api(sim, "saint-aubin", "ecole-musique")
    martin = _tenant_api(sim, "saint-aubin", "garage-martin")
    guests = sim.guests("saint-aubin")
    own, council = guests["musique-agenda"], guests["staubin-dns"]
    mine = musique.nodes(own["node"]).lxc(own["vmid"])
    assert mine.config.get()["hostname"] == "musique-agenda"
    # PVEVMAdmin on its pool: it starts and stops its own container
    assert _wait_task(musique, own["node"], mine.status.start.post()) == "OK"
    assert mine.status.current.get()["status"] == "running"
    assert _wait_task(musique, own["node"], mine.status.stop.post()) == "OK"
    # ...and reaches nothing of the council's container, nor the school's from the garage
    for api, other in ((musique, council), (martin, own)):
        theirs = api.nodes(other["node"]).lxc(other["vmid"])
        for attempt in (
            theirs.config.get,
            theirs.status.current.get,
            theirs.status.stop.post,
            lambda theirs=theirs: theirs.config.put(memory=256),
            theirs.firewall.rules.get,
        ):
            with pytest.raises(ResourceException) as refused:
                attempt()
            assert refused.value.status_code == 403
    visible = {g.get("name") for g in musique.cluster.resources.get(type="vm")}
    assert {"musique-agenda", "musique-site"} <= visible
    assert not visible & {"staubin-dns", "staubin-web", "martin-erp"}
    assert "musique-agenda" not in {g.get("name") for g in martin.cluster.resources.get(type="vm")}
    root = sim.root_api("saint-aubin")
    assert root.nodes(council["node"]).lxc(council["vmid"]).status.current.get()["status"] == (
        "stopped"
    )
    assert int(root.nodes(council["node"]).lxc(council["vmid"]).config.get()["memory"]) == 512
    assert run(sim, "saint-aubin", "plan").changed == 0


def test_containers_beyond_the_tenants_quota_are_refused_and_nothing_changes(sim):
    before = sim.guests("saint-aubin")
    text = sim.cabinet_file("saint-aubin").read_text()
    line = text[: text.index(_AGENDA)].count("\n") + 1  # the line of `containers:`
    sim.edit("saint-aubin", _AGENDA, _AGENDA.replace("cores: 1", "cores: 2"))
    try:
        done = cli(sim, "tenants", "plan", "saint-aubin")
        assert done.returncode == 2, done.stdout + done.stderr
        assert (
            f"cabinets/saint-aubin.yaml:{line}:5 tenants[2].containers: guests use 3 vCPU, "
            "the tenant's quota is 2"
        ) in done.stderr
        with pytest.raises(InputError):
            run(sim, "saint-aubin", "apply")
    finally:
        sim.cabinet_file("saint-aubin").write_text(text)
    assert sim.guests("saint-aubin") == before


def test_a_container_change_updates_in_place_and_a_removed_container_is_deleted(sim):
    path = sim.cabinet_file("saint-aubin")
    text = path.read_text()
    before = sim.guests("saint-aubin")["musique-agenda"]
    grown = _AGENDA.replace("memory: 512MiB", "memory: 1GiB").replace("8GiB", "10GiB")
    sim.edit("saint-aubin", _AGENDA, grown)
    try:
        result = run(sim, "saint-aubin", "apply")
        assert ops(result, "musique-agenda") == {"update"}, result.steps
        after = sim.guests("saint-aubin")["musique-agenda"]
        assert after["vmid"] == before["vmid"]
        api = sim.root_api("saint-aubin")
        config = api.nodes(after["node"]).lxc(after["vmid"]).config.get()
        assert int(config["memory"]) == 1024 and config["rootfs"].endswith(",size=10G")
        assert run(sim, "saint-aubin", "plan").changed == 0
        sim.edit("saint-aubin", grown, "")
        result = run(sim, "saint-aubin", "apply")
        assert ops(result, "musique-agenda") == {"delete"}, result.steps
        assert "musique-agenda" not in sim.guests("saint-aubin")
        assert {"musique-site", "staubin-dns"} <= set(sim.guests("saint-aubin"))
        volumes = api.nodes(after["node"]).storage("local-lvm").content.get()
        assert not [v for v in volumes if int(v.get("vmid") or 0) == after["vmid"]]
    finally:  # the declared container comes back (a new one when it was deleted)
        path.write_text(text)
        run(sim, "saint-aubin", "apply")
    assert "musique-agenda" in sim.guests("saint-aubin")
