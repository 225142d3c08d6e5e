"""The one interface every encoder follows, in the manner of scikit-learn's estimators.

``__init__`` stores hyper-parameters only; ``fit`` learns and returns ``self`` (learned state ends
in ``_``); ``encode`` turns a batch of articles into an ``(n, dim)`` float32 array of
L2-normalised rows. A row the encoder cannot fill (no tags, no text, a broken image, an article
too rarely clicked) is all zeros: indexes skip such rows and routes never see them. So is an
article the encoder cannot even read (a malformed row already in SQL: entities that are not
objects, a tag that is not text...): ``skipped`` counts those (``SkipsUnreadable``), and one bad
article never fails the batch it came in, the fast path, catch-up or the nightly build.

``params()`` returns the hyper-parameters: the one place they are listed, read by ``save`` (and
so ``load``), by the trained encoders' version digests and by the nightly job's reuse key
(``jobs/artefacts.training_key``). ``tests/encoders/test_common.py`` checks all of this for every
encoder in ``encoders/registry.py``.

Warm start, optional: an encoder that can continue a previous model has
``warm_fit(corpus, previous, epochs)``, which is ``fit`` on the grown corpus starting from
``previous``'s weights (a fitted encoder of the same class and ``params()``) and trained for
``epochs`` epochs instead of its own ``epochs`` (``training_metrics_["epochs"]``: how many a fit ran).
What both models know (a word, a tag, an article, a side value) starts where ``previous`` left
it; what is new starts as a cold fit would start it. The nightly job warm-starts an encoder that
has the method when yesterday's model had the same parameters (``settings.warm_epochs``,
``settings.cold_every_days``): the fastText family (``encoders/tag2vec.py``) and the torch
encoders of the training step (title2vec, dssm, eges: ``encoders/warm.py``) have it; the click
LSTM, trained with the user vectors (``jobs/users.py``), does not.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, Self, TypeVar, runtime_checkable

import numpy as np

from recall.domain import ArticleRecord

log = logging.getLogger(__name__)
T = TypeVar("T")

# What reading a malformed article's fields raises; a model or a missing fit raises something else.
UNREADABLE = (TypeError, ValueError, AttributeError, KeyError, IndexError, UnicodeError, OverflowError)


class SkipsUnreadable:
    """Skip and count the articles an encoder cannot read instead of failing their batch.

    A row already in SQL may hold what validation refuses today (an entity that is not an object,
    a ``wikidata_id`` that is a list, a tag that is not text); reading it raises. The encoder
    reads each article's fields through ``_readable``: such an article gets ``default`` (so a
    zero row, as for an article with nothing to read), ``skipped`` counts it (over the encoder's
    life, like img2vec's ``failures_``) and the log names it. Only reading an article is guarded:
    a model that fails still raises.
    """

    name: str
    skipped: int = 0

    def _readable(self, read: Callable[[ArticleRecord], T], article: ArticleRecord, default: T) -> T:
        try:
            return read(article)
        except UNREADABLE as error:
            self.skipped += 1
            log.warning("%s skips article %r, which it cannot read: %s: %s",
                        self.name, getattr(article, "id", None), type(error).__name__, error)
            return default


class NothingToLearn(ValueError):
    """The corpus holds nothing this encoder can train on (no tags, no clicks, no media...)."""


class NotFitted(RuntimeError):
    """A trainable encoder was asked to encode (or save) before ``fit`` or ``load``."""

    def __init__(self, encoder: str):
        self.encoder = encoder
        super().__init__(f"{encoder} is not fitted: call fit(...) or load(directory) first")

    def __reduce__(self):
        return type(self), (self.encoder,)


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
    # False for pretrained or given models (doc2vec, img2vec, entity2vec): ``encode`` works at
    # once, reading the model on first use, and ``fit`` only loads it. True: ``encode`` before
    # ``fit`` or ``load`` raises ``NotFitted``.
    requires_fit: bool

    @property
    def dim(self) -> int: ...

    def params(self) -> dict:
        """The hyper-parameters, as the keyword arguments of ``__init__`` that give them.

        Everything that changes the trained model or its vectors (dimensions, epochs, seeds,
        model paths, length limits, backend...) and nothing else. Runtime knobs are left out:
        thread counts and inference batch sizes change torch's and ONNX's results only in their
        last bits (float summation order), and fastText's lock-free ("hogwild") training differs
        from run to run on any number of threads; keying models on them would only retrain
        when the machine changes. ``save`` stores them beside the parameters, so a loaded
        encoder runs as configured. Values are JSON scalars; ``type(self)(**self.params())``
        builds an unfitted encoder with the same hyper-parameters. The nightly job reuses the
        previous build's model only when these and the corpus are unchanged.
        """
        ...

    def fit(self, corpus: TrainingCorpus) -> Self: ...

    def encode(self, articles: Sequence[ArticleRecord]) -> np.ndarray: ...

    def save(self, directory: Path) -> None: ...

    @classmethod
    def load(cls, directory: Path) -> Self: ...
