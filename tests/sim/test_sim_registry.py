"""The simulator's structure: one registry built from the handler modules, checked against
the schema once; handlers and the cabinet's logic without aiohttp; no schema loaded by
importing them."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import pytest

from kloudctl.sim import handlers
from kloudctl.sim.api import Call, Routes
from kloudctl.sim.schema import Schema, load_schema


def test_every_handler_module_is_in_the_registry():
    found = set()
    for info in pkgutil.walk_packages(handlers.__path__, handlers.__name__ + "."):
        module = importlib.import_module(info.name)
        if isinstance(getattr(module, "routes", None), Routes):
            found.add(module)
    assert found == set(handlers.MODULES)


def test_the_registry_answers_only_schema_methods():
    schema = load_schema()
    registry = handlers.build_registry(schema)
    assert set(registry) <= set(schema.methods)
    indexes = [k for k, fn in registry.items() if getattr(fn, "schema_index", False)]
    assert 0 < len(indexes) < len(registry)


def _with_extra(monkeypatch: pytest.MonkeyPatch, http: str, path: str) -> None:
    routes = Routes()

    @routes(http, path)
    def extra(call: Call) -> None:
        return None

    module = type(sys)("extra_handlers")
    module.routes = routes  # type: ignore[attr-defined]
    monkeypatch.setattr(handlers, "MODULES", (*handlers.MODULES, module))


def test_a_route_outside_the_schema_is_refused(monkeypatch):
    _with_extra(monkeypatch, "GET", "/nodes/{node}/no-such-thing")
    with pytest.raises(LookupError, match="is not a method of the PVE API schema"):
        handlers.build_registry(load_schema())


def test_a_route_recorded_twice_is_refused(monkeypatch):
    _with_extra(monkeypatch, "GET", "/cluster/resources")
    with pytest.raises(LookupError, match="GET /cluster/resources has two handlers"):
        handlers.build_registry(load_schema())


def test_build_registry_uses_the_schema_it_is_given():
    schema = Schema([{"path": "/version", "info": {"GET": {"name": "version"}}}])
    with pytest.raises(LookupError):
        handlers.build_registry(schema)


def test_handlers_load_no_schema_and_no_aiohttp():
    code = (
        "import sys\n"
        "import kloudctl.sim.handlers, kloudctl.sim.dispatch, kloudctl.sim.cabinet\n"
        "from kloudctl.sim.schema import load_schema\n"
        "assert load_schema.cache_info().currsize == 0, 'schema loaded at import'\n"
        "assert 'aiohttp' not in sys.modules, 'aiohttp imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
