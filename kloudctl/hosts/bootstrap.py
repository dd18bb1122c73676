"""`kloudctl cabinet bootstrap`: host roles through Ansible, then the automation token.

1. The fleet is loaded first: a broken cabinet file stops everything, no host touched.
2. ``playbooks/bootstrap.yml`` (roles base, proxmox_host, power_budget) runs on every
   named cabinet in parallel (one ansible-playbook run, hosts in parallel forks).
3. On each cabinet whose play succeeded, the automation user and its API token are made
   through the cabinet's Proxmox API (root ticket once), checked by calling the API with
   the new token, and the secret is stored in the secret store (0600, outside git). Only
   its reference is reported.

On the testbed, hosts are the test cabinets' containers and the API is the simulator paired
with each (``kloudctl sim``); its root password comes from the simulator's 0600 run file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kloudctl.answers import UnexpectedAnswer, dig
from kloudctl.errors import KloudError
from kloudctl.hosts import secrets
from kloudctl.hosts.runner import Event, RunResult, run_playbook
from kloudctl.model import load_fleet
from kloudctl.proxmox.automation import ensure_automation_token

PLAYBOOK = "bootstrap.yml"
ROOT_PASSWORD_ENV = "KLOUDCTL_PROXMOX_ROOT_PASSWORD"


@dataclass(frozen=True)
class ApiAccess:
    endpoint: str
    fingerprint: str
    root_user: str
    root_password: str


@dataclass(frozen=True)
class TokenOutcome:
    cabinet: str
    token_id: str
    status: str  # created, unchanged, skipped, failed
    reference: str = ""
    detail: str = ""


@dataclass
class BootstrapResult:
    run: RunResult
    tokens: list[TokenOutcome] = field(default_factory=list)

    def raise_for_status(self) -> None:
        self.run.raise_for_status()
        failed = [t for t in self.tokens if t.status == "failed"]
        if failed:
            from kloudctl.errors import ExternalError

            raise ExternalError(
                "automation token failed on "
                + ", ".join(f"{t.cabinet} ({t.detail})" for t in failed)
            )


def testbed_api(state: Path, cabinet: str) -> ApiAccess | None:
    """The simulated API paired with a test cabinet, if any (see kloudctl.testbed.bed)."""
    try:
        bed = json.loads(Path(state).read_text())
    except (OSError, ValueError):
        return None
    where = f"the testbed state {state}"
    run_file = dig(where, bed, "pairings", cabinet, "run_file", kind=str, default=None)
    if not run_file:
        return None
    try:
        run = json.loads(Path(run_file).read_text())
    except (OSError, ValueError):
        return None
    tool = f"the simulator's run file {run_file}"
    cabinets = run.get("cabinets") if isinstance(run, dict) else None
    for ep in cabinets if isinstance(cabinets, list) else []:
        if isinstance(ep, dict) and ep.get("name") == cabinet:
            ep = {"user": "root@pam", **ep}
            url, fingerprint, user, password = (
                _run_field(tool, ep, key) for key in ("url", "fingerprint", "user", "password")
            )
            return ApiAccess(url, fingerprint, user, password)
    return None


def _run_field(tool: str, endpoint: dict[str, Any], key: str) -> str:
    """A field of the simulator's run file, checked by hand: `dig` would quote the file,
    which holds root passwords."""
    value = endpoint.get(key)
    if not isinstance(value, str):
        raise UnexpectedAnswer(tool, f"{key} of each cabinet to be a string", "(not shown)")
    return value


def bootstrap(
    root: Path,
    cabinets: Sequence[str],
    *,
    testbed_state: Path | None = None,
    on_event: Callable[[Event], None] | None = None,
    api_access: Callable[[str], ApiAccess | None] | None = None,
) -> BootstrapResult:
    root = Path(root).resolve()
    fleet = load_fleet(root)
    names = list(cabinets) or [c.name for c in fleet]
    run = run_playbook(root, PLAYBOOK, limit=names, testbed_state=testbed_state, on_event=on_event)
    result = BootstrapResult(run)
    done = [n for n in names if n not in run.failed and n not in run.unreachable]
    if not done:
        return result
    store = secrets.read(root, secrets.TOKENS)
    for name in done:
        cabinet = fleet.cabinet(name)
        token = cabinet.proxmox.token
        full = f"{token.user}!{token.id}"
        try:
            access = _access(
                name,
                cabinet.proxmox.endpoint,
                cabinet.proxmox.fingerprint,
                testbed_state,
                api_access,
            )
        except KloudError as exc:  # e.g. a simulator's run file we cannot read
            result.tokens.append(TokenOutcome(name, full, "failed", detail=str(exc)))
            continue
        if isinstance(access, str):
            result.tokens.append(TokenOutcome(name, full, "skipped", detail=access))
            continue
        known = store.get(name, {})
        same_api = known.get("endpoint") == access.endpoint
        try:
            made = ensure_automation_token(
                access.endpoint,
                access.fingerprint,
                root_user=access.root_user,
                root_password=access.root_password,
                user=token.user,
                token_id=token.id,
                known_secret=known.get("secret") if same_api else None,
            )
        except KloudError as exc:
            result.tokens.append(TokenOutcome(name, full, "failed", detail=str(exc)))
            continue
        store[name] = {
            "endpoint": access.endpoint,
            "fingerprint": access.fingerprint,
            "token_id": made.token_id,
            "secret": made.secret,
        }
        secrets.write(root, secrets.TOKENS, store)
        result.tokens.append(
            TokenOutcome(
                name,
                made.token_id,
                "created" if made.created else "unchanged",
                reference=secrets.reference(root, secrets.TOKENS, name),
            )
        )
    return result


def _access(
    name: str,
    endpoint: Any,
    fingerprint: str,
    testbed_state: Path | None,
    api_access: Callable[[str], ApiAccess | None] | None,
) -> ApiAccess | str:
    if api_access is not None:
        found = api_access(name)
        return found if found else "no API access given for this cabinet"
    if testbed_state is not None:
        found = testbed_api(testbed_state, name)
        if found is None:
            return (
                "no simulated Proxmox API paired with this test cabinet "
                "(kloudctl sim not available: see `kloudctl testbed status`)"
            )
        return found
    password = os.environ.get(ROOT_PASSWORD_ENV)
    if not password:
        return f"set {ROOT_PASSWORD_ENV} (root@pam, used once) to create the automation token"
    return ApiAccess(str(endpoint), fingerprint, "root@pam", password)
