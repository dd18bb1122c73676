"""kloudctl.answers: reading another program's JSON, checked, with messages people can act on."""

from __future__ import annotations

import pytest

from kloudctl.answers import QUOTE_CHARS, UnexpectedAnswer, dig, number, parse_json, quote
from kloudctl.errors import ExternalError

ANSWER = {"data": {"tasks": [{"upid": "UPID:n1:1", "pid": 7, "ok": True}], "total": 1.5}}


def test_parse_json_names_the_tool_and_quotes_what_came_back() -> None:
    assert parse_json("restic", '{"a": 1}') == {"a": 1}
    assert parse_json("restic", b"[1]") == [1]
    with pytest.raises(UnexpectedAnswer) as info:
        parse_json("restic snapshots", "Fatal: not JSON")
    assert isinstance(info.value, ExternalError)  # the CLI reports it, exit 1
    assert str(info.value) == (
        "restic snapshots answered unexpectedly: expected JSON; got 'Fatal: not JSON'"
    )
    assert info.value.tool == "restic snapshots" and info.value.expected == "JSON"


@pytest.mark.parametrize("text", ["", "   \n", b""])
def test_parse_json_of_nothing_says_nothing(text: str | bytes) -> None:
    with pytest.raises(UnexpectedAnswer, match=r"expected JSON; got nothing$"):
        parse_json("pulumi", text)


def test_dig_follows_keys_and_indexes() -> None:
    assert dig("t", ANSWER, "data", "tasks", 0, "upid") == "UPID:n1:1"
    assert dig("t", ANSWER, "data", "tasks", -1, "pid", kind=int) == 7
    assert dig("t", ANSWER) is ANSWER  # no path: the answer itself


@pytest.mark.parametrize(
    ("path", "where"),
    [
        (("data", "nodes"), "data.nodes"),
        (("data", "tasks", 3, "upid"), "data.tasks[3]"),
        (("data", "tasks", "upid"), "data.tasks.upid"),  # a list is not indexed by name
        (("data", "total", 0), "data.total[0]"),  # nor a number by position
    ],
)
def test_dig_says_where_the_answer_ends(path: tuple[str | int, ...], where: str) -> None:
    with pytest.raises(UnexpectedAnswer) as info:
        dig("proxmox", ANSWER, *path)
    assert info.value.expected == f"{where} in its answer"


def test_dig_checks_kinds_and_says_which() -> None:
    assert dig("t", ANSWER, "data", "total", kind=(int, float)) == 1.5
    with pytest.raises(UnexpectedAnswer) as info:
        dig("t", ANSWER, "data", "tasks", kind=dict)
    assert info.value.expected == "data.tasks to be an object"
    with pytest.raises(UnexpectedAnswer) as info:
        dig("t", ANSWER, "data", "total", kind=(str, type(None)))
    assert info.value.expected == "data.total to be a string or null"
    with pytest.raises(UnexpectedAnswer, match="expected the answer to be a list"):
        dig("t", ANSWER, kind=list)


def test_true_is_not_an_integer() -> None:
    # bool is an int subclass in Python; in an answer, `true` where a count belongs is wrong.
    with pytest.raises(UnexpectedAnswer, match="to be an integer"):
        dig("t", ANSWER, "data", "tasks", 0, "ok", kind=int)
    assert dig("t", ANSWER, "data", "tasks", 0, "ok", kind=bool) is True
    assert dig("t", ANSWER, "data", "tasks", 0, "ok", kind=(bool, int)) is True


def test_default_for_what_is_missing_or_null_never_for_a_wrong_kind() -> None:
    assert dig("t", ANSWER, "data", "nodes", default=[]) == []
    assert dig("t", None, "data", default="x") == "x"
    assert dig("t", {"a": None}, "a", kind=str, default="") == ""
    with pytest.raises(UnexpectedAnswer):
        dig("t", {"a": 5}, "a", kind=str, default="")


def test_number_is_finite_and_a_float() -> None:
    assert number("t", {"n": 3}, "n") == 3.0 and isinstance(number("t", {"n": 3}, "n"), float)
    assert number("t", {}, "n", default=None) is None
    assert number("t", {"n": None}, "n", default=0.0) == 0.0
    for bad in (True, "3", [1]):
        with pytest.raises(UnexpectedAnswer, match="expected n to be a number"):
            number("t", {"n": bad}, "n")
    # float() of a huge JSON integer overflows; inf and nan are no durations either
    for bad in (10**400, float("inf"), float("nan")):
        with pytest.raises(UnexpectedAnswer, match="expected n to be a finite number"):
            number("t", {"n": bad}, "n")


def test_quotes_are_short_and_on_one_line() -> None:
    long = "x" * (QUOTE_CHARS * 5)
    quoted = quote(long)
    assert quoted == repr("x" * QUOTE_CHARS + "...")
    assert quote("a\n  b\tc") == "'a b c'"
    assert quote(b"\xffbytes") == repr("\ufffdbytes")
    assert quote({"b": 1, "a": [None]}) == repr('{"a": [null], "b": 1}')
    assert "<object object" in quote(object())  # anything at all renders
    message = str(UnexpectedAnswer("podman", "a list", "[" * 10_000))
    assert len(message) < QUOTE_CHARS + 100
