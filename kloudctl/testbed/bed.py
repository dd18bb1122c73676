"""`kloudctl testbed up|status|down`: the fleet's cabinets as test cabinets in podman.

One container per cabinet host (named ``kloudctl-testbed-<cabinet>``, host name = the
cabinet's first node) on an internal podman network, plus two side containers:

- ``mirror``: serves the local apt repository of stand-in Proxmox packages over HTTP
  (see `kloudctl.testbed.aptrepo`);
- ``ups``: a real NUT server (upsd) with one ``dummy-ups`` per declared UPS, reporting a
  draw the tests can change, so the power_budget role's NUT client and recorder run for
  real.

State lives in ``.state/testbed/`` (mode 0700): the testbed description (no secrets), the
SSH key pair, known_hosts, and ``secret-vars.json`` (0600) with run-time test secrets.
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import subprocess
from pathlib import Path
from typing import Any

from kloudctl.errors import InputError, ToolMissing
from kloudctl.model import Fleet
from kloudctl.testbed import aptrepo, cabinets
from kloudctl.testbed.cabinets import Testbed
from kloudctl.testbed.podman import podman

PREFIX = "kloudctl-testbed"
#: Tests and benchmarks set their own prefix so they never touch a developer's testbed.
PREFIX_ENV = "KLOUDCTL_TESTBED_PREFIX"
SECRET_VARS = "secret-vars.json"
#: What the dummy UPS reports until a test changes it (watts).
DEFAULT_DRAW = 180


def state_dir(root: Path) -> Path:
    return Path(root) / ".state" / "testbed"


def load(root: Path) -> Testbed | None:
    try:
        return Testbed.load(state_dir(root))
    except (OSError, ValueError):
        return None


def target_state(root: Path, names: list[str], use: bool | None) -> Path | None:
    """The testbed's state file when `names` are to be reached as test cabinets, else None
    (the real hosts). `use` None: the test cabinets when the testbed runs. Every name must
    then run in it, or nothing starts: `InputError` naming those that do not."""
    bed = load(root)
    if use is None:
        use = bed is not None
    if not use:
        return None
    missing = [n for n in names if bed is None or n not in bed.hosts]
    if missing:
        raise InputError(
            f"not running in the testbed: {', '.join(missing)} "
            "(`kloudctl testbed up` them, or pass --no-testbed for the real hosts)"
        )
    return state_dir(root) / cabinets.STATE_FILE


def up(
    fleet: Fleet,
    names: list[str] | None = None,
    *,
    state: Path,
    prefix: str | None = None,
    image: str | None = None,
) -> Testbed:
    """Start test cabinets for `names` (all cabinets by default); idempotent."""
    prefix = prefix or os.environ.get(PREFIX_ENV) or PREFIX
    names = names or [c.name for c in fleet]
    models = {n: fleet.cabinet(n) for n in names}  # NotFound (exit 2) before anything starts
    bed = cabinets.start(
        names,
        prefix=prefix,
        state_dir=state,
        image=image,
        hostnames={n: c.hardware.nodes[0].name for n, c in models.items()},
    )
    mirror = bed.services.get("mirror")
    if mirror is None or not _running(mirror.container):
        repo = aptrepo.build(Path(bed.state_dir) / "repo")
        mirror = cabinets.start_service(
            bed,
            "mirror",
            ["python3", "-m", "http.server", "80", "--bind", "0.0.0.0", "--directory", "/srv"],
            volumes={str(repo): "/srv:ro"},
        )
    upses = {c.power.ups.name: DEFAULT_DRAW for c in fleet if c.name in bed.hosts and c.power.ups}
    secret_vars = _secret_vars(Path(bed.state_dir))
    password = secret_vars.setdefault("_ups_password", secrets.token_urlsafe(18))
    ups = bed.services.get("ups")
    if upses and (ups is None or not _running(ups.container)):
        ups = start_ups(bed, upses, password)
    url = f"http://{mirror.address}"
    for name in bed.hosts:
        model = fleet.cabinet(name) if name in fleet.cabinets else None
        hostvars: dict[str, object] = {
            "proxmox_host__repository_url": url,
            "proxmox_host__repository_key_url": f"{url}/{aptrepo.KEY_FILE}",
        }
        if model is not None and model.power.ups and ups is not None:
            hostvars["power_budget__ups_host"] = ups.address
            secret_vars[name] = {"power_budget__ups_password": password}
        bed.hostvars[name] = hostvars
    _save_secret_vars(Path(bed.state_dir), secret_vars)
    _pair_sims(bed, fleet.root)
    bed.save()
    return bed


def _pair_sims(bed: Testbed, root: Path) -> None:
    """Pair every test cabinet with its simulated Proxmox API (`kloudctl sim`).

    One simulator process (ephemeral, loopback, free ports) serves the testbed's cabinets;
    its run file (0600, in the testbed's state) holds the URLs, fingerprints and root
    passwords. INTEGRATION POINT: `kloudctl sim` comes from branch `sim`; where it is not
    there yet, the pairing is recorded as pending and bootstrap skips the token step.
    """
    if importlib.util.find_spec("kloudctl.sim") is None:
        for name in bed.hosts:
            bed.pairings[name] = {"sim": "pending", "note": "kloudctl sim is not available"}
        return
    from kloudctl.answers import UnexpectedAnswer
    from kloudctl.sim.runner import read_run, start_background, stop
    from kloudctl.sim.serve import ServeOptions

    sim_dir = Path(bed.state_dir) / "sim"
    wanted = sorted(bed.hosts)
    try:
        run = read_run(sim_dir)
    except UnexpectedAnswer:  # a run file no simulator wrote: start one, it replaces the file
        run = None
    if run is not None and sorted(c["name"] for c in run["cabinets"]) != wanted:
        stop(sim_dir)
        run = None
    if run is None:
        options = ServeOptions(
            cabinets=tuple(wanted),
            fleet_dir=root,
            state_dir=sim_dir,
            ephemeral=True,
            task_seconds=0.05,
            base_address="127.0.0.10",
            port=0,
        )
        run = start_background(options)
    bed.pairings = {
        ep["name"]: {
            "sim": ep["url"],
            "fingerprint": ep["fingerprint"],
            "run_file": str(sim_dir / "run.json"),
        }
        for ep in run["cabinets"]
        if ep["name"] in bed.hosts
    }


def _unpair_sims(state: Path) -> None:
    if importlib.util.find_spec("kloudctl.sim") is None:
        return
    from kloudctl.sim.runner import stop

    stop(Path(state) / "sim")


def _running(container: str) -> bool:
    proc = podman("inspect", "--format", "{{.State.Running}}", container, check=False)
    return proc.returncode == 0 and proc.stdout.strip() == "true"


def _secret_vars(state: Path) -> dict[str, Any]:
    path = state / SECRET_VARS
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):  # absent, or not an object: no secrets yet
        return {}


def _save_secret_vars(state: Path, data: dict[str, Any]) -> None:
    path = state / SECRET_VARS
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
    path.chmod(0o600)


def start_ups(bed: Testbed, upses: dict[str, int], password: str) -> cabinets.Host:
    """A NUT server with one dummy UPS per name, each reporting `watts`."""
    conf = Path(bed.state_dir) / "nut"
    conf.mkdir(exist_ok=True)
    (conf / "nut.conf").write_text("MODE=netserver\n")
    (conf / "upsd.conf").write_text("LISTEN 0.0.0.0 3493\n")
    ups_conf = ""
    for name, watts in upses.items():
        ups_conf += f'[{name}]\n  driver = dummy-ups\n  port = {name}.dev\n  desc = "testbed UPS"\n'
        set_draw(bed, name, watts, conf)
    (conf / "ups.conf").write_text(ups_conf)
    users = conf / "upsd.users"
    fd = os.open(users, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"[monitor]\n  password = {password}\n  upsmon secondary\n")
    return cabinets.start_service(
        bed,
        "ups",
        [
            "sh",
            "-c",
            "mkdir -p /run/nut && upsdrvctl -u root start && exec upsd -u root -F",
        ],
        volumes={str(conf): "/etc/nut"},
    )


def set_draw(bed: Testbed, ups: str, watts: int, conf: Path | None = None) -> None:
    """What the simulated UPS `ups` reports as its real power (the dummy driver rereads it)."""
    conf = conf or Path(bed.state_dir) / "nut"
    (conf / f"{ups}.dev").write_text(
        f"ups.status: OL\nups.realpower: {watts}\nups.realpower.nominal: 900\n"
        f"ups.load: {round(watts * 100 / 900)}\n"
    )


def status(root: Path) -> list[dict[str, Any]]:
    bed = load(root)
    if bed is None:
        return []
    rows = []
    for name, host in sorted(bed.hosts.items()):
        running = _running(host.container)
        ssh = "-"
        if running:
            proc = bed.ssh(name, "systemctl", "is-system-running", check=False)
            ssh = proc.stdout.strip() or f"unreachable ({proc.returncode})"
        rows.append(
            {
                "cabinet": name,
                "container": host.container,
                "hostname": host.hostname,
                "address": host.address,
                "running": running,
                "system": ssh,
                "sim": bed.pairings.get(name, {}).get("sim", "-"),
            }
        )
    for name, svc in sorted(bed.services.items()):
        rows.append(
            {
                "cabinet": f"({name})",
                "container": svc.container,
                "hostname": "-",
                "address": svc.address,
                "running": _running(svc.container),
                "system": "-",
                "sim": "-",
            }
        )
    return rows


def down(root: Path, names: list[str] | None = None) -> list[str]:
    bed = load(root)
    if bed is None:
        return []
    unknown = [n for n in names or [] if n not in bed.hosts]
    if unknown:
        raise InputError(f"not in the testbed: {', '.join(unknown)} (up: {', '.join(bed.hosts)})")
    removed = list(bed.hosts) if not names else list(names)
    cabinets.stop(bed, names or None)
    if not bed.hosts:
        _unpair_sims(Path(bed.state_dir))
    return removed


def ssh_command(root: Path, cabinet: str) -> list[str]:
    bed = load(root)
    if bed is None or cabinet not in bed.hosts:
        raise InputError(f"{cabinet} is not running in the testbed")
    return ["ssh", *bed.ssh_options(), f"root@{bed.hosts[cabinet].address}"]


def run_ssh(root: Path, cabinet: str, command: list[str]) -> int:
    try:
        return subprocess.call([*ssh_command(root, cabinet), *command])
    except FileNotFoundError:
        raise ToolMissing("ssh is not installed: `apt-get install openssh-client`") from None
