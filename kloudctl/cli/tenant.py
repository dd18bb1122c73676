"""`kloudctl tenant token CABINET TENANT`: a tenant's own API credentials."""

from __future__ import annotations

import json
import os

import click

from kloudctl import console
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
    type=click.Path(dir_okay=False, writable=True),
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

    creds = tenant_credentials(ctx.fleet(), ctx.root, cabinet, tenant)
    text = (
        json.dumps(creds, indent=2) + "\n"
        if as_json
        else "".join(f"export {k}='{v}'\n" for k, v in creds.items())
    )
    if output:
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        console.info(f"credentials of {tenant} on {cabinet} written to {output} (mode 0600)")
    else:
        click.echo(text, nl=False)
