"""Every command group on a broken environment: missing state, a file that cannot be read
as what it should be, a tool absent from PATH, wrong paths, numbers out of range.

Each case asserts the documented exit code (0 ok, 1 failed, 2 bad input, 3 partial; `check`
answers as a monitoring plugin: 3 UNKNOWN), the message (naming the path or field and what
to do), that nothing under the test's folder was created or changed, and that no
"internal error" or traceback is shown."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from kloudctl.mail.store import LocalTransport, MailStore
from kloudctl.model import load_fleet
from kloudctl.replication.layout import Layout
from tests.unit.inprocess import invoke, tree

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery"
GiB = 1024**3
#: PATH with the system's tools but none of the project's (.tools/bin: restic, pulumi...).
NO_TOOLS = "/usr/sbin:/usr/bin:/sbin:/bin"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fleet, an accounts store at its cap, replication state folders (empty, and with
    keys and endpoints but no reachable peer), and things that are not regular files."""
    root = tmp_path_factory.mktemp("world")
    for folder in ("cabinets", "backups"):
        shutil.copytree(REPO / folder, root / "fleet" / folder)
    store = MailStore(LocalTransport(root / "mail.db"))
    store.domain_add("x.fr", max_mailboxes=1, total_quota=2 * GiB, default_quota=GiB, dkim=False)
    store.mailbox_add("one@x.fr", PASSWORD)
    (root / "state-empty").mkdir()
    layout = Layout(root / "state")
    fleet = load_fleet(root / "fleet")
    layout.ensure_secrets(fleet, ["brieux", "mortree", "saint-aubin"])
    closed = {"server": {"url": "https://127.0.0.1:1"}}  # nothing listens on port 1
    layout.write_endpoints(
        {"cabinets": dict.fromkeys(["brieux", "mortree", "saint-aubin"], closed)}
    )
    (root / "file.txt").write_text("not a database, not a key\n")
    (root / "dir").mkdir()
    (root / "link").symlink_to(root / "file.txt")
    os.mkfifo(root / "pipe")
    # A device like /dev/full, but ours: if kloudctl ever replaced it, the machine's
    # /dev/full would be safe. Making a device needs root (as `make test` runs).
    with contextlib.suppress(PermissionError):
        os.mknod(root / "full", stat.S_IFCHR | 0o666, os.makedev(1, 7))
    return root


@dataclass
class Case:
    id: str
    args: list[str]
    code: int
    messages: list[str]
    stdin: str | bytes | None = None
    env: dict[str, str] = field(default_factory=dict)
    json_out: bool = False  # stdout must parse as JSON


F = ["--fleet", "{w}/fleet"]
MAIL = ["mail", "--db", "{w}/mail.db"]
REP = [*F, "replication"]
CAP_MESSAGE = "domain x.fr has reached its maximum number of mailboxes (1 of 1): raise it with"

