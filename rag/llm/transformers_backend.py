"""A local chat model (Qwen or any model with a chat template) run in-process with transformers.

Where the model comes from is settled when the backend is built, quickly and without downloading:
an existing folder is loaded from disk only; a hub id is used from the local Hugging Face cache when it
is there; otherwise, unless the hub is offline (``HF_HUB_OFFLINE=1``), one quick request asks the hub
(or the mirror in ``HF_ENDPOINT``) whether it has the model, and it is downloaded on first load.
Anything else is a :class:`ModelLoadError` that says what was tried and what to set.

The weights load once, lazily (on the first :meth:`TransformersLLM.generate` or an explicit
:meth:`TransformersLLM.load` at start-up), under a lock. Generations run one at a time; each is bounded
by ``timeout_s`` through a stopping criterion that checks the wall clock after every new token (the
prompt's forward pass itself cannot be interrupted). A generation cut by the deadline raises
:class:`LLMTimeout`. Time spent loading the model is not counted against ``timeout_s``.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import requests
import torch
import transformers
from huggingface_hub import constants as hub_constants
from huggingface_hub import try_to_load_from_cache
from huggingface_hub.utils import build_hf_headers
from transformers import AutoModelForCausalLM, AutoTokenizer, StoppingCriteria, StoppingCriteriaList

from rag.errors import LLMError, LLMTimeout, ModelLoadError
from rag.llm.base import Message

logger = logging.getLogger(__name__)

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}(?:/[A-Za-z0-9][\w.-]{0,95})?")
_HINT = "set llm.model to the folder of a downloaded model, or llm.backend: none for extractive answers"
#: Seconds to wait for the hub (or the mirror in HF_ENDPOINT) to answer the probe in :func:`probe_hub`.
HUB_PROBE_TIMEOUT_S = 3.0
# transformers 4.56 renamed ``torch_dtype`` to ``dtype``.
_DTYPE_KW = "dtype" if tuple(int(p) for p in transformers.__version__.split(".")[:2]) >= (4, 56) else "torch_dtype"


@dataclass(frozen=True)
class GenerationStats:
    """What the last generation did; for logs, benchmarks and tests."""

    prompt_tokens: int
    new_tokens: int
    seconds: float
    #: ``eos``: the model finished; ``length``: max_new_tokens reached; ``deadline``: cut by timeout_s.
    stopped: Literal["eos", "length", "deadline"]


class _Deadline(StoppingCriteria):
    """Stops generation once the wall clock passes ``deadline`` (``time.monotonic()`` seconds)."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.fired = False

    def __call__(
        self, input_ids: torch.LongTensor, scores: torch.FloatTensor | None, **kwargs: Any
    ) -> torch.BoolTensor:
        done = time.monotonic() >= self.deadline
        self.fired = self.fired or done
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)  # type: ignore[return-value]


def hub_offline() -> bool:
    """Whether the Hugging Face hub is switched off (``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE``).

    huggingface_hub reads these variables once, at import; they are read again here so that setting
    one before the model is loaded is honoured. They are the hub library's own switches, not our
    settings, which is why this module reads the environment.
    """
    if hub_constants.HF_HUB_OFFLINE:
        return True
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().upper() in {"1", "ON", "YES", "TRUE"}


def probe_hub(model: str, timeout_s: float = HUB_PROBE_TIMEOUT_S) -> str:
    """Ask the hub (or the mirror in ``HF_ENDPOINT``) for the model's ``config.json``, once, quickly.

    Returns ``""`` when the hub has it, else what went wrong in plain words. Without this check a
    missing model or an unreachable hub costs minutes of retries inside huggingface_hub. The request
    is the loader's own (``HEAD {endpoint}/{model}/resolve/main/config.json``, with the user's hub
    token if one is configured), so a 404 from a proxy or a mirror that lacks the model counts as
    missing.
    """
    url = f"{hub_constants.ENDPOINT.rstrip('/')}/{model}/resolve/main/config.json"
    try:
        response = requests.head(url, headers=build_hf_headers(), timeout=timeout_s, allow_redirects=False)
    except requests.RequestException as e:
        return f"the hub at {hub_constants.ENDPOINT} cannot be reached ({type(e).__name__})"
    if response.status_code < 400:
        return ""
    if response.status_code in (401, 403):
        return (
            f"the hub at {hub_constants.ENDPOINT} refused access (HTTP {response.status_code}): "
            "the model is gated or private and needs a hub token (HF_TOKEN)"
        )
    return f"the hub at {hub_constants.ENDPOINT} answered HTTP {response.status_code} for it"


