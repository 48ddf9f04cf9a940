"""The CLI as a person uses it, with the real bundled encoder (configured explicitly, no fallback)."""

import json

import pytest
from click.testing import CliRunner

from plugin.cli import main

pytestmark = pytest.mark.slow

KB_CSV = """question;answer;category1
Как сбросить пароль от учетной записи?;Сбросьте пароль на портале https://support.example.local/reset или позвоните 1234.;Учетные записи
Не подключается VPN из дома;Проверьте интернет, перезапустите AnyConnect и подключитесь к vpn.example.ru.;VPN
Принтер не печатает, документы висят в очереди;Очистите очередь печати и перезапустите принтер.;Принтеры
Outlook просит пароль снова и снова;Удалите сохраненные учетные данные в диспетчере учетных данных Windows.;Почта
Строка без ответа;;Почта
"""

CASES_CSV = """query,answer
забыл пароль что делать,Сбросьте пароль на портале https://support.example.local/reset или позвоните 1234.
впн не работает дома,"Проверьте интернет, перезапустите AnyConnect и подключитесь к vpn.example.ru."
принтер не печатает,Очистите очередь печати и перезапустите принтер.
"""


@pytest.fixture
def run(tmp_path):
    env = {"HELPDESK_ASSIST_DATA_DIR": str(tmp_path / "var"), "HELPDESK_ASSIST_EMBEDDINGS__MODEL": "use-multilingual",
           "HELPDESK_ASSIST_ADMIN_LANGUAGE": "en"}

    def invoke(*args: str):
        return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)

    return invoke


@pytest.fixture
def files(tmp_path):
    kb = tmp_path / "kb.csv"
    kb.write_text(KB_CSV, encoding="utf-8")
    cases = tmp_path / "cases.csv"
    cases.write_text(CASES_CSV, encoding="utf-8")
    return kb, cases


def test_import_reports_summary_and_bad_rows_then_reimport_changes_nothing(run, files):
    kb, _ = files
    r = run("kb", "import", str(kb), "--map", "question=question", "--map", "answer=answer",
            "--map", "category1=category1")
    assert r.exit_code == 0, r.output
    assert "imported 4, updated 0, unchanged 0, rejected 1" in r.stdout
    assert "row 6" in r.stderr and "answer" in r.stderr
    again = run("kb", "import", str(kb), "--map", "question=question", "--map", "answer=answer",
                "--map", "category1=category1")
    assert "imported 0, updated 0, unchanged 4, rejected 1" in again.stdout
    changed = run("kb", "import", str(kb), "--map", "question=question", "--map", "answer=answer")
    assert "imported 0, updated 4, unchanged 0" in changed.stdout  # the categories were dropped
    stats = json.loads(run("kb", "stats", "--json").stdout)
    assert stats["entries"] == 4
    assert stats["embedding_fallback"] is None


def test_ask_json_and_learn(run, files):
    kb, cases = files
    run("kb", "import", str(kb), "--map", "question=question", "--map", "answer=answer", "--map", "category1=category1")
    r = run("ask", "--json", "Здравствуйте! Не могу зайти, забыл пароль")
    body = json.loads(r.stdout)
    assert body["hits"][0]["answer"].startswith("Сбросьте пароль")
    assert body["category"]["levels"][0] == "Учетные записи"
    learned = run("kb", "learn", str(cases))
    assert "learned 3 confirmed pairs" in learned.stdout
    assert "learned 0 confirmed pairs (3 already known" in run("kb", "learn", str(cases)).stdout
    assert json.loads(run("kb", "stats", "--json").stdout)["learned"]["confirmed"] == 3


