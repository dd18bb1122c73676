"""kloudctl installed from its built wheel, not from the source tree.

The development virtualenv installs kloudctl editable, which hides a file missing from the
package data (the mail schema `schema.sql` was, once). Here the wheel is built, installed
into a virtualenv of its own, and the installed kloudctl runs the simulator, creates a mail
store (reads `schema.sql`) and builds the cabinet bundle, from a folder outside the checkout.

The third-party libraries come from the development virtualenv through a `.pth` line: a
path added that way is not itself scanned for `.pth` files, so the editable install's import
hook there never runs, and `kloudctl` can only come from the wheel (asserted below).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv holding kloudctl from its wheel; returns its bin folder."""
    base = tmp_path_factory.mktemp("wheel")
    dist = base / "dist"
    # Built from the committed layout copied aside: an in-tree build would leave `build/`
    # behind, whose stale copies would hide a file missing from the package data.
    source = base / "source"
    tracked = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "pyproject.toml", "README.md", "kloudctl"],
        check=True, capture_output=True, text=True, cwd=REPO,
    ).stdout.split()  # fmt: skip
    for name in tracked:
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(dist), str(source)],
        check=True, cwd=base, capture_output=True,
    )  # fmt: skip
    [wheel] = dist.glob("kloudctl-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    # Every non-Python file the package loads at run time is in the wheel.
    for data in ("kloudctl/mail/schema.sql", "kloudctl/sim/data/pve-api-schema.json"):
        assert data in names, f"{data} missing from the wheel"
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
         "-q", "--no-deps", str(wheel)],
        check=True, cwd=base,
    )  # fmt: skip
    site = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    (Path(site) / "_kloudctl_dev_libraries.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return venv / "bin"


def _run(bin_dir: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KLOUDCTL_", "PYTHON"))}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(
        [str(bin_dir / "kloudctl"), *args],
        capture_output=True, text=True, cwd=cwd, env=env, timeout=120,
    )  # fmt: skip


def test_the_installed_package_is_the_wheel(installed: Path, tmp_path: Path) -> None:
    where = subprocess.run(
        [str(installed / "python"), "-c", "import kloudctl; print(kloudctl.__file__)"],
        capture_output=True, text=True, cwd=tmp_path, check=True,
    ).stdout.strip()  # fmt: skip
    assert Path(where).is_relative_to(installed.parent), where
    assert not Path(where).is_relative_to(REPO)


def test_mail_store_from_the_wheel(installed: Path, tmp_path: Path) -> None:
    db = tmp_path / "mail" / "accounts.db"
    db.parent.mkdir()
    fleet = ("--fleet", str(REPO))
    for args in (
        ("mail", "--db", str(db), "domain", "add", "brieux.fr", "--max-mailboxes", "5", "--total-quota", "10GiB",
         "--no-dkim"),
        ("mail", "--db", str(db), "mailbox", "add", "jean.dupont@brieux.fr", "--password-stdin"),
    ):  # fmt: skip
        done = subprocess.run(
            [str(installed / "kloudctl"), *fleet, *args],
            input="correct horse battery staple\n",
            capture_output=True, text=True, cwd=tmp_path,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
    listed = _run(installed, tmp_path, *fleet, "mail", "--db", str(db), "mailbox", "list",
                  "--json")  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    assert "jean.dupont@brieux.fr" in listed.stdout


def test_simulator_from_the_wheel(installed: Path, tmp_path: Path) -> None:
    state = tmp_path / "sim"
    fleet = ("--fleet", str(REPO))
    up = _run(installed, tmp_path, *fleet, "sim", "up", "brieux", "--ephemeral", "--port", "0",
              "--state-dir", str(state), "--replication-state", str(tmp_path / "repl"),
              "--json")  # fmt: skip
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        status = _run(installed, tmp_path, "sim", "status", "--state-dir", str(state), "--json")
        assert status.returncode == 0, status.stderr
        assert [c["name"] for c in json.loads(status.stdout)["cabinets"]] == ["brieux"]
        # The coverage reads the API schema shipped as package data.
        coverage = _run(installed, tmp_path, "sim", "coverage")
        assert coverage.returncode == 0, coverage.stderr
        assert "%" in coverage.stdout
    finally:
        _run(installed, tmp_path, "sim", "down", "--state-dir", str(state))


def test_cabinet_bundle_from_the_wheel(installed: Path, tmp_path: Path) -> None:
    out = subprocess.run(
        [str(installed / "python"), "-c",
         "import sys; from kloudctl.hosts import bundle; print(bundle.build(__import__('pathlib').Path(sys.argv[1])))",
         str(tmp_path / "bundles")],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    unpacked = tmp_path / "opt"
    with tarfile.open(out.stdout.strip()) as tar:
        assert "kloudctl/mail/schema.sql" in tar.getnames()
        tar.extractall(unpacked, filter="data")
    launcher = (
        f"import sys; sys.path.insert(0, {str(unpacked)!r}); sys.argv[0] = 'kloudctl'; "
        "from kloudctl.cli import main; main()"
    )
    done = subprocess.run(
        ["/usr/bin/python3", "-I", "-S", "-c", launcher, "--fleet", str(REPO), "replication",
         "check", "--help"],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
