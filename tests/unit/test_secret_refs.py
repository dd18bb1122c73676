"""Secret references stay inside the fleet's secrets folders (issue 16, part 1).

The exact message of each escaping reference is in the validation corpus
(`test_validation_corpus.py`, cases `secret-ref-*` and `fleet-settings-*`). Here:

- refusing an escaping reference opens nothing: its target is a named pipe, and a watcher
  sees any process that opens it for reading (see `ReadWatch`);
- the one resolver (`kloudctl.model.secrets.resolve`, reached through
  `kloudctl.proxmox.target.cabinet_target` as the tenants engine does) reads what
  validation accepts, and refuses at use a link changed after validation;
- the one more folder `fleet.yaml` may allow, and nothing else.
"""

from __future__ import annotations

import errno
import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from kloudctl.errors import InputError
from kloudctl.model import load_fleet
from kloudctl.model.secrets import EscapingReference
from kloudctl.proxmox.target import TARGETS_ENV, cabinet_target

CORPUS = Path(__file__).resolve().parent.parent / "corpus"
CASE = "cabinets/case.yaml"
REF = "vault:secrets/case.vault.yml#proxmox_token"


def _fleet(tmp_path: Path, ref: str) -> Path:
    root = tmp_path / "fleet"
    shutil.copytree(CORPUS / "fleet", root)
    text = (CORPUS / "case.yaml").read_text()
    assert REF in text
    (root / CASE).write_text(text.replace(REF, ref, 1))
    (root / "secrets").mkdir()
    return root


