"""The transformers backend with a tiny real Qwen2 model: loading, chat template, generate, decode."""

from __future__ import annotations

import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import torch
from huggingface_hub import constants as hub_constants

from rag.errors import LLMError, LLMTimeout, ModelLoadError
from rag.llm import LLM, load_llm
from rag.llm import transformers_backend as tb
from rag.llm.transformers_backend import TransformersLLM
from tests.rag.llm.conftest import Reply, ScriptedServer, closed_port

pytestmark = pytest.mark.slow

MESSAGES = [
    {"role": "system", "content": "Ты помощник службы поддержки."},
    {"role": "user", "content": "Не работает VPN из дома, что делать?"},
]
MISSING_HUB_ID = "helpdesk-assist-tests/no-such-model"


@pytest.fixture(scope="module")
def tiny_llm(tiny_qwen_path: Path) -> TransformersLLM:
    llm = load_llm("transformers", model=str(tiny_qwen_path))
    assert isinstance(llm, TransformersLLM)
    return llm


def test_loads_from_a_local_folder_and_generates(tiny_llm: TransformersLLM, tiny_qwen_path: Path) -> None:
    assert isinstance(tiny_llm, LLM)
    assert tiny_llm.name == f"transformers:{tiny_qwen_path}"

    text = tiny_llm.generate(MESSAGES, max_new_tokens=16, temperature=0.0, timeout_s=60)

    assert isinstance(text, str) and text
    assert "<|im_start|>" not in text and "<|im_end|>" not in text
    assert tiny_llm.loaded


def test_prompt_is_the_chat_template_with_a_generation_prompt(tiny_llm: TransformersLLM) -> None:
    tiny_llm.generate(MESSAGES, max_new_tokens=4, temperature=0.0, timeout_s=60)
    tokenizer = tiny_llm._tokenizer
    prompt = tokenizer.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)

    assert prompt.startswith("<|im_start|>system\nТы помощник")
    assert prompt.endswith("<|im_start|>assistant\n")
    assert tiny_llm.last_stats is not None
    assert tiny_llm.last_stats.prompt_tokens == len(tokenizer(prompt, add_special_tokens=False)["input_ids"])


@pytest.mark.parametrize("max_new_tokens", [1, 7, 24])
def test_respects_max_new_tokens(tiny_llm: TransformersLLM, max_new_tokens: int) -> None:
    # The tiny model never emits its end token (see tiny_qwen.py), so it stops only at the limit.
    tiny_llm.generate(MESSAGES, max_new_tokens=max_new_tokens, temperature=0.0, timeout_s=60)

    assert tiny_llm.last_stats is not None
    assert tiny_llm.last_stats.new_tokens == max_new_tokens
    assert tiny_llm.last_stats.stopped == "length"


def test_decodes_only_the_new_tokens(tiny_llm: TransformersLLM) -> None:
    text = tiny_llm.generate(MESSAGES, max_new_tokens=12, temperature=0.0, timeout_s=60)

    assert "Не работает VPN" not in text and "assistant" not in text


def test_greedy_is_deterministic_and_sampling_varies(tiny_llm: TransformersLLM) -> None:
    greedy = [tiny_llm.generate(MESSAGES, max_new_tokens=12, temperature=0.0, timeout_s=60) for _ in range(2)]
    sampled = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        sampled.append(tiny_llm.generate(MESSAGES, max_new_tokens=12, temperature=1.0, timeout_s=60))

    assert greedy[0] == greedy[1]
    assert sampled[0] != sampled[1]


def test_deadline_cuts_a_long_generation(tiny_llm: TransformersLLM) -> None:
    tiny_llm.generate(MESSAGES, max_new_tokens=2, temperature=0.0, timeout_s=60)  # loaded and warm

    with pytest.raises(LLMTimeout, match=r"0\.3 s"):
        tiny_llm.generate(MESSAGES, max_new_tokens=100_000, temperature=0.0, timeout_s=0.3)

    stats = tiny_llm.last_stats
    assert stats is not None and stats.stopped == "deadline"
    assert 0 < stats.new_tokens < 100_000


def test_waiting_for_a_busy_model_counts_against_the_timeout(tiny_llm: TransformersLLM) -> None:
    tiny_llm.load()
    with tiny_llm._generate_lock, pytest.raises(LLMTimeout, match="another generation held the model"):
        tiny_llm.generate(MESSAGES, max_new_tokens=4, temperature=0.0, timeout_s=0.1)


