"""Fleet folders for test cabinets, tests and benches, made from the checkout's example
fleet (`cabinets/`, `backups/`, and the Ansible content beside them).

- `make_fleet_root`: a copy of the example fleet with links to the Ansible content, to run
  test cabinets and playbooks in (the testbed tests, `bench/bootstrap.py`).
- `make_fleet`: a synthetic fleet of N cabinets replicating in a ring, made from the
  example cabinet of Mortrée with unique names and addresses (the replication tests,
  `bench/replication.py`); `make_cabinet_files` fills a cabinet's simulated file tree.
"""

from __future__ import annotations

import shutil
from pathlib import Path

#: The checkout this module runs from.
ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "cabinets" / "mortree.yaml"


def make_fleet_root(path: Path) -> Path:
    """A fleet folder: copies of cabinets/ and backups/, links to the Ansible content."""
    path.mkdir(parents=True, exist_ok=True)
    for folder in ("cabinets", "backups"):
        shutil.copytree(ROOT / folder, path / folder)
    for item in ("ansible.cfg", "inventory", "playbooks", "roles"):
        (path / item).symlink_to(ROOT / item)
    return path


POLICY = """\
name: test
description: Replication test policy.
interval: 1h
rpo: {rpo}
retention:
  local:
    keep_last: 20
  peer:
    keep_within: 7d
include:
  paths:
    - /etc
    - /srv/data
  exclude:
    - "*.tmp"
  commands:
    - name: db
      command: [sh, -c, "printf 'CREATE TABLE t(x);\\\\n'"]
      filename: db.sql
check:
  read_data_days: 7
"""


def make_fleet(root: Path, names: list[str], *, rpo: str = "6h", commands: bool = True) -> Path:
    """Cabinet i replicates to cabinet i+1 (a ring)."""
    (root / "cabinets").mkdir(parents=True, exist_ok=True)
    (root / "backups").mkdir(parents=True, exist_ok=True)
    policy = POLICY.format(rpo=rpo)
    if not commands:
        policy = policy[: policy.index("  commands:")] + policy[policy.index("check:") :]
    (root / "backups" / "test.yaml").write_text(policy)
    template = EXAMPLE.read_text()
    for i, name in enumerate(names):
        peer = names[(i + 1) % len(names)]
        text = (
            template.replace("name: mortree", f"name: {name}")
            .replace('insee: "61294"', f'insee: "{61000 + i:05d}"')
            .replace("203.0.113.26/29", f"198.18.{i}.2/29")
            .replace("gateway: 203.0.113.25", f"gateway: 198.18.{i}.1")
            .replace("10.250.0.3/24", f"10.250.0.{i + 1}/24")
            .replace("policy: standard", "policy: test")
            .replace("peers: [brieux]", f"peers: [{peer}]")
        )
        (root / "cabinets" / f"{name}.yaml").write_text(text)
    return root


def make_cabinet_files(root: Path, seed: int = 0) -> None:
    """A cabinet's file tree, simulated as a folder: /etc and /srv/data with a few files."""
    import random

    rnd = random.Random(seed)
    (root / "etc").mkdir(parents=True, exist_ok=True)
    (root / "etc" / "hostname").write_text(f"cabinet-{seed}\n")
    (root / "etc" / "config with spaces.conf").write_text("key = 'value'\n")
    data = root / "srv" / "data"
    data.mkdir(parents=True, exist_ok=True)
    for i in range(8):
        (data / f"file-{i}.bin").write_bytes(rnd.randbytes(rnd.randint(1000, 200_000)))
    (data / "scratch.tmp").write_bytes(b"excluded")
