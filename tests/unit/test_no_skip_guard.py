"""The CI guard of tests/conftest.py (KLOUDCTL_NO_SKIP=1): a run where any collected test
did not run and pass plainly (skipped, xfail, deselected) fails; without the variable, it
does not. Each case is a pytest run of its own on a small test file, with that guard."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PASSES = "def test_a():\n    pass\n"


def _pytest(tmp_path: Path, sample: str, *args: str, guard: bool = True) -> tuple[int, str]:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # not the project's settings
    (tmp_path / "test_sample.py").write_text("import pytest\n\n" + sample)
    env = {k: v for k, v in os.environ.items() if k != "KLOUDCTL_NO_SKIP"}
    if guard:
        env["KLOUDCTL_NO_SKIP"] = "1"
    ran = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.conftest",
         "-c", str(tmp_path / "pytest.ini"), "--rootdir", str(tmp_path),
         str(tmp_path / "test_sample.py"), *args],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=120,
    )  # fmt: skip
    return ran.returncode, ran.stderr


CASES = {
    "skip": (
        "def test_a():\n    pytest.skip('no such tool here')\n",
        (),
        "test_sample.py::test_a was skipped: no such tool here",
    ),
    "module skip": (
        "pytest.skip('no such tool here', allow_module_level=True)\n",
        (),
        "test_sample.py was skipped: no such tool here",
    ),
    "xfail": (
        "@pytest.mark.xfail(reason='known bug')\ndef test_a():\n    assert False\n",
        (),
        "test_sample.py::test_a is marked xfail: known bug",
    ),
    "xpass": (
        "@pytest.mark.xfail(reason='fixed, maybe')\ndef test_a():\n    pass\n",
        (),
        "test_sample.py::test_a is marked xfail: fixed, maybe",
    ),
    "deselected": (
        PASSES + "\ndef test_b():\n    pass\n",
        ("-k", "test_a"),
        "test_sample.py::test_b was deselected",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_guard_fails_a_run_where_a_test_was_not_seen_passing(tmp_path: Path, case: str) -> None:
    sample, args, named = CASES[case]
    code, err = _pytest(tmp_path, sample, *args)
    assert code == 1 and f"KLOUDCTL_NO_SKIP: {named}\n" in err, err


def test_the_guard_passes_a_run_where_every_test_ran_and_passed(tmp_path: Path) -> None:
    code, err = _pytest(tmp_path, PASSES)
    assert code == 0 and "KLOUDCTL_NO_SKIP" not in err, err


def test_without_the_variable_skips_xfails_and_deselections_pass(tmp_path: Path) -> None:
    skip, xfail = CASES["skip"][0], CASES["xfail"][0]
    sample = skip.replace("test_a", "test_x") + xfail.replace("test_a", "test_y") + PASSES
    code, err = _pytest(tmp_path, sample, "-k", "test_x or test_y", guard=False)
    assert code == 0 and "KLOUDCTL_NO_SKIP" not in err, err
