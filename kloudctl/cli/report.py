"""`kloudctl report CABINET | --all`: the council's report, the usage statement of its
clients, and the fleet report, read from the status history (nothing is asked of a cabinet)."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import click

from kloudctl import console, files
from kloudctl.cli.options import FleetContext, cabinet_names, pass_fleet
from kloudctl.council import fleet as fleet_report
from kloudctl.council import render_html, render_md, samples, usage
from kloudctl.council import report as cabinet_report
from kloudctl.council.text import money
from kloudctl.errors import InputError
from kloudctl.federation.peers import PeerResolver
from kloudctl.status import history


@click.command("report")
@click.argument("cabinet", required=False, shell_complete=cabinet_names)
@click.option("--all", "all_", is_flag=True, help="The fleet report: one line per commune.")
@click.option(
    "--period", default="30d", show_default=True, help="Length ending now: 30d, 90d, 12h, 2w."
)
@click.option("--lang", type=click.Choice(["fr", "en"]), default="fr", show_default=True)
@click.option("--format", "fmt", type=click.Choice(["html", "md", "json"]), default="html",
              show_default=True)  # fmt: skip
@click.option(
    "--usage", "usage_", is_flag=True, help="The usage statement of the cabinet's clients."
)
@click.option("--csv", "as_csv", is_flag=True, help="With --usage: CSV for accounting software.")
@click.option(
    "--output",
    "-o",
    metavar="FILE",
    help="Write here (default: HTML under <fleet>/.state/reports/, others to stdout).",
)
@click.option(
    "--history",
    "history_file",
    metavar="FILE",
    help="The history's SQLite file (default: <fleet>/.state/status/history.sqlite).",
)
@pass_fleet
def command(
    ctx: FleetContext,
    cabinet: str | None,
    all_: bool,
    period: str,
    lang: str,
    fmt: str,
    usage_: bool,
    as_csv: bool,
    output: str | None,
    history_file: str | None,
) -> None:
    """A report the town council can read (French by default): HTML, Markdown or JSON."""
    if bool(cabinet) == all_:
        raise InputError("give one cabinet name, or --all for the fleet report")
    if as_csv and not usage_:
        raise InputError("--csv goes with --usage")
    if usage_ and all_:
        raise InputError("--usage is per cabinet: give its name, not --all")
    seconds = cabinet_report.parse_period(period)
    fleet = ctx.fleet()
    if cabinet:
        fleet.cabinet(cabinet)  # an unknown name is bad input
    target = files.writable_file(output, "--output") if output else None
    store = Path(history_file) if history_file else history.default_path(ctx.root)
    now = time.time()
    if all_:
        data = fleet_report.build(fleet, samples.read(store, before=now), period_seconds=seconds,
                                  lang=lang, now=now)  # fmt: skip
        html = render_html.fleet(data)
        name = "fleet"
    else:
        assert cabinet is not None
        model = fleet.cabinet(cabinet)
        peers = PeerResolver(fleet).peers(cabinet, strict=False)
        data = cabinet_report.build(model, samples.read(store, cabinet, before=now),
                                    period_seconds=seconds, lang=lang, now=now,
                                    peers=peers)  # fmt: skip
        html = render_html.cabinet(data)
        name = cabinet
    if usage_ and as_csv:
        start, end = data["period"]["start"], data["period"]["end"]
        model = fleet.cabinet(name)
        entries = usage.usage(model, samples.read(store, name, before=now), now - seconds, now)
        _out(usage.to_csv(model, start, end, entries), target)
        return
    if usage_ and fmt != "json":
        _show_usage(data, lang)
        return
    if fmt == "json":
        if target is None:
            console.emit_json(data)
        else:
            files.write_atomic(target, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
        return
    if fmt == "md":
        _out(render_md.cabinet(data) if not all_ else _fleet_md(data), target)
        return
    if target is None:
        (ctx.root / ".state" / "reports").mkdir(parents=True, exist_ok=True)
        target = files.writable_file(ctx.root / ".state" / "reports" / f"{name}.{lang}.html",
                                     "report")  # fmt: skip
    files.write_atomic(target, html)
    console.line(str(target))


def _out(text: str, target: Path | None) -> None:
    if target is None:
        console.text(text)
    else:
        files.write_atomic(target, text)


def _fleet_md(data: dict[str, Any]) -> str:
    lines = [
        "| cabinet | health | W | lag s | vCPU left | kWh | uptime % |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in data["cabinets"]:
        lines.append(
            f"| {r['cabinet']} | {r['health']} | {r['power_watts']} | {r['lag_seconds']} | "
            f"{r['vcpu_left']} | {r['energy_kwh']} | {r['uptime_percent']} |"
        )
    return "\n".join(lines) + "\n"


def _show_usage(data: dict[str, Any], lang: str) -> None:
    headers, rows = render_html.usage_rows(data, lang)
    title = f"{data['cabinet']} {data['period']['start']} → {data['period']['end']}"
    console.show(console.table(title, headers, [[v for v, _ in row] for row in rows]))
    total = sum(
        (Decimal(u["amount"]) for u in data["usage"] if u["amount"] is not None), Decimal(0)
    )
    if data["billing"]:
        console.line(f"Total: {money(total, lang, data['billing']['currency'])}")
