"""One exception tree: every exception class kloudctl defines derives from
`kloudctl.errors.KloudError`, save a few documented internal ones that never leave the
component raising them; and what the CLI boundary does with the rest (an internal error)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest

import kloudctl
from kloudctl.cli.boundary import run_with_boundary
from kloudctl.errors import InputError, KloudError
from kloudctl.model.types import parse_size

#: Exceptions outside the tree, each caught where it is raised and turned into an answer.
INTERNAL = {
    # the simulator's HTTP layer: answered as HTTP errors by sim.dispatch / sim.server
    "kloudctl.sim.errors.ApiError",
    "kloudctl.sim.auth.AuthError",
    "kloudctl.sim.faults.FaultError",
    "kloudctl.sim.perms.PermissionDenied",
    "kloudctl.sim.validate.ParamError",
    "kloudctl.sim.validate.FormatError",
    # yamlsource.load_text turns it into a located Problem
    "kloudctl.model.yamlsource._Refused",
    # accounts_db runs alone on the mail host (no kloudctl there): mail.store maps it
    "kloudctl.mail.accounts_db.OpError",
}


def _defined_exceptions() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(kloudctl.__path__, "kloudctl."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if (
                inspect.isclass(obj)
                and issubclass(obj, BaseException)
                and obj.__module__ == info.name
            ):
                found[f"{info.name}.{name}"] = obj
    return found


def test_every_exception_of_the_core_is_in_the_tree_or_documented_internal() -> None:
    found = _defined_exceptions()
    outside = {name for name, cls in found.items() if not issubclass(cls, KloudError)}
    assert outside == INTERNAL
    for name in INTERNAL:
        assert "internal" in (found[name].__doc__ or "").lower(), f"{name}: say it is internal"
    # and none of them is raised by the CLI's own modules
    cli = Path(kloudctl.__file__).parent / "cli"
    for path in cli.glob("*.py"):
        text = path.read_text()
        for name in INTERNAL:
            assert name.rsplit(".", 1)[1] not in text, f"{path.name} uses {name}"
        imports = re.findall(r"^\s*(?:from|import) (\w+)", text, re.MULTILINE)
        assert "pydantic" not in imports and "pydantic_core" not in imports, (
            f"{path.name}: pydantic's errors stay in the model"
        )


def test_a_size_option_is_an_input_error_not_a_pydantic_one() -> None:
    assert parse_size("2GiB", "--quota") == 2 * 1024**3
    for bad in ("2", "2PiB", "0B", "lots"):
        with pytest.raises(InputError, match=r"^--quota: expected a size"):
            parse_size(bad, "--quota")


def test_accounts_store_stays_importable_without_kloudctl(tmp_path: Path) -> None:
    """On the mail host accounts_db.py runs alone: its OpError must need nothing else."""
    source = Path(kloudctl.__file__).parent / "mail" / "accounts_db.py"
    (tmp_path / "accounts_db.py").write_text(source.read_text())
    probe = (
        f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import accounts_db; "
        "print(accounts_db.OpError.__mro__[1].__name__, 'kloudctl' in sys.modules)"
    )
    ran = subprocess.run(
        [sys.executable, "-I", "-c", probe], capture_output=True, text=True, cwd=tmp_path
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split() == ["Exception", "False"]


def _boundary(exc: BaseException, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    @click.command()
    def command() -> None:
        raise exc

    with pytest.raises(SystemExit) as ended:
        run_with_boundary(command, [])
    return int(ended.value.code or 0), capsys.readouterr().err


def test_the_boundary_maps_the_tree_and_calls_anything_else_internal(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KLOUDCTL_DEBUG", raising=False)
    code, err = _boundary(InputError("--quota: expected a size"), capsys)
    assert code == 2 and "--quota: expected a size" in err and "internal" not in err
    code, err = _boundary(KloudError("it failed"), capsys)
    assert code == 1 and "it failed" in err and "internal" not in err
    from pydantic_core import PydanticCustomError

    code, err = _boundary(PydanticCustomError("kloud", "leaked"), capsys)
    assert code == 1 and "internal error: PydanticCustomError" in err
    assert "Traceback" not in err
