"""Render report.html in headless Chromium: every figure decodes and the tables are there.

The report's inline script writes each image's `naturalWidth` into `<body data-imgs="...">` on
load; `--dump-dom` then shows what the browser actually decoded (a broken data URI gives 0).
Skipped only when no Chromium binary exists (CI installs Debian's `chromium`).
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess

import pytest

try:  # the sweep builder lives with the report's unit tests
    from test_report import make_records, write_sweep
except ImportError:  # tests/ imported as a package
    from tests.test_report import make_records, write_sweep

from ptft_bench.report import write_report


def find_chromium() -> str | None:
    for name in ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def test_html_renders_in_chromium(tmp_path):
    browser = find_chromium()
    if browser is None:
        pytest.skip("no chromium binary found (apt-get install -y chromium) — browser test skipped")
    shards = write_sweep(tmp_path, make_records())
    page = write_report(shards, tmp_path / "out", formats={"html"})["html"]
    n_imgs = len(re.findall(r"<img\b", page.read_text()))
    assert n_imgs > 0
    cmd = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=5000",
        "--dump-dom",
        page.resolve().as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    dom = proc.stdout
    assert "<body" in dom, f"chromium produced no DOM (rc={proc.returncode}): {proc.stderr[-2000:]}"
    body = re.search(r"<body[^>]*>", dom).group(0)
    imgs = re.search(r'data-imgs="([^"]*)"', body)
    assert imgs, f"the onload script did not run: {body}"
    widths = [int(w) for w in html.unescape(imgs.group(1)).split(",") if w]
    assert len(widths) == n_imgs
    assert all(w > 0 for w in widths), f"some figures did not decode: {widths}"
    tables = int(re.search(r'data-tables="(\d+)"', body).group(1))
    assert tables >= 8 and dom.count("<table") == tables
    assert "Per-task leaderboards" in dom and "Failures and missing runs" in dom
