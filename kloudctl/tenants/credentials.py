"""A tenant's own credentials, read from its stack's (encrypted) outputs."""

from __future__ import annotations

from pathlib import Path

from kloudctl.answers import UnexpectedAnswer, dig
from kloudctl.errors import NotFound
from kloudctl.model import Fleet


def tenant_credentials(fleet: Fleet, root: Path, cabinet: str, tenant: str) -> dict[str, str]:
    from kloudctl.tenants.engine import TenantsStack

    declared = [t.name for t in fleet.cabinet(cabinet).tenants]
    if tenant not in declared:
        raise NotFound(
            f"cabinet {cabinet} has no tenant {tenant!r} (tenants: {', '.join(declared)})"
        )
    outputs = TenantsStack(fleet, root, cabinet).outputs()
    tool = f"pulumi (the outputs of the tenants stack of {cabinet})"
    # Only `tenants` is ever quoted in a message: the other outputs hold the token secrets.
    tenants = dig(tool, outputs.get("tenants") or {}, kind=dict)
    secrets = outputs.get("token_secrets") or {}
    if not isinstance(secrets, dict):
        raise UnexpectedAnswer(tool, "token_secrets to be an object", "(not shown: secrets)")
    if tenant not in tenants or tenant not in secrets:
        raise NotFound(
            f"tenant {tenant} is declared but not applied yet: "
            f"run `kloudctl tenants apply {cabinet}`"
        )
    return {
        "PROXMOX_URL": str(outputs.get("endpoint", "")),
        "PROXMOX_FINGERPRINT": str(outputs.get("fingerprint", "")),
        "PROXMOX_TOKEN_ID": dig(tool, tenants, tenant, "token_id", kind=str),
        "PROXMOX_TOKEN_SECRET": str(secrets[tenant]),
        "PROXMOX_POOL": dig(tool, tenants, tenant, "pool", kind=str),
    }
