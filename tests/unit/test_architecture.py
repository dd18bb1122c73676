"""docs/architecture.md, enforced: who may import whom inside kloudctl.

Every import of every module of the package is read with `ast` (imports inside functions
too), resolved to the package (or top-level module) it names, and checked against the
table below, which is the doc's table of layers written as data.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "kloudctl"

FOUNDATION = {
    "errors", "answers", "files", "retry", "processes", "tls", "netloc", "console", "ssh",
}  # fmt: skip
DECLARATION = {"model", "capacity", "power"}
ENGINES = {
    "proxmox", "sim", "testbed", "hosts", "tenants", "replication", "mail", "federation",
    "failover",
}  # fmt: skip
COMPOSITION = {"ansible_inventory", "report", "status", "council"}
INTERFACE = {"cli", "__main__"}

#: Within the foundation, what each module may use.
_FOUNDATION_USES = {
    "errors": set(),
    "answers": {"errors"},
    "files": {"errors"},
    "retry": set(),
    "processes": {"errors"},
    "tls": {"errors"},
    "netloc": {"errors"},
    "console": {"errors"},
    "ssh": {"errors"},
}
#: The arrows between engines in the doc's picture.
_ENGINE_USES = {
    "proxmox": set(),
    "sim": set(),
    "mail": set(),
    "testbed": {"sim", "hosts"},
    "hosts": {"proxmox"},
    "tenants": {"proxmox"},
    "replication": {"hosts", "federation"},
    "federation": {"hosts", "proxmox"},
    "failover": {"federation", "replication", "proxmox"},
}

#: Within the composition layer: the council's reports read the status history through its
#: one reader.
_COMPOSITION_USES = {"council": {"status"}}

ALLOWED: dict[str, set[str]] = {
    **_FOUNDATION_USES,
    **{d: FOUNDATION | DECLARATION for d in DECLARATION},
    **{e: FOUNDATION | DECLARATION | uses for e, uses in _ENGINE_USES.items()},
    **{
        c: FOUNDATION | DECLARATION | ENGINES | _COMPOSITION_USES.get(c, set()) for c in COMPOSITION
    },
    **{i: FOUNDATION | DECLARATION | ENGINES | COMPOSITION | INTERFACE for i in INTERFACE},
}

#: Third-party libraries confined to one place.
CONFINED = {
    "click": {"cli"},
    "aiohttp": {"sim/server.py"},
    "rich": {"console", "report", "cli"},
}


def _unit(path: Path) -> str:
    """The package (first folder) or top-level module a file belongs to."""
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _module_name(path: Path) -> list[str]:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return parts[:-1] if parts[-1] == "__init__" else parts


def _imports(path: Path) -> list[tuple[str, int]]:
    """Dotted names this file imports (relative imports resolved), with line numbers."""
    tree = ast.parse(path.read_text(), filename=str(path))
    here = _module_name(path)
    package = here if path.name == "__init__.py" else here[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            if module == "kloudctl":  # `from kloudctl import files`: each module is a unit
                found += [
                    (f"kloudctl.{alias.name}" if _is_unit(alias.name) else "kloudctl", node.lineno)
                    for alias in node.names
                ]
            else:
                found.append((module, node.lineno))
    return found


def _is_unit(name: str) -> bool:
    return (PACKAGE / name).is_dir() or (PACKAGE / f"{name}.py").is_file()


def _files() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_unit_has_a_place_in_the_layers() -> None:
    units = {_unit(p) for p in _files()} - {"__init__"}
    assert units <= set(ALLOWED), f"not in docs/architecture.md's layers: {units - set(ALLOWED)}"


def test_imports_follow_the_layers() -> None:
    wrong = []
    for path in _files():
        unit = _unit(path)
        if unit == "__init__":
            continue
        for name, line in _imports(path):
            parts = name.split(".")
            if parts[0] == "tests":
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {name}")
            if parts[0] != "kloudctl" or len(parts) < 2:
                continue
            target = parts[1]
            if target != unit and target not in ALLOWED.get(unit, set()):
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line} {unit} -> {target}")
    assert not wrong, "imports against docs/architecture.md:\n" + "\n".join(wrong)


def test_no_circle_between_engines_or_above() -> None:
    # The declaration layer is one unit by design (validation runs the planner); elsewhere
    # an arrow that climbs back up is a circle.
    edges: dict[str, set[str]] = defaultdict(set)
    for path in _files():
        unit = _unit(path)
        for name, _ in _imports(path):
            parts = name.split(".")
            if parts[0] == "kloudctl" and len(parts) > 1 and parts[1] != unit:
                edges[unit].add(parts[1])

    def layer_unit(u: str) -> str:
        return "declaration" if u in DECLARATION else u

    graph: dict[str, set[str]] = defaultdict(set)
    for src, targets in edges.items():
        for dst in targets:
            if layer_unit(src) != layer_unit(dst):
                graph[layer_unit(src)].add(layer_unit(dst))
    seen: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        seen[node] = 1
        for nxt in sorted(graph[node]):
            if seen.get(nxt) == 1:
                pytest.fail("import circle: " + " -> ".join([*trail, node, nxt]))
            if nxt not in seen:
                visit(nxt, [*trail, node])
        seen[node] = 2

    for node in sorted(graph):
        if node not in seen:
            visit(node, [])


@pytest.mark.parametrize("library", sorted(CONFINED))
def test_libraries_stay_where_they_belong(library: str) -> None:
    allowed = CONFINED[library]
    wrong = []
    for path in _files():
        rel = path.relative_to(PACKAGE).as_posix()
        if _unit(path) in allowed or rel in allowed:
            continue
        for name, line in _imports(path):
            if name.split(".")[0] == library:
                wrong.append(f"kloudctl/{rel}:{line}")
    assert not wrong, f"{library} imported outside {sorted(allowed)}: {wrong}"


def test_the_rules_catch_a_violation(tmp_path: Path) -> None:
    # The checker itself: a model module importing the CLI is found.
    bad = PACKAGE / "model" / "_architecture_probe.py"
    bad.write_text("from kloudctl.cli import main\nfrom tests import conftest\n")
    try:
        with pytest.raises(AssertionError) as caught:
            test_imports_follow_the_layers()
    finally:
        bad.unlink()
    assert "model -> cli" in str(caught.value)
    assert "imports tests" in str(caught.value)
