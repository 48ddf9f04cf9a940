from pathlib import Path

import pytest

from helpdesk_errors import ConfigError
from plugin.service import policy
from plugin.settings import load_settings

REPO = Path(__file__).resolve().parents[2]


def test_defaults_without_file_or_env():
    s = load_settings(env={})
    assert s.embeddings.model == "sentence-transformers/paraphrase-multilingual-MiniLM-L12-v2"
    assert s.llm.backend == "none"
    assert s.decision.threshold is None  # the engine's calibrated default
    assert s.offline is True


def test_example_config_is_valid_and_documents_every_section():
    s = load_settings(REPO / "config.example.yaml", env={})
    assert s.vector_store.collection == "helpdesk_kb"
    text = (REPO / "config.example.yaml").read_text(encoding="utf-8")
    for section in ("embeddings:", "vector_store:", "retrieval:", "decision:", "llm:", "server:"):
        assert section in text
    # Every key of every section is documented (secrets as comments naming their variable).
    from plugin.settings import Settings

    for name, field in Settings.model_fields.items():
        assert f"{name}:" in text, f"config.example.yaml does not document {name}"
        sub = getattr(field.annotation, "model_fields", None)
        for key in sub or {}:
            assert f"{key}:" in text, f"config.example.yaml does not document {name}.{key}"


