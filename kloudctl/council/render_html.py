"""The council's report as one self-contained HTML page.

No external asset of any kind (no font, image, style sheet or script fetched): styles
inline, charts inline SVG, fonts from the system. Every value from a file or the history
goes through `html.escape`. Print-friendly: A4 pages with `@page` and `@media print`.
The fleet table sorts on a click with a few lines of inline script (it works without it).
"""

from __future__ import annotations

from html import escape
from typing import Any

from kloudctl.council import charts, i18n
from kloudctl.council.text import GIB, money, number, size

_STYLE = """
@page { size: A4; margin: 15mm; }
* { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif;
  color: #1b1b1b; background: #fff; max-width: 180mm; margin: 0 auto; padding: 8mm;
  line-height: 1.45; font-size: 11pt; }
h1 { font-size: 18pt; margin: 0 0 2mm; } h2 { font-size: 13pt; margin: 7mm 0 2mm;
  border-bottom: 1px solid #bbb; }
.summary { font-size: 13pt; padding: 4mm; border-radius: 2mm; margin: 4mm 0; }
.summary.ok { background: #e3f4e1; border: 1px solid #5a9a52; }
.summary.attention { background: #fdeed6; border: 1px solid #c98a1b; }
.summary.none { background: #eee; border: 1px solid #999; }
table { border-collapse: collapse; width: 100%; font-size: 10pt; table-layout: fixed;
  overflow-wrap: anywhere; }
th, td { border: 1px solid #ccc; padding: 1.5mm 2mm; text-align: left; vertical-align: top; }
th { background: #f1f1f1; } td.n { text-align: right; white-space: nowrap; }
.chart { margin: 2mm 0; } .chart svg { width: 100%; height: auto; }
.chart .bar { fill: #3b6ea8; } .chart .limit { stroke: #c0392b; stroke-dasharray: 6 4; }
.chart .axis { stroke: #555; } .chart text { font-size: 11px; fill: #333; }
figcaption { font-size: 9pt; color: #444; } .muted { color: #555; font-size: 9pt; }
dl dt { font-weight: bold; } dl dd { margin: 0 0 1.5mm 5mm; }
th.sort { cursor: pointer; }
@media print {
  body { padding: 0; max-width: none; font-size: 10pt; }
  h2 { break-after: avoid; } table, figure, .summary { break-inside: avoid; }
  .noprint { display: none; }
}
"""


def _page(title: str, lang: str, body: str, script: str = "") -> str:
    return (
        f'<!DOCTYPE html>\n<html lang="{escape(lang)}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        # Belt and braces: even a mistake in this page may not fetch anything.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">"
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body>{body}{script}</body></html>\n"
    )


def _table(headers: list[str], rows: list[list[tuple[str, bool]]], table_id: str = "") -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(_cell(v, n) for v, n in row) + "</tr>" for row in rows)
    ident = f' id="{table_id}"' if table_id else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _p(text: str, cls: str = "") -> str:
    attribute = f' class="{cls}"' if cls else ""
    return f"<p{attribute}>{escape(text)}</p>"


def _cell(value: str, numeric: bool) -> str:
    attribute = ' class="n"' if numeric else ""
    return f"<td{attribute}>{escape(value)}</td>"


