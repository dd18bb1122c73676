"""The secrets sweep (issue 16): the real `scripts/demo.sh`, run whole, leaves no secret it
generated in plain text anywhere it wrote, nor in its output.

The demo runs in a world of its own: a copy of the example fleet (`KLOUDCTL_FLEET`), its
state there and in `KLOUDCTL_DEMO_STATE`, a temporary HOME and TMPDIR, containers named
with a prefix of this test's; `KLOUDCTL_DEMO_KEEP` leaves its temporary folders so they
can be searched. Everything is removed after, podman cabinets and networks included, even
when the demo fails or times out.

The secrets are collected from where they really are, never listed here:
- the simulator's root password of each cabinet, from its `run.json` while it runs (the
  simulator removes that file when it stops);
- the automation token of each cabinet, from the targets file `tenants use-sim` wrote;
- each tenant's API token, from its stack's outputs (`kloudctl tenant token`, Pulumi
  decrypting them with the passphrase);
- the Pulumi passphrase itself;
- the restic repository keys and rest-server passwords of replication, from its secret
  files;
- the residents' mailbox passwords the mail stage made, from the 0600 file it hands them
  over in (`KLOUDCTL_DEMO_SECRETS`);
- each federation member's private keys (ed25519 signing, WireGuard) and its join
  endpoint's TLS key, from the PEM files the federation scene made; a raw key is also
  looked for in WireGuard's own form (base64 of its 32 bytes).

Each value is looked for as written and as base64 (standard and URL-safe, as any of the
three alignments can show it) in every file under the demo's folders, except the secret
files that are each value's own home, and in the captured output.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from kloudctl.model import load_fleet

ROOT = Path(__file__).resolve().parents[2]
PREFIX = f"kloudctl-sweep{os.getpid() % 10000}"
#: The whole demo, generously: about 7 minutes on an idle machine.
DEMO_TIMEOUT = 40 * 60
#: Values shorter than this are not secrets worth the name (and would match by chance).
MIN_SECRET = 12
#: Files larger than this are not read whole (disk images, restic packs: encrypted).
MAX_READ = 64 * 1024**2

pytestmark = [pytest.mark.slow]


def _podman_names(kind: str) -> list[str]:
    if shutil.which("podman") is None:
        return []
    listing = {
        "container": ["podman", "ps", "-a", "--format", "{{.Names}}"],
        "network": ["podman", "network", "ls", "--format", "{{.Name}}"],
    }[kind]
    done = subprocess.run(listing, capture_output=True, text=True, timeout=60)
    return [n for n in done.stdout.split() if n.startswith(PREFIX)]


def _remove_ours() -> None:
    """This test's containers and networks (by its prefix), whatever state they are in."""
    for name in _podman_names("container"):
        subprocess.run(["podman", "rm", "-f", "-t", "0", name], capture_output=True, timeout=120)
    for name in _podman_names("network"):
        subprocess.run(["podman", "network", "rm", "-f", name], capture_output=True, timeout=60)


