"""Generated inputs (hypothesis): the mail store's inputs (domain names, local parts, sizes,
counts, unicode passwords) and every kind of CLI option that takes a number, a path, a host
or a port.

Each case asserts: no internal error, the documented exit code (2 for bad input, naming
the field, and the largest accepted value when a number is out of range), and that nothing
was written when the input was refused. The number of cases run is printed at the end."""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import shutil
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kloudctl.errors import InputError, KloudError
from kloudctl.mail import dns
from kloudctl.mail.accounts_db import MAX_MAILBOXES, MAX_QUOTA, MIN_QUOTA
from kloudctl.mail.store import LocalTransport, MailStore, verify_password
from tests.unit.inprocess import invoke, tree

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery"
GiB = 1024**3
RUN: Counter[str] = Counter()  # generated cases run, per corpus


def quick(examples: int) -> Callable[[Any], Any]:
    """Examples per corpus, no deadline (argon2 is slow on purpose), no example database."""
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


@pytest.fixture(scope="module", autouse=True)
def _print_the_count(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    detail = ", ".join(f"{name} {n}" for name, n in sorted(RUN.items()))
    line = f"input corpus: {sum(RUN.values())} generated cases run ({detail})"
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None:  # e.g. run with -p no:terminal
        print(line)
        return
    with capture.global_and_fixture_disabled():  # shown even when output is captured
        reporter.write_line(line)


# --- the mail store -----------------------------------------------------------------------

domains = st.one_of(
    st.from_regex(r"[a-z0-9-]{1,12}(\.[a-z0-9-]{1,12}){0,2}\.[a-z]{2,6}", fullmatch=True),
    st.text(max_size=30),
    st.sampled_from(
        ["BRIEUX.FR", "a..fr", "-a.fr", ".fr", "localhost", "é.fr", "a" * 64 + ".fr", " x.fr "]
    ),
)
local_parts = st.one_of(
    st.from_regex(r"[a-z0-9][a-z0-9._+-]{0,10}", fullmatch=True), st.text(max_size=20)
)
sizes = st.one_of(
    st.integers(min_value=-(2**10), max_value=2**10),
    st.integers(min_value=MIN_QUOTA, max_value=MAX_QUOTA),
    st.integers(min_value=2**40, max_value=2**90),
    st.sampled_from([MIN_QUOTA - 1, MIN_QUOTA, MAX_QUOTA, MAX_QUOTA + 1, 2**63 - 1, 2**63]),
)
counts = st.one_of(
    st.integers(min_value=-5, max_value=50),
    st.integers(),
    st.sampled_from([0, 1, MAX_MAILBOXES, MAX_MAILBOXES + 1, 2**63, True]),
)
# Any code point, lone surrogates and control characters included.
passwords = st.one_of(
    st.text(st.characters(codec=None, exclude_categories=()), max_size=40),
    st.text(min_size=10, max_size=30),
)


def _quota_ok(n: Any) -> bool:
    return isinstance(n, int) and not isinstance(n, bool) and MIN_QUOTA <= n <= MAX_QUOTA


def _count_ok(n: Any) -> bool:
    return isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= MAX_MAILBOXES


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> MailStore:
    s = MailStore(LocalTransport(tmp_path_factory.mktemp("store") / "accounts.sqlite"))
    s.domain_add("x.fr", max_mailboxes=MAX_MAILBOXES, total_quota=MAX_QUOTA,
                 default_quota=GiB, dkim=False)  # fmt: skip
    s.domain_add("y.fr", max_mailboxes=2, total_quota=4 * GiB, default_quota=GiB, dkim=False)
    s.mailbox_add("one@y.fr", PASSWORD, 2 * GiB)
    return s


def _content(store: MailStore) -> str:
    assert isinstance(store.transport, LocalTransport)
    with sqlite3.connect(store.transport.db) as db:
        return hashlib.sha256("\n".join(db.iterdump()).encode()).hexdigest()


def _refused(exc: KloudError) -> None:
    assert exc.exit_code == 2, exc  # bad input, refused by a cap, unknown name: exit 2
    assert "internal error" not in str(exc) and str(exc)


def test_domain_add_corpus(store: MailStore) -> None:
    @quick(70)
    @given(domains, counts, sizes, sizes)
    def case(name: str, count: Any, total: Any, default: Any) -> None:
        RUN["domain add"] += 1
        before = _content(store)
        try:
            done = store.domain_add(
                name, max_mailboxes=count, total_quota=total, default_quota=default, dkim=False
            )
        except KloudError as exc:
            _refused(exc)
            assert _content(store) == before
            return
        assert _count_ok(count) and _quota_ok(total) and _quota_ok(default) and default <= total
        [row] = [d for d in store.domain_list() if d["domain"] == done["domain"]]
        assert (row["max_mailboxes"], row["total_quota"], row["default_quota"]) == (
            count, total, default,
        )  # fmt: skip

    case()
    assert RUN["domain add"] >= 50


def test_mailbox_add_corpus(store: MailStore) -> None:
    @quick(40)
    @given(local_parts, st.sampled_from(["x.fr", "X.FR", "nowhere.fr"]) | domains, passwords,
           st.none() | sizes)  # fmt: skip
    def case(local: str, domain: str, password: str, quota: Any) -> None:
        RUN["mailbox add"] += 1
        before = _content(store)
        try:
            done = store.mailbox_add(f"{local}@{domain}", password, quota)
        except KloudError as exc:
            _refused(exc)
            assert _content(store) == before
            return
        assert 10 <= len(password) <= 1024 and (quota is None or _quota_ok(quota))
        [row] = [m for m in store.mailbox_list("x.fr") if m["address"] == done["address"]]
        assert row["quota"] == (GiB if quota is None else quota)
        assert isinstance(store.transport, LocalTransport)
        with sqlite3.connect(store.transport.db) as db:
            [(stored,)] = db.execute(
                "SELECT password FROM mailboxes WHERE address = ?", (done["address"],)
            ).fetchall()
        assert verify_password(stored, password)
        store.mailbox_remove(done["address"])

    case()
    assert RUN["mailbox add"] >= 25


def test_domain_set_corpus(store: MailStore) -> None:
    @quick(50)
    @given(st.none() | counts, st.none() | sizes, st.none() | sizes)
    def case(count: Any, total: Any, default: Any) -> None:
        RUN["domain set"] += 1
        before = _content(store)
        try:
            done = store.domain_set("y.fr", max_mailboxes=count, total_quota=total,
                                    default_quota=default)  # fmt: skip
        except KloudError as exc:
            _refused(exc)
            assert _content(store) == before
            return
        for value, ok in ((count, _count_ok), (total, _quota_ok), (default, _quota_ok)):
            assert value is None or ok(value)
        assert done["default_quota"] <= done["total_quota"]
        assert done["total_quota"] >= 2 * GiB  # the one mailbox's quota: never below use
        store.domain_set("y.fr", max_mailboxes=2, total_quota=4 * GiB, default_quota=GiB)

    case()
    assert RUN["domain set"] >= 30


# --- the command line -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    for folder in ("cabinets", "backups"):
        shutil.copytree(REPO / folder, root / "fleet" / folder)
    store = MailStore(LocalTransport(root / "mail.db"))
    store.domain_add("x.fr", max_mailboxes=5, total_quota=5 * GiB, default_quota=GiB, dkim=False)
    (root / "file.txt").write_text("text\n")
    (root / "dir").mkdir()
    (root / "link").symlink_to(root / "file.txt")
    os.mkfifo(root / "pipe")
    return root


def run_unchanged(world: Path, args: list[str], **kw: Any) -> tuple[int, str]:
    """Run the CLI; assert no internal error and that nothing under `world` changed."""
    before = tree(world)
    ran = invoke(*[a.replace("{w}", str(world)) for a in args], **kw)
    assert "internal error" not in ran.output and "Traceback" not in ran.output, ran.output
    assert tree(world) == before, (args, ran.output)
    return ran.code, ran.flat()


UNITS = {"MiB": 1024**2, "GiB": 1024**3, "TiB": 1024**4, "PiB": 1024**5}
INTEGER = re.compile(r"-?[0-9]+")
SIZE = re.compile(r"([0-9]{1,25})(MiB|GiB|TiB|PiB)")

numbers_as_text = st.one_of(
    st.integers().map(str),
    st.integers(min_value=-10, max_value=1_000_001).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.text(max_size=12),
    st.sampled_from(
        ["nan", "inf", "-0", "1e999", "٣", "0x10", "3_0", " 7 ", "", "99999999999999999999999"]
    ),
)
sizes_as_text = st.one_of(
    st.builds(lambda n, u: f"{n}{u}", st.integers(min_value=0, max_value=10**22), st.sampled_from(list(UNITS))),
    st.builds(lambda n, u: f"{n}{u}", st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(["GiB", "TB", "B", ""])),
    st.text(max_size=12),
    st.sampled_from(["9999999TiB", "1PiB", "1025TiB", "1MiB", "1048575B", "0GiB", "-1GiB", "lots"]),
)  # fmt: skip

#: (option, command with {v}, kind, lowest, highest, what an accepted value leads to).
#: Accepted values meet a name that does not exist (or no running simulator), so no case
#: ever writes; refused values must fail on the option itself, with exit 2.
NUMBER_OPTIONS: list[tuple[str, list[str], str, float, float, tuple[int, str]]] = [
    ("--max-mailboxes", ["mail", "--db", "{w}/mail.db", "domain", "set", "nosuch.fr",
     "--max-mailboxes", "{v}"], "int", 1, MAX_MAILBOXES, (2, "unknown domain nosuch.fr")),
    ("--max-mailboxes", ["mail", "--db", "{w}/mail.db", "domain", "add", "x.fr",
     "--max-mailboxes", "{v}", "--total-quota", "5GiB", "--no-dkim"], "int", 1, MAX_MAILBOXES,
     (2, "domain x.fr already exists")),
    ("--total-quota", ["mail", "--db", "{w}/mail.db", "domain", "set", "nosuch.fr",
     "--total-quota", "{v}"], "size", MIN_QUOTA, MAX_QUOTA, (2, "unknown domain nosuch.fr")),
    ("--default-quota", ["mail", "--db", "{w}/mail.db", "domain", "set", "nosuch.fr",
     "--default-quota", "{v}"], "size", MIN_QUOTA, MAX_QUOTA, (2, "unknown domain nosuch.fr")),
    ("SIZE", ["mail", "--db", "{w}/mail.db", "mailbox", "quota", "nobody@x.fr", "{v}"], "size",
     MIN_QUOTA, MAX_QUOTA, (2, "no mailbox nobody@x.fr")),
    ("--quota", ["mail", "--db", "{w}/mail.db", "mailbox", "add", "a@nosuch.fr", "--quota", "{v}",
     "--password-stdin"], "size", MIN_QUOTA, MAX_QUOTA, (2, "unknown domain nosuch.fr")),
    ("--count", ["--fleet", "{w}/fleet", "sim", "up", "atlantis", "--count", "{v}",
     "--base-address", "127.0.1.1", "--state-dir", "{w}/sim"], "int", 0, 250,
     (2, "no cabinet named 'atlantis'")),
    ("--port", ["--fleet", "{w}/fleet", "sim", "up", "atlantis", "--port", "{v}", "--state-dir",
     "{w}/sim"], "int", 0, 65535, (2, "no cabinet named 'atlantis'")),
    ("--task-seconds", ["--fleet", "{w}/fleet", "sim", "up", "atlantis", "--task-seconds", "{v}",
     "--state-dir", "{w}/sim"], "float", 0, 3600, (2, "no cabinet named 'atlantis'")),
    ("--sample", ["--fleet", "{w}/fleet", "replication", "restore-test", "atlantis", "--sample",
     "{v}"], "int", 1, 10_000, (2, "no cabinet named 'atlantis'")),
    ("--seed", ["--fleet", "{w}/fleet", "replication", "restore-test", "atlantis", "--seed",
     "{v}"], "int", 0, 2**63 - 1, (2, "no cabinet named 'atlantis'")),
    ("--ms", ["sim", "fault", "sim01", "latency", "--ms", "{v}", "--state-dir", "{w}/nowhere"],
     "float", 0, 600_000, (1, "no simulator runs")),
    ("--rate", ["sim", "fault", "sim01", "error_rate", "--rate", "{v}", "--state-dir",
     "{w}/nowhere"], "float", 0, 1, (1, "no simulator runs")),
    ("--vmid", ["sim", "fault", "sim01", "lock_timeout", "--vmid", "{v}", "--state-dir",
     "{w}/nowhere"], "int", 100, 999_999_999, (1, "no simulator runs")),
]  # fmt: skip


def _expected(kind: str, text: str, low: float, high: float) -> bool | None:
    """Whether a value must be accepted, when the text is plainly a number; else None."""
    if kind == "int" and INTEGER.fullmatch(text):
        return low <= int(text) <= high
    if kind == "float":
        try:
            number = float(text)
        except ValueError:
            return None
        return number == number and low <= number <= high  # nan is never accepted
    if kind == "size" and (found := SIZE.fullmatch(text)):
        return low <= Decimal(found.group(1)) * UNITS[found.group(2)] <= high
    return None


def test_numeric_options_corpus(world: Path) -> None:
    @quick(160)
    @given(st.sampled_from(NUMBER_OPTIONS), st.data())
    def case(spec: tuple[str, list[str], str, float, float, tuple[int, str]], data: Any) -> None:
        option, args, kind, low, high, (accepted_code, accepted_message) = spec
        text = data.draw(sizes_as_text if kind == "size" else numbers_as_text)
        RUN["numeric options"] += 1
        code, out = run_unchanged(world, [a.replace("{v}", text) for a in args],
                                  stdin=PASSWORD + "\n")  # fmt: skip
        accepted = code == accepted_code and accepted_message in out
        if not accepted:
            assert code == 2 and option in out, out  # refused: exit 2, naming the option
        must = _expected(kind, text, low, high)
        if must is not None:
            assert accepted == must, (text, out)
            if not must and kind != "float":  # out of range: the largest value is named
                shown = "1PiB" if kind == "size" else str(int(high))
                assert shown in out, out

    case()
    assert RUN["numeric options"] >= 100


fragments = st.one_of(
    st.sampled_from(["file.txt", "dir", "link", "pipe", "mail.db", "nowhere", ".", "", "x y", "é"]),
    st.text(st.characters(exclude_characters="/\0"), max_size=8).filter(lambda t: t != ".."),
)


def _on_a_command_line(text: str) -> bool:
    """Whether a real argv or environment can hold `text`: bytes the system decodes, with
    undecodable bytes as surrogate escapes (a lone surrogate such as U+D800 cannot)."""
    try:
        os.fsencode(text)
    except UnicodeEncodeError:
        return False
    return True


paths = st.one_of(
    st.lists(fragments, min_size=1, max_size=3).map(lambda parts: "{w}/" + "/".join(parts)),
    st.sampled_from(["/dev/null", "/dev/full", "/proc/x", "/", "/etc", "/nonexistent/x", ""]),
).filter(_on_a_command_line)
PATH_COMMANDS: list[tuple[str, list[str], set[int], dict[str, str]]] = [
    ("{p}", ["mail", "--db", "{p}", "domain", "list"], {0, 2}, {}),
    ("{p}", ["--fleet", "{w}/fleet", "replication", "status", "--all", "--state-dir", "{p}"],
     {1, 2}, {}),
    ("{p}", ["--fleet", "{w}/fleet", "replication", "check", "--all", "--state-dir",
     "{w}/nowhere", "--prometheus-textfile", "{p}"], {3}, {}),
    ("{p}", ["sim", "status", "--state-dir", "{p}"], {0, 2}, {}),
    ("{p}", ["--fleet", "{w}/fleet", "tenants", "plan", "brieux"], {1, 2},
     {"ANSIBLE_VAULT_PASSWORD_FILE": "{p}", "KLOUDCTL_PULUMI_STATE": "{w}/pulumi"}),
]  # fmt: skip


def test_path_options_corpus(world: Path) -> None:
    @quick(90)
    @given(st.sampled_from(PATH_COMMANDS), paths)
    def case(spec: tuple[str, list[str], set[int], dict[str, str]], path: str) -> None:
        _, args, codes, env = spec
        RUN["path options"] += 1
        code, out = run_unchanged(
            world,
            [a.replace("{p}", path) for a in args],
            env={k: v.replace("{p}", path).replace("{w}", str(world)) for k, v in env.items()},
        )
        assert code in codes, (path, out)
        if code == 2:
            assert out.startswith(("error:", "Usage:")), out

    case()
    assert RUN["path options"] >= 60


hosts = st.one_of(
    st.from_regex(r"([a-z_][a-z0-9_.-]{0,8}@)?[a-z0-9]([a-z0-9.-]{0,15}[a-z0-9])?(:[0-9]{1,6})?",
                  fullmatch=True),
    st.text(max_size=25).filter(lambda t: "\0" not in t),
    st.sampled_from(["[::1]:22", "::1", "u@[2001:db8::1]:2222", "h:0", "h:65536", "h:²", "@h",
                     "u@", "[::1", "[::1]x", "h:-1", "10.0.0.1:22", "u@h@h"]),
)  # fmt: skip
SIMPLE_HOST = re.compile(r"([a-z_][a-z0-9_.-]{0,8}@)?([a-z0-9]+(\.[a-z0-9]+)*)(:([0-9]+))?")


def test_host_and_port_options_corpus(world: Path) -> None:
    @quick(70)
    @given(hosts)
    def case(host: str) -> None:
        RUN["--host"] += 1
        args = ["mail", "--host", host, "--ssh-key", "{w}/nowhere", "domain", "list"]
        code, out = run_unchanged(world, args)
        assert code == 2, out  # a bad --host, else the missing key: never a connection
        if found := SIMPLE_HOST.fullmatch(host):
            port = found.group(5)
            valid = port is None or 1 <= int(port) <= 65535
            assert ("--ssh-key" in out) == valid and ("--host" in out) == (not valid), out
            if not valid:
                assert "65535" in out

    case()
    assert RUN["--host"] >= 50


resolvers = st.one_of(
    st.builds(lambda ip, p: f"{ip}:{p}", st.ip_addresses(v=4), st.integers(-5, 70000)),
    st.builds(lambda ip, p: f"[{ip}]:{p}", st.ip_addresses(v=6), st.integers(-5, 70000)),
    st.ip_addresses().map(str),
    st.text(max_size=20),
)


def test_resolver_option_corpus() -> None:
    @quick(60)
    @given(resolvers)
    def case(text: str) -> None:
        RUN["--resolver"] += 1
        try:
            resolver = dns.make_resolver(text)
        except InputError as exc:
            assert str(exc).startswith("--resolver:"), exc
            return
        assert 1 <= resolver.port <= 65535
        ipaddress.ip_address(resolver.nameservers[0])

    case()
    assert RUN["--resolver"] >= 40


def test_base_address_corpus(world: Path) -> None:
    @quick(30)
    @given(st.one_of(st.ip_addresses(v=4).map(str), st.text(max_size=16)))
    def case(address: str) -> None:
        RUN["--base-address"] += 1
        args = ["--fleet", "{w}/fleet", "sim", "up", "atlantis", "--base-address", address,
                "--state-dir", "{w}/sim"]  # fmt: skip
        code, out = run_unchanged(world, args)
        assert code == 2, out
        try:
            last = int(ipaddress.IPv4Address(address)) % 256
        except ValueError:
            last = None
        if last is not None and last <= 254:
            assert "no cabinet named 'atlantis'" in out, out
        else:
            assert "--base-address" in out, out

    case()
    assert RUN["--base-address"] >= 20
