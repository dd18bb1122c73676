"""The NIC lines a failed-over guest gets (kloudctl/failover/network.py): what the restore
gives the peer for every `netN` of the archive's config. The end-to-end proof, on simulated
cabinets, is tests/federation/test_failover.py; these are the line shapes PVE may print."""

from __future__ import annotations

import pytest

from kloudctl.failover import network as net
from kloudctl.model.schema import GuestNetwork

GUESTS = GuestNetwork(bridge="vmbr1", vlan=3999)


def test_the_config_of_an_archive_stops_at_its_first_section() -> None:
    text = (
        "#mairie\n#site web\nboot: order=scsi0\nnet0: virtio=BC:24:11:00:00:01,bridge=vmbr0,tag=100\n"
        "net1: e1000=BC:24:11:00:00:02,bridge=vmbr0\nscsi0: local-lvm:vm-1000-disk-0,size=32G\n"
        "\n[before-upgrade]\nnet0: virtio=BC:24:11:00:00:09,bridge=vmbr0,tag=101\n"
    )
    config = net.parse_config(text)
    assert "description" not in config and config["boot"] == "order=scsi0"
    assert net.nics(config) == {
        "net0": "virtio=BC:24:11:00:00:01,bridge=vmbr0,tag=100",
        "net1": "e1000=BC:24:11:00:00:02,bridge=vmbr0",
    }


@pytest.mark.parametrize(
    ("home", "peer"),
    [
        # the home's bridge, VLAN and trunks go; the firewall is on whatever it was
        (
            "virtio=BC:24:11:00:00:01,bridge=vmbr0,firewall=0,tag=100,trunks=100;101",
            "virtio=BC:24:11:00:00:01,bridge=vmbr1,firewall=1,tag=3999",
        ),
        # model and MAC given as model= and macaddr= (the long form PVE accepts)
        (
            "bridge=vmbr0,macaddr=BC:24:11:00:00:03,model=e1000,link_down=1",
            "e1000=BC:24:11:00:00:03,bridge=vmbr1,firewall=1,tag=3999",
        ),
        # no MAC address: PVE gives one on restore (add_random_macs)
        ("vmxnet3,bridge=vmbr0", "vmxnet3,bridge=vmbr1,firewall=1,tag=3999"),
    ],
)
def test_every_nic_keeps_its_model_and_mac_on_the_guest_network(home: str, peer: str) -> None:
    assert net.on_guest_network(home, GUESTS) == peer


def test_a_line_without_a_model_is_not_guessed() -> None:
    assert net.on_guest_network("bridge=vmbr0,tag=100", GUESTS) is None