def test_eval_json_last_line_has_exactly_the_documented_keys(run, files, tmp_path):
    _, cases = files
    # eval detects the knowledge-base shape from its header: the FAQ preset here.
    faq = tmp_path / "faq.csv"
    faq.write_text(
        "Тема,Вопрос из БЗ,Ответ из БЗ,Классификатор 1 уровня,Классификатор 2 уровня\n"
        + "\n".join(
            f'Тема,"{q}","{a}",{c},{c}'
            for q, a, c in (line.split(";") for line in KB_CSV.strip().splitlines()[1:5])
        ),
        encoding="utf-8",
    )
    r = run("eval", "--kb", str(faq), "--cases", str(cases), "--json", "--threshold", "0.0")
    assert r.exit_code == 0, r.output
    metrics = json.loads(r.stdout.strip().splitlines()[-1])
    assert set(metrics) == {"n", "hit@1", "hit@3", "mrr@10", "category_accuracy", "answered", "at_precision",
                            "reliability"}
    assert [row["target"] for row in metrics["at_precision"]] == [0.85, 0.9]
    assert sum(b["n"] for b in metrics["reliability"]["bins"]) == 3
    assert set(metrics["answered"]) == {"threshold", "coverage", "precision@1", "precision@3"}
    assert metrics["n"] == 3
    assert metrics["hit@3"] == 1.0
    assert metrics["category_accuracy"] is None  # the cases carry no labels
    assert metrics["answered"]["coverage"] == 1.0
    # The configured index is untouched by eval.
    assert json.loads(run("kb", "stats", "--json").stdout)["sources"] == {"sample_kb.xlsx": 188}


def test_eval_folds_cross_validates_and_refuses_a_learning_file(run, files, tmp_path):
    _, cases = files
    kb = tmp_path / "faq.csv"
    kb.write_text(
        "Тема,Вопрос из БЗ,Ответ из БЗ,Классификатор 1 уровня\n"
        + "\n".join(f'Тема,"{q}","{a}",{c}' for q, a, c in (line.split(";") for line in KB_CSV.strip().splitlines()[1:5])),
        encoding="utf-8",
    )
    r = run("eval", "--kb", str(kb), "--cases", str(cases), "--folds", "3", "--fold-seed", "7", "--json")
    assert r.exit_code == 0, r.output
    metrics = json.loads(r.stdout.strip().splitlines()[-1])
    assert metrics["folds"] == 3 and metrics["n"] == 3 and metrics["fold_seed"] == 7
    assert [t["learned"] for t in metrics["trained"]] == [2, 2, 2]
    assert len(metrics["answered"]["per_fold_thresholds"]) == 3
    # In the admin's language, the thresholds included.
    env = {"HELPDESK_ASSIST_DATA_DIR": str(tmp_path / "var"), "HELPDESK_ASSIST_EMBEDDINGS__MODEL": "use-multilingual",
           "HELPDESK_ASSIST_ADMIN_LANGUAGE": "ru"}
    ru = CliRunner().invoke(main, ["eval", "--kb", str(kb), "--cases", str(cases), "--folds", "3"], env=env,
                            catch_exceptions=False)
    assert ru.exit_code == 0, ru.output
    line = next(x for x in ru.output.splitlines() if x.startswith("при пороге"))
    assert "порог движка по умолчанию, по блокам: " in line and "default" not in line
    assert "auc" in metrics["reliability"]
    assert any(x.strip().startswith("верные первые ответы выше неверных (AUC) ") for x in ru.output.splitlines())
    assert "3-кратная перекрёстная проверка, зерно разбиения 13" in ru.output
    bad = run("eval", "--kb", str(kb), "--cases", str(cases), "--folds", "3", "--learn-from", str(cases))
    assert bad.exit_code != 0 and "--folds" in bad.output
    assert run("eval", "--kb", str(kb), "--cases", str(cases), "--folds", "9").exit_code != 0


def test_status_says_fallback_loudly(tmp_path):
    env = {"HELPDESK_ASSIST_DATA_DIR": str(tmp_path / "var"), "HELPDESK_ASSIST_ADMIN_LANGUAGE": "en"}
    r = CliRunner().invoke(main, ["status"], env=env, catch_exceptions=False)
    assert r.exit_code == 0
    assert "status:     degraded" in r.stdout
    assert "FALLBACK IN USE" in r.stdout


def test_bad_config_is_a_clear_error(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("retrieval:\n  top_k: 0\n", encoding="utf-8")
    r = CliRunner().invoke(main, ["--config", str(cfg), "kb", "stats"])
    assert r.exit_code == 2
    assert "retrieval.top_k" in r.stderr


def test_bad_map_option(run, files):
    kb, _ = files
    r = CliRunner().invoke(main, ["kb", "import", str(kb), "--map", "question"])
    assert r.exit_code == 2
    assert "FIELD=COLUMN" in r.output
