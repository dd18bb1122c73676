"""`kloudctl federation init|invite|join|admit|pending|sync|update|revoke|status|deploy|
serve|backup|failover|failback|failovers`."""

from __future__ import annotations

import signal
import threading
from typing import TYPE_CHECKING, Any

import click

from kloudctl import console
from kloudctl.cli.options import (
    FleetContext,
    cabinet_names,
    json_option,
    pass_fleet,
    testbed_option,
)
from kloudctl.errors import ToolMissing
from kloudctl.federation import service
from kloudctl.federation.endpoint import JoinServer
from kloudctl.federation.invites import parse_ttl
from kloudctl.model.types import format_duration, format_size
from kloudctl.replication.layout import Layout

if TYPE_CHECKING:
    from kloudctl.failover.ops import Failover

state_option = click.option(
    "--state-dir",
    envvar="KLOUDCTL_FEDERATION_STATE",
    type=click.Path(file_okay=False),
    help="This member's federation state folder (default: <fleet>/.state/federation).",
)


def _state(ctx: FleetContext, state_dir: str | None) -> service.FederationState:
    return service.FederationState.for_fleet(ctx.root, state_dir)


@click.group("federation")
def command() -> None:
    """Neighbouring communes' cabinets: signed registry, invites, joining, members' own
    updates (measured capacity, renewed certificate), failover."""


@command.command("init")
@click.argument("name")
@click.option("--cabinet", shell_complete=cabinet_names, help="The coordinator cabinet.")
@click.option("--endpoint", metavar="HOST:PORT", help="Where newcomers reach the join endpoint.")
@click.option(
    "--mesh-endpoint",
    metavar="HOST:PORT",
    help="Where peers reach this cabinet's WireGuard (default: WAN address and port).",
)
@state_option
@pass_fleet
def init(
    ctx: FleetContext,
    name: str,
    cabinet: str | None,
    endpoint: str | None,
    mesh_endpoint: str | None,
    state_dir: str | None,
) -> None:
    """Create federation NAME, this fleet's coordinator cabinet its first member."""
    state = _state(ctx, state_dir)
    registry = service.init(
        state, ctx.fleet(), name, cabinet, endpoint, mesh_endpoint=mesh_endpoint
    )
    me = registry.members[registry.coordinator]
    console.line(
        f"federation '{name}' created (registry version 1): coordinator {me.commune},"
        f" mesh address {me.mesh_address}, pool {registry.pool}"
    )
    console.line(f"join endpoint certificate: {service.tls_fingerprint(state)}")


@command.command("invite")
@click.argument("commune")
@click.option("--expires", default="1h", show_default=True, help="Validity, 1m to 30d.")
@state_option
@pass_fleet
def invite(ctx: FleetContext, commune: str, expires: str, state_dir: str | None) -> None:
    """Issue a single-use, expiring invite for COMMUNE (printed on stdout: a secret)."""
    ttl = parse_ttl(expires)
    issued, text = service.invite(_state(ctx, state_dir), commune, ttl)
    console.info(
        f"invite {issued.id} for '{commune}', single use, expires in {expires}; give it to"
        " the commune over a trusted channel, then confirm the fingerprint its join shows"
    )
    console.text(text + "\n")


@command.command("join")
@click.argument("invite_text", metavar="INVITE")
@click.option("--cabinet", required=True, shell_complete=cabinet_names, help="This cabinet.")
@click.option(
    "--endpoint",
    "endpoints",
    multiple=True,
    metavar="HOST:PORT",
    help="Where peers reach this cabinet's WireGuard (default: WAN address and port).",
)
@state_option
@pass_fleet
def join(
    ctx: FleetContext,
    invite_text: str,
    cabinet: str,
    endpoints: tuple[str, ...],
    state_dir: str | None,
) -> None:
    """Ask to join with INVITE; show the fingerprint the coordinator must confirm."""
    invite_, fingerprint = service.join(
        _state(ctx, state_dir), ctx.fleet(), invite_text, cabinet, list(endpoints)
    )
    console.line(f"join request sent to federation '{invite_.federation}' as '{invite_.commune}'")
    console.line(f"fingerprint: {fingerprint}")
    console.line(
        f"the coordinator confirms it with `kloudctl federation admit {invite_.commune}"
        f" {fingerprint}`; then run `kloudctl federation sync`"
    )


