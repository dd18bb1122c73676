"""What the benches' `community.proxmox` baselines share: the modules' connection to a
simulated cabinet (API token over HTTPS), the variables that carry it, and running
ansible-playbook from the venv (proxmoxer is there) with its wall time measured."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

# Spliced into each bench's play, under its `hosts:`; the values come from `token_vars`.
MODULE_DEFAULTS = """\
  module_defaults:
    group/community.proxmox.proxmox:
      api_host: "{{ pve_host }}"
      api_port: "{{ pve_port }}"
      api_user: "{{ pve_user }}"
      api_token_id: "{{ pve_token_id }}"
      api_token_secret: "{{ pve_token_secret }}"
      validate_certs: false
"""


def token_vars(host: str, port: int, target: dict[str, str]) -> dict[str, Any]:
    """The variables MODULE_DEFAULTS reads, for a cabinet's simulator target."""
    user, _, token = target["token_id"].partition("!")
    return {
        "pve_host": host,
        "pve_port": port,
        "pve_user": user,
        "pve_token_id": token,
        "pve_token_secret": target["secret"],
    }


def write_private_json(path: Path, data: Any) -> None:
    """A JSON file only its owner reads (it holds the API token's secret)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)


def ansible_playbook(
    book: Path, args: list[str], env: dict[str, str], tail: int, cwd: Path | None = None
) -> tuple[float, str]:
    """Run ansible-playbook on `book`; its wall time and output, or exit showing the last
    `tail` lines of its output when it fails."""
    started = time.perf_counter()
    done = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), str(book), *args],
        capture_output=True, text=True, env={**os.environ, **env}, cwd=cwd, check=False,
    )  # fmt: skip
    took = time.perf_counter() - started
    if done.returncode != 0:
        last = "\n".join(done.stdout.splitlines()[-tail:])
        raise SystemExit(f"playbook failed:\n{last}\n{done.stderr[-2000:]}")
    return took, done.stdout