def test_generation_failure_is_an_llm_error(tiny_llm: TransformersLLM, monkeypatch: pytest.MonkeyPatch) -> None:
    def out_of_memory(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore details")

    monkeypatch.setattr(tiny_llm._model, "generate", out_of_memory)

    with pytest.raises(LLMError, match="generation failed: RuntimeError: CUDA out of memory") as info:
        tiny_llm.generate(MESSAGES, max_new_tokens=4, temperature=0.0, timeout_s=60)
    assert not isinstance(info.value, LLMTimeout)


def test_loads_lazily_once_across_threads(tiny_qwen_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []
    original = tb.AutoModelForCausalLM.from_pretrained

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(tb.AutoModelForCausalLM, "from_pretrained", spy)
    llm = TransformersLLM(str(tiny_qwen_path))
    assert not llm.loaded and calls == []  # building the backend does not load the weights

    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [
            pool.submit(llm.generate, MESSAGES, max_new_tokens=4, temperature=0.0, timeout_s=60) for _ in range(4)
        ]
        results = [f.result() for f in futures]

    assert len(results) == 4 and len(set(results)) == 1
    assert len(calls) == 1
    assert calls[0]["local_files_only"] is True


def test_hub_id_loads_from_the_local_cache_when_offline(
    tiny_qwen_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The layout huggingface_hub writes: models--org--name/{refs/main, snapshots/<commit>/...}.
    revision = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--helpdesk-assist-tests--tiny-qwen"
    shutil.copytree(tiny_qwen_path, repo / "snapshots" / revision)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    kwargs: list[dict[str, Any]] = []
    original = tb.AutoModelForCausalLM.from_pretrained

    def spy(*args: Any, **kw: Any) -> Any:
        kwargs.append(kw)
        return original(*args, **kw)

    monkeypatch.setattr(tb.AutoModelForCausalLM, "from_pretrained", spy)

    llm = load_llm("transformers", model="helpdesk-assist-tests/tiny-qwen")
    assert llm is not None
    text = llm.generate(MESSAGES, max_new_tokens=5, temperature=0.0, timeout_s=60)

    assert isinstance(text, str) and text
    assert kwargs[0]["local_files_only"] is True


def test_missing_hub_model_fails_at_once_when_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def no_network(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the hub must not be contacted in offline mode")

    monkeypatch.setattr(tb.requests, "head", no_network)

    with pytest.raises(ModelLoadError) as info:
        load_llm("transformers", model=MISSING_HUB_ID)

    message = str(info.value)
    assert f"hub model '{MISSING_HUB_ID}'" in message
    assert "not in the local Hugging Face cache" in message and "offline" in message
    assert "llm.model" in message and "llm.backend: none" in message


def _online_hub(monkeypatch: pytest.MonkeyPatch, endpoint: str) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub_constants, "ENDPOINT", endpoint)


def test_missing_hub_model_fails_at_once_when_the_hub_is_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint = f"http://127.0.0.1:{closed_port()}"
    _online_hub(monkeypatch, endpoint)

    with pytest.raises(ModelLoadError, match=f"hub at {endpoint} cannot be reached") as info:
        load_llm("transformers", model=MISSING_HUB_ID)
    assert "llm.model" in str(info.value)


@pytest.mark.parametrize(
    ("status", "expected"),
    [(404, "answered HTTP 404 for it"), (401, "refused access (HTTP 401)"), (503, "answered HTTP 503")],
)
def test_hub_without_the_model_fails_at_once(
    openai_server: ScriptedServer, monkeypatch: pytest.MonkeyPatch, status: int, expected: str
) -> None:
    _online_hub(monkeypatch, openai_server.url.removesuffix("/v1"))
    openai_server.reply(Reply(status))

    with pytest.raises(ModelLoadError, match=re.escape(expected)):
        load_llm("transformers", model=MISSING_HUB_ID)

    (probe,) = openai_server.requests
    assert (probe.method, probe.path) == ("HEAD", f"/{MISSING_HUB_ID}/resolve/main/config.json")


def test_hub_with_the_model_defers_the_download(openai_server: ScriptedServer, monkeypatch: pytest.MonkeyPatch) -> None:
    _online_hub(monkeypatch, openai_server.url.removesuffix("/v1"))
    openai_server.reply(Reply(200))

    llm = load_llm("transformers", model=MISSING_HUB_ID)

    assert isinstance(llm, TransformersLLM) and not llm.loaded
    assert llm._local_files_only is False


def test_missing_local_folder(tmp_path: Path) -> None:
    missing = tmp_path / "models" / "qwen2.5-1.5b"

    with pytest.raises(ModelLoadError, match="no model folder at") as info:
        load_llm("transformers", model=str(missing))
    assert str(missing) in str(info.value)


def test_folder_without_a_model_fails_on_load_and_remembers_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    llm = load_llm("transformers", model=str(tmp_path))  # a folder: loading is deferred
    assert isinstance(llm, TransformersLLM)
    calls: list[object] = []
    original = tb.AutoTokenizer.from_pretrained

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(tb.AutoTokenizer, "from_pretrained", spy)

    for _ in range(2):
        with pytest.raises(ModelLoadError, match=f"cannot load the LLM from the local folder {tmp_path}"):
            llm.generate(MESSAGES, max_new_tokens=4, temperature=0.0, timeout_s=10)
    assert len(calls) == 1


def test_model_without_chat_template_is_refused(tiny_qwen_path: Path, tmp_path: Path) -> None:
    copy = tmp_path / "no-template"
    shutil.copytree(tiny_qwen_path, copy)
    (copy / "chat_template.jinja").unlink(missing_ok=True)

    llm = TransformersLLM(str(copy))
    with pytest.raises(ModelLoadError, match="no chat template"):
        llm.load()


def test_bad_device_is_a_load_error(tiny_qwen_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="not a torch device"):
        TransformersLLM(str(tiny_qwen_path), device="gpu0").load()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_a_load_error(tiny_qwen_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="no usable CUDA GPU"):
        TransformersLLM(str(tiny_qwen_path), device="cuda").load()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_generates_on_a_gpu(tiny_qwen_path: Path) -> None:
    llm = TransformersLLM(str(tiny_qwen_path), device="cuda")
    text = llm.generate(MESSAGES, max_new_tokens=8, temperature=0.0, timeout_s=60)

    assert isinstance(text, str) and llm.last_stats is not None and llm.last_stats.new_tokens == 8


def test_neither_folder_nor_hub_id() -> None:
    with pytest.raises(ModelLoadError, match="no model folder at"):
        load_llm("transformers", model="qwen 2.5 instruct")


def test_unknown_backend_and_none() -> None:
    assert load_llm("none", model="anything") is None
    with pytest.raises(ValueError, match="unknown LLM backend 'llamacpp'"):
        load_llm("llamacpp", model="m")
