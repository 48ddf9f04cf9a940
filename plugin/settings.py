"""One settings object: a YAML file plus environment overrides.

Precedence (highest first): explicit arguments, environment variables (``HELPDESK_ASSIST_`` prefix,
nesting with ``__``, e.g. ``HELPDESK_ASSIST_LLM__BACKEND=openai``), the YAML file (``--config`` or
``HELPDESK_ASSIST_CONFIG``), defaults. Unknown keys are rejected with the key named. Nothing outside
this module reads ``os.environ``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from helpdesk_errors import ConfigError

ENV_PREFIX = "HELPDESK_ASSIST_"
CONFIG_ENV = "HELPDESK_ASSIST_CONFIG"
DEFAULT_EMBEDDING_MODEL = "sentence-transformers/paraphrase-multilingual-MiniLM-L12-v2"
DEFAULT_LLM_MODEL = "Qwen/Qwen2.5-1.5B-Instruct"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KBSettings(_Section):
    #: Files imported by ``serve``/``ask`` when the index is empty. Empty: the bundled sample KB.
    sources: list[Path] = Field(default_factory=list)


class EmbeddingSettings(_Section):
    #: A sentence-transformers model: hub id (needs a hub or a local mirror) or a local path.
    model: str = DEFAULT_EMBEDDING_MODEL
    #: Used when ``model`` cannot be loaded: the bundled multilingual USE v3 encoder, or none (fail).
    fallback: Literal["use-multilingual", "none"] = "use-multilingual"
    device: str = "cpu"
    batch_size: int = Field(default=64, ge=1, le=4096)


class VectorStoreSettings(_Section):
    #: ``embedded``: chromadb.PersistentClient under data_dir; ``http``: a Chroma server.
    mode: Literal["embedded", "http"] = "embedded"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    ssl: bool = False
    collection: str = Field(default="helpdesk_kb", min_length=3, max_length=63)


class RetrievalSettings(_Section):
    top_k: int = Field(default=5, ge=1, le=50)
    #: How many candidates each signal contributes before fusion.
    candidates: int = Field(default=50, ge=5, le=1000)


class DecisionSettings(_Section):
    #: Minimum calibrated confidence of the best answer to answer rather than abstain.
    threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    #: Per first-level category overrides, e.g. ``{"Безопасность": 0.8}``.
    category_thresholds: dict[str, float] = Field(default_factory=dict)
    #: Categories for which the engine always abstains (agents only).
    disabled_categories: list[str] = Field(default_factory=list)

    @field_validator("category_thresholds")
    @classmethod
    def _in_range(cls, v: dict[str, float]) -> dict[str, float]:
        for name, value in v.items():
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"threshold for category {name!r} must be between 0 and 1, got {value}")
        return v


class LLMSettings(_Section):
    #: ``none``: extractive answers only; ``transformers``: a local Qwen chat model in-process;
    #: ``openai``: any OpenAI-compatible server (vLLM, Ollama, llama.cpp server).
    backend: Literal["none", "transformers", "openai"] = "none"
    model: str = DEFAULT_LLM_MODEL
    base_url: str = "http://127.0.0.1:8001/v1"
    api_key: SecretStr = SecretStr("")
    timeout_s: float = Field(default=30.0, gt=0, le=600)
    max_new_tokens: int = Field(default=256, ge=16, le=4096)
    temperature: float = Field(default=0.2, ge=0.0, le=2.0)
    device: str = "cpu"


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    #: Largest request body accepted, in bytes.
    max_body_bytes: int = Field(default=1_000_000, ge=1024)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    #: Where state and indexes live (SQLite, Chroma, the lexical index).
    data_dir: Path = Path("var")
    #: Language used when a text has no letters to tell.
    default_language: Literal["ru", "en"] = "ru"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    #: Models load from local paths or the local model cache only. Set false to let
    #: sentence-transformers/transformers download hub ids (from a hub or a mirror: HF_ENDPOINT).
    offline: bool = True
    kb: KBSettings = Field(default_factory=KBSettings)
    embeddings: EmbeddingSettings = Field(default_factory=EmbeddingSettings)
    vector_store: VectorStoreSettings = Field(default_factory=VectorStoreSettings)
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)
    decision: DecisionSettings = Field(default_factory=DecisionSettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The YAML file is merged in by load_settings() as init data below the env overrides.
        return (init_settings, env_settings)

    def threshold_for(self, category: str | None) -> float:
        if category and category in self.decision.category_thresholds:
            return self.decision.category_thresholds[category]
        return self.decision.threshold


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from e
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys, not {type(data).__name__}")
    return data


def _env_overrides(env: dict[str, str]) -> dict[str, Any]:
    """Nested dict from ``HELPDESK_ASSIST_A__B=v`` variables (the config path itself excluded)."""
    out: dict[str, Any] = {}
    for key, value in env.items():
        if not key.startswith(ENV_PREFIX) or key == CONFIG_ENV:
            continue
        parts = key[len(ENV_PREFIX) :].lower().split("__")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"environment variable {key} conflicts with another variable")
        node[parts[-1]] = value
    return out


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _explain(e: ValidationError, origin: str) -> str:
    lines = [f"invalid configuration ({origin}):"]
    for err in e.errors():
        key = ".".join(str(p) for p in err["loc"])
        env = ENV_PREFIX + "__".join(str(p).upper() for p in err["loc"])
        if err["type"] == "extra_forbidden":
            lines.append(f"  - unknown key '{key}': remove it or check its spelling (see config.example.yaml)")
        else:
            lines.append(f"  - '{key}' (or {env}): {err['msg']}; got {err.get('input')!r}")
    return "\n".join(lines)


def load_settings(
    config: Path | str | None = None,
    env: dict[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Build the settings from a YAML file, the environment and explicit overrides.

    Raises :class:`ConfigError` naming every bad key.
    """
    env = dict(os.environ if env is None else env)
    path = Path(config) if config else (Path(env[CONFIG_ENV]) if env.get(CONFIG_ENV) else None)
    data: dict[str, Any] = _read_yaml(path) if path else {}
    data = _deep_merge(data, _env_overrides(env))
    data = _deep_merge(data, overrides)
    origin = f"{path} + environment" if path else "environment"
    try:
        # Environment already merged above: bypass pydantic-settings' own env reading so that
        # an unknown HELPDESK_ASSIST_* variable is reported like an unknown YAML key.
        return Settings.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_explain(e, origin)) from e