def cabinet(report: dict[str, Any]) -> str:
    lang = report["lang"]
    w = i18n.words(lang)
    title = w["title"].format(cabinet=report["cabinet"], commune=report["commune"])
    if not report["samples_in_period"]:
        state = "none"
    else:
        state = "attention" if report["summary"] != w["all_well"] else "ok"
    out = [
        f"<h1>{escape(title)}</h1>",
        _p(w["period"].format(**report["period"]), "muted"),
        f'<p class="summary {state}" id="summary">{escape(report["summary"])}</p>',
    ]

    out.append(f"<h2>{escape(w['h_capacity'])}</h2>")
    cap = report["capacity"]
    if cap is None:
        out.append(_p(w["no_samples"]))
    else:
        for key, is_size in (("vcpu", False), ("ram", True), ("disk", True)):
            used, total = cap[key]["used"], cap[key]["capacity"]
            show = (lambda v: size(v, lang)) if is_size else (lambda v: number(v, lang))
            pct = number(100 * used / total, lang, 0) if used is not None and total else "?"
            out.append(_p(w["capacity_line"].format(
                what=w[key], used=show(used), capacity=show(total), pct=pct)))  # fmt: skip

    out.append(f"<h2>{escape(w['h_energy'])}</h2>")
    energy = report["energy"]
    if energy["kwh"] is None:
        out.append(_p(w["no_samples"]))
    else:
        out.append(_p(w["energy_line"].format(
            kwh=number(energy["kwh"], lang), budget=number(energy["budget_kwh"], lang),
            watts=number(energy["budget_watts"], lang, 0))))  # fmt: skip
        if not energy["measured"]:
            out.append(_p(w["energy_estimated"], "muted"))
        out.append(
            charts.bars(w["chart_power"], energy["per_day_watts"], limit=energy["budget_watts"])
        )

    out.append(f"<h2>{escape(w['h_storage'])}</h2>")
    storage = report["storage"]
    if storage["used_bytes"] is None:
        out.append(_p(w["no_samples"]))
    else:
        out.append(
            _p(
                w["storage_line"].format(
                    used=size(storage["used_bytes"], lang), total=size(storage["total_bytes"], lang)
                )
            )
        )
        out.append(charts.bars(w["chart_storage"], storage["per_day_used_bytes"], scale=GIB,
                               limit=(storage["total_bytes"] or 0) / GIB or None))  # fmt: skip

    out.append(f"<h2>{escape(w['h_tenants'])}</h2>")
    rows = []
    for t in report["tenants"]:
        rows.append([
            (t["display_name"], False),
            ("?" if t["guests"] is None else f"{t['guests']} ({t['guests_running']})", True),
            (f"{number(t['vcpu_reserved'], lang, 0)} / {number(t['vcpu_quota'], lang, 0)}", True),
            (f"{size(t['ram_reserved_bytes'], lang)} / {size(t['ram_quota_bytes'], lang)}", True),
            (f"{size(t['disk_reserved_bytes'], lang)} / {size(t['disk_quota_bytes'], lang)}", True),
        ])  # fmt: skip
    out.append(_table([w["t_tenant"], w["t_machines"], w["t_vcpu"], w["t_ram"], w["t_disk"]], rows))

    out.append(f"<h2>{escape(w['h_backups'])}</h2>")
    out += [_p(line) for line in backup_lines(report, lang)]

    out.append(f"<h2>{escape(w['h_mail'])}</h2>")
    out += [_p(line) for line in mail_lines(report, lang)]
    out.append(f"<h2>{escape(w['h_federation'])}</h2>")
    fed = report["federation"]
    out.append(_p(w["fed_line"].format(**fed) if fed else w["fed_none"]))
    if report["backups"]["peers"]:
        out.append(_p(w["backup_peers"].format(peers=", ".join(report["backups"]["peers"]))))

    out.append(f"<h2>{escape(w['h_incidents'])}</h2>")
    out += [_p(line) for line in uptime_lines(report, lang)]
    if report["incidents"]:
        out.append("<ul>" + "".join(f"<li>{escape(i)}</li>" for i in incident_lines(report, lang))
                   + "</ul>")  # fmt: skip
    else:
        out.append(_p(w["no_incident"]))

    out.append(f"<h2>{escape(w['h_usage'])}</h2>")
    out.append(usage_table(report, lang))

    out.append(f"<h2>{escape(w['h_glossary'])}</h2><dl>")
    for entry in w["glossary"].splitlines():
        term, meaning = entry.split("|", 1)
        out.append(f"<dt>{escape(term)}</dt><dd>{escape(meaning)}</dd>")
    out.append("</dl>")
    out.append(_p(w["generated"].format(when=report["generated_at"] + " UTC"), "muted"))
    return _page(title, lang, "\n".join(out))


def backup_lines(report: dict[str, Any], lang: str) -> list[str]:
    w = i18n.words(lang)
    b = report["backups"]
    if b["state"] == "not set up":
        return [w["backup_none"]]
    if b["age_seconds"] is None:
        return [w["backup_unknown"].format(state=b["state"])]
    return [w["backup_age"].format(age=i18n.duration(b["age_seconds"], lang))]


def uptime_lines(report: dict[str, Any], lang: str) -> list[str]:
    w = i18n.words(lang)
    u = report["uptime"]
    if u["percent"] is None:
        return [w["no_samples"]]
    return [w["uptime_line"].format(pct=number(u["percent"], lang, 2),
                                    known=number(u["known_hours"], lang),
                                    maintenance=number(u["maintenance_hours"], lang))]  # fmt: skip


def incident_lines(report: dict[str, Any], lang: str) -> list[str]:
    w = i18n.words(lang)
    lines = []
    for i in report["incidents"]:
        what = w["i_unreachable"] if i["kind"] == "unreachable" else w["i_check"].format(
            state=i["detail"])  # fmt: skip
        when = w["i_from_to"].format(start=i["start"], end=i["end"])
        detail = f" — {i['detail']}" if i["kind"] == "unreachable" and i["detail"] else ""
        lines.append(f"{what} {when}{detail}")
    return lines


