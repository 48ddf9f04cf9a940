"""Build the tiny random Qwen2 chat model used by the tests, to try the transformers path offline.

    python scripts/build_tiny_qwen.py var/tiny-qwen            # build it
    python scripts/build_tiny_qwen.py var/tiny-qwen --measure  # build, load, time a few generations

Then set ``llm.backend: transformers`` and ``llm.model: var/tiny-qwen``. Its answers are noise (the
weights are random): the answer checks reject them and the extractive answer is shown, which is what
this model is for. The builder itself lives in ``tests/rag/llm/tiny_qwen.py``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from rag.llm.transformers_backend import TransformersLLM  # noqa: E402
from tests.rag.llm.tiny_qwen import build_tiny_qwen  # noqa: E402

_MESSAGES = [
    {"role": "system", "content": "Ты помощник службы технической поддержки."},
    {"role": "user", "content": "Не работает VPN из дома, соединение обрывается. Что делать?"},
]


def measure(path: Path, tokens: int, runs: int, device: str) -> None:
    started = time.monotonic()
    llm = TransformersLLM(str(path), device=device)
    llm.load()
    print(f"load: {time.monotonic() - started:.2f} s")
    llm.generate(_MESSAGES, max_new_tokens=4, temperature=0.0, timeout_s=60)  # warm-up
    for run in range(1, runs + 1):
        started = time.monotonic()
        llm.generate(_MESSAGES, max_new_tokens=tokens, temperature=0.0, timeout_s=600)
        seconds = time.monotonic() - started
        stats = llm.last_stats
        assert stats is not None
        print(
            f"run {run}: prompt {stats.prompt_tokens} tokens, {stats.new_tokens} new tokens "
            f"in {seconds:.3f} s = {stats.new_tokens / seconds:.0f} tokens/s"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="folder to write the model and tokenizer into")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--allow-eos",
        action="store_true",
        help="let the model emit its end token (by default it never does, so generations run to the limit)",
    )
    parser.add_argument("--measure", action="store_true", help="load the model and time greedy generations")
    parser.add_argument("--tokens", type=int, default=128, help="new tokens per measured generation")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    started = time.monotonic()
    path = build_tiny_qwen(args.out, seed=args.seed, silent_eos=not args.allow_eos)
    print(f"built {path} in {time.monotonic() - started:.2f} s")
    if args.measure:
        measure(path, args.tokens, args.runs, args.device)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
