"""Validation entry point for files and folders given on the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kloudctl.errors import InputError, Problem
from kloudctl.model.loader import find_root, load_fleet


def validate_paths(paths: list[str], fleet_dir: str | None = None) -> dict[str, Any]:
    """Validate the given files/folders (or the fleet); raise InputError with all problems.

    A file is validated within its fleet (the folder above its `cabinets/` or `backups/`),
    so its cross-references resolve; only its own problems are reported.
    """
    if not paths:
        root = Path(fleet_dir).resolve() if fleet_dir else find_root(Path.cwd())
        fleet = load_fleet(root)
        return {"valid": True, "cabinets": len(fleet.cabinets), "policies": len(fleet.policies)}

    problems: list[Problem] = []
    cabinets = policies = 0
    by_root: dict[Path, list[Path]] = {}
    for raw in paths:
        path = Path(raw).resolve()
        if path.is_dir():
            by_root.setdefault(find_root(path), [])
            continue
        if path.parent.name not in ("cabinets", "backups"):
            problems.append(
                Problem(
                    raw, 0, 0, "", "expected a file inside a fleet's cabinets/ or backups/ folder"
                )
            )
            continue
        by_root.setdefault(path.parent.parent, []).append(path)
    for root, files in sorted(by_root.items()):
        try:
            fleet = load_fleet(root, only=files or None)
        except InputError as exc:
            problems += exc.problems
            continue
        if files:
            cabinets += sum(1 for f in files if f.parent.name == "cabinets")
            policies += sum(1 for f in files if f.parent.name == "backups")
        else:
            cabinets += len(fleet.cabinets)
            policies += len(fleet.policies)
    if problems:
        raise InputError(problems)
    return {"valid": True, "cabinets": cabinets, "policies": policies}
