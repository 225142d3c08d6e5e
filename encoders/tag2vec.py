"""tag2vec: fastText skipgram over tag sequences; an article is the sum of its top-3 tag vectors.

Sentences are (1) each article's tags, strongest first, and (2) each user's click history as the
top tags of the clicked articles in click order, so tags that the same readers click together
land near each other even when no single article carries both. fastText's character n-grams
give a vector to tags first seen after training (a new article's fresh entity), which is what
the fast path for new articles relies on.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Self

import fasttext
import numpy as np

from encoders.base import NothingToLearn, NotFitted, SkipsUnreadable, TrainingCorpus
from recall.domain import ArticleRecord, tag_token
from recall.index import normalise

TOP_TAGS = 3


def top_tags(article: ArticleRecord, k: int = TOP_TAGS) -> list[str]:
    ranked = sorted(article.tags, key=lambda tw: -float(tw[1]))
    return [tag_token(t) for t, _ in ranked[:k] if t and t.strip()]


# fastText initialises its input matrix in 10 blocks, one per training thread, and never the
# blocks beyond its thread count (DenseMatrix::uniform): with 2 threads 80% of the rows (the
# subword buckets; words get start vectors below) keep whatever memory held: NaN, 1e38. Ten
# threads fill every block; on small corpora the extra threads cost nothing measurable.
INIT_THREADS = 10


class FastTextSequenceEncoder(SkipsUnreadable):
    """A fastText skipgram trained on token sentences; shared by tag2vec, item2vec, media2vec."""

    name = "fasttext"
    model_file = "model.bin"
    requires_fit = True
    # fastText's subsampling threshold ("t"): tokens more frequent than this share of the corpus
    # are randomly dropped. 1e-4 (its default) is made for large text corpora. Each subclass sets
    # its default here; the ``sample`` argument overrides it.
    sample = 1e-4

    def __init__(self, dim: int = 64, epochs: int = 10, window: int = 5, min_count: int = 1,
                 threads: int = 2, seed: int = 7, buckets: int = 100_000, subwords: bool = True,
                 sample: float | None = None):
        self.dim_ = dim
        self.sample = type(self).sample if sample is None else sample
        self.epochs = epochs
        self.window = window
        self.min_count = min_count
        self.threads = threads
        self.seed = seed
        self.buckets = buckets
        self.subwords = subwords
        self.version = "untrained"
        self.model_ = None

    @property
    def dim(self) -> int:
        return self.dim_

    def params(self) -> dict:
        # ``threads`` is left out. fastText's lock-free (hogwild) updates make two trainings on
        # more than one thread differ whatever the count, so keying the model on it would buy
        # no reproducibility, only a retraining whenever the machine changes; and fit runs
        # max(threads, INIT_THREADS) threads, so a count up to 10 does not even change that.
        return {"dim": self.dim_, "epochs": self.epochs, "window": self.window,
                "min_count": self.min_count, "buckets": self.buckets, "subwords": self.subwords,
                "sample": self.sample, "seed": self.seed}

    def sentences(self, corpus: TrainingCorpus) -> Iterable[list[str]]:
        raise NotImplementedError

    def fit(self, corpus: TrainingCorpus) -> Self:
        digest = hashlib.sha256(json.dumps(self.params(), sort_keys=True).encode())
        counts: Counter[str] = Counter()
        with tempfile.TemporaryDirectory() as tmp:
            sentences_path, init_path = Path(tmp) / "sentences.txt", Path(tmp) / "init.vec"
            with sentences_path.open("w", encoding="utf-8") as fh:
                for sentence in self.sentences(corpus):
                    if sentence:
                        line = " ".join(sentence)
                        fh.write(line + "\n")
                        digest.update(line.encode())
                        counts.update(sentence)
            if not counts:
                raise NothingToLearn(f"{self.name}: no training sentences in the corpus")
            # fastText adds every word of this file to its vocabulary, so only those it would keep.
            words = ["</s>", *sorted(w for w, c in counts.items() if c >= self.min_count)]
            # fastText's init blocks are floor(rows * dim / 10) values long: the remainder at the
            # end is never initialised unless rows * dim divides by 10. Never-seen padding words
            # make it so.
            buckets = self.buckets if self.subwords else 0
            while ((len(words) + buckets) * self.dim_) % 10:
                words.append(f"</pad{len(words)}>")
            self._write_initial_vectors(init_path, words)
            self.model_ = fasttext.train_unsupervised(
                str(sentences_path), model="skipgram", dim=self.dim_, epoch=self.epochs, ws=self.window,
                minCount=self.min_count, t=self.sample, thread=max(self.threads, INIT_THREADS),
                bucket=self.buckets if self.subwords else 0,
                minn=3 if self.subwords else 0, maxn=6 if self.subwords else 0,
                pretrainedVectors=str(init_path), verbose=0,
            )
        self.version = digest.hexdigest()[:16]
        return self

    def _write_initial_vectors(self, path: Path, words: list[str]) -> None:
        """Seeded starting vectors for every word, handed to fastText as "pretrained" ones.

        fastText 0.9.x fills only ``threads``/10 of its input matrix at random and leaves the rest
        as whatever memory held, which is NaN or 1e25 on small vocabularies
        (facebookresearch/fastText#1061); its Python API also takes no seed. Giving every word
        its start vector fixes both (the subword buckets: see ``INIT_THREADS``).
        """
        rng = np.random.default_rng(self.seed)
        vectors = rng.uniform(-1.0 / self.dim_, 1.0 / self.dim_, size=(len(words), self.dim_))
        with path.open("w", encoding="utf-8") as fh:
            fh.write(f"{len(words)} {self.dim_}\n")
            for word, vector in zip(words, vectors):
                fh.write(word + " " + " ".join(f"{x:.6g}" for x in vector) + "\n")

    def token_vectors(self, tokens: Sequence[str]) -> np.ndarray:
        """Raw fastText vectors of tokens, shape (len(tokens), dim)."""
        self._require_model()
        if not tokens:
            return np.zeros((0, self.dim_), np.float32)
        return np.stack([self.model_.get_word_vector(t) for t in tokens]).astype(np.float32)

    def _require_model(self):
        if self.model_ is None:
            raise NotFitted(self.name)
        return self.model_

    def knows(self, token: str) -> bool:
        return self.model_ is not None and self.model_.get_word_id(token) >= 0

    def save(self, directory: Path) -> None:
        model = self._require_model()
        directory.mkdir(parents=True, exist_ok=True)
        model.save_model(str(directory / self.model_file))
        (directory / "params.json").write_text(json.dumps(
            {**self.params(), "threads": self.threads, "version": self.version}))

    @classmethod
    def load(cls, directory: Path) -> Self:
        params = json.loads((directory / "params.json").read_text())
        version = params.pop("version")
        encoder = cls(**params)
        encoder.model_ = fasttext.load_model(str(directory / cls.model_file))
        encoder.version = version
        return encoder


class Tag2VecEncoder(FastTextSequenceEncoder):
    name = "tag2vec"
    # A tag vocabulary is small and every tag is "frequent" by the default threshold, which then
    # drops most tokens, widens every window across topics and collapses all vectors onto one
    # direction (cross-topic cosine ~1.0 on the synthetic world and on MIND). 1e-2 only thins
    # the truly common tokens.
    sample = 1e-2

    def sentences(self, corpus: TrainingCorpus) -> Iterable[list[str]]:
        for article in corpus.articles.values():
            tags = self._readable(lambda a: top_tags(a, k=len(a.tags)), article, [])
            if len(tags) > 1:
                yield tags
        top = {aid: self._readable(top_tags, a, []) for aid, a in corpus.articles.items() if a.tags}
        for clicks in corpus.click_sequences.values():
            yield [t for aid in clicks for t in top.get(aid, ())]

    def encode(self, articles: Sequence[ArticleRecord]) -> np.ndarray:
        self._require_model()  # even for a batch without tags, which needs no vector
        out = np.zeros((len(articles), self.dim_), np.float32)
        for row, article in enumerate(articles):
            tags = self._readable(top_tags, article, [])
            if tags:  # equal-weight sum of the top-3 tags
                out[row] = self.token_vectors(tags).sum(axis=0)
        return normalise(out)