@command.command("pending")
@json_option
@state_option
@pass_fleet
def pending(ctx: FleetContext, as_json: bool, state_dir: str | None) -> None:
    """Join requests waiting for `admit` (coordinator)."""
    state = _state(ctx, state_dir)
    state.coordinator()
    waiting = state.book.pending()
    if as_json:
        console.emit_json(waiting)
        return
    rows = [[w["commune"], w["cabinet"], w["fingerprint"], w["invite"]] for w in waiting]
    console.show(
        console.table("join requests", ["commune", "cabinet", "fingerprint", "invite"], rows)
    )


@command.command("admit")
@click.argument("commune")
@click.argument("fingerprint")
@state_option
@pass_fleet
def admit(ctx: FleetContext, commune: str, fingerprint: str, state_dir: str | None) -> None:
    """Admit COMMUNE whose join request shows FINGERPRINT (coordinator)."""
    state = _state(ctx, state_dir)
    member = service.admit(state, commune, fingerprint)
    version = state.store.held()[0]
    console.line(
        f"admitted '{commune}' (cabinet {member.cabinet}) with mesh address"
        f" {member.mesh_address}: registry version {version}"
    )


@command.command("revoke")
@click.argument("commune")
@click.option("--reason", default="revoked by the coordinator", help="Recorded in the entry.")
@state_option
@pass_fleet
def revoke(ctx: FleetContext, commune: str, reason: str, state_dir: str | None) -> None:
    """Revoke COMMUNE (coordinator); its mesh address is never given again."""
    registry = service.revoke(_state(ctx, state_dir), commune, reason)
    console.line(
        f"revoked '{commune}': registry version {registry.version}; every member drops its"
        " key at its next sync (`kloudctl federation status` shows when the last one did)"
    )


replication_state_option = click.option(
    "--replication-state",
    envvar="KLOUDCTL_REPLICATION_STATE",
    type=click.Path(file_okay=False),
    help="The replication state folder (default: <fleet>/.state/replication).",
)


interface_option = click.option(
    "--interface",
    metavar="IF",
    help="This member's mesh interface (WireGuard, e.g. kfed0): apply to it / read its health.",
)


@command.command("sync")
@interface_option
@state_option
@pass_fleet
def sync(ctx: FleetContext, interface: str | None, state_dir: str | None) -> None:
    """Fetch the registry, verify it, keep it unless older; with --interface, apply it to
    this member's mesh (revoked peers removed) and report the version held."""
    done = service.sync(_state(ctx, state_dir), interface)
    if done.fetched == done.held:
        console.line(f"registry up to date (version {done.held}) {done.source}")
    else:
        console.line(
            f"registry version {done.fetched} verified and held (was {done.held or 'none'})"
            f" {done.source}"
        )
    if done.applied is not None:
        console.line(
            f"mesh {interface}: {len(done.applied.peers)} peers"
            f"; added: {', '.join(done.applied.added) or 'none'}"
            f"; removed: {', '.join(done.applied.removed) or 'none'}"
        )
    if done.reported is not None:
        console.line(f"sync report: {done.reported}")


