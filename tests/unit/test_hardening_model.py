"""Misuse corpus, generated (issue 17): hostile edits to every field of a cabinet and of a
backup policy (wrong types, true for a number, .inf/.nan, huge integers, deep nesting, long
and unicode strings, repeated set items, duplicate keys...).

Whatever the edit: the loader answers with a fleet or kloudctl's own `InputError`, never
another exception; `kloudctl validate --json` through the real CLI boundary exits 0 or 2
with the problems as JSON; and nothing in the fleet was written. Cases run in-process
(the CLI's boundary included) so a few hundred stay within seconds; the fixed cases at the
end run the real CLI in a subprocess. The number of generated cases is printed at the end
of the module (visible with -s, and in the terminal summary).
"""

from __future__ import annotations

import copy
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kloudctl.errors import InputError
from kloudctl.model import load_fleet
from kloudctl.model.yamlsource import MAX_DEPTH, MAX_FILE_BYTES, load_text

CORPUS = Path(__file__).resolve().parent.parent / "corpus"
CABINET_FILE = "cabinets/case.yaml"
POLICY_FILE = "backups/standard.yaml"
CABINET_TEXT = (CORPUS / "case.yaml").read_text()
POLICY_TEXT = (CORPUS / "fleet" / POLICY_FILE).read_text()

# Generated cases run, per test; printed at the end of the module.
CASES_RUN: Counter[str] = Counter()
GENERATED_TESTS = ("cabinet", "policy", "duplicate-key")
MIN_CASES = 200

