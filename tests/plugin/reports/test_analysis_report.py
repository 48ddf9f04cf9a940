"""The replay report page: its numbers, its charts, escaping, no JavaScript; run_analysis end to end; the page
in headless Chromium (screenshot kept in $HELPDESK_TEST_ARTIFACTS when set)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from plugin.reports.analysis import render_analysis, run_analysis
from plugin.reports.svg import columns, hbars
from plugin.service.replay import AnalysisResult, ReplayOptions, analyze
from plugin.settings import load_settings
from rag.embeddings import HashingEmbedder
from tests.dataset.xlsx_util import write_xlsx
from tests.plugin.service.test_replay import export_rows


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> AnalysisResult:
    export = write_xlsx(tmp_path_factory.mktemp("report") / "export.xlsx", export_rows())
    return analyze(export, as_of="2024-07-01", embedder=HashingEmbedder(), threshold=0.0,
                   disabled_categories=["Печать"], options=ReplayOptions(gap_min_size=3, gap_similarity=0.5),
                   projection_tickets_per_month=500)


def test_the_page_shows_the_numbers(result: AnalysisResult) -> None:
    html = render_analysis(result)
    text = re.sub(r"<[^>]+>", " ", html)
    assert "6 tickets replayed" in " ".join(text.split())
    assert "50.0%" in text  # answered share and match rate
    assert "20.0%" in text  # projected deflection
    assert "1 / 5" in text
    assert "9\u202f800\u202f000 RUB" in html  # the seed's assumption with the same parameters
    assert "3\u202f920\u202f000 RUB" in html  # 0.2 × 9.8 M / 0.5
    assert "our reconstruction of the seed" in html
    assert "projection (500 a month)" in html
    assert "unreadable registration time" in html and "no registration time" in html
    assert html.count("<svg") == 3  # by month, by category, share by category


def test_the_page_is_static_and_escapes_ticket_text(result: AnalysisResult) -> None:
    html = render_analysis(result)
    assert "<script" not in html.lower().replace("&lt;script", "")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html or "alert(1)" not in html
    outside = html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "http://" not in outside and "https://" not in outside  # nothing loaded from anywhere


def test_charts_scale_and_escape() -> None:
    svg = str(hbars([("A <b>", [1, 3]), ("B", [2, 0])], [("x", "#111"), ("y", "#222")], title="t & u"))
    assert "A &lt;b&gt;" in svg and "t &amp; u" in svg
    widths = [float(w) for w in re.findall(r'<rect x="[\d.]+" y="\d+" width="([\d.]+)"', svg)]
    assert widths[:3] == pytest.approx([widths[1] / 3, widths[1], widths[1] * 2 / 3])  # 1, 3, 2 on one scale
    assert ">4<" in svg and ">2<" in svg  # totals after the bars
    col = str(columns([("2024-01", [1, 1]), ("2024-02", [4, 0])], [("x", "#111"), ("y", "#222")], title="m"))
    heights = [float(h) for h in re.findall(r'height="([\d.]+)" fill="[^"]+"><title>', col)]
    assert heights == pytest.approx([heights[2] / 4, heights[2] / 4, heights[2]])
    assert str(columns([], [("x", "#111")], title="empty")).startswith("<svg")


@pytest.mark.slow
def test_run_analysis_writes_the_report(tmp_path: Path) -> None:
    export = write_xlsx(tmp_path / "export.xlsx", export_rows())
    settings = load_settings(env={}, data_dir=str(tmp_path / "var"), embeddings={"model": "use-multilingual"},
                             decision={"threshold": 0.0, "disabled_categories": ["Печать"]})
    out = tmp_path / "out" / "report.html"
    result = run_analysis(settings, export, as_of="2024-07-01", out_html=out, progress=False)
    assert result.embedder.startswith("use-multilingual") and result.replayed == 6
    assert result.answered == 3
    assert out.read_text(encoding="utf-8").startswith("<!doctype html>")
    assert not (tmp_path / "var").exists()  # the configured data dir is never touched


@pytest.mark.integration
def test_the_page_in_headless_chromium(result: AnalysisResult, browser: Any, tmp_path: Path) -> None:
    page_file = tmp_path / "report.html"
    page_file.write_text(render_analysis(result), encoding="utf-8")
    artifacts = Path(os.environ.get("HELPDESK_TEST_ARTIFACTS", tmp_path))
    artifacts.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(java_script_enabled=False, viewport={"width": 1000, "height": 1400})
    try:
        page = context.new_page()
        page.goto(page_file.as_uri())
        boxes = [svg.bounding_box() for svg in page.query_selector_all("svg")]
        assert len(boxes) == 3 and all(b is not None and b["width"] > 500 and b["height"] > 100 for b in boxes)
        assert page.locator("h1").inner_text() == "Replay before go-live"
        page.screenshot(path=str(artifacts / "analysis_report.png"), full_page=True)
        page.emulate_media(media="print")
        page.screenshot(path=str(artifacts / "analysis_report_print.png"), full_page=True)
    finally:
        context.close()
    assert (artifacts / "analysis_report.png").stat().st_size > 10_000


def test_a_report_without_times(tmp_path: Path) -> None:
    from tests.dataset.xlsx_util import TICKET_HEADER, write_csv

    kb = write_xlsx(tmp_path / "kb.xlsx", [TICKET_HEADER, ("K1", "", None, "", "Почта", "Не приходят письма",
                                                          "Перезапустите Outlook.", "Почта", "", "")])
    export = write_csv(tmp_path / "t.csv", [("Описание", "Решение"), ("Не приходят письма", "Перезапустите Outlook."),
                                             ("Сломался стул", "")])
    r = analyze(export, kb, embedder=HashingEmbedder(), threshold=0.0)
    assert r.months is None and r.savings.tickets_per_month is None
    html = render_analysis(r)
    assert "The export has no registration times." in html
    assert html.count("<svg") == 2
