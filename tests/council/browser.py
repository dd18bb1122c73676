"""Headless Chromium (Debian's `chromium`, installed by scripts/setup-system.sh) driven the
way a person's browser would open the report: screenshots, the DOM after load, printing to
PDF, and the DevTools protocol to see every request the page makes.

Why DevTools for "no network request": `Network.requestWillBeSent` is the browser's own
record of every request it is about to make (documents, styles, fonts, images, scripts,
prefetches), before any connection attempt, so a request that would fail offline is still
seen; grepping the HTML would miss what CSS or script asks for. A positive control in the
tests (a page with one remote image) shows the recorder does see requests.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import struct
import subprocess
import tempfile
import zlib
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM = shutil.which("chromium") or "chromium"
_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
          "--disable-background-networking", "--disable-component-update",
          "--disable-default-apps", "--disable-sync"]  # fmt: skip


def _run(args: list[str], profile: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CHROMIUM, *_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip


def screenshot(page: Path, out: Path, width: int = 1000, height: int = 1400) -> None:
    with tempfile.TemporaryDirectory() as profile:
        _run([f"--screenshot={out}", f"--window-size={width},{height}",
              "--hide-scrollbars", page.as_uri()], Path(profile))  # fmt: skip


def dump_dom(page: Path) -> str:
    with tempfile.TemporaryDirectory() as profile:
        return _run(["--dump-dom", page.as_uri()], Path(profile)).stdout


def print_pdf(page: Path, out: Path) -> None:
    with tempfile.TemporaryDirectory() as profile:
        _run([f"--print-to-pdf={out}", "--no-pdf-header-footer", page.as_uri()], Path(profile))


def png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and the rows (RGB or RGBA bytes, filters undone) of a PNG, with the
    standard library only (8-bit colour types 2 and 6, what Chromium writes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and colour in (2, 6), f"PNG colour type {colour} depth {depth}"
    bpp = 3 if colour == 2 else 4
    raw, stride = zlib.decompress(idat), width * bpp
    rows, previous = [], bytearray(stride)
    for y in range(height):
        kind, line = (
            raw[y * (stride + 1)],
            bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)]),
        )
        for i in range(stride):
            left = line[i - bpp] if i >= bpp else 0
            up, corner = previous[i], previous[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                pred = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                line[i] = (line[i] + pred) & 0xFF
        rows.append(bytes(line))
        previous = line
    return width, height, rows


def pdf_pages(data: bytes) -> list[tuple[float, float]]:
    """(width, height) in points of each page of a PDF Chromium printed (its page objects
    are plain dictionaries, each with its /MediaBox)."""
    import re

    boxes = re.findall(
        rb"/MediaBox\s*\[\s*([-\d.]+)\s+([-\d.]+)\s+([-\d.]+)\s+([-\d.]+)\s*\]", data
    )
    pages = len(re.findall(rb"/Type\s*/Page\b(?!s)", data))
    assert pages and len(boxes) >= pages, f"{pages} pages, {len(boxes)} MediaBox entries"
    return [(float(x1) - float(x0), float(y1) - float(y0)) for x0, y0, x1, y1 in boxes]


def requests_made(page_url: str, settle_seconds: float = 1.5) -> list[str]:
    """Every URL the browser asked for while loading `page_url`, as DevTools reports."""
    # A loop of its own, never made the thread's current one: asyncio.run() would leave the
    # main thread without a current loop, which later tests (Pulumi's mocks) rely on.
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(_requests_made(page_url, settle_seconds))
    finally:
        loop.close()


async def _requests_made(page_url: str, settle_seconds: float) -> list[str]:
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.Popen(
            [CHROMIUM, *_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
             "--remote-debugging-address=127.0.0.1", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            port_file = Path(profile) / "DevToolsActivePort"
            for _ in range(300):
                if port_file.is_file() and port_file.read_text().strip():
                    break
                await asyncio.sleep(0.1)
            port = int(port_file.read_text().split()[0])
            async with aiohttp.ClientSession() as http:
                # Chromium writes the port file before its endpoint answers and lists its
                # page: ask again until both are there (a refused connection seen once).
                pages: list[dict[str, Any]] = []
                for _ in range(100):
                    try:
                        async with http.get(f"http://127.0.0.1:{port}/json/list") as answer:
                            pages = [t for t in await answer.json() if t["type"] == "page"]
                    except (aiohttp.ClientError, OSError):
                        pages = []
                    if pages:
                        break
                    await asyncio.sleep(0.1)
                assert pages, "Chromium's DevTools endpoint never listed a page"
                ws_url = pages[0]["webSocketDebuggerUrl"]
                async with http.ws_connect(ws_url, max_msg_size=0) as ws:
                    return await _record(ws, page_url, settle_seconds)
        finally:
            proc.terminate()
            proc.wait(timeout=30)


async def _record(ws: Any, page_url: str, settle_seconds: float) -> list[str]:
    seen: list[str] = []
    ids = iter(range(1, 1000))

    async def call(method: str, **params: Any) -> None:
        """Send a command and wait for its answer: the domains must be on before the
        navigation starts, or its first events may be missed."""
        ident = next(ids)
        await ws.send_str(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = await ws.receive_json(timeout=60)
            if message.get("method") == "Network.requestWillBeSent":
                seen.append(message["params"]["request"]["url"])
            if message.get("id") == ident:
                assert "error" not in message, message
                return

    await call("Network.enable")
    await call("Page.enable")
    await ws.send_str(
        json.dumps({"id": next(ids), "method": "Page.navigate", "params": {"url": page_url}})
    )
    loop = asyncio.get_running_loop()
    deadline, loaded_at = loop.time() + 60, None
    # One timeout only, the last: a receive cut by its timeout may lose a frame.
    while True:
        until = deadline if loaded_at is None else loaded_at + settle_seconds
        if until <= loop.time():
            break
        try:
            message = await ws.receive_json(timeout=until - loop.time())
        except TimeoutError:
            break
        if message.get("method") == "Network.requestWillBeSent":
            seen.append(message["params"]["request"]["url"])
        elif message.get("method") == "Page.loadEventFired":
            loaded_at = loop.time()
    assert loaded_at is not None, f"{page_url} never finished loading"
    return seen
