"""`kloudctl replication deploy`: replication onto the cabinets themselves.

1. The fleet is loaded first (located errors, nothing touched).
2. Every secret the named cabinets need is made once in the state folder (0600): their
   keys, their rest-server identities on their peers (bcrypt in htpasswd), the owners'
   keys to the copies they host.
3. kloudctl for cabinets (kloudctl.hosts.bundle) is built from this very installation.
4. `playbooks/replication.yml` runs: rest-servers on the targets (their certificates come
   back to the state folder), then kloudctl, restic, keys and timers on the sources.
5. The state folder's endpoints.json records, per deployed cabinet, its rest-server and how
   to reach it over SSH: from then on `replication run|status|check|restore-test` for that
   cabinet run on the cabinet.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kloudctl.federation.peers import PeerResolver
from kloudctl.hosts import bundle
from kloudctl.hosts import inventory as inv
from kloudctl.hosts.runner import Event, RunResult, run_playbook
from kloudctl.model import load_fleet
from kloudctl.replication.layout import Layout, Ssh, sources_of
from kloudctl.replication.roles import REST_SERVER_PORT

PLAYBOOK = "replication.yml"
#: Where the replication_source role puts things on a cabinet (its defaults).
CABINET_REPOSITORY = "/var/lib/kloudctl/restic"


def deploy(
    root: Path,
    layout: Layout,
    cabinets: list[str],
    *,
    testbed_state: Path | None = None,
    on_event: Callable[[Event], None] | None = None,
) -> RunResult:
    fleet = load_fleet(root)
    resolver = PeerResolver(fleet)
    for name in cabinets:
        # `peers: auto`: the choice is made (or kept) and recorded before anything is
        # deployed; no registry or no eligible member stops here, nothing touched.
        resolver.peers(name, commit=True)
    hosted = {s for c in cabinets for s in sources_of(fleet, c, resolver)}
    layout.ensure_secrets(fleet, sorted(set(cabinets) | hosted), resolver)
    (layout.state / "certs").mkdir(parents=True, exist_ok=True)
    built = bundle.build(layout.state / "bundles")
    result = run_playbook(
        root,
        PLAYBOOK,
        limit=cabinets,
        testbed_state=testbed_state,
        extravars={"kloudctl_replication_state": str(layout.state), "kloudctl_bundle": str(built)},
        on_event=on_event,
    )
    testbed = json.loads(testbed_state.read_text()) if testbed_state else None
    hostvars = inv.build(fleet, testbed)["hostvars"]
    failed = {f.host for f in result.failures}
    entries = {
        name: endpoint_entry(
            layout, name, hostvars[name], hosts_copies=bool(sources_of(fleet, name, resolver))
        )
        for name in cabinets
        if name not in failed
    }
    layout.update_endpoints(entries)
    return result


def endpoint_entry(
    layout: Layout, cabinet: str, hostvars: dict[str, Any], *, hosts_copies: bool
) -> dict[str, Any]:
    """How the controller reaches a deployed cabinet: SSH as Ansible does, its rest-server."""
    options: list[str] = []
    if hostvars.get("ansible_ssh_private_key_file"):
        options += ["-i", str(hostvars["ansible_ssh_private_key_file"])]
    options += shlex.split(str(hostvars.get("ansible_ssh_common_args", "")))
    address = str(hostvars["ansible_host"])
    entry: dict[str, Any] = {
        "repository": CABINET_REPOSITORY,
        "ssh": {
            "address": address,
            "user": str(hostvars.get("ansible_user", "root")),
            "options": options,
            "fleet": Ssh.fleet,
            "state": Ssh.state,
        },
    }
    if hosts_copies:
        entry["server"] = {
            "url": f"https://{address}:{REST_SERVER_PORT}",
            "cacert": str(layout.state / "certs" / f"{cabinet}.pem"),
        }
    return entry