class Demo:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.fleet = base / "fleet"
        self.state = base / "demo-state"
        self.tmp = base / "tmp"
        self.home = base / "home"
        self.handed = base / "handed-over"
        for folder in (self.state, self.tmp, self.home, self.handed):
            folder.mkdir(parents=True)
        # The fleet folder as the demo uses it: declarations, and what runs against them.
        for part in ("cabinets", "backups", "playbooks", "roles", "inventory", "pulumi"):
            shutil.copytree(ROOT / part, self.fleet / part, ignore=shutil.ignore_patterns(
                "__pycache__", ".state"))  # fmt: skip
        shutil.copy(ROOT / "ansible.cfg", self.fleet / "ansible.cfg")
        self.output = b""
        self.returncode: int | None = None
        self.sim_passwords: set[str] = set()

    def env(self) -> dict[str, str]:
        real_cache = Path(os.environ.get("KLOUDCTL_CACHE", Path.home() / ".cache" / "kloudctl"))
        return {
            **os.environ,
            "HOME": str(self.home),
            "TMPDIR": str(self.tmp),
            "KLOUDCTL_FLEET": str(self.fleet),
            "KLOUDCTL_DEMO_STATE": str(self.state),
            "KLOUDCTL_DEMO_KEEP": "1",
            "KLOUDCTL_DEMO_PREFIX": PREFIX,
            "KLOUDCTL_DEMO_SECRETS": str(self.handed),
            # The built test image and tools stay where the project keeps them.
            "KLOUDCTL_CACHE": str(real_cache),
            "NO_COLOR": "1",
        }

    def run(self) -> None:
        proc = subprocess.Popen(
            ["bash", str(ROOT / "scripts" / "demo.sh")],
            cwd=ROOT,
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its whole process group is ended on a timeout
        )
        watcher = threading.Thread(target=self._watch_sim, args=(proc,), daemon=True)
        watcher.start()
        try:
            self.output, _ = proc.communicate(timeout=DEMO_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)
            self.output, _ = proc.communicate(timeout=120)
            pytest.fail(f"the demo took more than {DEMO_TIMEOUT} s:\n{self._tail()}")
        finally:
            watcher.join(5)
        self.returncode = proc.returncode

    def _watch_sim(self, proc: subprocess.Popen[bytes]) -> None:
        """The simulator's root passwords, read from its run.json while it exists."""
        while proc.poll() is None:
            # the fleet's simulator, and the failover scene's own (one per cabinet)
            runs = [self.state / "demo-sim" / "run.json", *self.tmp.glob("*/sim-*/run.json")]
            for run_file in runs:
                try:
                    run = json.loads(run_file.read_text())
                    self.sim_passwords |= {c["password"] for c in run["cabinets"]}
                except (OSError, ValueError, KeyError, TypeError):
                    pass
            time.sleep(0.5)

    def _tail(self) -> str:
        return self.output.decode(errors="replace")[-4000:]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    base = tmp_path_factory.mktemp("sweep")
    d = Demo(base)
    try:
        d.run()
        yield d
    finally:
        _remove_ours()
        shutil.rmtree(base, ignore_errors=True)


def _kloudctl(demo: Demo, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ROOT / ".venv" / "bin" / "python"), "-m", "kloudctl", "--fleet", str(demo.fleet),
         *args],
        capture_output=True, text=True, timeout=300, env={**demo.env(), **env}, cwd=ROOT,
    )  # fmt: skip


