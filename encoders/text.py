"""Tokens for titles in English and Chinese, and the vocabulary that turns them into ids.

Text is lower-cased; runs of CJK characters are segmented into words by jieba, everything else
is split on anything that is not a letter or a digit ("COVID-19" -> "covid", "19"). Ids: 0 is
padding and 1 stands for any word outside the vocabulary.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Self

import jieba

jieba.setLogLevel(logging.WARNING)  # it prints dictionary-loading chatter at INFO

_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
# A run of CJK characters, or a run of letters and digits that are not CJK.
_RUNS = re.compile(rf"([{_CJK}]+)|[^\W_{_CJK}]+")

_HAS_CJK = re.compile(f"[{_CJK}]")

PAD, UNK = "<pad>", "<unk>"
PAD_ID, UNK_ID = 0, 1


# From this share of CJK texts up a corpus counts as Chinese (or mixed) for the encoders that
# choose by language (doc2vec's model, tag2vec's character n-grams): a tenth is mixed enough.
CJK_SHARE = 0.1


def cjk_share(texts: Iterable[str | None]) -> float:
    """The share of the non-empty texts that hold at least one CJK character."""
    written = [t for t in texts if t and t.strip()]
    return sum(bool(_HAS_CJK.search(t)) for t in written) / len(written) if written else 0.0


def tokenize(text: str | None) -> list[str]:
    tokens: list[str] = []
    for match in _RUNS.finditer((text or "").lower()):
        if match.group(1):
            tokens.extend(jieba.lcut(match.group(1)))
        else:
            tokens.append(match.group(0))
    return tokens


class Vocabulary:
    """Words by id; ``PAD`` is id 0 and ``UNK`` id 1."""

    def __init__(self, words: Sequence[str]):
        self.words = [PAD, UNK, *(w for w in words if w not in (PAD, UNK))]
        self.id_of = {word: i for i, word in enumerate(self.words)}

    @classmethod
    def build(cls, token_lists: Iterable[list[str]], min_count: int = 2, max_size: int = 50_000) -> Self:
        """The ``max_size`` most frequent words seen at least ``min_count`` times (ties by word)."""
        counts = Counter(token for tokens in token_lists for token in tokens)
        ranked = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
        return cls(ranked[:max_size])

    def __len__(self) -> int:
        return len(self.words)

    def ids(self, tokens: Sequence[str], max_tokens: int) -> list[int]:
        """The first ``max_tokens`` tokens as ids, ``UNK_ID`` for words outside the vocabulary."""
        return [self.id_of.get(token, UNK_ID) for token in tokens[:max_tokens]]

    def to_json(self) -> list[str]:
        return self.words

    @classmethod
    def from_json(cls, words: list[str]) -> Self:
        return cls(words)
