"""Issue 13: the analytics and economic pages through the real app (API key, formats, bad input), and the
``report`` command."""

from __future__ import annotations

import csv
import io
import json

import pytest
from click.testing import CliRunner

from plugin.cli import main
from plugin.web.app import create_app
from tests.plugin.service.test_analytics import fill_january
from tests.plugin.web_app import auth, boundary_services

JANUARY = "from=2026-01-01&to=2026-01-31"


@pytest.fixture
def client(tmp_path):
    services = boundary_services(tmp_path / "var")
    fill_january(services.settings.data_dir / "state.sqlite3").close()
    app = create_app(services.settings, services=services)
    return app.test_client()


def test_needs_the_console_sign_in_or_the_api_key(client):
    # A person is sent to the console's sign-in (and back here after it); a script without a key gets a 401.
    for path in ("/admin/analytics", "/admin/analytics/economics?users=5"):
        r = client.get(path)
        assert r.status_code == 302 and r.headers["Location"].startswith("/admin/login?next="), path
    for path in ("/admin/analytics/gaps.csv", "/admin/analytics?format=json", "/admin/analytics/economics?format=csv"):
        assert client.get(path).status_code == 401
    for path in ("/admin/analytics", "/admin/analytics/economics", "/admin/analytics/gaps.csv",
                 "/admin/analytics?format=json"):
        assert client.get(path, headers={"Authorization": "Bearer wrong-key-0123456789"}).status_code == 401


def test_page_with_data(client):
    r = client.get(f"/admin/analytics?{JANUARY}&lang=en", headers=auth())
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    assert "<svg" in html and "Funnel by channel" in html and "Почта" in html
    assert "script-src 'self'" in r.headers["Content-Security-Policy"]
    assert "style=" not in html  # CSP: no inline styles
    ru = client.get(f"/admin/analytics?{JANUARY}&lang=ru", headers=auth()).get_data(as_text=True)
    assert "Воронка по каналам" in ru
    # Knowledge gaps on request only (the encoder clusters up to 2,000 requests).
    assert "Find the knowledge gaps" in html and "gaps=1" in html
    computed = client.get(f"/admin/analytics?{JANUARY}&lang=en&gaps=1", headers=auth()).get_data(as_text=True)
    assert "Find the knowledge gaps" not in computed and "No knowledge gap found" in computed


def test_json_and_csv(client):
    data = client.get(f"/admin/analytics?{JANUARY}&format=json", headers=auth()).get_json()
    # Now (long after January) every confirmation's 7 days have passed: s6 is deflected too.
    assert data["total"]["seen"] == 11 and data["total"]["deflected"] == 3 and data["total"]["reopened"] == 1
    rows = list(csv.DictReader(io.StringIO(client.get(f"/admin/analytics?{JANUARY}&format=csv", headers=auth())
                                           .get_data(as_text=True))))
    assert {"section": "channel", "group": "Redmine", "metric": "held_out", "value": "2"} in rows
    gaps = client.get(f"/admin/analytics/gaps.csv?{JANUARY}", headers=auth())
    assert gaps.status_code == 200 and gaps.get_data(as_text=True).startswith("question,answer,category")


@pytest.mark.parametrize(("query", "field"), [("from=2026-02-30", "from"), ("to=soon", "to"),
                                              ("from=2026-02-01&to=2026-01-01", "to"), ("target=2", "target"),
                                              ("format=xml", "format")])
def test_bad_input_names_the_field(client, query, field):
    r = client.get(f"/admin/analytics?{query}&format=json" if "format" not in query else f"/admin/analytics?{query}",
                   headers=auth())
    assert r.status_code == 400 and field in r.get_json()["detail"]
    page = client.get(f"/admin/analytics?{query}", headers=auth()) if "format" not in query else None
    if page is not None:
        assert page.status_code == 400 and field in page.get_data(as_text=True)


def test_economic_page_and_csv(client):
    r = client.get(f"/admin/analytics/economics?{JANUARY}&lang=en", headers=auth())
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    assert "9\u202f800\u202f000 RUB" in html  # the seed's 50% with its own parameters
    assert 'name="support_staff"' in html and 'name="agent_minutes_per_ticket"' in html
    rows = list(csv.reader(io.StringIO(client.get(
        f"/admin/analytics/economics?{JANUARY}&format=csv&deflection=0.5&users=0&support_staff=1", headers=auth())
        .get_data(as_text=True))))
    get = {(a, b): c for a, b, c in rows[1:]}
    # one person, no users, half the tickets: 0.5 × 820,000
    assert float(get[("chosen", "total")]) == pytest.approx(410_000)
    assert float(get[("seed_assumption_50pct", "total")]) == pytest.approx(410_000)
    assert get[("parameter", "support_staff")] == "1.0"
    measured = list(csv.reader(io.StringIO(client.get(f"/admin/analytics/economics?{JANUARY}&format=csv", headers=auth())
                                           .get_data(as_text=True))))
    get = {(a, b): c for a, b, c in measured[1:]}
    assert float(get[("input", "deflection")]) == pytest.approx(3 / 11, abs=1e-6)
    assert float(get[("measured", "total")]) == pytest.approx(3 / 11 * 19_600_000, rel=1e-6)