HYPOTHESIS = settings(
    deadline=None,
    derandomize=True,  # the same cases every run: a failure is reproducible as is
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# --- the documents and where their values are -------------------------------------------


def _paths(data: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every value's path in a parsed document: mapping keys and list indexes."""
    if path:
        yield path
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _paths(value, (*path, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from _paths(value, (*path, index))


def _at(data: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        data = data[part]
    return data


CABINET = yaml.safe_load(CABINET_TEXT)
POLICY = yaml.safe_load(POLICY_TEXT)
CABINET_PATHS = sorted(_paths(CABINET), key=str)
POLICY_PATHS = sorted(_paths(POLICY), key=str)
CABINET_LISTS = [p for p in CABINET_PATHS if isinstance(_at(CABINET, p), list)]
POLICY_LISTS = [p for p in POLICY_PATHS if isinstance(_at(POLICY, p), list)]
CABINET_MAPPINGS = [()] + [p for p in CABINET_PATHS if isinstance(_at(CABINET, p), dict)]
POLICY_MAPPINGS = [()] + [p for p in POLICY_PATHS if isinstance(_at(POLICY, p), dict)]

# --- hostile values ------------------------------------------------------------------------

# Written into the YAML text as is, where the dumper would quote or could not write them.
MARK = "hostile-value-marker"
RAW_VALUES = [
    ".inf",
    "-.inf",
    ".nan",
    "true",
    "no",
    "~",
    "9" * 5000,  # over Python's 4300-digit limit for int()
    "-" + "9" * 400,
    "0x" + "f" * 80,
    "1.0e999",  # a float that is .inf
    "2001-02-30",  # a date that does not exist
    "2024-01-01 25:61:61",
    "!!binary xx",
    "!!python/object:os.system x",
    "!!int 12x",
    "*undefined_anchor",
    "&self [*self]",
    "&self {a: *self}",
    "[" * (MAX_DEPTH + 8) + "]" * (MAX_DEPTH + 8),
    "[" * 3000 + "]" * 3000,
    "- - - - - -",
    "{" * 200 + "}" * 200,
    '"\\x00\\u200b\\U0001F600"',
    "'" + "é" * 50_000 + "'",
    "2GiB",
    "0GiB",
    "1025PiB",
    "99999999999999999999d",
    "0s",
    "auto",
    "{<<: {}}",
]

_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.sampled_from([0, -1, 2**31, 2**63, 2**64 + 1, 10**8 + 1, 1025, 4095, 65536]),
    # the schema's bounds themselves: accepted, so they reach the cross-checks and the plan
    st.sampled_from([1, 2, 16, 29, 100, 128, 1024, 4094, 10_000, 65535, 10**8, 999_999_999]),
    st.sampled_from(["1B", "1PiB", "1s", "3650d", "0.0.0.0/0", "10.0.0.0/8"]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.text(min_size=1, max_size=3).map(lambda t: t * 3000),  # long, any unicode
    st.sampled_from(["", " ", "2GiB", "1PiB", "6h", "3651d", "10.0.0.1/24", "vault:x#y"]),
)
HOSTILE_VALUES = st.recursive(
    _leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


def _nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


DEEP_VALUES = st.integers(MAX_DEPTH - 4, 120).map(_nested)


def _edits(paths: list, lists: list, mappings: list) -> st.SearchStrategy[tuple]:
    """One edit of a document: replace a value, write a raw YAML value, repeat a list item,
    drop a value, or add an unknown key."""
    return st.one_of(
        st.tuples(st.just("replace"), st.sampled_from(paths), HOSTILE_VALUES),
        st.tuples(st.just("replace"), st.sampled_from(paths), DEEP_VALUES),
        st.tuples(st.just("raw"), st.sampled_from(paths), st.sampled_from(RAW_VALUES)),
        st.tuples(st.just("repeat"), st.sampled_from(lists), st.integers(0, 5)),
        st.tuples(st.just("drop"), st.sampled_from(paths), st.none()),
        st.tuples(
            st.just("add"), st.sampled_from(mappings), st.tuples(st.text(max_size=12), _leaves)
        ),
    )


def _apply(document: Any, edit: tuple) -> str:
    """The YAML text of `document` after `edit`."""
    kind, path, argument = edit
    data = copy.deepcopy(document)
    raw = None
    if kind in ("replace", "raw", "drop"):
        parent, last = _at(data, path[:-1]), path[-1]
        if kind == "drop":
            del parent[last]
        else:
            parent[last] = MARK if kind == "raw" else argument
            raw = argument if kind == "raw" else None
    elif kind == "repeat":
        items = _at(data, path)
        if items:
            items.append(copy.deepcopy(items[argument % len(items)]))
    elif kind == "add":
        key, value = argument
        target = _at(data, path)
        if isinstance(target, dict):
            target[key] = value
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    return text.replace(MARK, raw) if raw is not None else text


# --- running one case ----------------------------------------------------------------------


def _snapshot(root: Path) -> dict[str, bytes | str]:
    """Every entry of the fleet folder: files by content, the rest by kind."""
    return {
        str(p.relative_to(root)): p.read_bytes() if p.is_file() else "not a file"
        for p in sorted(root.rglob("*"))
    }


def _cli(*args: str) -> tuple[int, str, str]:
    """The real CLI, boundary included, in this process: (exit code, stdout, stderr)."""
    from kloudctl.cli import cli
    from kloudctl.cli.boundary import run_with_boundary

    out, err = io.StringIO(), io.StringIO()
    saved = sys.argv
    sys.argv = ["kloudctl", *args]
    code: Any = None
    try:
        with redirect_stdout(out), redirect_stderr(err):
            run_with_boundary(cli)
    except SystemExit as exc:
        code = exc.code
    finally:
        sys.argv = saved
    return (code if isinstance(code, int) else 1), out.getvalue(), err.getvalue()


def _check(file: str, text: str) -> None:
    """Write `text` as `file` of a copy of the corpus fleet; load and validate it."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "fleet"
        shutil.copytree(CORPUS / "fleet", root)
        (root / CABINET_FILE).write_text(CABINET_TEXT)
        (root / file).write_text(text)
        before = _snapshot(root)

        try:  # anything but kloudctl's own input error fails the test, with the case
            load_fleet(root)
            valid = True
        except InputError as exc:
            valid = False
            assert exc.problems and all(str(problem) for problem in exc.problems)

        code, out, err = _cli("--fleet", str(root), "validate", "--json")
        assert "internal error" not in err and "Traceback" not in err, err
        assert code == (0 if valid else 2), err
        report = json.loads(out)
        assert report["valid"] is valid
        if not valid:
            assert report["problems"], "an invalid fleet must list its problems"
            for problem in report["problems"]:
                assert set(problem) == {"file", "line", "column", "field", "message"}
                assert problem["message"]
        else:  # a valid fleet must also be shown and planned without an internal error
            code, _, err = _cli("--fleet", str(root), "cabinet", "show", "case", "--json")
            assert code in (0, 2) and "internal error" not in err, err

        assert _snapshot(root) == before, "a validation must write nothing"


# --- the generated corpus ------------------------------------------------------------------


@settings(HYPOTHESIS, max_examples=170)
@given(_edits(CABINET_PATHS, CABINET_LISTS, CABINET_MAPPINGS))
def test_hostile_cabinet_edits(edit: tuple) -> None:
    CASES_RUN["cabinet"] += 1
    _check(CABINET_FILE, _apply(CABINET, edit))


@settings(HYPOTHESIS, max_examples=70)
@given(_edits(POLICY_PATHS, POLICY_LISTS, POLICY_MAPPINGS))
def test_hostile_policy_edits(edit: tuple) -> None:
    CASES_RUN["policy"] += 1
    _check(POLICY_FILE, _apply(POLICY, edit))


_KEY_LINE = re.compile(r"^ *[a-z_]+: ")
CABINET_KEY_LINES = [i for i, line in enumerate(CABINET_TEXT.splitlines()) if _KEY_LINE.match(line)]


@settings(HYPOTHESIS, max_examples=30)
@given(st.sampled_from(CABINET_KEY_LINES), st.sampled_from(["", "x", "true", ".nan"]))
def test_duplicate_keys_are_refused(line: int, value: str) -> None:
    CASES_RUN["duplicate-key"] += 1
    lines = CABINET_TEXT.splitlines()
    key = lines[line].split(":")[0]
    text = "\n".join([*lines[: line + 1], f"{key}: {value}", *lines[line + 1 :]]) + "\n"
    located = load_text(text, CABINET_FILE)
    assert any("duplicate key" in problem.message for problem in located.problems)
    _check(CABINET_FILE, text)


def test_generated_cases_are_counted() -> None:
    """Printed with -s, and in the terminal summary: how many cases ran."""
    if set(CASES_RUN) != set(GENERATED_TESTS):
        pytest.skip("counts the generated cases when the whole module runs")
    total = sum(CASES_RUN.values())
    detail = ", ".join(f"{name} {CASES_RUN[name]}" for name in GENERATED_TESTS)
    print(f"\nhardening corpus: {total} generated cases ({detail})")
    assert total >= MIN_CASES


@pytest.fixture(scope="module", autouse=True)
def _report_count(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None or not CASES_RUN:
        return
    with capture.global_and_fixture_disabled():  # shown without -s too
        reporter.ensure_newline()
        reporter.write_line(
            f"hardening corpus: {sum(CASES_RUN.values())} generated cases run "
            f"({', '.join(f'{k} {v}' for k, v in sorted(CASES_RUN.items()))})"
        )


# --- fixed cases: the real CLI -------------------------------------------------------------


def _example(tmp_path: Path) -> Path:
    root = tmp_path / "fleet"
    for folder in ("cabinets", "backups"):
        shutil.copytree(Path(__file__).resolve().parents[2] / folder, root / folder)
    return root


def test_validate_json_prints_the_problems(tmp_path: Path, kloudctl) -> None:
    root = _example(tmp_path)
    brieux = root / "cabinets" / "brieux.yaml"
    brieux.write_text(brieux.read_text().replace("cores: 16", "cores: true", 1))
    result = kloudctl("--fleet", str(root), "validate", "--json")
    assert result.returncode == 2, result.stderr
    report = json.loads(result.stdout)
    assert report["valid"] is False
    [problem] = report["problems"]
    assert problem["file"] == "cabinets/brieux.yaml"
    assert problem["field"] == "hardware.nodes[0].cores"
    assert problem["message"] == "expected an integer, got true"
    assert problem["line"] > 0 and problem["column"] > 0


def test_validate_json_valid(repo: Path, kloudctl) -> None:
    result = kloudctl("--fleet", str(repo), "validate", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "valid": True,
        "cabinets": 3,
        "policies": 2,
        "problems": [],
    }


def test_validate_a_folder_without_declarations_is_an_error(tmp_path: Path, kloudctl) -> None:
    root = _example(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    (root / "cabinets" / "drafts").mkdir()
    (tmp_path / "new" / "cabinets").mkdir(parents=True)
    for folder, message in (
        (empty, "expected a fleet folder (holding cabinets/)"),
        (root / "cabinets" / "drafts", "expected a fleet folder (holding cabinets/)"),
        (tmp_path / "new", "holds no .yaml file to validate"),
        (tmp_path / "new" / "cabinets", "holds no .yaml file to validate"),
    ):
        result = kloudctl("validate", str(folder), cwd=root)
        assert result.returncode == 2, (folder, result.stdout)
        assert message in result.stderr, result.stderr
    result = kloudctl("validate", str(root / "cabinets"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "ok: 3 cabinet(s), 0 backup policy(ies)" in result.stdout


def test_unreadable_entries_are_errors_not_completions(tmp_path: Path, kloudctl) -> None:
    root = _example(tmp_path)
    cabinets = root / "cabinets"
    (cabinets / "folder.yaml").mkdir()
    (cabinets / "loop.yaml").symlink_to("loop.yaml")
    (cabinets / "broken.yaml").symlink_to("nowhere.yaml")
    (cabinets / ".#brieux.yaml").symlink_to("engineer@laptop.1234")  # an editor's lock
    os.mkfifo(cabinets / "pipe.yaml")  # would block a read forever

    result = kloudctl("--fleet", str(root), "validate")
    assert result.returncode == 2
    assert sorted(line.strip() for line in result.stderr.splitlines()[1:]) == [
        "cabinets/broken.yaml expected a file, got a broken symbolic link (to nowhere.yaml)",
        "cabinets/folder.yaml expected a file, got a folder",
        "cabinets/loop.yaml expected a file, got a symbolic link loop",
        "cabinets/pipe.yaml expected a file, got a special file (pipe, socket or device)",
    ]
    result = kloudctl("--fleet", str(root), "cabinet", "show", "folder")
    assert result.returncode == 2 and "cabinets/folder.yaml expected a file" in result.stderr

    # the installed script: click names the completion variable after the program
    completion = subprocess.run(
        [str(Path(sys.executable).parent / "kloudctl")],
        env={
            **os.environ,
            "_KLOUDCTL_COMPLETE": "bash_complete",
            "COMP_WORDS": f"kloudctl --fleet {root} cabinet show ",
            "COMP_CWORD": "5",
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    offered = [line.split(",", 1)[1] for line in completion.stdout.splitlines()]
    assert offered == ["brieux", "mortree", "saint-aubin"], completion.stdout


def test_piped_tables_keep_whole_values(repo: Path, kloudctl) -> None:
    result = kloudctl("--fleet", str(repo), "cabinet", "list", env={"COLUMNS": "80"})
    assert result.returncode == 0, result.stderr
    assert "…" not in result.stdout
    [brieux] = [line for line in result.stdout.splitlines() if line.startswith("│ brieux ")]
    assert "brieux.fr, mortree.fr" in brieux and "saint-aubin" in brieux


# --- fixed cases: the loader -----------------------------------------------------------------


def _corpus_cabinet(tmp_path: Path, edits: list[tuple[str, str]]) -> Path:
    root = tmp_path / "fleet"
    shutil.copytree(CORPUS / "fleet", root)
    text = CABINET_TEXT
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new, 1)
    (root / CABINET_FILE).write_text(text)
    return root


@pytest.mark.parametrize("prefix", [16, 19])
def test_large_tenant_subnets_are_planned(tmp_path: Path, prefix: int) -> None:
    """Subnets over 4096 addresses once had no gateway (IndexError)."""
    root = _corpus_cabinet(
        tmp_path,
        [
            ("10.161.0.0/16", f"10.160.0.0/12\n  tenant_prefix: {prefix}"),
            ("address: 10.161.1.20/24", "address: auto"),
        ],
    )
    fleet = load_fleet(root)
    assert str(fleet.cabinet("case").networks.tenant_supernet) == "10.160.0.0/12"


def test_a_vmid_range_as_wide_as_proxmox_allows_is_planned_at_once(tmp_path: Path) -> None:
    """Automatic VMIDs once stepped through a declared range block by block (minutes for
    10^9 VMIDs), then ran past Proxmox's largest VMID."""
    root = _corpus_cabinet(
        tmp_path,
        [
            ("{first: 1000, last: 1099}", "{first: 100, last: 999999999}"),
            ("    vmids: {first: 1100, last: 1199}\n", ""),
        ],
    )
    with pytest.raises(InputError) as caught:
        load_fleet(root)
    assert [str(p) for p in caught.value.problems] == [
        f"{CABINET_FILE}:50:5 tenants[1]: no free block of 100 VMIDs left up to 999999999"
    ]


def test_a_merged_key_may_be_overridden() -> None:
    """...also when the mapping is reached again through an alias (it once was reported as
    a duplicate key, and the alias carried the merged value instead of the overriding one)."""
    text = "base: &base {cores: 2, memory: 2GiB}\nvm: &vm\n  <<: *base\n  cores: 4\nagain: *vm\n"
    located = load_text(text, "x.yaml")
    assert located.problems == []
    assert located.data["vm"] == located.data["again"] == {"cores": 4, "memory": "2GiB"}
    located = load_text("base: &base {cores: 2}\nvm: {<<: *base, cores: 4, cores: 8}\n", "x.yaml")
    assert [str(p) for p in located.problems] == [
        "x.yaml:2:27 vm.cores: duplicate key (first defined on line 2)"
    ]


def test_a_file_too_large_is_refused_unread(tmp_path: Path) -> None:
    root = _example(tmp_path)
    (root / "cabinets" / "dump.yaml").write_bytes(b"# " + b"x" * MAX_FILE_BYTES)
    with pytest.raises(InputError) as caught:
        load_fleet(root)
    assert [str(p) for p in caught.value.problems] == ["cabinets/dump.yaml file larger than 4 MiB"]


@pytest.mark.parametrize("brackets", [5_000, 20_000, 30_000, 100_000])
def test_deep_nesting_is_located_whatever_the_depth(brackets: int) -> None:
    located = load_text("x: " + "[" * brackets + "]" * brackets, "cabinets/deep.yaml")
    [problem] = located.problems
    assert str(problem) == f"cabinets/deep.yaml:1:35 nesting deeper than {MAX_DEPTH} levels"
