"""kloudctl for cabinets (kloudctl.hosts.bundle): the tarball alone, on Debian's python3
isolated from every other library (-I -S, as the launcher the role installs runs it),
must offer the replication commands the cabinet's timers and cron use."""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path

from kloudctl.hosts import bundle

REPO = Path(__file__).resolve().parents[2]


def test_bundle_runs_the_replication_commands_alone(tmp_path: Path) -> None:
    built = bundle.build(tmp_path / "bundles")
    assert bundle.build(tmp_path / "bundles") == built  # same content, same file
    assert built.name == f"kloudctl-cabinet-{bundle.version_of(built)}.tar.gz"
    unpacked = tmp_path / "opt"
    with tarfile.open(built) as tar:
        names = tar.getnames()
        tar.extractall(unpacked, filter="data")
    assert "kloudctl/replication/ops.py" in names
    assert not any("__pycache__" in n or n.startswith("pulumi") for n in names)
    launcher = (
        f"import sys; sys.path.insert(0, {str(unpacked)!r}); sys.argv[0] = 'kloudctl'; "
        "from kloudctl.cli import main; main()"
    )
    for args in (["--help"], ["replication", "check", "--help"]):
        done = subprocess.run(
            ["/usr/bin/python3", "-I", "-S", "-c", launcher, "--fleet", str(REPO), *args],
            capture_output=True,
            text=True,
            cwd=tmp_path,
        )
        assert done.returncode == 0, done.stderr
    assert "replication" in subprocess.run(
        ["/usr/bin/python3", "-I", "-S", "-c", launcher, "--help"],
        capture_output=True, text=True, cwd=tmp_path,
    ).stdout  # fmt: skip