class ReadWatch:
    """Sees whether any process opens a named pipe for reading while it runs.

    Opening a pipe for writing without blocking fails with ENXIO as long as no process has
    it open for reading (POSIX), so polling that open sees every reader. A reader that
    opens it the usual way (blocking) waits until a writer comes: it is still there at
    the next poll, so it cannot slip between two."""

    def __init__(self, pipe: Path) -> None:
        os.mkfifo(pipe)
        self.pipe = pipe
        self.readers_seen = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                fd = os.open(self.pipe, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                assert exc.errno == errno.ENXIO, exc
            else:
                self.readers_seen += 1
                os.close(fd)  # the reader gets an empty read, never a secret
            time.sleep(0.002)

    def __enter__(self) -> ReadWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def test_the_watch_sees_a_reader(tmp_path: Path) -> None:
    """Control: the watch is not blind (a test that cannot fail proves nothing)."""
    with ReadWatch(tmp_path / "pipe") as watch:
        assert (tmp_path / "pipe").read_bytes() == b""  # returns once the watch opened it
    assert watch.readers_seen >= 1


# Each escaping reference, with what the test puts in place first; the target is always
# the pipe `outside/token`, beside the fleet folder.
ESCAPES = {
    "dot-dot": ("file:../outside/token", {}),
    "absolute": ("file:{tmp}/outside/token", {}),
    "link-to-the-file": ("file:secrets/token", {"secrets/token": "{tmp}/outside/token"}),
    "link-to-a-folder": ("file:secrets/up/token", {"secrets/up": "../../outside"}),
    "vault-through-a-link": (
        "vault:secrets/token#proxmox_token",
        {"secrets/token": "../../outside/token"},
    ),
}
COMMANDS = {
    "validate": ("validate",),
    "plan": ("plan", "case"),
    "tenants-plan": ("tenants", "plan", "case"),
}


@pytest.mark.parametrize("command", COMMANDS, ids=list(COMMANDS))
@pytest.mark.parametrize("escape", ESCAPES, ids=list(ESCAPES))
def test_escaping_reference_is_refused_without_opening_it(
    tmp_path: Path, kloudctl, escape: str, command: str
) -> None:
    ref, links = ESCAPES[escape]
    ref = ref.format(tmp=tmp_path)
    root = _fleet(tmp_path, ref)
    (tmp_path / "outside").mkdir()
    for name, target in links.items():
        (root / name).symlink_to(target.format(tmp=tmp_path))
    password = tmp_path / "vault-password"
    password.write_text("not used\n")
    env = {
        "ANSIBLE_VAULT_PASSWORD_FILE": str(password),
        "KLOUDCTL_PULUMI_STATE": str(tmp_path / "pulumi"),
    }
    with ReadWatch(tmp_path / "outside" / "token") as watch:
        result = kloudctl("--fleet", str(root), *COMMANDS[command], env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"{CASE}:35:13 proxmox.token.secret: {ref}" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert watch.readers_seen == 0, "the target of a refused reference was opened"
    assert not (tmp_path / "pulumi").exists(), "nothing may be made for a refused fleet"


# --- the one resolver, as the tenants engine calls it ---------------------------------


@pytest.fixture(autouse=True)
def _declared_target(monkeypatch: pytest.MonkeyPatch) -> None:
    # No simulator's targets file: the secret must come from the cabinet's reference.
    monkeypatch.delenv(TARGETS_ENV, raising=False)


def test_file_inside_is_read(tmp_path: Path) -> None:
    root = _fleet(tmp_path, "file:secrets/token")
    (root / "secrets" / "token").write_text("  s3cret-value\n")
    assert cabinet_target(load_fleet(root), "case").secret == "s3cret-value"


def test_link_that_stays_inside_is_fine(tmp_path: Path) -> None:
    root = _fleet(tmp_path, "file:secrets/current")
    (root / "secrets" / "2026").mkdir()
    (root / "secrets" / "2026" / "token").write_text("rotated\n")
    (root / "secrets" / "current").symlink_to("2026/token")
    assert cabinet_target(load_fleet(root), "case").secret == "rotated"


def test_vault_inside_is_opened(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ansible.constants import DEFAULT_VAULT_ID_MATCH
    from ansible.parsing.vault import VaultLib, VaultSecret

    root = _fleet(tmp_path, REF)
    vault = VaultLib([(DEFAULT_VAULT_ID_MATCH, VaultSecret(b"vault-password"))])
    sealed = vault.encrypt(b"proxmox_token: from-the-vault\n")
    (root / "secrets" / "case.vault.yml").write_bytes(sealed)
    (tmp_path / "password").write_text("vault-password\n")
    monkeypatch.setenv("ANSIBLE_VAULT_PASSWORD_FILE", str(tmp_path / "password"))
    assert cabinet_target(load_fleet(root), "case").secret == "from-the-vault"


def test_environment_variable_with_the_prefix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _fleet(tmp_path, "env:KLOUDCTL_SECRET_CASE_TOKEN")
    monkeypatch.setenv("KLOUDCTL_SECRET_CASE_TOKEN", "from-the-environment")
    assert cabinet_target(load_fleet(root), "case").secret == "from-the-environment"


def test_link_changed_after_validation_is_refused_when_read(tmp_path: Path) -> None:
    """validate and use run the same check: a link planted after validation is refused
    with validation's own message, and the file it leads to is not read."""
    root = _fleet(tmp_path, "file:secrets/token")
    (root / "secrets" / "token").write_text("inside\n")
    fleet = load_fleet(root)
    stolen = tmp_path / "operator-file"
    stolen.write_text("stolen-content\n")
    (root / "secrets" / "token").unlink()
    (root / "secrets" / "token").symlink_to(stolen)
    with pytest.raises(EscapingReference) as caught:
        cabinet_target(fleet, "case")
    assert str(caught.value) == (
        f"{CASE}:35:13 proxmox.token.secret: file:secrets/token leads through a symbolic link "
        f"to {stolen}, outside the secrets folder (secrets/)"
    )
    assert caught.value.exit_code == 2


def test_pipe_inside_is_refused_without_waiting(tmp_path: Path) -> None:
    root = _fleet(tmp_path, "file:secrets/token")
    os.mkfifo(root / "secrets" / "token")
    with pytest.raises(InputError, match="is not a regular file"):
        cabinet_target(load_fleet(root), "case")


def test_a_file_too_large_to_be_a_secret_is_refused(tmp_path: Path) -> None:
    root = _fleet(tmp_path, "file:secrets/disk.img")
    (root / "secrets" / "disk.img").write_bytes(b"x" * (1024 * 1024 + 1))
    with pytest.raises(InputError, match="is larger than 1MiB: not a secret"):
        cabinet_target(load_fleet(root), "case")


# --- the one more folder fleet.yaml may allow ------------------------------------------


def test_extra_folder_allows_one_more_folder_and_nothing_else(tmp_path: Path, kloudctl) -> None:
    root = _fleet(tmp_path, "file:secrets/shared/token")
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "token").write_text("shared-secret\n")
    (root / "secrets" / "shared").symlink_to(shared)

    refused = kloudctl("--fleet", str(root), "validate")
    assert refused.returncode == 2
    assert (
        f"{CASE}:35:13 proxmox.token.secret: file:secrets/shared/token leads through a symbolic "
        f"link to {shared}/token, outside the secrets folder (secrets/)"
    ) in refused.stderr

    (root / "fleet.yaml").write_text(f"secrets:\n  extra_folder: {shared}\n")
    accepted = kloudctl("--fleet", str(root), "validate")
    assert accepted.returncode == 0, accepted.stderr
    assert cabinet_target(load_fleet(root), "case").secret == "shared-secret"

    # a sibling of the allowed folder is still outside
    (tmp_path / "other").mkdir()
    (root / "secrets" / "other").symlink_to(tmp_path / "other")
    text = (root / CASE).read_text().replace("secrets/shared/token", "secrets/other/token")
    (root / CASE).write_text(text)
    sibling = kloudctl("--fleet", str(root), "validate")
    assert sibling.returncode == 2
    assert (
        f"file:secrets/other/token leads through a symbolic link to {tmp_path}/other/token, "
        f"outside the secrets folders (secrets/ and {shared})"
    ) in sibling.stderr


def test_extra_folder_inside_the_fleet(tmp_path: Path) -> None:
    root = _fleet(tmp_path, "file:team-vault/token")
    (root / "team-vault").mkdir()
    (root / "team-vault" / "token").write_text("team\n")
    with pytest.raises(InputError, match="file:team-vault/token is outside the secrets"):
        load_fleet(root)
    (root / "fleet.yaml").write_text("secrets: {extra_folder: team-vault}\n")
    assert cabinet_target(load_fleet(root), "case").secret == "team"


def test_settings_problems_are_reported_when_one_file_is_validated(
    tmp_path: Path, kloudctl
) -> None:
    """fleet.yaml concerns every cabinet: its problems are shown whichever file is asked."""
    root = _fleet(tmp_path, REF)
    (root / "fleet.yaml").write_text("secrets:\n  extra_folder: /\n")
    result = kloudctl("validate", str(root / CASE))
    assert result.returncode == 2
    assert "fleet.yaml:2:17 secrets.extra_folder: / holds the fleet folder itself" in result.stderr