def _describe(e: BaseException) -> str:
    """The exception's type and the first line of its message, cut short."""
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0][:300]}" if lines else type(e).__name__


def _looks_like_path(model: str) -> bool:
    return model.startswith(("/", "./", "../", "~")) or "\\" in model or model.count("/") > 1


def _pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise ModelLoadError(f"llm.device {device!r} is not a torch device (use cpu, cuda, cuda:0 or auto)") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(f"llm.device is {device!r} but this machine has no usable CUDA GPU; set llm.device: cpu")
    return dev


class TransformersLLM:
    """A chat model loaded with ``AutoTokenizer`` / ``AutoModelForCausalLM`` from a folder or hub id."""

    def __init__(self, model: str, *, device: str = "cpu") -> None:
        self.model_id = model
        self.device = device
        self.name = f"transformers:{model}"
        self._source, self._local_files_only, self._where = self._locate(model)
        self._load_lock = threading.Lock()
        self._generate_lock = threading.Lock()
        self._tokenizer: Any = None
        self._model: Any = None
        self._torch_device: torch.device | None = None
        self._load_error: str | None = None
        #: Set after every generation (under the generation lock).
        self.last_stats: GenerationStats | None = None

    @classmethod
    def from_config(
        cls,
        *,
        model: str,
        base_url: str = "",
        api_key: str = "",
        device: str = "cpu",
        timeout_s: float = 30.0,
    ) -> TransformersLLM:
        """The :func:`rag.llm.load_llm` factory (``base_url``, ``api_key`` and ``timeout_s`` are not used)."""
        return cls(model, device=device)

    @staticmethod
    def _locate(model: str) -> tuple[str, bool, str]:
        """Where to load from: (path or hub id, local_files_only, words for messages)."""
        model = model.strip()
        if not model:
            raise ModelLoadError(f"llm.model is empty: {_HINT}")
        path = Path(model).expanduser()
        if path.is_dir():
            return str(path), True, f"the local folder {path}"
        if path.exists():
            raise ModelLoadError(f"cannot load the LLM: {path} is a file, not a model folder; {_HINT}")
        if _looks_like_path(model) or not _HUB_ID.fullmatch(model):
            raise ModelLoadError(f"cannot load the LLM: there is no model folder at {path.resolve()}; {_HINT}")
        where = f"the hub model {model!r}"
        try:
            cached = try_to_load_from_cache(model, "config.json")
        except ValueError as e:  # huggingface_hub's HFValidationError: not a valid repo id
            raise ModelLoadError(f"cannot load the LLM: {model!r} is neither a folder nor a hub id; {_HINT}") from e
        if isinstance(cached, str):
            return model, True, f"{where} from the local Hugging Face cache"
        if hub_offline():
            raise ModelLoadError(
                f"cannot load the LLM: tried {where} (no local folder of that name), but it is not in the "
                f"local Hugging Face cache and the hub is offline (HF_HUB_OFFLINE); {_HINT}"
            )
        problem = probe_hub(model)
        if problem:
            raise ModelLoadError(
                f"cannot load the LLM: tried {where} (no local folder of that name), but it is not in the "
                f"local Hugging Face cache and {problem}; {_HINT}"
            )
        return model, False, f"{where} from {hub_constants.ENDPOINT}"

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def load(self) -> None:
        """Load the tokenizer and weights once; later calls return at once (or repeat the first error)."""
        with self._load_lock:
            if self._model is not None:
                return
            if self._load_error is not None:
                raise ModelLoadError(self._load_error)
            started = time.monotonic()
            try:
                device = _pick_device(self.device)
                # float32 on CPU (bf16 matmuls are slow or missing there); the checkpoint's dtype elsewhere.
                dtype: Any = torch.float32 if device.type == "cpu" else "auto"
                tokenizer = AutoTokenizer.from_pretrained(self._source, local_files_only=self._local_files_only)
                model: Any = AutoModelForCausalLM.from_pretrained(
                    self._source, local_files_only=self._local_files_only, **{_DTYPE_KW: dtype}
                )
                model.to(device)
                model.eval()
            except ModelLoadError as e:
                self._load_error = str(e)
                raise
            except (OSError, ValueError, RuntimeError, ImportError, KeyError, TypeError) as e:
                self._load_error = f"cannot load the LLM from {self._where}: {_describe(e)}; {_HINT}"
                raise ModelLoadError(self._load_error) from e
            if not getattr(tokenizer, "chat_template", None):
                self._load_error = (
                    f"the model from {self._where} has no chat template, so it is not a chat model; "
                    "use an instruction-tuned model (e.g. Qwen2.5-1.5B-Instruct)"
                )
                raise ModelLoadError(self._load_error)
            self._tokenizer, self._model, self._torch_device = tokenizer, model, device
            logger.info(
                "llm.loaded backend=transformers model=%s device=%s seconds=%.1f",
                self.model_id,
                device,
                time.monotonic() - started,
            )

    def _generation_config(self, max_new_tokens: int, temperature: float) -> Any:
        config = self._model.generation_config.__class__.from_dict(self._model.generation_config.to_dict())
        config.max_new_tokens = max_new_tokens
        config.max_length = None
        if temperature > 0:
            config.do_sample = True
            config.temperature = temperature
        else:
            # Greedy: neutral values for the checkpoint's sampling defaults (Qwen ships temperature 0.7,
            # top_p 0.8, top_k 20). ``None`` would not do: generate() fills it back from the checkpoint,
            # then warns that sampling flags are set without sampling.
            config.do_sample = False
            config.temperature = 1.0
            config.top_p = 1.0
            config.top_k = 50
        if config.eos_token_id is None:
            config.eos_token_id = self._tokenizer.eos_token_id
        if config.pad_token_id is None:
            pad = self._tokenizer.pad_token_id
            config.pad_token_id = pad if pad is not None else self._tokenizer.eos_token_id
        return config

    def generate(
        self,
        messages: list[Message],
        *,
        max_new_tokens: int,
        temperature: float,
        timeout_s: float,
    ) -> str:
        self.load()
        started = time.monotonic()
        deadline = started + timeout_s
        if not self._generate_lock.acquire(timeout=max(timeout_s, 0.0)):
            raise LLMTimeout(f"{self.name}: another generation held the model for the whole {timeout_s:g} s")
        try:
            return self._generate_locked(messages, max_new_tokens, temperature, timeout_s, started, deadline)
        finally:
            self._generate_lock.release()

    def _generate_locked(
        self,
        messages: list[Message],
        max_new_tokens: int,
        temperature: float,
        timeout_s: float,
        started: float,
        deadline: float,
    ) -> str:
        tokenizer, model = self._tokenizer, self._model
        criterion = _Deadline(deadline)
        try:
            with torch.inference_mode():
                prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
                inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(self._torch_device)
                output = model.generate(
                    **inputs,
                    generation_config=self._generation_config(max_new_tokens, temperature),
                    stopping_criteria=StoppingCriteriaList([criterion]),
                )
        except (RuntimeError, ValueError, IndexError) as e:
            # Out of memory, a prompt longer than the model takes, a broken chat template...
            raise LLMError(f"{self.name}: generation failed: {_describe(e)}") from e
        prompt_tokens = int(inputs["input_ids"].shape[1])
        new_ids = output[0, prompt_tokens:]
        eos = model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos]) | {tokenizer.eos_token_id}
        if len(new_ids) and int(new_ids[-1]) in eos_ids:
            stopped: Literal["eos", "length", "deadline"] = "eos"
        elif len(new_ids) >= max_new_tokens:
            stopped = "length"
        else:
            stopped = "deadline" if criterion.fired else "eos"
        seconds = time.monotonic() - started
        self.last_stats = GenerationStats(prompt_tokens, len(new_ids), seconds, stopped)
        logger.debug(
            "llm.generated backend=transformers prompt_tokens=%d new_tokens=%d seconds=%.2f stopped=%s",
            prompt_tokens,
            len(new_ids),
            seconds,
            stopped,
        )
        if stopped == "deadline":
            raise LLMTimeout(f"{self.name}: no complete answer within {timeout_s:g} s ({len(new_ids)} tokens)")
        return str(tokenizer.decode(new_ids, skip_special_tokens=True)).strip()
