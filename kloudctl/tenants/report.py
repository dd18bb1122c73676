"""How a tenants run reads for a person: progress lines and a summary table."""

from __future__ import annotations

from kloudctl import console
from kloudctl.tenants.engine import RunResult, Step

_SIGN = {
    "create": "+",
    "update": "~",
    "delete": "-",
    "replace": "+-",
    "create-replacement": "+-",
    "delete-replaced": "-+",
    "refresh": "↻",
    "read": "↻",
}
_COLOUR = {"planned": "cyan", "done": "green", "failed": "red"}


def step_line(step: Step) -> str:
    sign = _SIGN.get(step.op, step.op)
    timing = f" ({step.seconds:.1f}s)" if step.status == "done" and step.seconds >= 0.05 else ""
    return f"  {sign:2} {step.op:<18} {step.kind:<15} {step.name}  [{step.status}]{timing}"


def render_result(result: RunResult) -> None:
    rows = [
        [_SIGN.get(s.op, s.op), s.op, s.kind, s.name, s.status, f"{s.seconds:.1f}s"]
        for s in result.steps
        if s.op not in ("same", "read") or s.status == "failed"
    ]
    for warning in result.warnings:
        console.info(f"warning: {warning}")
    if rows:
        console.show(
            console.table(
                f"Tenants of {result.cabinet}: {result.action}",
                ["", "operation", "kind", "name", "status", "time"],
                rows,
            )
        )
    counts = ", ".join(f"{n} {op}" for op, n in sorted(result.changes.items()) if n)
    if result.changed == 0:
        verdict = "no changes" if result.action in ("plan", "apply", "refresh") else "nothing to do"
    else:
        verdict = f"{result.changed} change(s)"
    console.show(
        f"{result.cabinet}: {result.action}: {verdict} ({counts or 'empty'}) "
        f"in {result.seconds:.1f}s"
    )