CASES = [
    # -- the fleet (validate, cabinet, plan, completion)
    Case("validate-not-a-fleet", ["--fleet", "{w}/nowhere", "validate"], 2, ["not a fleet"]),
    Case(
        "cabinet-unknown", [*F, "cabinet", "show", "atlantis"], 2, ["no cabinet named 'atlantis'"]
    ),
    Case("plan-unknown", [*F, "plan", "atlantis", "--offline"], 2, ["no cabinet named"]),
    Case("completion-unknown-shell", ["completion", "tcsh"], 2, ["'tcsh' is not one of"]),
    # -- mail: stores that are not there, or not stores
    Case("mail-no-store-given", ["mail", "domain", "list"], 2, ["where are the accounts?"]),
    Case(
        "mail-read-missing-store",
        ["mail", "--db", "{w}/typo/mail.db", "domain", "list"],
        2,
        ["no accounts database at {w}/typo/mail.db", "`kloudctl mail --db {w}/typo/mail.db init`"],
    ),
    Case(
        "mail-list-missing-store",
        ["mail", "--db", "{w}/new.db", "mailbox", "list", "--json"],
        2,
        ["no accounts database at {w}/new.db"],
    ),
    Case(
        "mail-write-in-missing-folder",
        [
            "mail",
            "--db",
            "{w}/typo/mail.db",
            "domain",
            "add",
            "y.fr",
            "--max-mailboxes",
            "1",
            "--total-quota",
            "1GiB",
            "--no-dkim",
        ],
        2,
        ["folder {w}/typo does not exist"],
    ),
    Case(
        "mail-init-in-missing-folder",
        ["mail", "--db", "{w}/typo/mail.db", "init"],
        2,
        ["folder {w}/typo does not exist"],
    ),
    Case(
        "mail-store-is-a-folder",
        ["mail", "--db", "{w}/dir", "domain", "list"],
        2,
        ["accounts database {w}/dir is not a regular file"],
    ),
    Case(
        "mail-store-is-a-pipe",
        ["mail", "--db", "{w}/pipe", "domain", "list"],
        2,
        ["accounts database {w}/pipe is not a regular file"],
    ),
    Case(
        "mail-store-is-not-a-database",
        ["mail", "--db", "{w}/file.txt", "domain", "list"],
        2,
        ["{w}/file.txt", "not a database"],
    ),
    Case(
        "mail-bad-port",
        ["mail", "--host", "root@mail.x.fr:99999", "domain", "list"],
        2,
        ["--host: expected a port from 1 to 65535, got '99999'"],
    ),
    Case(
        "mail-bad-host",
        ["mail", "--host", "root@mail x.fr", "domain", "list"],
        2,
        ["--host: expected [USER@]HOST[:PORT]"],
    ),
    Case(
        "mail-missing-ssh-key",
        ["mail", "--host", "root@mail.x.fr", "--ssh-key", "{w}/nowhere", "domain", "list"],
        2,
        ["--ssh-key {w}/nowhere does not exist"],
    ),
    Case(
        "mail-known-hosts-is-a-folder",
        ["mail", "--host", "root@mail.x.fr", "--known-hosts", "{w}/dir", "domain", "list"],
        2,
        ["--known-hosts {w}/dir is a folder"],
    ),
    Case(
        "mail-bad-resolver-port",
        [
            *MAIL,
            "dns",
            "check",
            "x.fr",
            "--resolver",
            "192.0.2.1:99999",
            "--no-dkim",
            "--hostname",
            "mail.x.fr",
            "--ipv4",
            "192.0.2.1",
        ],
        2,
        ["--resolver: expected a port"],
    ),
    # -- mail: numbers out of range name the field and the largest value
    Case(
        "mail-quota-too-large",
        [*MAIL, "mailbox", "add", "two@x.fr", "--quota", "9999999TiB", "--password-stdin"],
        2,
        ["--quota", "1PiB"],
        stdin=PASSWORD + "\n",
    ),
    Case(
        "mail-max-mailboxes-too-large",
        [
            *MAIL,
            "domain",
            "add",
            "y.fr",
            "--max-mailboxes",
            "99999999999999999999999",
            "--total-quota",
            "1GiB",
        ],
        2,
        ["1<=x<=1000000"],
    ),
    Case(
        "mail-total-quota-too-large",
        [*MAIL, "domain", "set", "x.fr", "--total-quota", "2000PiB"],
        2,
        ["--total-quota", "1PiB"],
    ),
    Case(
        "mail-set-quota-too-large",
        [*MAIL, "mailbox", "quota", "one@x.fr", "9999999TiB"],
        2,
        ["SIZE", "1PiB"],
    ),
    Case(
        "mail-import-quota-too-large",
        [*MAIL, "mailbox", "import"],
        2,
        ["stdin:1: quota", "1PiB"],
        stdin=f"two@x.fr {PASSWORD.replace(' ', '-')} 99999999TiB\n",
    ),
    Case("mail-set-nothing", [*MAIL, "domain", "set", "x.fr"], 2, ["nothing to change"]),
    Case(
        "mail-set-below-use",
        [*MAIL, "domain", "set", "x.fr", "--total-quota", "512MiB", "--default-quota", "1MiB"],
        2,
        ["already uses more than the new caps"],
    ),
    # -- mail: the cap says how to raise it; a declined prompt removes nothing
    Case(
        "mail-cap-reached",
        [*MAIL, "mailbox", "add", "two@x.fr", "--password-stdin"],
        2,
        [CAP_MESSAGE, "kloudctl mail --db {w}/mail.db domain set x.fr --max-mailboxes N"],
        stdin=PASSWORD + "\n",
    ),
    Case(
        "mail-remove-declined",
        [*MAIL, "mailbox", "remove", "one@x.fr"],
        0,
        ["nothing removed"],
        stdin="n\n",
    ),
    Case(
        "mail-remove-no-answer",
        [*MAIL, "mailbox", "remove", "one@x.fr"],
        2,
        ["add --yes"],
        stdin="",
    ),
    Case(
        "mail-password-not-utf8",
        [*MAIL, "mailbox", "passwd", "one@x.fr", "--password-stdin"],
        2,
        ["not UTF-8"],
        stdin=b"\xff\xfe long enough password\n",
    ),
    # -- federation: read commands never make the state; a malformed invite is bad input
    Case(
        "federation-status-missing-state",
        [*F, "federation", "status", "--state-dir", "{w}/nowhere"],
        2,
        ["federation member file {w}/nowhere/member.json does not exist", "federation init"],
    ),
    Case(
        "federation-join-malformed-invite",
        [*F, "federation", "join", "kfi1-garbage", "--cabinet", "mortree", "--state-dir", "{w}/f"],
        2,
        ["INVITE: not a kloudctl invite"],
    ),
    Case(
        "federation-invite-bad-expiry",
        [*F, "federation", "invite", "mortree", "--expires", "forever", "--state-dir", "{w}/f"],
        2,
        ["--expires: expected a duration from 1m to 30d"],
    ),
    # -- replication: read commands never make the state; check answers UNKNOWN
    Case(
        "status-missing-state",
        [*REP, "status", "--all", "--state-dir", "{w}/nowhere"],
        2,
        ["replication state folder {w}/nowhere does not exist", "--state-dir"],
    ),
    Case(
        "status-state-in-proc",
        [*REP, "status", "--all", "--state-dir", "/proc/x"],
        2,
        ["replication state folder /proc/x does not exist"],
    ),
    Case(
        "status-empty-state",
        [*REP, "status", "--all", "--state-dir", "{w}/state-empty", "--json"],
        1,
        [
            "replication status failed for: brieux, mortree, saint-aubin",
            "start one with `kloudctl replication serve`",
        ],
        json_out=True,
    ),
    Case(
        "status-without-restic",
        [*REP, "status", "--all", "--state-dir", "{w}/state", "--json"],
        1,
        ["restic is not on PATH; `make tools` builds it", "replication status failed for"],
        env={"PATH": NO_TOOLS},
        json_out=True,
    ),
    Case(
        "run-without-restic",
        [*REP, "run", "--all", "--state-dir", "{w}/new-state"],
        1,
        ["restic is not on PATH"],
        env={"PATH": NO_TOOLS},
    ),
    Case(
        "check-missing-state",
        [*REP, "check", "--all", "--state-dir", "{w}/nowhere"],
        3,
        ["REPLICATION UNKNOWN - replication state folder {w}/nowhere does not exist"],
    ),
    Case(
        "check-no-endpoint-json-whole",
        [*REP, "check", "--all", "--state-dir", "{w}/state-empty", "--json"],
        3,
        [
            "declare it in {w}/state-empty/endpoints.json or start one with `kloudctl replication serve`"
        ],
        json_out=True,
    ),
    Case(
        "check-textfile-in-proc",
        [
            *REP,
            "check",
            "--all",
            "--state-dir",
            "{w}/state-empty",
            "--prometheus-textfile",
            "/proc/x",
        ],
        3,
        ["UNKNOWN", "/proc/x: cannot create a file"],
    ),
    Case(
        "check-textfile-device",
        [
            *REP,
            "check",
            "--all",
            "--state-dir",
            "{w}/state-empty",
            "--prometheus-textfile",
            "{w}/full",
        ],
        3,
        ["REPLICATION UNKNOWN - --prometheus-textfile {w}/full is a device, not a regular file"],
    ),
    Case(
        "check-textfile-pipe",
        [
            *REP,
            "check",
            "--all",
            "--state-dir",
            "{w}/state-empty",
            "--prometheus-textfile",
            "{w}/pipe",
        ],
        3,
        ["{w}/pipe is a named pipe, not a regular file"],
    ),
    Case(
        "check-textfile-link",
        [
            *REP,
            "check",
            "--all",
            "--state-dir",
            "{w}/state-empty",
            "--prometheus-textfile",
            "{w}/link",
        ],
        3,
        ["{w}/link is a symbolic link"],
    ),
    Case(
        "check-textfile-folder",
        [
            *REP,
            "check",
            "--all",
            "--state-dir",
            "{w}/state-empty",
            "--prometheus-textfile",
            "{w}/dir",
        ],
        3,
        ["{w}/dir is a folder"],
    ),
    Case(
        "check-textfile-missing-folder",
        [
            *REP,
            "check",
            "--all",
            "--state-dir",
            "{w}/state-empty",
            "--prometheus-textfile",
            "{w}/typo/r.prom",
        ],
        3,
        ["folder {w}/typo does not exist"],
    ),
    Case(
        "check-bad-clock",
        [*REP, "check", "--all", "--state-dir", "{w}/state", "--now", "nan"],
        3,
        ["--now/KLOUDCTL_NOW: expected epoch seconds"],
    ),
    Case(
        "restore-test-sample-zero",
        [*REP, "restore-test", "--all", "--sample", "0"],
        2,
        ["1<=x<=10000"],
    ),
    # -- the simulator
    Case(
        "sim-too-many", ["sim", "up", "--count", "999", "--state-dir", "{w}/sim"], 2, ["0<=x<=250"]
    ),
    Case(
        "sim-bad-port",
        ["sim", "up", "--port", "70000", "--state-dir", "{w}/sim"],
        2,
        ["0<=x<=65535"],
    ),
    Case(
        "sim-nan-seconds",
        ["sim", "up", "--task-seconds", "nan", "--state-dir", "{w}/sim"],
        2,
        ["'nan' is not a number"],
    ),
    Case(
        "sim-bad-base-address",
        ["sim", "up", "--base-address", "300.1.1.1", "--state-dir", "{w}/sim"],
        2,
        ["--base-address: expected an IPv4 address"],
    ),
    Case(
        "sim-base-address-too-high",
        ["sim", "up", "--count", "3", "--base-address", "127.0.0.253", "--state-dir", "{w}/sim"],
        2,
        ["too many cabinets"],
    ),
    Case("sim-state-is-a-file", ["sim", "up", "--state-dir", "{w}/file.txt"], 2, ["is a file"]),
    Case(
        "sim-status-none",
        ["sim", "status", "--state-dir", "{w}/nowhere"],
        0,
        ["no simulator running"],
    ),
    Case(
        "sim-down-none", ["sim", "down", "--state-dir", "{w}/nowhere"], 0, ["no simulator running"]
    ),
    Case(
        "sim-fault-none",
        ["sim", "fault", "sim01", "clear", "--state-dir", "{w}/nowhere"],
        1,
        ["no simulator runs from {w}/nowhere (`kloudctl sim up --state-dir {w}/nowhere` first)"],
    ),
    Case(
        "sim-fault-bad-rate", ["sim", "fault", "sim01", "error_rate", "--rate", "2"], 2, ["0<=x<=1"]
    ),
    # -- tenants: a wrong path or a secret that cannot be read fails before Pulumi is run
    Case(
        "token-output-folder",
        [*F, "tenant", "token", "brieux", "council", "--output", "{w}/dir"],
        2,
        ["--output", "{w}/dir", "is a directory"],
    ),
    Case(
        "token-output-link",
        [*F, "tenant", "token", "brieux", "council", "--output", "{w}/link"],
        2,
        ["--output {w}/link is a symbolic link"],
    ),
    Case(
        "token-output-missing-folder",
        [*F, "tenant", "token", "brieux", "council", "--output", "{w}/typo/creds"],
        2,
        ["folder {w}/typo does not exist"],
    ),
    Case(
        "tenants-vault-password-missing",
        [*F, "tenants", "plan", "brieux"],
        2,
        [
            "ANSIBLE_VAULT_PASSWORD_FILE /nonexistent does not exist",
            "set ANSIBLE_VAULT_PASSWORD_FILE",
        ],
        env={"ANSIBLE_VAULT_PASSWORD_FILE": "/nonexistent", "KLOUDCTL_PULUMI_STATE": "{w}/pulumi"},
    ),
    Case(
        "tenants-vault-password-folder",
        [*F, "tenants", "plan", "brieux"],
        2,
        ["ANSIBLE_VAULT_PASSWORD_FILE {w}/dir is a folder"],
        env={"ANSIBLE_VAULT_PASSWORD_FILE": "{w}/dir", "KLOUDCTL_PULUMI_STATE": "{w}/pulumi"},
    ),
    Case(
        "tenants-destroy-declined",
        [*F, "tenants", "destroy", "brieux"],
        0,
        ["nothing destroyed"],
        stdin="no\n",
    ),
    Case(
        "tenants-destroy-no-answer",
        [*F, "tenants", "destroy", "brieux"],
        2,
        ["add --yes"],
        stdin="",
    ),
    Case(
        "tenants-no-simulator",
        [*F, "tenants", "use-sim", "--sim-dir", "{w}/nowhere"],
        2,
        ["no simulator is running"],
    ),
    # -- the council's report: read-only on the status history
    Case(
        "report-no-history",
        [*F, "report", "brieux"],
        2,
        ["status history", "does not exist", "run `kloudctl status` first"],
    ),
    Case(
        "report-history-not-sqlite",
        [*F, "report", "brieux", "--history", "{w}/file.txt"],
        1,
        ["{w}/file.txt: not a readable status history (file is not a database)"],
    ),
    Case(
        "report-output-folder",
        [*F, "report", "brieux", "--history", "{w}/file.txt", "-o", "{w}/dir"],
        2,
        ["--output {w}/dir is a folder"],
    ),
    Case(
        "report-period-word",
        [*F, "report", "--all", "--period", "month"],
        2,
        ["--period: expected a length such as 30d, 90d, 12h or 2w, got 'month'"],
    ),
    # -- test cabinets: nothing up, no podman needed to say so
    Case(
        "testbed-none-up",
        [*F, "testbed", "status"],
        0,
        ["no test cabinet is up"],
        env={"PATH": NO_TOOLS},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_broken_environment(world: Path, case: Case) -> None:
    def fill(text: str) -> str:
        return text.replace("{w}", str(world))

    if "{w}/full" in case.args and not (world / "full").exists():
        pytest.skip("making a device needs root")
    before = tree(world)
    ran = invoke(
        *[fill(a) for a in case.args],
        stdin=case.stdin,
        env={k: fill(v) for k, v in case.env.items()},
    )
    assert ran.code == case.code, ran.output
    for message in case.messages:
        assert fill(message) in ran.flat(), ran.output
    assert "internal error" not in ran.output and "Traceback" not in ran.output
    if case.json_out:
        json.loads(ran.stdout)
    assert tree(world) == before, "the command created or changed files"


def test_the_table_covers_every_command_group() -> None:
    from kloudctl.cli import GROUPS

    covered = set()
    for case in CASES:
        words = [a for a in case.args if not a.startswith("-") and "{w}" not in a]
        covered.update(w for w in words if w in GROUPS)
    assert covered == set(GROUPS)
