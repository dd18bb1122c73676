"""Benchmark: the federation's WireGuard mesh for 3 and 20 members.

Each member is a network namespace running wireguard-go (kloudctl.testbed.netns; created
and removed here), on one underlay bridge. The registry is made with the real code (keys,
signed entries, mesh addresses); each member's interface is configured by the code
`federation sync --interface` runs (`mesh.apply`, inside the member's namespace).

Measured, each against a baseline run in this process on the same namespaces:

- converge: from the first `apply` to every pair of members having handshaken, against
  the raw floor: one bare `wg set` per pair of the same keys (the least any tool does);
- revoke: from appending the revocation to the last remaining member having removed the
  revoked key, with every member applying at once (a sync period of zero: the bound a
  member's timer adds is its period), against one bare `wg set ... peer KEY remove` round;
- status: `kloudctl federation status --interface IF --json` for the 20-member federation
  run as a user runs it (a new process in the coordinator's namespace: handshakes from
  `wg show latest-handshakes`, a TCP round trip to every member over the mesh), against a bare
  `wg show IF latest-handshakes` in the same namespace.

Targets (issue 13): status for 20 members under 3 s; a revocation effective everywhere
within one sync period (here: the apply round, far under the 30 s period of the role).

Run (root): .venv/bin/python bench/federation.py
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from kloudctl.federation import mesh  # noqa: E402
from kloudctl.federation.keys import MemberKeys  # noqa: E402
from kloudctl.federation.registry import Registry, RegistryStore, create  # noqa: E402
from kloudctl.testbed import netns  # noqa: E402

WIREGUARD_GO = str(REPO / ".tools" / "bin" / "wireguard-go")
KLOUDCTL = str(REPO / ".venv" / "bin" / "kloudctl")
POOL = ipaddress.IPv4Network("10.250.0.0/24")


def _member(name: str, keys: MemberKeys, underlay: str, address: str) -> dict[str, object]:
    return {
        "commune": name,
        "cabinet": name,
        "endpoints": [f"{underlay}:51820"],
        "wireguard_key": keys.wireguard_public,
        "signing_key": keys.signing_public,
        "mesh_address": address,
        "capacity": {},
    }


def federation(
    names: list[str], underlay: dict[str, str]
) -> tuple[Registry, dict[str, MemberKeys]]:
    keys = {n: MemberKeys.generate() for n in names}
    first = names[0]
    registry = create(
        "bench", POOL, _member(first, keys[first], underlay[first], "10.250.0.1"), keys[first]
    )
    for name in names[1:]:
        doc = _member(name, keys[name], underlay[name], registry.next_address())
        registry = registry.append("admit", first, {"member": doc}, keys[first])
    return registry, keys


def _all_handshaken(lab: netns.Lab, names: list[str]) -> bool:
    for name in names:
        seen = mesh.read_handshakes(lab.interface(name), lab.argv(name, []))
        if len(seen) != len(names) - 1 or any(stamp is None for stamp in seen.values()):
            return False
    return True


def _apply_all(
    lab: netns.Lab, registry: Registry, keys: dict[str, MemberKeys], names: list[str]
) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(
            pool.map(
                lambda n: mesh.apply(registry, n, keys[n], lab.interface(n), lab.argv(n, [])), names
            )
        )


def _wait(condition, timeout: float = 120.0) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    while not condition():
        if time.perf_counter() - start > timeout:
            raise SystemExit("bench: the mesh did not converge within 120 s")
        time.sleep(0.05)
    return time.perf_counter() - start


def run(size: int) -> dict[str, float]:
    names = [f"m{i:02d}" for i in range(size)]
    underlay = {n: f"192.168.77.{i + 10}" for i, n in enumerate(names)}
    figures: dict[str, float] = {}
    with netns.running(f"kfb{os.getpid() % 10000}", underlay) as lab:
        for name in names:
            lab.wireguard_go(name, WIREGUARD_GO)
        registry, keys = federation(names, underlay)

        # Baseline: the raw floor, each interface given its private key and every peer
        # with one bare `wg set`, then wait for every handshake; then cleared again.
        start = time.perf_counter()

        def bare(n: str) -> None:
            me = registry.members[n]
            args = [
                "wg",
                "set",
                lab.interface(n),
                "listen-port",
                "51820",
                "private-key",
                "/dev/stdin",
            ]
            for peer in mesh.peers_of(registry, n):
                args += [
                    "peer",
                    peer.public_key,
                    "allowed-ips",
                    f"{peer.mesh_address}/32",
                    "endpoint",
                    str(peer.endpoint),
                    "persistent-keepalive",
                    "25",
                ]
            subprocess.run(
                lab.argv(n, args), input=mesh.wireguard_private(keys[n]), text=True, check=True
            )
            interface = lab.interface(n)
            for cmd in (
                ["ip", "address", "replace", f"{me.mesh_address}/24", "dev", interface],
                ["ip", "link", "set", interface, "up"],
            ):
                subprocess.run(lab.argv(n, cmd), check=True)

        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(bare, names))
        _wait(lambda: _all_handshaken(lab, names))
        figures["converge_floor_s"] = time.perf_counter() - start
        for n in names:  # back to no peer, then restart the interfaces for a cold start
            lab.run(n, ["ip", "link", "del", lab.interface(n)])
            time.sleep(0.05)
            lab.wireguard_go(n, WIREGUARD_GO)

        start = time.perf_counter()
        _apply_all(lab, registry, keys, names)
        _wait(lambda: _all_handshaken(lab, names))
        figures["converge_s"] = time.perf_counter() - start

        # Revocation of the last member, applied by every remaining one at once.
        revoked = names[-1]
        gone = registry.members[revoked].wireguard_key
        remaining = names[:-1]
        start = time.perf_counter()
        newer = registry.append(
            "revoke", names[0], {"commune": revoked, "reason": "bench"}, keys[names[0]]
        )
        _apply_all(lab, newer, keys, remaining)
        _wait(
            lambda: all(
                gone not in mesh.current_peers(lab.interface(n), lab.argv(n, [])) for n in remaining
            )
        )
        figures["revoke_s"] = time.perf_counter() - start
        # Baseline: the bare removal of one key from every remaining member.
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(
                pool.map(
                    lambda n: subprocess.run(
                        lab.argv(n, ["wg", "set", lab.interface(n), "peer", gone, "remove"]),
                        check=True,
                    ),
                    remaining,
                )
            )
        figures["revoke_floor_s"] = time.perf_counter() - start

        # Status: the coordinator's state folder, then the CLI in its namespace.
        with tempfile.TemporaryDirectory() as folder:
            state = Path(folder)
            keys[names[0]].save(state)
            RegistryStore(state).accept(newer, "bench")
            identity = {"federation": "bench", "commune": names[0], "cabinet": names[0]}
            identity |= {"role": "coordinator", "endpoint": f"{underlay[names[0]]}:8449"}
            (state / "member.json").write_text(json.dumps(identity))
            argv = lab.argv(
                names[0],
                [
                    KLOUDCTL,
                    "--fleet",
                    str(REPO),
                    "federation",
                    "status",
                    "--json",
                    "--interface",
                    lab.interface(names[0]),
                    "--state-dir",
                    folder,
                ],
            )
            start = time.perf_counter()
            done = subprocess.run(argv, capture_output=True, text=True, check=False)
            figures["status_s"] = time.perf_counter() - start
            if done.returncode != 0:
                raise SystemExit(f"bench: status failed: {done.stderr}")
            report = json.loads(done.stdout)
            answered = sum(
                1 for m in report["members"] if (m["mesh"] or {}).get("rtt_ms") is not None
            )
            figures["status_members_answering"] = answered
            start = time.perf_counter()
            subprocess.run(
                lab.argv(names[0], ["wg", "show", lab.interface(names[0]), "latest-handshakes"]),
                capture_output=True,
                check=True,
            )
            figures["status_floor_s"] = time.perf_counter() - start
    return figures


def main() -> None:
    if os.geteuid() != 0:
        raise SystemExit("bench/federation.py needs root (network namespaces)")
    print(f"federation mesh bench, {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC")
    for size in (3, 20):
        f = run(size)
        print(f"{size} members:")
        conv, floor = f["converge_s"], f["converge_floor_s"]
        print(
            f"  converge: {conv:.2f} s (bare wg set floor {floor:.2f} s, ratio {conv / floor:.2f})"
        )
        rev, rfloor = f["revoke_s"], f["revoke_floor_s"]
        print(
            f"  revoke to last member dropping the key: {rev:.2f} s (bare removal"
            f" {rfloor:.2f} s, ratio {rev / rfloor:.2f}); target: within one sync period (30 s)"
        )
        st, sfloor = f["status_s"], f["status_floor_s"]
        print(
            f"  federation status: {st:.2f} s ({int(f['status_members_answering'])} of"
            f" {size - 2} active peers answered over the mesh; bare wg show"
            f" {sfloor * 1000:.0f} ms, ratio {st / sfloor:.1f}); target: under 3 s for 20"
        )


if __name__ == "__main__":
    main()
