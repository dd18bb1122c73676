"""The error a handler or the cabinet raises to answer as Proxmox does: an HTTP status and
a message (400s also name the faulty parameters).

Like the simulator's other exceptions (`AuthError`, `ParamError`, `FormatError`,
`PermissionDenied`, `FaultError`), it is internal to the simulator's HTTP layer: the
dispatcher (or the control endpoint) turns it into an HTTP answer, so it never reaches a
client or kloudctl's CLI, and it is deliberately outside `kloudctl.errors.KloudError`.
"""

from __future__ import annotations


class ApiError(Exception):
    """Answered as HTTP `status` by `dispatch` (internal to the simulator)."""

    def __init__(self, status: int, message: str, errors: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors


def bad_request(param: str, message: str) -> ApiError:
    return ApiError(400, "Parameter verification failed.", {param: message})