def test_yaml_then_env_then_overrides(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("decision:\n  threshold: 0.7\nllm:\n  backend: openai\n  timeout_s: 5\n", encoding="utf-8")
    env = {"HELPDESK_ASSIST_CONFIG": str(cfg), "HELPDESK_ASSIST_LLM__TIMEOUT_S": "9",
           "HELPDESK_ASSIST_LLM__API_KEY": "sk-secret"}
    s = load_settings(env=env)
    assert s.decision.threshold == 0.7
    assert s.llm.backend == "openai"
    assert s.llm.timeout_s == 9.0
    assert s.llm.api_key.get_secret_value() == "sk-secret"
    assert "sk-secret" not in repr(s)
    assert load_settings(env=env, decision={"threshold": 0.2}).decision.threshold == 0.2


def test_unknown_yaml_key_is_named(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("llm:\n  backnd: openai\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"unknown key 'llm\.backnd'"):
        load_settings(cfg, env={})


def test_unknown_env_key_is_named():
    with pytest.raises(ConfigError, match=r"unknown key 'embedings'"):
        load_settings(env={"HELPDESK_ASSIST_EMBEDINGS__MODEL": "x"})


def test_bad_value_names_key_and_env_variable(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_settings(env={"HELPDESK_ASSIST_DECISION__THRESHOLD": "1.5"})
    assert "decision.threshold" in str(e.value)
    assert "HELPDESK_ASSIST_DECISION__THRESHOLD" in str(e.value)


def test_category_threshold_out_of_range(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("decision:\n  category_thresholds: {VPN: 3}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="VPN"):
        load_settings(cfg, env={})


@pytest.mark.parametrize("content, message", [("- a\n- b\n", "mapping"), ("a: [\n", "not valid YAML")])
def test_broken_yaml(tmp_path, content, message):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_settings(cfg, env={})


def test_missing_file():
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings("/nonexistent/helpdesk.yaml", env={})


def test_threshold_for_category():
    s = load_settings(env={}, decision={"threshold": 0.5, "category_thresholds": {"VPN": 0.8}})
    decision = policy.from_settings(s).decision
    assert decision.threshold_for("VPN") == 0.8
    assert decision.threshold_for("Почта") == 0.5
    assert decision.threshold_for(None) == 0.5


def test_connector_settings_are_checked_across_keys_without_echoing_secrets():
    with pytest.raises(ConfigError) as e:
        load_settings(env={"HELPDESK_ASSIST_REDMINE__ENABLED": "true",
                           "HELPDESK_ASSIST_REDMINE__API_KEY": "very-secret-api-key"})
    msg = str(e.value)
    assert "redmine.url is required" in msg and "secret_key" in msg
    assert "very-secret-api-key" not in msg


def test_worker_lease_must_outlast_the_llm_timeout():
    with pytest.raises(ConfigError, match=r"worker\.lease_s"):
        load_settings(env={}, llm={"timeout_s": 200})
    assert load_settings(env={}, llm={"timeout_s": 200}, worker={"lease_s": 300}).worker.lease_s == 300


def test_shadow_mode_per_connector_overrides_the_global_one():
    s = load_settings(env={}, pipeline={"shadow_mode": True}, redmine={"shadow_mode": False})
    p = policy.from_settings(s)
    assert p.shadow_mode_for("redmine") is False and p.shadow_mode_for("glpi") is True


def test_api_keys_from_the_environment_comma_separated():
    s = load_settings(env={"HELPDESK_ASSIST_API__KEYS": "first-key-0123456789abc, second-key-0123456789abc"})
    assert [k.get_secret_value() for k in s.api.keys] == ["first-key-0123456789abc", "second-key-0123456789abc"]
    assert load_settings(env={}).api.keys == []


def test_a_short_api_key_is_refused_without_echoing_it():
    with pytest.raises(ConfigError) as e:
        load_settings(env={"HELPDESK_ASSIST_API__KEYS": "long-enough-key-0123456789,short-key"})
    msg = str(e.value)
    assert "api.keys" in msg and "number 2" in msg and "16 characters" in msg
    assert "short-key" not in msg and "long-enough-key" not in msg


def test_api_keys_from_the_process_environment(monkeypatch):
    # pydantic-settings' own env source JSON-decoded list values and refused "key1,key2".
    monkeypatch.setenv("HELPDESK_ASSIST_API__KEYS", "env-key-number-one-0123,env-key-number-two-0123")
    monkeypatch.setenv("HELPDESK_ASSIST_DECISION__THRESHOLD", "0.7")
    s = load_settings()
    assert [k.get_secret_value() for k in s.api.keys] == ["env-key-number-one-0123", "env-key-number-two-0123"]
    assert s.decision.threshold == 0.7


def test_item4_item11_retry_and_purge_windows_and_their_check():
    s = load_settings(env={})
    assert (s.worker.retry_for_h, s.worker.purge_done_after_days, s.worker.keep_delivery_keys_days) == (24, 7, 90)
    assert s.redmine.unknown_write_wait_s == s.glpi.unknown_write_wait_s == 60
    with pytest.raises(ConfigError, match=r"worker\.keep_delivery_keys_days.*worker\.purge_done_after_days"):
        load_settings(env={}, worker={"purge_done_after_days": 30, "keep_delivery_keys_days": 7})
    with pytest.raises(ConfigError, match=r"worker\.retry_for_h"):
        load_settings(env={"HELPDESK_ASSIST_WORKER__RETRY_FOR_H": "0"})


def test_email_allowed_domains_are_normalized_and_read_from_one_variable():
    s = load_settings(env={}, email={"allowed_domains": ["Example.RU", "@corp.example.com."]})
    assert s.email.allowed_domains == ["example.ru", "corp.example.com"]
    s = load_settings(env={"HELPDESK_ASSIST_EMAIL__ALLOWED_DOMAINS": "example.ru, пример.рф"})
    assert s.email.allowed_domains == ["example.ru", "пример.рф"]
    assert load_settings(env={}).email.allowed_domains == []


@pytest.mark.parametrize("bad", ["https://example.ru", "user@example.ru", "example", "exa mple.ru", "example.ru/x"])
def test_email_allowed_domains_names_the_key_and_the_bad_value(bad):
    with pytest.raises(ConfigError) as e:
        load_settings(env={}, email={"allowed_domains": ["example.ru", bad]})
    assert "email.allowed_domains" in str(e.value) and "not a domain name" in str(e.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("helpdesk", ["helpdesk"]), ("helpdesk, ops ,", ["helpdesk", "ops"]), ('["a,b", "c"]', ["a,b", "c"])],
)
def test_every_list_setting_takes_one_string_from_the_environment(value, expected):
    # Every environment variable is one string: a list setting takes "a, b" or a JSON list, as api.keys does.
    s = load_settings(env={"HELPDESK_ASSIST_REDMINE__PROJECTS": value, "HELPDESK_ASSIST_GLPI__ENTITIES": "3, 7"})
    assert s.redmine.projects == expected
    assert s.glpi.entities == [3, 7]


def test_a_bad_list_item_from_the_environment_names_the_variable_and_the_item():
    with pytest.raises(ConfigError) as e:
        load_settings(env={"HELPDESK_ASSIST_GLPI__ENTITIES": "3, x"})
    msg = str(e.value)
    assert "HELPDESK_ASSIST_GLPI__ENTITIES, item 2" in msg and "'x'" in msg
