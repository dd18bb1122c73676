"""`kloudctl tenant token CABINET TENANT`: a tenant's own API credentials."""

from __future__ import annotations

import json
import stat

import click

from kloudctl import console, files
from kloudctl.cli.options import FleetContext, cabinet_names, json_option, pass_fleet


@click.group("tenant")
def command() -> None:
    """One tenant of a cabinet."""


@command.command("token")
@click.argument("cabinet", shell_complete=cabinet_names)
@click.argument("tenant")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False),
    help="Write the credentials to this file (mode 0600) instead of standard output.",
)
@json_option
@pass_fleet
def token(ctx: FleetContext, cabinet: str, tenant: str, output: str | None, as_json: bool) -> None:
    """Hand TENANT its privilege-separated API token (PVEVMAdmin on its pool only).

    Prints shell lines (PROXMOX_URL, PROXMOX_FINGERPRINT, PROXMOX_TOKEN_ID,
    PROXMOX_TOKEN_SECRET) or JSON; the secret is shown only here, on purpose.
    """
    from kloudctl.tenants.credentials import tenant_credentials

    if output:
        files.writable_file(output, "--output")  # a wrong path fails before any work
    creds = tenant_credentials(ctx.fleet(), ctx.root, cabinet, tenant)
    text = (
        json.dumps(creds, indent=2) + "\n"
        if as_json
        else "".join(f"export {k}='{v}'\n" for k, v in creds.items())
    )
    if output:
        # An existing file keeps the mode its owner gave it, as `>` would.
        path = files.write_atomic(output, text, mode=0o600, keep_mode=True, what="--output")
        mode = stat.S_IMODE(path.stat().st_mode)
        console.info(f"credentials of {tenant} on {cabinet} written to {output} (mode {mode:04o})")
    else:
        console.text(text)
