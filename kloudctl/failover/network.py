"""The network of a council VM restored on a peer, and again at home.

A guest's NICs come from its archive: restored as they are, they would carry the home's
bridge and VLAN tag, and on the peer that VLAN number may be a level-2 tenant's network.
So every NIC of the archive's config is given over the restore (`POST /nodes/{node}/qemu`
with `archive=` takes non-disk options and writes them over the restored config, as
qemu-server does since 7.2): the same model and MAC address (the guest's OS keeps its
interface), the peer's guest bridge and VLAN, the firewall on, and nothing else of the
home's line (no `trunks`: a guest reaches no other VLAN). The failback gives the home's
own lines back the same way.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from kloudctl.model.schema import GuestNetwork

NET_KEY = re.compile(r"^net\d+$")
#: The NIC models of a QEMU guest's `netN` (qemu-server's `$nic_model_list`): `MODEL=MAC`.
NIC_MODELS = frozenset(
    {
        "e1000",
        "e1000-82540em",
        "e1000-82544gc",
        "e1000-82545em",
        "e1000e",
        "i82551",
        "i82557b",
        "i82559er",
        "ne2k_isa",
        "ne2k_pci",
        "pcnet",
        "rtl8139",
        "virtio",
        "vmxnet3",
    }
)


def parse_config(text: str) -> dict[str, str]:
    """The current section of a guest's config as PVE prints it (what `vzdump/extractconfig`
    answers): `key: value` lines, comments (the description) and snapshot sections left out."""
    config: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("["):
            break  # a snapshot or pending section
        key, sep, value = line.partition(": ")
        if sep and not line.startswith("#"):
            config[key.strip()] = value.strip()
    return config


def nics(config: Mapping[str, object]) -> dict[str, str]:
    """The config's NICs, `{netN: line}`."""
    return {k: str(v) for k, v in sorted(config.items()) if NET_KEY.match(k)}


def model_and_mac(line: str) -> tuple[str | None, str | None]:
    """A NIC line's model and MAC address (`virtio=BC:24:11:..`, or `model=`/`macaddr=`);
    no model when the line names none."""
    model, mac = None, None
    for part in line.split(","):
        key, sep, value = part.partition("=")
        if key in NIC_MODELS:
            model, mac = key, (value if sep else None) or mac
        elif key == "model" and value in NIC_MODELS:
            model = value
        elif key == "macaddr" and value:
            mac = value
    return model, mac


def on_guest_network(line: str, network: GuestNetwork) -> str | None:
    """The NIC `line` plugged into the peer's guest network, as PVE prints it: model and MAC
    address kept, the guests' bridge and VLAN, the firewall on (None: a line without model)."""
    model, mac = model_and_mac(line)
    if model is None:
        return None
    first = f"{model}={mac}" if mac else model
    return f"{first},bridge={network.bridge},firewall=1,tag={network.vlan}"


def describe(network: GuestNetwork) -> str:
    return (
        f"every NIC on bridge {network.bridge}, VLAN {network.vlan}, firewall on (model and"
        " MAC address kept, never the home's VLAN)"
    )
