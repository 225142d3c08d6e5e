"""The one interface every encoder follows, in the manner of scikit-learn's estimators.

``__init__`` stores hyper-parameters only; ``fit`` learns and returns ``self`` (learned state ends
in ``_``); ``encode`` turns a batch of articles into an ``(n, dim)`` float32 array of
L2-normalised rows. A row the encoder cannot fill (no tags, no text, a broken image, an article
too rarely clicked) is all zeros: indexes skip such rows and routes never see them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, Self, runtime_checkable

import numpy as np

from recall.domain import ArticleRecord


class NothingToLearn(ValueError):
    """The corpus holds nothing this encoder can train on (no tags, no clicks, no media...)."""


@dataclass(slots=True)
class TrainingCorpus:
    """What the nightly job hands every trainable encoder.

    ``click_sequences`` maps a user to the article ids they clicked, oldest first, and
    ``click_times`` to the unix times of those clicks; ``articles`` maps an id to its record
    (id-only articles included, with empty text).
    """

    articles: dict[str, ArticleRecord] = field(default_factory=dict)
    click_sequences: dict[str, list[str]] = field(default_factory=dict)
    click_times: dict[str, list[float]] = field(default_factory=dict)


@runtime_checkable
class Encoder(Protocol):
    name: str
    version: str  # changes when training data, hyper-parameters or code change the vectors

    @property
    def dim(self) -> int: ...

    def fit(self, corpus: TrainingCorpus) -> Self: ...

    def encode(self, articles: Sequence[ArticleRecord]) -> np.ndarray: ...

    def save(self, directory: Path) -> None: ...

    @classmethod
    def load(cls, directory: Path) -> Self: ...
