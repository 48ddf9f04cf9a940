"""Lexical signals: BM25 with Snowball stemming (Russian and English) and character n-gram TF-IDF.

BM25 (bm25s + PyStemmer) rewards shared words; the character n-grams forgive the typos and word
forms users type ("пороль", "востановить"). Both leave out the stop words. Both are persisted beside the
vector store as plain arrays (no pickles), and rebuilt from the entries whenever the knowledge base changes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import bm25s
import numpy as np
import scipy.sparse as sp
import Stemmer
from sklearn.feature_extraction.text import HashingVectorizer

_WORD = re.compile(r"\w+", re.UNICODE)
_CYR = re.compile(r"[а-я]")
# Words that carry no meaning in a support request (greetings, politeness, fillers).
STOPWORDS = frozenset(
    """и в во не что он на я с со как а то все она так его но да ты к у же вы за бы по только ее мне было
    вот от меня еще нет о из ему теперь когда даже ну вдруг ли если уже или ни быть был него до вас нибудь
    опять уж вам ведь там потом себя ничего ей может они тут где есть надо ней для мы тебя их чем была сам
    чтоб без будто чего раз тоже себе под будет ж тогда кто этот того потому этого какой совсем ним здесь
    этом один почти мой тем чтобы нее сейчас были куда зачем всех никогда можно при наконец два об другой
    хоть после над больше тот через эти нас про всего них какая много разве три эту моя впрочем хорошо свою
    этой перед иногда лучше чуть том нельзя такой им более всегда конечно всю между здравствуйте добрый день
    пожалуйста спасибо привет уважением подскажите
    thanks thank hello hi please""".split()
    # Snowball's English stop list (the Russian one above is Snowball's too), less the particles that make IT
    # phrasal verbs ("log out", "shut down", "turned off", "set up"), plus the pieces \w+ leaves of contractions.
    + """i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she her hers
    herself it its itself they them their theirs themselves what which who whom this that these those am is are
    was were be been being have has had having do does did doing would should could ought cannot can a an the
    and but if or because as until while of at by for with about against between into through during before
    after above below to from in on over under again further then once here there when where why how all any
    both each few more most other some such no nor not only own same so than too very s t d ll m re ve don
    doesn didn isn aren wasn weren hasn haven hadn won wouldn shouldn couldn""".split()
)


@lru_cache(maxsize=1)
def _stemmers() -> tuple[Stemmer.Stemmer, Stemmer.Stemmer]:
    return Stemmer.Stemmer("russian"), Stemmer.Stemmer("english")


def stem(word: str) -> str:
    """The Snowball stem of one lower-case word (Russian for Cyrillic, English otherwise)."""
    ru, en = _stemmers()
    if not _CYR.search(word):
        return en.stemWord(word)
    s = ru.stemWord(word)
    # Snowball keeps the "а"/"я" before a verb ending ("подключается" → "подключа", "работает" → "работа") but
    # not the "и" ("подключиться" → "подключ"), so the two aspects of a verb, or a verb and its noun ("работа" →
    # "работ"), never met: a request that says «не могу подключиться» missed the entry «не подключается».
    return s[:-1] if len(s) >= 5 and s[-1] in "ая" else s


def _content(text: str) -> list[str]:
    """The text's words without stop words, lower case, "ё" as "е"."""
    return [w for w in _WORD.findall(text.casefold().replace("ё", "е")) if w not in STOPWORDS]


def tokenize(text: str) -> list[str]:
    """Lower-case word stems without stop words: Russian Snowball for Cyrillic, English for Latin."""
    return [stem(word) for word in _content(text)]


_CHAR = HashingVectorizer(
    analyzer="char_wb",
    ngram_range=(3, 5),
    n_features=2**20,
    alternate_sign=False,
    norm=None,
    lowercase=True,
)


def _char_counts(texts: Sequence[str]) -> sp.csr_matrix:
    # Without stop words: "Where is the nearest pharmacy?" shared "where" with "Where can I see my payslip", the one
    # n-gram match among near-zero scores, and that stood out enough to answer it (0.59).
    m = _CHAR.transform([" ".join(_content(t)) for t in texts]).tocsr().astype(np.float32)
    m.data = 1.0 + np.log(m.data)  # sublinear tf
    return m


def _l2_rows(m: sp.csr_matrix) -> sp.csr_matrix:
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    return sp.diags(1.0 / norms).dot(m).tocsr()


class LexicalIndex:
    """BM25 and char n-gram TF-IDF over the documents (one per KB entry, in a fixed order)."""

    def __init__(self, bm25: bm25s.BM25, char_docs: sp.csr_matrix, char_idf: np.ndarray, n_docs: int):
        self._bm25 = bm25
        self._char_docs = char_docs
        self._char_idf = char_idf
        self.n_docs = n_docs

    @classmethod
    def build(cls, docs: Sequence[str]) -> LexicalIndex:
        tokens = [tokenize(d) or ["\u2205"] for d in docs]
        bm25 = bm25s.BM25(k1=1.2, b=0.75)
        bm25.index(tokens, show_progress=False)
        counts = _char_counts(docs)
        df = np.bincount(counts.indices, minlength=counts.shape[1]).astype(np.float32)
        idf = (np.log((1.0 + len(docs)) / (1.0 + df)) + 1.0).astype(np.float32)
        docs_m = _l2_rows(counts.multiply(idf[np.newaxis, :]).tocsr())
        return cls(bm25, docs_m, idf, len(docs))

    def bm25_top(self, query: str, n: int) -> list[tuple[int, float]]:
        """Best ``n`` documents by BM25 as (position, score); only positive scores."""
        vocab = self._bm25.vocab_dict
        q = [t for t in tokenize(query) if t in vocab]
        if not q or self.n_docs == 0:
            return []
        scores = self._bm25.get_scores(q)
        return _top(scores, n)

    def char_top(self, query: str, n: int) -> list[tuple[int, float]]:
        """Best ``n`` documents by char n-gram TF-IDF cosine as (position, score)."""
        if self.n_docs == 0:
            return []
        q = _l2_rows(_char_counts([query]).multiply(self._char_idf[np.newaxis, :]).tocsr())
        scores = np.asarray((self._char_docs @ q.T).todense()).ravel()
        return _top(scores, n)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self._bm25.save(str(directory / "bm25"))
        sp.save_npz(directory / "char_docs.npz", self._char_docs)
        np.save(directory / "char_idf.npy", self._char_idf)
        (directory / "meta.json").write_text(json.dumps({"n_docs": self.n_docs, "version": 1}))

    @classmethod
    def load(cls, directory: Path) -> LexicalIndex:
        meta = json.loads((directory / "meta.json").read_text())
        bm25 = bm25s.BM25.load(str(directory / "bm25"))
        char_docs = sp.load_npz(directory / "char_docs.npz").tocsr()
        char_idf = np.load(directory / "char_idf.npy", allow_pickle=False)
        return cls(bm25, char_docs, char_idf, int(meta["n_docs"]))


def _top(scores: np.ndarray, n: int) -> list[tuple[int, float]]:
    n = min(n, len(scores))
    idx = np.argpartition(-scores, n - 1)[:n] if n < len(scores) else np.arange(len(scores))
    idx = idx[np.argsort(-scores[idx], kind="stable")]
    return [(int(i), float(scores[i])) for i in idx if scores[i] > 0]
