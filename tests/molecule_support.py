"""Running roles for real from pytest: their Molecule scenarios, several at once, and their
input assertions alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run_scenarios(
    roles: Iterable[str], work: Path, extra_env: dict[str, str]
) -> dict[str, tuple[int, str]]:
    """`molecule test` in each role folder, in parallel; returns (exit code, log) per role."""
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "ANSIBLE_FORCE_COLOR": "0",
        "PY_COLORS": "0",
        "NO_COLOR": "1",
        **extra_env,
    }
    env.pop("KLOUDCTL_TESTBED_STATE", None)
    procs = {}
    for role in roles:
        log = open(work / f"{role}.log", "w")  # noqa: SIM115 - closed below
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "molecule"), "test"],
            cwd=REPO / "roles" / role,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        procs[role] = (proc, log)
    results = {}
    for role, (proc, log) in procs.items():
        rc = proc.wait(timeout=1500)
        log.close()
        results[role] = (rc, (work / f"{role}.log").read_text())
    return results


def assert_scenario_passed(result: tuple[int, str]) -> None:
    rc, log = result
    assert rc == 0, log[-4000:]
    for step in ("converge", "idempotence", "verify"):
        assert f"{step}: Executed: Successful" in log, log[-4000:]


def run_role_assertions(
    tmp_path: Path, role: str, variables: dict[str, object]
) -> subprocess.CompletedProcess[str]:
    """The role's `tasks/assert.yml` run by ansible-playbook on this machine with
    `variables` (local connection: assertions touch nothing)."""
    playbook = tmp_path / "assert.yml"
    playbook.write_text(
        "- hosts: localhost\n  connection: local\n  gather_facts: false\n  tasks:\n"
        f"    - ansible.builtin.include_role:\n        name: {role}\n"
        "        tasks_from: assert.yml\n"
    )
    extra = tmp_path / "vars.json"
    extra.write_text(json.dumps(variables))
    env = {**os.environ, "ANSIBLE_ROLES_PATH": str(REPO / "roles"), "ANSIBLE_NOCOLOR": "1"}
    return subprocess.run(
        [str(Path(sys.executable).with_name("ansible-playbook")), "-i", "localhost,",
         str(playbook), "-e", f"@{extra}"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )  # fmt: skip
