"""Property tests: whatever the input, the loader answers with its own error or a model."""

from __future__ import annotations

from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kloudctl.errors import InputError
from kloudctl.model import Cabinet
from kloudctl.model.loader import validate_document
from kloudctl.model.yamlsource import load_text

CASE = (Path(__file__).resolve().parent.parent / "corpus" / "case.yaml").read_text()

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=30)
)
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=25,
)


def _load(text: str) -> None:
    located = load_text(text, "cabinets/x.yaml")
    model, problems = validate_document(located, Cabinet)
    assert (model is None) == bool(problems)
    for problem in problems:
        assert problem.file == "cabinets/x.yaml"
        assert str(problem)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=400))
def test_any_text_gives_problems_not_exceptions(text: str) -> None:
    _load(text)


@settings(max_examples=300, deadline=None)
@given(documents)
def test_any_yaml_structure_gives_problems_not_exceptions(data: object) -> None:
    _load(yaml.safe_dump(data, allow_unicode=True))


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(CASE) - 1), st.integers(0, 40), st.text(max_size=12))
def test_mutated_cabinet_gives_problems_not_exceptions(at: int, cut: int, insert: str) -> None:
    _load(CASE[:at] + insert + CASE[at + cut :])


def test_alias_bomb_is_refused_quickly() -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    for level in "bcdefghi":
        prev = chr(ord(level) - 1)
        bomb += f"{level}: &{level} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
    located = load_text(bomb, "cabinets/x.yaml")
    assert located.data is None
    assert "too many values" in located.problems[0].message


@settings(max_examples=100, deadline=None)
@given(
    st.dictionaries(st.sampled_from(["name", "tenants", "hardware", "power", "mail"]), documents)
)
def test_fleet_loader_raises_only_input_error(tmp_path_factory, data: dict) -> None:
    from kloudctl.model import load_fleet

    root = tmp_path_factory.mktemp("fleet")
    (root / "cabinets").mkdir()
    (root / "cabinets" / "x.yaml").write_text(yaml.safe_dump(data))
    try:
        load_fleet(root)
    except InputError as exc:
        assert exc.problems