def _collect(demo: Demo) -> tuple[dict[str, str], set[Path]]:
    """secret value -> what it is; and the files that are secrets' own homes."""
    found: dict[str, str] = {}
    homes: set[Path] = set()
    for password in demo.sim_passwords:
        found[password] = "the simulator's root password"
    # A simulator kept in a state folder (the failover scene's, stopped and started again)
    # keeps its root password in its own 0600 credentials file: that file is its home.
    for credentials in demo.tmp.glob("*/sim-*/*/credentials.json"):
        homes.add(credentials)
        found[json.loads(credentials.read_text())["root_password"]] = (
            "the simulator's root password"
        )
    tenants_dirs = [p.parent for p in demo.tmp.glob("*/targets.json")]
    assert tenants_dirs, "the demo wrote no targets file (tenants use-sim)"
    for folder in tenants_dirs:
        targets = folder / "targets.json"
        homes.add(targets)
        for cabinet, target in json.loads(targets.read_text()).items():
            found[target["secret"]] = f"the automation token of {cabinet}"
        passphrase = folder / "pulumi" / "passphrase"
        if not passphrase.is_file():
            continue  # API targets only (the failover scene's): no stacks there
        homes.add(passphrase)
        found[passphrase.read_text().strip()] = "the Pulumi passphrase"
        env = {"KLOUDCTL_PULUMI_STATE": str(folder / "pulumi"),
               "KLOUDCTL_PROXMOX_TARGETS": str(targets)}  # fmt: skip
        for cabinet in load_fleet(demo.fleet):
            for tenant in cabinet.tenants:
                done = _kloudctl(demo, "tenant", "token", cabinet.name, tenant.name, "--json",
                                 env=env)  # fmt: skip
                if done.returncode == 0:
                    secret = json.loads(done.stdout)["PROXMOX_TOKEN_SECRET"]
                    found[secret] = f"the API token of {tenant.name} on {cabinet.name}"
    assert any(w.startswith("the API token of") for w in found.values()), "no tenant token"
    for path in demo.tmp.rglob("*"):
        if path.is_file() and path.name.endswith((".password", ".rest", ".rest-password")):
            homes.add(path)
            value = path.read_text().strip()
            found[value.split(":", 1)[1] if path.name.endswith(".rest") else value] = (
                f"the replication secret {path.name}"
            )
    assert any("replication" in w for w in found.values()), "no replication secret found"
    for path in demo.tmp.rglob("*.key"):
        pem = path.read_bytes() if path.is_file() else b""
        if b"PRIVATE KEY-----" not in pem:
            continue
        homes.add(path)
        what = f"the private key {path.parent.name}/{path.name}"
        key = serialization.load_pem_private_key(pem, password=None)
        if isinstance(key, (Ed25519PrivateKey, X25519PrivateKey)):
            raw = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
            found[base64.b64encode(raw).decode()] = what
        body = "".join(line for line in pem.decode().splitlines() if "-----" not in line)
        found[body] = what
    assert any("/signing.key" in w for w in found.values()), "no federation key found"
    handed = demo.handed / "mailbox-passwords.json"
    homes.add(handed)
    if handed.exists():
        for address, password in json.loads(handed.read_text()).items():
            found[password] = f"the mailbox password of {address}"
    return {k: v for k, v in found.items() if len(k) >= MIN_SECRET}, homes


def _forms(secret: str) -> set[bytes]:
    """The secret as written and as base64 at each of the three alignments it can take
    inside a longer encoded text (the middle of its encoding, which does not depend on
    what comes before it, is what is looked for)."""
    raw = secret.encode()
    forms = {raw}
    for pad in range(3):
        encoded = base64.b64encode(b"\0" * pad + raw)
        # drop the characters that mix the padding bytes in, and the last, unstable group
        start = {0: 0, 1: 2, 2: 3}[pad]
        middle = encoded[start : len(encoded) - 4]
        if len(middle) >= MIN_SECRET:
            forms.add(middle)
            forms.add(middle.replace(b"+", b"-").replace(b"/", b"_"))
    return forms


def test_the_demo_ran_whole(demo: Demo) -> None:
    assert demo.returncode == 0, demo._tail()
    text = demo.output.decode(errors="replace")
    assert "The council's report of Brieux" in text


def test_no_secret_the_demo_generated_is_left_in_plain_text(demo: Demo) -> None:
    secrets, homes = _collect(demo)
    assert len(secrets) >= 5, sorted(set(secrets.values()))
    patterns = {form: what for value, what in secrets.items() for form in _forms(value)}
    leaks: list[str] = []
    for form, what in patterns.items():
        if form in demo.output:
            leaks.append(f"the demo's output: {what}")
    searched = 0
    for folder in (demo.fleet, demo.state, demo.tmp, demo.home):
        for path in folder.rglob("*"):
            if path in homes or not path.is_file() or path.is_symlink():
                continue
            if path.stat().st_size > MAX_READ:
                continue
            data = path.read_bytes()
            searched += 1
            for form, what in patterns.items():
                if form in data:
                    leaks.append(f"{path.relative_to(demo.base)}: {what}")
    assert searched > 20, f"only {searched} files written: the demo did not run"
    if leaks:  # every leak named, not pytest's first difference
        pytest.fail("secrets in plain text:\n" + "\n".join(sorted(set(leaks))))