def mail_lines(report: dict[str, Any], lang: str) -> list[str]:
    """The mail section's sentences: the domains, then the mailboxes open per domain as the
    last sample recorded them (or that they are not recorded)."""
    w = i18n.words(lang)
    mail = report["mail"]
    if not mail:
        return [w["mail_none"]]
    lines = [w["mail_line"].format(domains=", ".join(mail["domains"]), max=mail["max_mailboxes"])]
    if mail["mailboxes"] is None:
        lines.append(w["mail_not_recorded"])
    else:
        per_domain = ", ".join(
            w["mail_domain"].format(domain=d, count=n) for d, n in mail["mailboxes"].items()
        )
        lines.append(
            w["mail_open"].format(total=sum(mail["mailboxes"].values()), per_domain=per_domain)
        )
    if mail.get("health"):
        lines.append(w["mail_health"].format(state=w.get("mail_" + mail["health"], mail["health"])))
    return lines


def usage_rows(report: dict[str, Any], lang: str) -> tuple[list[str], list[list[tuple[str, bool]]]]:
    w = i18n.words(lang)
    currency = (report["billing"] or {}).get("currency", "EUR")
    headers = [w["u_client"], w["u_days"], w["u_vcpu"], w["u_ram"], w["u_disk"], w["u_mail"],
               w["u_amount"]]  # fmt: skip
    rows = []
    for u in report["usage"]:

        def pair(key: str, u: dict[str, Any] = u) -> str:
            return (f"{number(float(u[key + '_reserved']), lang, 2)} "
                    f"({number(float(u[key + '_used']), lang, 2)})")  # fmt: skip

        rows.append([
            (u["display_name"], False), (number(float(u["days_measured"]), lang, 2), True),
            (pair("vcpu_days"), True), (pair("ram_gib_days"), True), (pair("disk_gib_days"), True),
            (_mailbox_cell(u, lang), u["mailbox_days"] is not None),
            (money(u["amount"], lang, currency) if u["amount"] is not None else "—", True),
        ])  # fmt: skip
    return headers, rows


def _mailbox_cell(u: dict[str, Any], lang: str) -> str:
    w = i18n.words(lang)
    if u["mailbox_days"] is None:
        return str(w["not_recorded"])
    return str(
        w["u_mail_cell"].format(
            count=u["mailboxes"], days=number(float(u["mailbox_days"]), lang, 2)
        )
    )


def usage_table(report: dict[str, Any], lang: str) -> str:
    w = i18n.words(lang)
    headers, rows = usage_rows(report, lang)
    note = w["billing_rule"] if report["billing"] else w["no_billing"]
    return _table(headers, rows) + _p(note, "muted")


_SORT_SCRIPT = """<script>
document.querySelectorAll('#fleet th').forEach(function (th, col) {
  th.classList.add('sort');
  th.addEventListener('click', function () {
    var body = document.querySelector('#fleet tbody');
    var rows = Array.from(body.rows);
    var asc = th.dataset.asc !== '1'; th.dataset.asc = asc ? '1' : '0';
    rows.sort(function (a, b) {
      var x = a.cells[col].dataset.v || a.cells[col].textContent;
      var y = b.cells[col].dataset.v || b.cells[col].textContent;
      var nx = parseFloat(x), ny = parseFloat(y);
      var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
      return asc ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
</script>"""


def fleet(report: dict[str, Any]) -> str:
    lang = report["lang"]
    w = i18n.words(lang)
    headers = [w["f_commune"], w["f_health"], w["f_power"], w["f_lag"], w["f_capacity"],
               w["f_energy"], w["f_uptime"]]  # fmt: skip
    body = []
    for r in report["cabinets"]:
        cells = [
            (f"{r['commune']} ({r['cabinet']})", r["cabinet"]),
            (w["health_" + r["health"]], r["health"]),
            (f"{number(r['power_watts'], lang, 0)} / {number(r['budget_watts'], lang, 0)}",
             r["power_watts"]),
            (i18n.duration(r["lag_seconds"], lang) if r["lag_seconds"] is not None else "?",
             r["lag_seconds"]),
            (number(r["vcpu_left"], lang), r["vcpu_left"]),
            (number(r["energy_kwh"], lang), r["energy_kwh"]),
            (f"{number(r['uptime_percent'], lang, 2)} %" if r["uptime_percent"] is not None
             else "?", r["uptime_percent"]),
        ]  # fmt: skip
        body.append("<tr>" + "".join(
            f'<td data-v="{escape("" if v is None else str(v))}">{escape(t)}</td>'
            for t, v in cells) + "</tr>")  # fmt: skip
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    table = (
        f'<table id="fleet"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
    )
    content = (
        f"<h1>{escape(w['f_title'])}</h1>"
        + _p(w["period"].format(**report["period"]), "muted")
        + _p(w["f_sort"], "muted noprint")
        + table
    )
    return _page(w["f_title"], lang, content, _SORT_SCRIPT)