@command.command("update")
@click.option(
    "--measure",
    is_flag=True,
    help="Measure spare disk (the cabinet's guest storage, Proxmox API) and power headroom"
    " (budget minus the power record's last draw, over SSH) and publish them.",
)
@click.option(
    "--endpoint",
    "endpoints",
    multiple=True,
    metavar="HOST:PORT",
    help="Where peers now reach this cabinet's WireGuard (replaces the registered ones).",
)
@click.option(
    "--renew-certificate",
    is_flag=True,
    help="Make a new certificate for this member's registry endpoint and publish its"
    " fingerprint (kept only once the registry records it; restart `federation serve`).",
)
@json_option
@state_option
@replication_state_option
@pass_fleet
def update(
    ctx: FleetContext,
    measure: bool,
    endpoints: tuple[str, ...],
    renew_certificate: bool,
    as_json: bool,
    state_dir: str | None,
    replication_state: str | None,
) -> None:
    """Publish this member's changes (declared and measured capacity, endpoint certificate,
    endpoints) as a signed update the coordinator appends; members see them at their next
    sync. Says "no change" when the registry already holds them."""
    measurer = None
    if measure:
        from kloudctl.status.measured import measurer_for

        measurer = measurer_for(ctx.fleet(), ctx.root, replication_state)
    done = service.update(
        _state(ctx, state_dir),
        ctx.fleet(),
        measure=measurer,
        endpoints=list(endpoints) or None,
        renew_certificate=renew_certificate,
    )
    if as_json:
        console.emit_json(done.to_dict())
        return
    for note in done.notes:
        console.line(f"not measured: {note}")
    if not done.changes:
        console.line(f"no change: registry version {done.version} already holds these figures")
        return
    retried = f" after {done.attempts} attempts (the head moved)" if done.attempts > 1 else ""
    console.line(
        f"update published{retried}: registry version {done.version}; changed:"
        f" {', '.join(sorted(done.changes))}"
    )
    capacity = done.changes.get("capacity")
    if capacity is not None:
        console.line(
            f"spare disk: declared {_size(capacity['spare_disk_declared'])}, measured"
            f" {_size(capacity['spare_disk_measured'])}; power headroom: declared"
            f" {_watts(capacity['power_headroom_declared'])}, measured"
            f" {_watts(capacity['power_headroom_measured'])}"
        )
    if done.certificate_renewed:
        console.line(
            f"endpoint certificate renewed: {done.changes['tls_fingerprint']}; restart"
            " `federation serve` so that it shows the new one"
        )


def _watts(value: Any) -> str:
    return "-" if value is None else f"{value} W"


def _size(value: Any) -> str:
    return "-" if value is None else format_size(value)


def _ago(value: Any) -> str:
    return "-" if value is None else f"{value} s ago"


def _rtt(value: Any) -> str:
    return "-" if value is None else f"{value:.1f} ms"


@command.command("status")
@json_option
@interface_option
@state_option
@pass_fleet
def status(ctx: FleetContext, as_json: bool, interface: str | None, state_dir: str | None) -> None:
    """Members, registry version each holds, mesh health, spare capacity, power headroom."""
    report = service.status(_state(ctx, state_dir), interface)
    if as_json:
        console.emit_json(report)
        return
    console.line(
        f"federation '{report['federation']}': registry version {report['registry_version']}"
        f" held here ({report['this_member']}, {report['role']}); mesh: {report['mesh']};"
        f" {report['addresses_left']} mesh addresses left in {report['pool']}"
    )
    rows = []
    for m in report["members"]:
        cap = m["capacity"]
        health = m["mesh"] or {}
        rows.append(
            [
                m["commune"],
                m["state"],
                m["mesh_address"],
                "-" if m["registry_version"] is None else m["registry_version"],
                m["synced_at"] or "-",
                _ago(health.get("handshake_age_s")),
                _rtt(health.get("rtt_ms")),
                f"{_size(cap['spare_disk_declared'])} / {_size(cap['spare_disk_measured'])}",
                f"{_watts(cap['power_headroom_declared'])} /"
                f" {_watts(cap['power_headroom_measured'])}",
            ]
        )
    columns = [
        "commune",
        "state",
        "mesh address",
        "registry version",
        "synced at",
        "last handshake",
        "round trip",
        "spare disk (declared / measured)",
        "power headroom (declared / measured)",
    ]
    console.show(console.table("members", columns, rows))
    revocation = report["revocation"]
    if revocation is not None:
        if revocation["waiting_for"]:
            console.line(
                f"revocation of '{revocation['revoked']}' (version {revocation['version']}):"
                f" not yet applied by {', '.join(revocation['waiting_for'])}"
            )
        else:
            console.line(
                f"revocation of '{revocation['revoked']}' (version {revocation['version']}):"
                f" applied by every member {revocation['seconds']} s after it was made"
            )