def test_economic_page_bad_parameter(client):
    r = client.get(f"/admin/analytics/economics?{JANUARY}&users=many&deflection=2&lang=en", headers=auth())
    assert r.status_code == 400
    html = r.get_data(as_text=True)
    assert "users: expected a number" in html and "deflection: expected a number" in html
    assert client.get("/admin/analytics/economics?users=1e300", headers=auth()).status_code == 400
    assert client.get("/admin/analytics/economics?format=csv&users=-1", headers=auth()).status_code == 400


def test_open_without_key(tmp_path):
    services = boundary_services(tmp_path / "var", analytics={"open_without_key": True})
    app = create_app(services.settings, services=services)
    assert app.test_client().get("/admin/analytics?format=json").status_code == 200


def test_report_command(tmp_path):
    fill_january(tmp_path / "var" / "state.sqlite3").close()
    config = tmp_path / "config.yaml"
    config.write_text(f"data_dir: {tmp_path / 'var'}\nadmin_language: en\n", encoding="utf-8")
    out = tmp_path / "report.json"
    runner = CliRunner()
    r = runner.invoke(main, ["-c", str(config), "report", "--from", "2026-01-01", "--to", "2026-01-31",
                             "--format", "json", "--no-gaps", "-o", str(out)])
    assert r.exit_code == 0, r.output
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["total"]["seen"] == 11 and [c["name"] for c in data["by_channel"]] == ["GLPI", "Redmine", "chat", "mail"]
    r = runner.invoke(main, ["-c", str(config), "report", "--from", "2026-01-01", "--to", "2026-01-31",
                             "--format", "csv", "--no-gaps"])
    assert r.exit_code == 0 and "total,all,seen,11" in r.output
    r = runner.invoke(main, ["-c", str(config), "report", "--from", "2026-01-32", "--no-gaps"])
    assert r.exit_code == 2 and "from" in r.output


@pytest.mark.slow
def test_analyze_command(tmp_path):
    """``analyze EXPORT --kb KB``: the summary, the HTML report, and a row it cannot read listed, not dropped."""
    from tests.dataset.xlsx_util import TICKET_HEADER, write_csv, write_xlsx

    kb = write_xlsx(tmp_path / "kb.xlsx", [TICKET_HEADER, ("K1", "", None, "", "Почта", "Не приходят письма",
                                                          "Перезапустите Outlook.", "Почта", "", "")])
    export = write_csv(tmp_path / "t.csv", [("Описание", "Решение"), ("Не приходят письма", "Перезапустите Outlook."),
                                             ("Сломался стул", ""), ("", "ответ без вопроса")])
    config = tmp_path / "config.yaml"
    config.write_text(f"data_dir: {tmp_path / 'var'}\nadmin_language: en\n", encoding="utf-8")
    out = tmp_path / "replay.html"
    r = CliRunner().invoke(main, ["-c", str(config), "analyze", str(export), "--kb", str(kb), "-o", str(out), "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["tickets"] == 2 and summary["replayed"] == 2 and summary["unreadable"] == 1
    assert "unreadable: " in r.stderr and "row 4" in r.stderr
    assert out.read_text(encoding="utf-8").startswith("<!doctype html>")
    assert not (tmp_path / "var").exists()  # the configured data dir is never touched


def test_pages_without_any_data(tmp_path):
    services = boundary_services(tmp_path / "var")
    client = create_app(services.settings, services=services).test_client()
    for path in ("/admin/analytics?lang=en", "/admin/analytics?lang=en&gaps=1", "/admin/analytics?format=csv",
                 "/admin/analytics?format=json", "/admin/analytics/economics?lang=ru",
                 "/admin/analytics/economics?format=csv&projection=1000", "/admin/analytics/gaps.csv",
                 "/admin/analytics?from=2020-01-01&to=2029-12-31"):
        r = client.get(path, headers=auth())
        assert r.status_code == 200, (path, r.get_data(as_text=True)[:300])
    data = client.get("/admin/analytics?format=json", headers=auth()).get_json()
    assert data["total"]["seen"] == 0 and data["total"]["deflection_rate"] is None and data["holdout"] is None
