"""The mail role's ACME inputs are checked first: its assertions (tasks/assert.yml) run for
real by ansible-playbook on this machine (local connection; assertions touch nothing)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.molecule_support import run_role_assertions

ROOT = Path(__file__).resolve().parents[2]
GOOD = {
    "mail__hostname": "mail.brieux.fr",
    "mail__domains": ["brieux.fr"],
    "mail__acme_ca_bundle": "",
}


def run_assertions(tmp_path: Path, **overrides: object) -> subprocess.CompletedProcess[str]:
    return run_role_assertions(tmp_path, "mail", {**GOOD, **overrides})


def test_defaults_and_a_private_directory_pass(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    done = run_assertions(
        tmp_path,
        mail__acme_directory="https://10.0.0.1:14000/dir",
        mail__acme_ca_bundle=str(ca),
    )
    assert done.returncode == 0, done.stdout[-2000:]
    assert run_assertions(tmp_path).returncode == 0  # Let's Encrypt production
    assert run_assertions(tmp_path, mail__acme_directory="").returncode == 0  # ACME off


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"mail__acme_directory": "http://acme.example/dir"},
            "mail__acme_directory must be an https:// URL",
        ),
        (
            {"mail__acme_directory": "acme-v02.api.letsencrypt.org"},
            "mail__acme_directory must be an https:// URL",
        ),
        ({"mail__acme_email": "not an address"}, "mail__acme_email an address"),
        (
            {"mail__acme_ca_bundle": "/nonexistent/ca.pem"},
            "mail__acme_ca_bundle: no file /nonexistent/ca.pem",
        ),
    ],
)
def test_bad_acme_input_fails_first_naming_the_variable(
    tmp_path: Path, overrides: dict[str, object], message: str
) -> None:
    done = run_assertions(tmp_path, **overrides)
    assert done.returncode == 2, done.stdout[-2000:]
    assert message in done.stdout, done.stdout[-2000:]
