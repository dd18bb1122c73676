"""Command groups load lazily: the static table `GROUPS` (what `--help` lists without
importing) matches the real modules, and a run imports only the group it runs."""

from __future__ import annotations

import importlib
import json
import pkgutil
import subprocess
import sys

import click

import kloudctl.cli
from kloudctl.cli import GROUPS

_NOT_GROUPS = {"boundary", "options"}


def test_the_table_matches_every_command_module() -> None:
    found = {}
    for module in pkgutil.iter_modules(kloudctl.cli.__path__):
        if module.name in _NOT_GROUPS:
            continue
        command = importlib.import_module(f"kloudctl.cli.{module.name}").command
        assert isinstance(command, click.Command)
        assert command.name == module.name
        found[module.name] = command.get_short_help_str(limit=10**6)
    assert found == GROUPS


def test_help_lists_every_group_with_its_short_help(kloudctl) -> None:
    done = kloudctl("--help")
    assert done.returncode == 0, done.stderr
    listed = done.stdout.split("Commands:")[1]
    for name, short in GROUPS.items():
        assert f"  {name} " in listed
        assert short[:20] in " ".join(listed.split())


def test_a_run_imports_only_the_group_it_runs() -> None:
    probe = (
        "import sys, json; sys.argv = ['kloudctl', 'status', '--help']\n"
        "from kloudctl.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('kloudctl.cli.',"
        " 'aiohttp', 'pulumi')))))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout.splitlines()[-1])
    assert "kloudctl.cli.status" in loaded
    assert not [m for m in loaded if m.startswith(("aiohttp", "pulumi", "kloudctl.cli.sim"))]
    assert not [m for m in loaded if m.startswith("kloudctl.cli.") and m.split(".")[2] in
                set(GROUPS) - {"status"}]  # fmt: skip
