"""The council's report in Markdown, for an e-mail: the same words as the HTML page.
Values from files are Markdown-escaped so a tenant's name cannot make links or tables."""

from __future__ import annotations

import re
from typing import Any

from kloudctl.council import i18n, render_html
from kloudctl.council.text import number, size

_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+!|~])")


def md(text: str) -> str:
    return _SPECIAL.sub(r"\\\1", text)


def _table(headers: list[str], rows: list[list[tuple[str, bool]]]) -> list[str]:
    lines = ["| " + " | ".join(md(h) for h in headers) + " |",
             "|" + "|".join("---:" if i else "---" for i in range(len(headers))) + "|"]  # fmt: skip
    lines += ["| " + " | ".join(md(v) for v, _ in row) + " |" for row in rows]
    return lines


def cabinet(report: dict[str, Any]) -> str:
    lang = report["lang"]
    w = i18n.words(lang)
    out = [
        "# " + md(w["title"].format(cabinet=report["cabinet"], commune=report["commune"])),
        "",
        md(w["period"].format(**report["period"])),
        "",
        "**" + md(report["summary"]) + "**",
        "",
        "## " + md(w["h_energy"]),
    ]
    energy = report["energy"]
    if energy["kwh"] is None:
        out.append(md(w["no_samples"]))
    else:
        out.append(md(w["energy_line"].format(
            kwh=number(energy["kwh"], lang), budget=number(energy["budget_kwh"], lang),
            watts=number(energy["budget_watts"], lang, 0))))  # fmt: skip
    storage = report["storage"]
    out += ["", "## " + md(w["h_storage"])]
    out.append(md(w["no_samples"]) if storage["used_bytes"] is None else md(
        w["storage_line"].format(used=size(storage["used_bytes"], lang),
                                 total=size(storage["total_bytes"], lang))))  # fmt: skip
    out += ["", "## " + md(w["h_backups"])]
    out += [md(line) for line in render_html.backup_lines(report, lang)]
    out += ["", "## " + md(w["h_mail"])]
    out += [md(line) for line in render_html.mail_lines(report, lang)]
    out += ["", "## " + md(w["h_incidents"])]
    out += [md(line) for line in render_html.uptime_lines(report, lang)]
    out += ["- " + md(line) for line in render_html.incident_lines(report, lang)] or [
        md(w["no_incident"])
    ]
    out += ["", "## " + md(w["h_usage"]), ""]
    out += _table(*render_html.usage_rows(report, lang))
    out += ["", md(w["generated"].format(when=report["generated_at"] + " UTC")), ""]
    return "\n".join(out)
