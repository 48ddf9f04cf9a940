"""`helpdesk-assist check` against the fake GLPI: plain words, and an exit code a script can use."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from plugin.cli import main
from tests.fakes.glpi_server import FakeGLPI


@pytest.fixture(scope="module")
def glpi():
    with FakeGLPI() as server:
        yield server


def _check(env: dict[str, str]):
    base = {"HELPDESK_ASSIST_SECRET_KEY": "k" * 32, "HELPDESK_ASSIST_ADMIN_LANGUAGE": "en"}
    return CliRunner().invoke(main, ["check"], env={**base, **env}, catch_exceptions=False)


def _glpi_env(glpi: FakeGLPI, **over: str) -> dict[str, str]:
    env = {
        "HELPDESK_ASSIST_GLPI__ENABLED": "true",
        "HELPDESK_ASSIST_GLPI__URL": glpi.url,
        "HELPDESK_ASSIST_GLPI__USER_TOKEN": glpi.bot_token,
        "HELPDESK_ASSIST_GLPI__APP_TOKEN": glpi.app_token,
        "HELPDESK_ASSIST_GLPI__WEBHOOK_SECRET": "w" * 40,
    }
    env.update({f"HELPDESK_ASSIST_GLPI__{k.upper()}": v for k, v in over.items()})
    return env


def test_all_good_exits_0(glpi):
    r = _check(_glpi_env(glpi))
    assert r.exit_code == 0, r.output
    assert "[FAIL]" not in r.output and "glpi:" in r.output and "0 to fix" in r.output


def test_bad_token_is_explained_and_exits_1(glpi):
    r = _check(_glpi_env(glpi, user_token="not-a-token"))
    assert r.exit_code == 1
    assert "[FAIL] glpi" in r.output
    assert "not-a-token" not in r.output, "secrets are never printed"


def test_missing_app_token_is_explained(glpi):
    r = _check(_glpi_env(glpi, app_token=""))
    assert r.exit_code == 1
    assert "App-Token" in r.output or "app token" in r.output.lower()


def test_unreachable_helpdesk_is_a_failure_not_a_crash():
    env = {"HELPDESK_ASSIST_GLPI__ENABLED": "true", "HELPDESK_ASSIST_GLPI__URL": "http://127.0.0.1:9/apirest.php",
           "HELPDESK_ASSIST_GLPI__USER_TOKEN": "x", "HELPDESK_ASSIST_GLPI__TIMEOUT_S": "2"}
    r = _check(env)
    assert r.exit_code == 1 and "[FAIL] glpi" in r.output


def test_nothing_enabled_says_so():
    r = _check({})
    assert r.exit_code == 1 and "no connector is enabled" in r.output


def test_check_speaks_the_admin_language(glpi):
    """`admin_language` (Russian by default) picks the words; names of settings, the [ok] / [FAIL]
    marks and what the helpdesk itself said stay as they are."""
    env = _glpi_env(glpi, user_token="not-a-token")
    ru = CliRunner().invoke(main, ["check"], env={"HELPDESK_ASSIST_SECRET_KEY": "k" * 32, **env})
    en = _check(env)
    assert ru.exit_code == en.exit_code == 1
    assert "[FAIL] glpi: Сеанс: GLPI отклонил токен пользователя" in ru.output
    assert "[FAIL] glpi: Session: GLPI refused the user token" in en.output
    assert "[ok] glpi: Доступность API: GLPI отвечает по адресу " + glpi.url in ru.output
    assert "[ok] glpi: API reachable: GLPI answers at " + glpi.url in en.output
    assert "glpi.user_token" in ru.output  # the setting to fix, named as in the config
    assert ru.output.rstrip().endswith("исправить: 1") and en.output.rstrip().endswith("1 to fix")
    assert "refused" not in ru.output and "исправить" not in en.output
    assert "not-a-token" not in ru.output


def test_check_in_russian_names_each_line_of_a_good_setup(glpi):
    r = CliRunner().invoke(main, ["check"], env={
        "HELPDESK_ASSIST_SECRET_KEY": "k" * 32, "HELPDESK_ASSIST_ADMIN_LANGUAGE": "ru", **_glpi_env(glpi)})
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[-1] == f"в порядке: {len(lines) - 1}, исправить: 0"
    assert "[ok] glpi: Чтение обращений: Профиль " in r.output
    assert "[ok] glpi: Секрет веб-хуков: Секрет веб-хуков задан" in r.output
    # Every line is in Russian: no English key was left untranslated.
    for line in lines[:-1]:
        detail = line.split(": ", 2)[-1]
        assert any("а" <= c.lower() <= "я" for c in detail), line


def test_a_bad_admin_language_names_the_setting():
    r = CliRunner().invoke(main, ["check"], env={"HELPDESK_ASSIST_ADMIN_LANGUAGE": "de"})
    assert r.exit_code != 0 and "admin_language" in r.output


def test_the_queue_commands_speak_the_admin_language(tmp_path):
    """Every message of the command line comes from the catalog: the queue's, in Russian and English."""
    from plugin.store import Store

    store = Store.open(tmp_path / "var" / "state.sqlite3")
    item_id = store.inbox.enqueue("redmine", "ticket_event", "redmine:7:1", {"ticket_id": "7"})
    store.close()
    env = {"HELPDESK_ASSIST_DATA_DIR": str(tmp_path / "var")}

    def run(language: str, *args: str):
        return CliRunner().invoke(main, ["queue", *args], env={**env, "HELPDESK_ASSIST_ADMIN_LANGUAGE": language})

    ru, en = run("ru", "list"), run("en", "list")
    assert "по статусам: в очереди 1, в работе 0, выполнено 0" in ru.output
    assert f"#{item_id} pending redmine/ticket_event попыток=0" in ru.output  # the status as --status names it
    assert "counts: pending 1, being worked 0, done 0" in en.output
    missing = run("ru", "retry", "999")
    assert missing.exit_code == 2 and "ошибка: элемент 999 не остановлен с ошибкой (или его нет)" in missing.output
    assert "error: item 999 is not dead" in run("en", "retry", "999").output
    blank = run("ru", "discard", str(item_id), "--reason", "  ")
    assert blank.exit_code == 2 and "чтобы снять элемент с очереди, нужна причина" in blank.output
    done = run("ru", "discard", str(item_id), "--reason", "дубликат")
    assert done.exit_code == 0 and f"элемент {item_id} снят с очереди" in done.output
    assert "снято с очереди: дубликат" in run("ru", "list").output
