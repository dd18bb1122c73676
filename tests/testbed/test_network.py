"""The test cabinets' network on both of podman's network backends.

A fresh Debian 12 machine whose podman was installed without recommends runs the CNI
backend, whose `--internal` networks report no gateway and give the host no address; the
project's set-up selects netavark. Test cabinets must work on both: the podman test starts
one test cabinet on each backend (podman's global `--network-backend`, through
KLOUDCTL_PODMAN_NETWORK_BACKEND) and reaches it over SSH from the host.
"""

from __future__ import annotations

import ipaddress
import subprocess
from pathlib import Path

import pytest

from kloudctl.answers import UnexpectedAnswer
from kloudctl.testbed import cabinets
from kloudctl.testbed.cabinets import network_from_inspect
from kloudctl.testbed.podman import BACKEND_ENV, PodmanUnavailable, backend_args, check_backend

#: What `podman network inspect` printed for an internal network on this machine's podman
#: 4.3, once per backend (only the fields kloudctl reads, plus their neighbours).
NETAVARK = [
    {
        "name": "t",
        "driver": "bridge",
        "network_interface": "podman1",
        "subnets": [{"subnet": "10.89.0.0/24", "gateway": "10.89.0.1"}],
        "internal": True,
    }
]
CNI = [
    {
        "name": "t",
        "driver": "bridge",
        "network_interface": "cni-podman1",
        "subnets": [{"subnet": "10.89.0.0/24"}],
        "internal": True,
    }
]


def test_netavark_gateway_is_podmans() -> None:
    net = network_from_inspect("t", NETAVARK, "netavark")
    assert (net.subnet, net.gateway, net.interface) == ("10.89.0.0/24", "10.89.0.1", "podman1")


def test_cni_gateway_is_derived_as_podman_allocates_it() -> None:
    net = network_from_inspect("t", CNI, "cni")
    assert (net.subnet, net.gateway, net.interface) == ("10.89.0.0/24", "10.89.0.1", "cni-podman1")


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ([], "expected [0] in its answer"),
        ({}, "expected [0] in its answer"),
        ([{"name": "t"}], "expected [0].subnets in its answer"),
        ([{"subnets": []}], "expected [0].subnets[0] in its answer"),
        ([{"subnets": [{"subnet": 42}]}], "expected [0].subnets[0].subnet to be a string"),
        ([{"subnets": [{"subnet": "nonsense"}]}], "expected an IPv4 subnet for network t"),
        ([{"subnets": [{"subnet": "10.0.0.0/30"}]}], "expected a subnet of at least 20"),
        (
            [{"subnets": [{"subnet": "10.89.0.0/24", "gateway": "10.90.0.1"}]}],
            "expected a gateway inside 10.89.0.0/24 for t",
        ),
    ],
)
def test_unexpected_inspect_answers_name_podman_and_what_came_back(
    answer: object, expected: str
) -> None:
    with pytest.raises(UnexpectedAnswer) as caught:
        network_from_inspect("t", answer, "netavark")
    message = str(caught.value)
    assert message.startswith("podman network inspect answered unexpectedly: ")
    assert expected in message
    assert "; got " in message


def test_unknown_backend_says_how_to_fix_it() -> None:
    with pytest.raises(PodmanUnavailable, match=r"network backend is 'slirp'.*make setup"):
        check_backend("slirp")


def test_backend_option_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(BACKEND_ENV, raising=False)
    assert backend_args() == []
    monkeypatch.setenv(BACKEND_ENV, "cni")
    assert backend_args() == ["--network-backend=cni"]
    assert backend_args("netavark") == ["--network-backend=netavark"]
    monkeypatch.setenv(BACKEND_ENV, "docker")
    with pytest.raises(PodmanUnavailable, match="use one of: netavark, cni"):
        backend_args()


def _routes_on_host() -> str:
    return subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout


@pytest.mark.podman
@pytest.mark.slow
@pytest.mark.parametrize("backend", ["netavark", "cni"])
def test_a_test_cabinet_on_each_backend(
    backend: str, testbed_image: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(BACKEND_ENV, backend)
    prefix = f"kloudctl-netb-{backend}"
    with cabinets.running(["alpha"], prefix=prefix, state_dir=tmp_path, image=testbed_image) as bed:
        assert bed.backend == backend
        subnet = ipaddress.IPv4Network(bed.subnet)
        assert ipaddress.IPv4Address(bed.gateway) in subnet
        # The host reaches the cabinet over SSH (start() waited for it): check the answer.
        assert bed.ssh("alpha", "hostname").stdout.strip() == "alpha"
        # Internal: the cabinet has no route beyond its own network.
        routes = bed.ssh("alpha", "ip", "-4", "route").stdout
        assert "default" not in routes, routes
        # The network belongs to the backend asked for, and to that one only.
        other = {"netavark": "cni", "cni": "netavark"}[backend]
        for name, expected in ((backend, 0), (other, 1)):
            found = subprocess.run(
                ["podman", f"--network-backend={name}", "network", "exists", bed.network]
            )
            assert found.returncode == expected, name
        network = str(subnet)
    # Nothing of the network is left on the host: no route that would shadow the next one.
    assert network not in _routes_on_host()
