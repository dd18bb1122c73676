"""Conformance: every simulated method is called at least once, and every answer it gives
validates against the schema's `returns`. Also `kloudctl sim coverage`."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from simhelpers import ok, root_api

from kloudctl.cli import cli
from kloudctl.sim.handlers import build_registry
from kloudctl.sim.schema import load_schema
from kloudctl.sim.validate import check_returns

HANDLERS = build_registry(load_schema())  # what the simulator answers

CTX = {
    "node": "pve1",
    "vmid": "500",
    "storage": "local-lvm",
    "userid": "conf@pve",
    "tokenid": "t1",
    "groupid": "cg",
    "roleid": "ConfRole",
    "poolid": "cp",
    "iface": "vmbr5",
    "zone": "cz",
    "vnet": "cvnet",
    "subnet": "cz-10.5.0.0-24",
    "pos": "0",
    "group": "cgroup",
    "name": "cnet",
    "cidr": "10.9.0.1",
    "volume": "local-lvm:vm-500-disk-9",
    "snapname": "s1",
    "realm": "pve",
    "ipam": "pve",
}


# PVE 9 answers these with an error only (HA groups became rules); checked below.
ERROR_ONLY = {("GET", "/cluster/ha/groups")}
AGENT_READS = ("info", "get-host-name", "get-osinfo", "get-time", "get-timezone", "get-vcpus")
AGENT_READS += ("get-users", "get-fsinfo")
# Answered only while the guest runs: called explicitly in the scenario.
NEEDS_RUNNING = {
    ("GET", "/nodes/{node}/qemu/{vmid}/agent/network-get-interfaces"),
    ("GET", "/nodes/{node}/lxc/{vmid}/interfaces"),
    *(("GET", f"/nodes/{{node}}/qemu/{{vmid}}/agent/{cmd}") for cmd in AGENT_READS),
}
# Parameters a GET requires, for the sweep over every simulated GET.
GET_PARAMS: dict[str, dict[str, Any]] = {
    "/nodes/{node}/qemu/{vmid}/cloudinit/dump": {"type": "meta"},
    "/nodes/{node}/rrddata": {"timeframe": "hour"},
    "/nodes/{node}/qemu/{vmid}/rrddata": {"timeframe": "day", "cf": "MAX"},
    "/nodes/{node}/lxc/{vmid}/rrddata": {"timeframe": "hour"},
    "/nodes/{node}/storage/{storage}/rrddata": {"timeframe": "week"},
    "/nodes/{node}/lxc/{vmid}/feature": {"feature": "clone"},
    "/nodes/{node}/qemu/{vmid}/feature": {"feature": "snapshot"},
    "/nodes/{node}/scan/lvmthin": {"vg": "pve"},
}
# Section-config objects: (list path, item path, create parameters), created in the
# scenario (and so read by the GET sweep), updated, then removed.
SECTIONS: list[tuple[str, str, dict[str, Any]]] = [
    (
        "/cluster/notifications/endpoints/gotify",
        "{name}",
        {"server": "https://gotify.lan", "token": "t0k"},
    ),
    ("/cluster/notifications/endpoints/sendmail", "{name}", {"mailto": "council@example.org"}),
    (
        "/cluster/notifications/endpoints/smtp",
        "{name}",
        {"server": "smtp.lan", "from-address": "pve@example.org"},
    ),
    (
        "/cluster/notifications/endpoints/webhook",
        "{name}",
        {"url": "https://hook.lan/x", "method": "post"},
    ),
    ("/cluster/notifications/matchers", "{name}", {"target": "cnet"}),
    ("/cluster/mapping/dir", "{id}", {"id": "cmap", "map": "node=pve1,path=/srv/share"}),
    (
        "/cluster/mapping/pci",
        "{id}",
        {"id": "cmap", "map": "node=pve1,path=0000:01:00.0,id=8086:1533"},
    ),
    ("/cluster/mapping/usb", "{id}", {"id": "cmap", "map": "node=pve1,id=0781:5583"}),
    ("/cluster/ha/resources", "{sid}", {"sid": "vm:500"}),
    (
        "/cluster/ha/rules",
        "{rule}",
        {"rule": "crule", "type": "node-affinity", "resources": "vm:500", "nodes": "pve1"},
    ),
    ("/cluster/replication", "{id}", {"id": "500-0", "target": "pve2", "type": "local"}),
]


CT_VMID = 520  # the container of the scenario


def path_ctx(template: str) -> dict[str, Any]:
    """What a path's placeholders name where CTX's defaults do not fit."""
    if "/lxc/" in template:
        return {"vmid": CT_VMID}
    if template.startswith("/cluster/backup/"):
        return {"id": "cjob"}
    if template.startswith("/cluster/metrics/server/"):
        return {"id": "cmetric"}
    if template.startswith("/cluster/mapping/"):
        return {"id": "cmap"}
    if template.startswith("/cluster/replication/"):
        return {"id": "500-0"}
    if template.startswith("/cluster/jobs/realm-sync/"):
        return {"id": "csync"}
    return {"service": "cron", "sid": "vm:500", "rule": "crule"}


def call(api: Any, http: str, template: str, /, **params: Any) -> Any:
    ctx = {**CTX, **path_ctx(template), **params.pop("_ctx", {})}
    path = re.sub(r"\{([^}]+)\}", lambda m: str(ctx[m.group(1)]).replace("/", "%2F"), template)
    return getattr(api(path.lstrip("/")), http.lower())(**params)


def scenario(root: Any) -> None:

    def c(http: str, template: str, /, **kw: Any) -> Any:
        return call(root, http, template, **kw)

    vm, fw_vm, fw_node, fw_cl = (
        "/nodes/{node}/qemu/{vmid}",
        "/nodes/{node}/qemu/{vmid}/firewall",
        "/nodes/{node}/firewall",
        "/cluster/firewall",
    )
    ct = "/nodes/{node}/lxc/{vmid}"
    fw_ct = ct + "/firewall"

    def k(http: str, template: str, /, **kw: Any) -> Any:  # on the container
        return call(root, http, template, _ctx={"vmid": CT_VMID, **kw.pop("_ctx", {})}, **kw)

    # access
    c("POST", "/access/users", userid="conf@pve", password="conf-pass-1", email="conf@example.org")
    c("PUT", "/access/users/{userid}", comment="conformance")
    c("PUT", "/access/password", userid="conf@pve", password="conf-pass-2")
    c("POST", "/access/groups", groupid="cg", comment="g")
    c("PUT", "/access/groups/{groupid}", comment="g2")
    c("PUT", "/access/users/{userid}", groups="cg")
    c("POST", "/access/roles", roleid="ConfRole", privs="VM.Audit")
    c("PUT", "/access/roles/{roleid}", privs="VM.Console", append=1)
    c("POST", "/access/users/{userid}/token/{tokenid}", comment="t")
    c("PUT", "/access/users/{userid}/token/{tokenid}", comment="t2")
    c("PUT", "/access/acl", path="/vms", roles="ConfRole", users="conf@pve")
    c("POST", "/pools", poolid="cp")
    c("POST", "/pools", poolid="cp2")
    # guests
    ok(
        root,
        c(
            "POST",
            "/nodes/{node}/qemu",
            vmid=510,
            memory="1024",
            scsi0="local-lvm:4",
            net0="virtio,bridge=vmbr0",
            ide2="local-lvm:cloudinit",
            ipconfig0="ip=dhcp",
        ),
    )
    ok(root, c("POST", vm + "/clone", _ctx={"vmid": 9000}, newid=500, name="conf", pool="cp"))
    c("PUT", "/pools/{poolid}", storage="local")
    c("PUT", "/pools", poolid="cp2", vms="510")
    c("PUT", vm + "/config", ciuser="admin", ipconfig0="ip=10.0.0.5/24,gw=10.0.0.1")
    ok(root, c("POST", vm + "/config", description="async"))
    ok(root, c("PUT", vm + "/resize", disk="scsi0", size="+1G"))
    c("PUT", vm + "/cloudinit")
    for action in ("start", "suspend", "resume", "reboot", "reset", "shutdown", "start", "stop"):
        ok(root, c("POST", vm + f"/status/{action}"))
    # snapshots, migration, agent, unlink
    ok(root, c("POST", vm + "/snapshot", snapname="s1", description="before"))
    c("PUT", vm + "/snapshot/{snapname}/config", description="before upgrade")
    ok(root, c("POST", vm + "/snapshot/{snapname}/rollback"))
    ok(root, c("POST", vm + "/migrate", target="pve2", **{"with-local-disks": 1}))
    ok(
        root,
        c("POST", vm + "/migrate", _ctx={"node": "pve2"}, target="pve1", **{"with-local-disks": 1}),
    )
    ok(root, c("POST", vm + "/status/start"))
    assert c("GET", vm + "/agent/network-get-interfaces")["result"][1]["ip-addresses"]
    c("POST", vm + "/agent/ping")
    for cmd in AGENT_READS:
        assert "result" in c("GET", vm + f"/agent/{cmd}")
    ok(root, c("POST", vm + "/status/stop"))
    c("PUT", vm + "/config", scsi1="local-lvm:1")
    c("PUT", vm + "/unlink", idlist="scsi1")
    c("PUT", vm + "/unlink", idlist="unused0", force=1)
    # storage
    c(
        "POST",
        "/nodes/{node}/storage/{storage}/content",
        vmid=500,
        filename="vm-500-disk-9",
        size="1G",
    )
    c("POST", "/storage", storage="extra", type="dir", path="/srv/extra", content="iso")
    c("PUT", "/storage/{storage}", _ctx={"storage": "extra"}, content="iso,backup")
    # network, SDN
    c(
        "POST",
        "/nodes/{node}/network",
        iface="vmbr5",
        type="bridge",
        cidr="10.55.0.1/24",
        bridge_vlan_aware=1,
    )
    c("PUT", "/nodes/{node}/network/{iface}", type="bridge", comments="tenant bridge")
    c("POST", "/cluster/sdn/zones", zone="cz", type="vlan", bridge="vmbr0")
    c("PUT", "/cluster/sdn/zones/{zone}", mtu=1500)
    c("POST", "/cluster/sdn/vnets", vnet="cvnet", zone="cz", tag=42)
    c("PUT", "/cluster/sdn/vnets/{vnet}", alias="tenant")
    c(
        "POST",
        "/cluster/sdn/vnets/{vnet}/subnets",
        subnet="10.5.0.0/24",
        type="subnet",
        gateway="10.5.0.1",
    )
    c("PUT", "/cluster/sdn/vnets/{vnet}/subnets/{subnet}", gateway="10.5.0.254")
    # a container (its firewall is exercised with the others)
    tmpl = "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst"
    ok(
        root,
        c(
            "POST",
            "/nodes/{node}/lxc",
            vmid=CT_VMID,
            ostemplate=tmpl,
            rootfs="local-lvm:2",
            net0="name=eth0,bridge=vmbr0,ip=10.0.0.60/24",
        ),
    )
    # firewall at every scope
    c("POST", fw_cl + "/groups", group="cgroup", comment="web")
    c("POST", fw_cl + "/groups/{group}", action="ACCEPT", type="in", proto="tcp", dport="443")
    c("PUT", fw_cl + "/groups/{group}/{pos}", comment="https")
    for base in (fw_cl, fw_node, fw_vm, fw_ct):
        c("PUT", base + "/options", enable=1)
        c(
            "POST",
            base + "/rules",
            action="ACCEPT",
            type="in",
            proto="tcp",
            dport="22",
            comment="ssh",
        )
        c("POST", base + "/rules", action="cgroup", type="group")
        c("PUT", base + "/rules/{pos}", comment="first", moveto=1)
    fw_vnet = "/cluster/sdn/vnets/{vnet}/firewall"
    c("PUT", fw_vnet + "/options", enable=1, policy_forward="DROP")
    c("POST", fw_vnet + "/rules", action="ACCEPT", type="forward", proto="tcp", dport="22")
    c("PUT", fw_vnet + "/rules/{pos}", comment="ssh between tenants")
    c("PUT", "/nodes/{node}/dns", search="brieux.lan", dns1="10.0.0.254", dns2="10.0.0.253")
    for base in (fw_cl, fw_vm, fw_ct):
        c("POST", base + "/aliases", name="cnet", cidr="10.9.0.0/24")
        c("PUT", base + "/aliases/{name}", cidr="10.9.0.0/16")
        c("POST", base + "/ipset", name="cnet", comment="set")
        c("POST", base + "/ipset/{name}", cidr="10.9.0.1")
        c("PUT", base + "/ipset/{name}/{cidr}", comment="one")

    # containers, backups and restores, backup jobs, metric servers
    k("PUT", ct + "/config", memory=256, description="tenant")
    ok(root, k("PUT", ct + "/resize", disk="rootfs", size="+1G"))
    ok(root, k("POST", ct + "/clone", newid=521, hostname="ct-copy"))
    for action in ("start", "suspend", "resume", "reboot"):
        ok(root, k("POST", ct + f"/status/{action}"))
    assert k("GET", ct + "/interfaces")[1]["inet"] == "10.0.0.60/24"
    ok(root, k("POST", ct + "/status/shutdown"))
    ok(root, k("POST", ct + "/status/start"))
    ok(root, k("POST", ct + "/status/stop"))
    ok(root, k("POST", ct + "/snapshot", snapname="s1", description="before"))
    k("PUT", ct + "/snapshot/{snapname}/config", description="before upgrade")
    ok(root, k("POST", ct + "/snapshot/{snapname}/rollback"))
    ok(root, k("POST", ct + "/migrate", target="pve2"))
    ok(root, k("POST", ct + "/migrate", _ctx={"node": "pve2"}, target="pve1"))
    ok(root, c("POST", "/nodes/{node}/vzdump", vmid="500,520", compress="zstd"))
    backups = c("GET", "/nodes/{node}/storage/{storage}/content", _ctx={"storage": "local"})
    volids = {b["subtype"]: b["volid"] for b in backups if b["content"] == "backup"}
    backup_volid = volids["qemu"]
    ok(root, c("POST", "/nodes/{node}/qemu", vmid=530, archive=volids["qemu"], unique=1))
    ok(root, c("POST", "/nodes/{node}/lxc", vmid=531, ostemplate=volids["lxc"], restore=1))
    c(
        "PUT",
        "/nodes/{node}/storage/{storage}/content/{volume}",
        _ctx={"storage": "local", "volume": volids["lxc"]},
        notes="conformance",
    )
    c("POST", "/cluster/backup", id="cjob", schedule="daily", all=1, storage="local")
    c("PUT", "/cluster/backup/{id}", comment="every guest")
    c("POST", "/cluster/metrics/server/{id}", type="graphite", server="10.0.0.8", port=2003)
    c("PUT", "/cluster/metrics/server/{id}", server="10.0.0.8", port=2004)

    for base, item, params in SECTIONS:
        named = {"name": "cnet"} if item == "{name}" else {}
        c("POST", base, **named, **params)
        props = load_schema().methods[("PUT", f"{base}/{item}")].properties
        required = {k for k, v in props.items() if not v.get("optional")}
        update = {k: v for k, v in params.items() if k in required and f"{{{k}}}" != item}
        note = "comment" if "comment" in props else "description"
        c("PUT", f"{base}/{item}", **{note: "conformance"}, **update)
    c("POST", "/cluster/notifications/targets/{name}/test")
    c("POST", "/cluster/jobs/realm-sync/{id}", schedule="daily", realm="pve")
    c("PUT", "/cluster/jobs/realm-sync/{id}", schedule="weekly")
    c("PUT", "/cluster/options", keyboard="fr-ch")
    c("PUT", "/nodes/{node}/dns", search="brieux.lan", dns1="10.0.0.254")
    c("PUT", "/nodes/{node}/time", timezone="Europe/Paris")
    hosts = c("GET", "/nodes/{node}/hosts")
    c("POST", "/nodes/{node}/hosts", data=hosts["data"] + "10.0.0.9 nas\n", digest=hosts["digest"])
    c("PUT", "/nodes/{node}/config", description="cabinet node")
    for action in ("stop", "start", "restart", "reload"):
        ok(root, c("POST", f"/nodes/{{node}}/services/{{service}}/{action}"))
    ok(root, c("POST", "/nodes/{node}/startall", vms="500"))
    ok(root, c("POST", "/nodes/{node}/stopall", vms="500"))
    GET_PARAMS["/nodes/{node}/disks/smart"] = {
        "disk": c("GET", "/nodes/{node}/disks/list")[0]["devpath"]
    }

    # every simulated GET, with the objects above
    task = root.nodes("pve1").tasks.get(limit=1)[0]["upid"]
    for http, path in sorted(HANDLERS):
        if http == "GET" and (http, path) not in ERROR_ONLY | NEEDS_RUNNING:
            extra = dict(GET_PARAMS.get(path, {}))
            if path == "/nodes/{node}/vzdump/extractconfig":
                extra["volume"] = backup_volid
            try:
                call(root, http, path, _ctx={"upid": task}, **extra)
            except Exception as exc:
                raise AssertionError(f"{http} {path}: {exc}") from exc
    call(
        root,
        "GET",
        "/nodes/{node}/storage/{storage}/content/{volume}",
        _ctx={"volume": "local-lvm:vm-500-disk-9"},
    )
    c("GET", "/nodes/{node}/qemu/{vmid}/cloudinit/dump", type="user")
    c("GET", "/nodes/{node}/qemu/{vmid}/cloudinit/dump", type="network")
    c("GET", "/pools", poolid="cp")

    # tickets, tasks, uploads
    c("POST", "/access/ticket", username="conf@pve", password="conf-pass-2")
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "tiny.iso").write_bytes(b"0" * 2048)
        with open(Path(tmp) / "tiny.iso", "rb") as iso:
            ok(root, root.nodes("pve1").storage("local").upload.post(content="iso", filename=iso))
    assert "local:iso/tiny.iso" in {
        v["volid"] for v in root.nodes("pve1").storage("local").content.get()
    }
    cab_task = c("POST", vm + "/status/start")
    c("DELETE", "/nodes/{node}/tasks/{upid}", _ctx={"upid": cab_task})
    ok(root, c("POST", vm + "/status/stop"))
    ok(root, c("PUT", "/nodes/{node}/network"))
    c("DELETE", "/nodes/{node}/network")
    # the global SDN lock: changes and their application carry its token
    token = c("POST", "/cluster/sdn/lock", **{"allow-pending": 1})
    ok(root, c("PUT", "/cluster/sdn", **{"lock-token": token, "release-lock": 1}))
    token = c("POST", "/cluster/sdn/lock")
    c("POST", "/cluster/sdn/rollback", **{"lock-token": token})
    c("DELETE", "/cluster/sdn/lock", **{"lock-token": token})

    # and tear everything down again
    ok(
        root,
        c(
            "DELETE",
            "/nodes/{node}/storage/{storage}/content/{volume}",
            _ctx={"storage": "local", "volume": volids["lxc"]},
        ),
    )
    c("DELETE", "/cluster/backup/{id}")
    for base, item, _params in SECTIONS:
        c("DELETE", f"{base}/{item}")
    c("DELETE", "/cluster/jobs/realm-sync/{id}")
    c("DELETE", "/cluster/metrics/server/{id}")
    ok(root, c("DELETE", vm, _ctx={"vmid": 530}))
    for base in (fw_cl, fw_vm, fw_ct):
        c("DELETE", base + "/ipset/{name}/{cidr}")
        c("DELETE", base + "/ipset/{name}")
        c("DELETE", base + "/aliases/{name}")
    for base in (fw_cl, fw_node, fw_vm, fw_ct):
        c("DELETE", base + "/rules/{pos}")
        c("DELETE", base + "/rules/{pos}")
    k("POST", ct + "/template")
    ok(root, k("DELETE", ct + "/snapshot/{snapname}"))
    for vmid in (531, 521):
        ok(root, k("DELETE", ct, _ctx={"vmid": vmid}))
    ok(root, k("DELETE", ct, purge=1))
    c("DELETE", fw_cl + "/groups/{group}/{pos}")
    c("DELETE", fw_cl + "/groups/{group}")
    c("DELETE", "/cluster/sdn/vnets/{vnet}/firewall/rules/{pos}")
    c("DELETE", "/cluster/sdn/vnets/{vnet}/subnets/{subnet}")
    c("DELETE", "/cluster/sdn/vnets/{vnet}")
    c("DELETE", "/cluster/sdn/zones/{zone}")
    c("DELETE", "/nodes/{node}/network/{iface}")
    ok(root, c("DELETE", "/nodes/{node}/storage/{storage}/content/{volume}"))
    c("DELETE", "/storage/{storage}", _ctx={"storage": "extra"})
    ok(root, c("DELETE", vm + "/snapshot/{snapname}"))
    ok(root, c("POST", vm + "/template"))
    ok(root, c("DELETE", vm, purge=1))
    ok(root, c("DELETE", vm, _ctx={"vmid": 510}))
    c("PUT", "/pools/{poolid}", storage="local", delete=1)
    c("DELETE", "/pools/{poolid}")
    c("DELETE", "/pools", poolid="cp2")
    c("DELETE", "/access/users/{userid}/token/{tokenid}")
    c("DELETE", "/access/roles/{roleid}")
    c("DELETE", "/access/groups/{groupid}")
    c("DELETE", "/access/users/{userid}")


def test_every_simulated_method_answers_per_schema(pve_sim):
    cab = pve_sim.simulator.cabinets["brieux"]
    recorded: list[tuple[tuple[str, str], Any]] = []
    pve_sim.call(lambda s: setattr(cab, "recorder", recorded))
    try:
        scenario(root_api(pve_sim["brieux"]))
    finally:
        pve_sim.call(lambda s: setattr(cab, "recorder", None))
    schema = load_schema()
    problems = []
    for key, data in recorded:
        for problem in check_returns(schema.methods[key].returns, data):
            problems.append(f"{key[0]} {key[1]}: {problem}")
    assert not problems, "\n".join(sorted(set(problems))[:40])
    missed = sorted(set(HANDLERS) - ERROR_ONLY - {k for k, _ in recorded})
    assert not missed, f"simulated methods never exercised: {missed}"


def test_ha_groups_answer_like_pve9(pve_sim):
    from simhelpers import error_of

    exc = error_of(root_api(pve_sim["brieux"]).cluster.ha.groups.get)
    assert exc.status_code == 500 and "ha groups have been migrated to rules" in str(exc)


def test_check_returns_catches_mistakes():
    returns = load_schema().methods[("GET", "/nodes/{node}/tasks/{upid}/status")].returns
    assert check_returns(returns, {"status": "weird"})
    assert check_returns(load_schema().methods[("GET", "/cluster/nextid")].returns, "100")


@pytest.mark.parametrize("args", [["sim", "coverage", "--json"]])
def test_coverage_command(args):
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["total"] == 649 == len(load_schema().methods)
    assert report["simulated"] == len(HANDLERS) == sum(m["simulated"] for m in report["methods"])
    assert sum(a["total"] for a in report["areas"]) == 649
    assert sum(a["simulated"] for a in report["areas"]) == len(HANDLERS)
    text = CliRunner().invoke(cli, ["sim", "coverage"]).output
    assert f"{len(HANDLERS)} of 649 methods simulated" in text
    assert report["directory_indexes"] < report["simulated"]
    assert report["simulated"] / report["total"] >= 0.6  # issue 15: at least 60 % of methods


def test_coverage_counts_against_hand_computed_values(monkeypatch):
    """The report's arithmetic on a schema of 7 methods, 3 of them simulated (one a
    directory index): values worked out by hand, not by the report's own formula."""
    from types import SimpleNamespace

    import kloudctl.sim.handlers
    import kloudctl.sim.schema
    from kloudctl.sim.runner import coverage

    methods = {
        ("GET", "/version"): "version",
        ("GET", "/nodes/{node}/qemu"): "vmlist",
        ("POST", "/nodes/{node}/qemu"): "create_vm",
        ("GET", "/nodes/{node}/lxc"): "vmlist",
        ("GET", "/pools"): "index",
        ("DELETE", "/pools/{poolid}"): "delete_pool_deprecated",
        ("POST", "/access/ticket"): "create_ticket",
    }
    schema = SimpleNamespace(methods={k: SimpleNamespace(name=v) for k, v in methods.items()})
    handlers = {
        ("GET", "/version"): SimpleNamespace(),
        ("GET", "/nodes/{node}/qemu"): SimpleNamespace(schema_index=True),
        ("GET", "/pools"): SimpleNamespace(),
    }
    monkeypatch.setattr(kloudctl.sim.schema, "load_schema", lambda: schema)
    monkeypatch.setattr(kloudctl.sim.handlers, "build_registry", lambda _schema: handlers)
    report = coverage()
    assert (report["total"], report["simulated"], report["directory_indexes"]) == (7, 3, 1)
    assert report["share"] == 0.4286  # 3 / 7 = 0.428571...
    assert report["areas"] == [  # a node's methods make one area; others, their first part
        {"area": "/access", "simulated": 0, "total": 1},
        {"area": "/nodes/{node}", "simulated": 1, "total": 3},
        {"area": "/pools", "simulated": 1, "total": 2},
        {"area": "/version", "simulated": 1, "total": 1},
    ]
    simulated = [(m["method"], m["path"]) for m in report["methods"] if m["simulated"]]
    assert simulated == [("GET", "/nodes/{node}/qemu"), ("GET", "/pools"), ("GET", "/version")]
