"""The council's HTML report in a real browser: headless Chromium renders it (screenshot
not blank), the DOM after load has the title, the summary and the charts, in French and
in English; the page asks for nothing over the network (seen by the browser itself); the
printed PDF is A4 pages. The report is made by the real CLI from a history the test wrote."""

from __future__ import annotations

import statistics
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.council import browser
from tests.council.conftest import GIB, HOUR, write_history

A4 = (595.28, 841.89)  # points


def _history(path: Path, now: float) -> None:
    rows = []
    for i in range(24 * 12):  # 12 days, hourly
        t = now - 12 * 86400 + i * HOUR
        down = 100 <= i < 103
        rows.append({
            "cabinet": "brieux", "taken_at": t, "reachable": 0 if down else 1,
            "error": "connection refused" if down else None, "vcpu_capacity": 64.0,
            "cpu_used_cores": 4.0, "ram_capacity_bytes": 120 * GIB, "ram_used_bytes": 40 * GIB,
            "disk_capacity_bytes": 2000 * GIB, "storage_used_bytes": (300 + i) * GIB,
            "storage_total_bytes": 1800 * GIB, "power_budget_watts": 500.0,
            "power_estimated_watts": 140.0 + (i % 24) * 5, "replication_state": "ok",
            "replication_lag_seconds": 3 * HOUR,
            "tenants": [] if down else [
                {"tenant": "<script>", "declared": 0, "vcpu_reserved": 1,
                 "ram_reserved_bytes": GIB, "disk_reserved_bytes": 10 * GIB},
                {"tenant": "boulangerie-leroy", "vcpu_reserved": 2,
                 "ram_reserved_bytes": 2 * GIB, "disk_reserved_bytes": 40 * GIB},
            ],
        })  # fmt: skip
    write_history(path, rows)


def _report(fleet: Path, lang: str, *args: str) -> Path:
    out = fleet / f"report.{lang}.html"
    subprocess.run(
        [sys.executable, "-m", "kloudctl", "--fleet", str(fleet), "report", "brieux",
         "--history", str(fleet / "history.sqlite"), "--lang", lang, "-o", str(out), *args],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return out


class _Dom(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.title, self.summary, self.svgs, self.scripts = "", "", 0, 0
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title" and not self.svgs:  # the page's, not a chart bar's tooltip
            self._in = "title"
        elif dict(attrs).get("id") == "summary":
            self._in = "summary"
        self.svgs += tag == "svg"
        self.scripts += tag == "script"

    def handle_endtag(self, tag: str) -> None:
        if tag in ("title", "p"):
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._in:
            setattr(self, self._in, getattr(self, self._in) + data)


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import shutil
    import time

    from tests.council.conftest import REPO

    fleet = tmp_path_factory.mktemp("fleet")
    for part in ("cabinets", "backups"):
        shutil.copytree(REPO / part, fleet / part)
    _history(fleet / "history.sqlite", time.time())
    return {lang: _report(fleet, lang) for lang in ("fr", "en")}


@pytest.mark.parametrize(
    ("lang", "title", "summary"),
    [
        ("fr", "Rapport de l'armoire brieux — Brieux", "À surveiller : 1 incident(s)"),
        ("en", "Report of the brieux cabinet — Brieux", "Needs attention: 1 incident(s)"),
    ],
)
def test_report_renders_in_chromium(
    reports: dict[str, Path], tmp_path: Path, lang: str, title: str, summary: str
) -> None:
    page = reports[lang]
    shot = tmp_path / "shot.png"
    browser.screenshot(page, shot)
    width, height, rows = browser.png_pixels(shot.read_bytes())
    assert (width, height) == (1000, 1400)
    # Not blank: the grey levels of a sample of pixels vary (a blank page is one colour),
    # and some pixels are dark (text) and some blue-ish (the chart bars).
    grey = [sum(row[x * 3 : x * 3 + 3]) // 3 for row in rows[::7] for x in range(0, width, 5)]
    assert statistics.pvariance(grey) > 100
    assert min(grey) < 80

    dom = _Dom()
    dom.feed(browser.dump_dom(page))
    assert dom.title == title
    assert dom.summary.startswith(summary)
    assert dom.svgs == 2  # power per day, storage per day
    # The tenant called <script> is text, never an element.
    assert dom.scripts == 0
    assert "<script>" in page.read_text().replace("&lt;script&gt;", "<script>")


def test_report_page_requests_nothing_but_itself(reports: dict[str, Path]) -> None:
    page = reports["fr"]
    assert browser.requests_made(page.as_uri()) == [page.as_uri()]


def test_request_recorder_sees_an_asset() -> None:
    # The control: were the report to fetch anything, the recorder would see it. The asset
    # is served by a server of the test's own on loopback (nothing leaves the machine),
    # which also confirms the browser really asked for it.
    import http.server
    import threading

    asked: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            if self.path == "/control.html":
                body = b'<!DOCTYPE html><img src="/logo.png">'
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        # Served from loopback, not file://: Chromium's local-network protection may
        # block a file:// page's request to loopback before it is recorded.
        base = f"http://127.0.0.1:{server.server_address[1]}"
        seen = browser.requests_made(f"{base}/control.html")
    finally:
        server.shutdown()
        server.server_close()
    assert f"{base}/logo.png" in seen
    assert "/logo.png" in asked


def test_printed_report_is_a4(reports: dict[str, Path], tmp_path: Path) -> None:
    pdf = tmp_path / "report.pdf"
    browser.print_pdf(reports["fr"], pdf)
    pages = browser.pdf_pages(pdf.read_bytes())
    assert len(pages) >= 2  # the whole report, not a truncated first page
    for w, h in pages:
        assert abs(w - A4[0]) < 1 and abs(h - A4[1]) < 1, (w, h)
