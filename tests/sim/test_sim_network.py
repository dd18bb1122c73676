"""Firewall, node network and SDN semantics (beyond the conformance scenario)."""

from __future__ import annotations

from simhelpers import error_of, ok, root_api, token_api


def test_firewall_rules_order_digest_and_groups(pve_sim):
    root = root_api(pve_sim["brieux"])
    ok(root, root.nodes("pve1").qemu(9000).clone.post(newid=600, name="fw"))
    fw = root.nodes("pve1").qemu(600).firewall
    fw.options.put(enable=1, policy_in="DROP")
    assert fw.options.get()["policy_in"] == "DROP"
    fw.rules.post(action="ACCEPT", type="in", proto="tcp", dport="22")
    fw.rules.post(action="ACCEPT", type="in", proto="tcp", dport="443", pos=0)
    rules = fw.rules.get()
    assert [(r["pos"], r["dport"]) for r in rules] == [(0, "443"), (1, "22")]
    stale = rules[0]["digest"]
    fw.rules(1).put(comment="ssh", moveto=0)
    assert [r["dport"] for r in fw.rules.get()] == ["22", "443"]
    exc = error_of(fw.rules(0).delete, digest=stale)
    assert "detected modified configuration" in str(exc)
    # validation of rule fields comes from the schema
    assert error_of(fw.rules.post, action="ACCEPT", type="sideways").status_code == 400
    # security groups are referenced by name
    assert error_of(fw.rules.post, action="nosuch", type="group").status_code == 400
    root.cluster.firewall.groups.post(group="webserver")
    root.cluster.firewall.groups("webserver").post(action="ACCEPT", type="in", macro="HTTPS")
    fw.rules.post(action="webserver", type="group")
    exc = error_of(root.cluster.firewall.groups("webserver").delete)
    assert "Security group contains rules" in str(exc)
    fw.ipset.post(name="admins")
    fw.ipset("admins").post(cidr="192.0.2.10")
    assert [e["cidr"] for e in fw.ipset("admins").get()] == ["192.0.2.10"]
    ok(root, root.nodes("pve1").qemu(600).delete(purge=1))


def test_node_network_vlan_and_reload(pve_sim):
    root = root_api(pve_sim["brieux"])
    net = root.nodes("pve2").network
    net.post(iface="vmbr0.120", type="vlan", cidr="10.161.20.2/24")
    net.post(iface="vmbr1", type="bridge", bridge_vlan_aware=1, bridge_vids="100-199")
    ifaces = {i["iface"]: i for i in net.get()}
    assert ifaces["vmbr0.120"]["type"] == "vlan" and ifaces["vmbr1"]["bridge_vlan_aware"] == 1
    assert [i["iface"] for i in net.get(type="any_bridge")] == ["vmbr0", "vmbr1"]
    assert error_of(net.post, iface="vmbr1", type="bridge").status_code == 500  # exists
    assert error_of(net.post, iface="vmbr2", type="bridge", bridge_ports="eno9").status_code == 400
    status = ok(root, net.put())
    assert status["type"] == "srvreload"
    assert all(i["active"] == 1 for i in net.get())
    # a guest NIC must name an existing bridge
    exc = error_of(root.nodes("pve1").qemu.post, vmid=601, net0="virtio,bridge=vmbr7")
    assert exc.status_code == 400 and "bridge 'vmbr7' does not exist" in str(exc)


def test_sdn_vnet_and_sdn_use(pve_sim):
    root = root_api(pve_sim["brieux"])
    sdn = root.cluster.sdn
    sdn.zones.post(zone="tenants", type="vlan", bridge="vmbr0")
    sdn.vnets.post(vnet="leroy", zone="tenants", tag=101)
    assert error_of(sdn.vnets.post, vnet="dupe", zone="tenants", tag=101).status_code == 400
    sdn.vnets("leroy").subnets.post(subnet="10.161.1.0/24", type="subnet", gateway="10.161.1.1")
    assert [s["subnet"] for s in sdn.vnets("leroy").subnets.get()] == ["tenants-10.161.1.0-24"]
    assert sdn.zones.get(pending=1)[0]["state"] == "new"
    ok(root, sdn.put())
    assert "state" not in sdn.zones.get(pending=1)[0]
    # a tenant may attach guests to its own vnet only (SDN.Use on /sdn/zones/<zone>/<vnet>)
    root.pools.post(poolid="sdn-tenant")
    root.access.users.post(userid="sdnt@pve")
    tok = root.access.users("sdnt@pve").token("tk").post(privsep=0)
    root.access.acl.put(path="/pool/sdn-tenant", roles="PVEVMAdmin", users="sdnt@pve")
    root.access.acl.put(path="/storage/local-lvm", roles="PVEDatastoreUser", users="sdnt@pve")
    tenant = token_api(pve_sim["brieux"], "sdnt@pve", "tk", tok["value"])
    exc = error_of(
        tenant.nodes("pve1").qemu.post, vmid=602, pool="sdn-tenant", net0="virtio,bridge=leroy"
    )
    assert exc.status_code == 403 and "(/sdn/zones/tenants/leroy, SDN.Use)" in str(exc)
    root.access.acl.put(path="/sdn/zones/tenants/leroy", roles="PVESDNUser", users="sdnt@pve")
    ok(
        tenant,
        tenant.nodes("pve1").qemu.post(vmid=602, pool="sdn-tenant", net0="virtio,bridge=leroy"),
    )
    assert error_of(sdn.vnets("leroy").delete).status_code == 500  # it has subnets
