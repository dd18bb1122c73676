"""Replication commands for a cabinet where replication is deployed, asked of its agent.

The cabinet holds its files, its local repository and its keys; `kloudctl replication
deploy` installs there the same kloudctl code and its replication agent. The controller
sends the agent one request over SSH and reads back its answer, checked against the
interface's schema (`agent_interface`): one implementation, two places, one versioned
interface between them.
"""

from __future__ import annotations

import json
from typing import Any

from kloudctl import ssh
from kloudctl.answers import parse_json
from kloudctl.errors import ExternalError
from kloudctl.replication.agent_interface import (
    COMMAND,
    Options,
    Request,
    read_answer,
    request_problem,
    tool_name,
)
from kloudctl.replication.layout import Ssh

#: The remote shell's exit code for a command it cannot find.
NOT_FOUND = 127


def ask_agent(
    remote: Ssh, cabinet: str, options: Options, timeout: float = 6 * 3600
) -> tuple[int, Any]:
    """Ask the cabinet's agent to carry out `options` (a command) for `cabinet`: its exit
    code and result. ssh.Unreachable when the cabinet does not answer; ExternalError
    naming the agent when it answers anything but a result of the interface."""
    request = Request(cabinet, remote.fleet, remote.state, options)
    document = request.as_dict()
    problem = request_problem(document)
    if problem:  # a bug of this side: never send what the agent must refuse
        raise ExternalError(f"request to {tool_name(cabinet)} not sent: {problem}")
    proc = ssh.run(remote.target, [COMMAND], stdin=json.dumps(document), timeout=timeout)
    tool = tool_name(cabinet)
    if not proc.stdout.strip():
        hint = ""
        if proc.returncode == NOT_FOUND:
            hint = f" (`kloudctl replication deploy {cabinet}` installs the agent)"
        raise ExternalError(
            f"{tool} exited {proc.returncode} without an answer: {ssh.last_line(proc.stderr)}{hint}"
        )
    answer = read_answer(tool, request, parse_json(tool, proc.stdout))
    return answer.exit, answer.result