@command.command("deploy")
@click.argument("cabinets", nargs=-1, shell_complete=cabinet_names)
@testbed_option("Deploy on")
@json_option
@pass_fleet
def deploy(
    ctx: FleetContext, cabinets: tuple[str, ...], use_testbed: bool | None, as_json: bool
) -> None:
    """Put the mesh on the federation's cabinets (all members when none is named): wg,
    wireguard-go, kloudctl, the mesh, sync and endpoint units, failover backup timers.

    Prints what changed on each cabinet. Exit 1 when none finished, 3 when some did."""
    from kloudctl.federation import deploy as federation_deploy
    from kloudctl.report.hosts import Progress, recap_json
    from kloudctl.testbed import bed as testbed

    names = federation_deploy.members_to_deploy(ctx.fleet(), list(cabinets))
    target = testbed.target_state(ctx.root, names, use_testbed)
    progress = Progress(names)
    with progress.shown():
        result = federation_deploy.deploy(
            ctx.root,
            names,
            bundles=ctx.root / ".state" / "bundles",
            testbed_state=target,
            on_event=progress,
        )
    if as_json:
        console.emit_json(recap_json(result))
    else:
        for line in federation_deploy.summary(result):
            console.line(line)
    federation_deploy.check(result)


@command.command("serve")
@click.option(
    "--listen",
    metavar="HOST:PORT",
    help="Default: the endpoint given to `init` (coordinator), this member's mesh address"
    " and the join endpoint's port (other members).",
)
@state_option
@pass_fleet
def serve(ctx: FleetContext, listen: str | None, state_dir: str | None) -> None:
    """Run the join endpoint in the foreground (coordinator), or this member's registry
    read-only over the mesh (other members), until interrupted."""
    state = _state(ctx, state_dir)
    host, port, read_only = service.serving(state, listen)
    server = JoinServer(
        state.folder,
        state.folder / service.TLS_CERT,
        state.folder / service.TLS_KEY,
        host,
        port,
        on_event=console.info,
        read_only=read_only,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    server.start()
    what = "registry endpoint (read-only)" if read_only else "join endpoint"
    console.info(f"{what} on {host}:{server.port}, certificate {service.tls_fingerprint(state)}")
    problem = service.pin_problem(state)
    if problem:
        console.info(f"warning: {problem}")
    try:
        stop.wait()
    finally:
        server.stop()


def _failover(
    ctx: FleetContext, state_dir: str | None, replication_state: str | None, read_only: bool = False
) -> Failover:
    # Imported here: failover drives Proxmox's API, whose client the trimmed kloudctl on a
    # cabinet does not carry, and `federation sync` must load there.
    try:
        from kloudctl.failover.ops import Failover
    except ModuleNotFoundError as exc:  # on a cabinet whose bundle lacks the API client
        raise ToolMissing(
            f"this kloudctl lacks the Python module '{exc.name}' that failover and its backups"
            " need (the Proxmox API client): run them from the controller, or deploy a"
            " kloudctl that carries it"
        ) from None

    layout = Layout.for_fleet(ctx.root, replication_state, read_only=read_only)
    return Failover(ctx.fleet(), layout, _state(ctx, state_dir).folder)


@command.command("backup")
@click.argument("cabinet", shell_complete=cabinet_names)
@click.option("--vm", "vms", multiple=True, help="Only this failover VM (repeatable).")
@json_option
@state_option
@replication_state_option
@pass_fleet
def backup(
    ctx: FleetContext,
    cabinet: str,
    vms: tuple[str, ...],
    as_json: bool,
    state_dir: str | None,
    replication_state: str | None,
) -> None:
    """Back up CABINET's failover VMs (vzdump) into its replica on its peers."""
    done = _failover(ctx, state_dir, replication_state).backup(cabinet, list(vms) or None)
    if as_json:
        console.emit_json(done)
        return
    rows = [
        [
            d["vm"],
            d["vmid"],
            d["archive"],
            format_size(d["size"]),
            d["snapshot"][:8],
            "; ".join(f"{p}: {c}" for p, c in d["copies"].items()) or "no peer",
        ]
        for d in done
    ]
    columns = ["VM", "VMID", "archive", "size", "snapshot", "copied to"]
    console.show(console.table(f"failover backups of {cabinet}", columns, rows))


@command.command("failover")
@click.argument("cabinet", shell_complete=cabinet_names)
@click.argument("vm")
@click.option(
    "--to",
    "peer",
    shell_complete=cabinet_names,
    help="The peer (default: the replication peer holding the newest backup of VM).",
)
@click.option("--dry-run", is_flag=True, help="Show the plan, change nothing.")
@json_option
@state_option
@replication_state_option
@pass_fleet
def failover(
    ctx: FleetContext,
    cabinet: str,
    vm: str,
    peer: str | None,
    dry_run: bool,
    as_json: bool,
    state_dir: str | None,
    replication_state: str | None,
) -> None:
    """Restore council VM of CABINET on a peer from its replica there, and start it."""
    ops = _failover(ctx, state_dir, replication_state)
    why = None
    if peer is None:
        peer, why = ops.choose_peer(cabinet, vm)
    done = ops.failover(cabinet, vm, peer, dry_run=dry_run)
    if why is not None:
        done["peer_chosen"] = why
    if as_json:
        console.emit_json(done)
        return
    what = "plan (nothing changed)" if dry_run else "done"
    if why is not None:
        console.line(f"peer chosen: '{peer}' ({why})")
    console.line(
        f"failover of '{vm}' ({cabinet}, VMID {done['home_vmid']}) to '{peer}' as VMID"
        f" {done['guest_vmid']} on {done['node']}, pool '{done['pool']}': {what}"
    )
    for step in done["steps"]:
        console.line(f"  - {step}")
    age = format_duration(max(int(done["data_age_seconds"]), 1))
    console.line(f"recovery point: {done['recovery_point']} (data {age} old)")
    if not dry_run:
        since = ""
        if done["resumed"]:
            since = (
                " (this run, which resumed an interrupted one; the service came back"
                f" {done['since_first_attempt_seconds']:.2f} s after the first attempt began)"
            )
        elif done["already_running"]:
            since = (
                " (this run: the guest was already running, since"
                f" {done['since_first_attempt_seconds']:.2f} s after the first attempt began)"
            )
        console.line(f"recovery time: {done['recovery_time_seconds']:.2f} s{since}")


@command.command("failback")
@click.argument("cabinet", shell_complete=cabinet_names)
@click.argument("vm")
@json_option
@state_option
@replication_state_option
@pass_fleet
def failback(
    ctx: FleetContext,
    cabinet: str,
    vm: str,
    as_json: bool,
    state_dir: str | None,
    replication_state: str | None,
) -> None:
    """Bring VM back to CABINET from its peer, with the data written meanwhile."""
    done = _failover(ctx, state_dir, replication_state).failback(cabinet, vm)
    if as_json:
        console.emit_json(done)
        return
    console.line(
        f"failback of '{vm}' from '{done['peer']}' (VMID {done['guest_vmid']}) to"
        f" '{cabinet}' (VMID {done['home_vmid']}) in {done['duration_seconds']:.2f} s:"
        f" archive {done['archive']} ({format_size(done['size'])}, sha256"
        f" {done['sha256'][:16]}…) moved"
    )
    for step in done["steps"]:
        console.line(f"  - {step}")


@command.command("failovers")
@json_option
@state_option
@replication_state_option
@pass_fleet
def failovers(
    ctx: FleetContext, as_json: bool, state_dir: str | None, replication_state: str | None
) -> None:
    """Council VMs failed over to a peer (and back), as recorded here."""
    found = _failover(ctx, state_dir, replication_state, read_only=True).journals()
    if as_json:
        console.emit_json(found)
        return
    rows = [
        [
            j["home"],
            j["vm"],
            j["home_vmid"],
            j["peer"],
            j["guest_vmid"],
            j["state"],
            j["snapshot_time"],
        ]
        for j in found
    ]
    columns = ["home", "VM", "VMID", "peer", "guest VMID", "state", "recovery point"]
    console.show(console.table("failovers", columns, rows))
