"""tag2vec: fastText skipgram over tag sequences; an article is the (weighted) sum of its tag vectors.

Sentences are (1) each article's tags, strongest first, optionally followed by its title's words
(``title_words``), and (2) each user's click history as the top tags of the clicked articles in
click order, so tags that the same readers click together land near each other even when no
single article carries both. fastText's character n-grams give a vector to tags first seen after
training (a new article's fresh entity), which is what the fast path for new articles relies on.

An article's vector sums its first ``top`` tags (0: all of them), each weighted by
``weighting``: "equal", or "idf" (log of tagged articles over the articles carrying the tag,
learned at fit: a tag every article carries says nothing and weighs 0, a tag never seen weighs
most). The seed design was ``top=3, weighting="equal"`` and 10 epochs. Measured with
``bench/purity.py`` (Toutiao purity@10, tune subset) and category purity@10 on mind-sample:
30 epochs lift both (Toutiao 0.27 -> 0.36, MIND 0.87 -> 0.90), all tags instead of three
Toutiao (0.36 -> 0.39, four in five of its tags occur once) at a small cost on MIND (0.90 ->
0.89); IDF adds 0.01 on Toutiao and takes 0.07 on MIND (where the frequent subcategory tag
is the best signal), title words add 0.03 on Toutiao but lift cross-topic cosines towards the
floor. Character n-grams of one to three characters for Chinese tags (``char_ngrams``) lift
Toutiao again (0.39 -> 0.46), and the title's words (segmented by jieba) in the sentences once
more (0.46 -> 0.48). Hence the defaults: all tags, equal weights, 30 epochs, and by the tags'
language (``"auto"``, settled at fit) the n-gram lengths and the title words: on for Chinese,
off otherwise (on the English synthetic world they lift cross-topic cosines from 0.38 to 0.59,
next to the 0.6 floor).
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Self

import fasttext
import numpy as np

from encoders.base import NothingToLearn, NotFitted, SkipsUnreadable, TrainingCorpus
from encoders.text import CJK_SHARE, cjk_share, tokenize
from recall.domain import ArticleRecord, tag_token
from recall.index import normalise

TOP_TAGS = 3  # the tags of an article that stand for it in a reader's click sentence


def top_tags(article: ArticleRecord, k: int = TOP_TAGS) -> list[str]:
    return [tag_token(t) for t, _ in article.ranked_tags[:k] if t and t.strip()]


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
    # Epochs are for small corpora (Toutiao's 9k headlines want 30); a large one gets as many
    # as keep epochs x tokens within ``max_tokens``, never fewer than FEWEST_EPOCHS (fastText's
    # default). MIND-large's tag sentences (7.5M tokens) take 5 epochs, not 30: 30 ran past
    # half an hour on two cores, for vectors that 5 passes over that much text already settle.
    FEWEST_EPOCHS = 5

    def __init__(self, dim: int = 64, epochs: int = 10, window: int = 5, min_count: int = 1,
                 threads: int = 2, seed: int = 7, buckets: int = 100_000, subwords: bool = True,
                 sample: float | None = None, max_tokens: int = 40_000_000):
        self.dim_ = dim
        self.max_tokens = max_tokens
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
                "sample": self.sample, "seed": self.seed, "max_tokens": self.max_tokens}

    def epochs_for(self, tokens: int) -> int:
        """The epochs a corpus of ``tokens`` tokens is trained for (``max_tokens``, above)."""
        return min(self.epochs, max(self.FEWEST_EPOCHS, self.max_tokens // max(tokens, 1)))

    def sentences(self, corpus: TrainingCorpus) -> Iterable[list[str]]:
        raise NotImplementedError

    def fit(self, corpus: TrainingCorpus) -> Self:
        return self._fit(corpus, previous=None, epochs=None)

    def warm_fit(self, corpus: TrainingCorpus, previous: Self, epochs: int) -> Self:
        """``fit`` from ``previous``'s word vectors, for ``epochs`` epochs (``_start_vectors``)."""
        self._settle_like(previous)
        return self._fit(corpus, previous=previous, epochs=epochs)

    def _settle_like(self, previous: Self) -> None:
        """Take what ``previous`` settled at fit from the corpus ("auto" choices), so both
        models cut words into the same subwords."""

    def _fit(self, corpus: TrainingCorpus, previous: Self | None, epochs: int | None) -> Self:
        counts: Counter[str] = Counter()
        with tempfile.TemporaryDirectory() as tmp:
            sentences_path, init_path = Path(tmp) / "sentences.txt", Path(tmp) / "init.vec"
            with sentences_path.open("w", encoding="utf-8") as fh:
                for sentence in self.sentences(corpus):
                    if sentence:
                        line = " ".join(sentence)
                        fh.write(line + "\n")
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
            self._write_initial_vectors(init_path, words, previous)
            minn, maxn = self._subword_lengths(list(counts))
            tokens = counts.total()
            epochs = self.epochs_for(tokens) if epochs is None else epochs
            self.training_metrics_ = {**getattr(self, "training_metrics_", {}), "tokens": tokens, "epochs": epochs}
            self.model_ = fasttext.train_unsupervised(
                str(sentences_path), model="skipgram", dim=self.dim_, epoch=epochs, ws=self.window,
                minCount=self.min_count, t=self.sample, thread=max(self.threads, INIT_THREADS),
                bucket=self.buckets if self.subwords else 0,
                minn=minn if self.subwords else 0, maxn=maxn if self.subwords else 0,
                pretrainedVectors=str(init_path), verbose=0,
            )
        self._learn_more(corpus)
        self.version = self._weights_digest()
        return self

    def _subword_lengths(self, words: list[str]) -> tuple[int, int]:
        """The shortest and longest character n-grams fastText adds to a word (its defaults)."""
        return 3, 6

    def _learn_more(self, corpus: TrainingCorpus) -> None:
        """What a subclass learns beside the fastText model (kept by ``_extra_state``)."""

    def _weights_digest(self) -> str:
        """The version: a digest of the trained weights (and of what a subclass learned beside
        them), not of the sentences. fastText's lock-free training differs from run to run, so
        a retraining on the same sentences gives other vectors: it must give another version,
        or the embedding cache, keyed by version, would mix two models' vectors."""
        model = self._require_model()
        digest = hashlib.sha256(json.dumps(self.params(), sort_keys=True).encode())
        for matrix in (model.get_input_matrix(), model.get_output_matrix()):
            digest.update(np.ascontiguousarray(matrix, np.float32).tobytes())
        digest.update(json.dumps(self._extra_state(), sort_keys=True).encode())
        return digest.hexdigest()[:16]

    def _extra_state(self) -> dict:
        return {}

    def _write_initial_vectors(self, path: Path, words: list[str], previous: Self | None) -> None:
        """Seeded starting vectors for every word, handed to fastText as "pretrained" ones.

        fastText 0.9.x fills only ``threads``/10 of its input matrix at random and leaves the rest
        as whatever memory held, which is NaN or 1e25 on small vocabularies
        (facebookresearch/fastText#1061); its Python API also takes no seed. Giving every word
        its start vector fixes both (the subword buckets: see ``INIT_THREADS``). A warm start
        gives a word ``previous`` knew its vector there (``_start_vectors``).
        """
        rng = np.random.default_rng(self.seed)
        vectors = rng.uniform(-1.0 / self.dim_, 1.0 / self.dim_, size=(len(words), self.dim_))
        if previous is not None:
            self._start_vectors(previous, words, vectors)
        with path.open("w", encoding="utf-8") as fh:
            fh.write(f"{len(words)} {self.dim_}\n")
            for word, vector in zip(words, vectors):
                fh.write(word + " " + " ".join(f"{x:.6g}" for x in vector) + "\n")

    def _start_vectors(self, previous: Self, words: list[str], vectors: np.ndarray) -> None:
        """Overwrite the rows of ``vectors`` (one per word) of the words ``previous`` knew.

        A .vec file carries word rows only: fastText starts the subword buckets at random
        again. So a known word starts from its whole previous vector (word row and subwords
        together, ``get_word_vector``), times the rows fastText averages into it (its own and
        its n-grams'): that average then starts at the previous vector, plus the new buckets'
        noise shrunk by the same factor. On mind-sample (``bench/warm.py``, tag2vec, one warm
        epoch) unchanged articles keep a mean cosine of 0.99 to yesterday's vectors this way,
        0.61 with the previous vector unscaled and 0.38 with its word row alone. The cost: the
        buckets had one epoch, so what they alone give a tag never seen (the fast path's) agrees
        less with a known word's vector (mean cosine 0.79, against 1.0 cold) until the next cold
        training (``settings.cold_every_days``).
        """
        model = previous._require_model()
        for row, word in enumerate(words):
            if model.get_word_id(word) >= 0:
                vectors[row] = model.get_word_vector(word) * len(model.get_subwords(word)[1])

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
        (directory / "state.json").write_text(json.dumps(self._extra_state()))

    @classmethod
    def load(cls, directory: Path) -> Self:
        params = json.loads((directory / "params.json").read_text())
        version = params.pop("version")
        encoder = cls(**params)
        encoder.model_ = fasttext.load_model(str(directory / cls.model_file))
        state = directory / "state.json"  # absent from models saved before it existed (item2vec's)
        encoder._restore(json.loads(state.read_text()) if state.exists() else {})
        encoder.version = version
        return encoder

    def _restore(self, state: dict) -> None:
        """Take back what ``_extra_state`` saved."""


class Tag2VecEncoder(FastTextSequenceEncoder):
    name = "tag2vec"
    # A tag vocabulary is small and every tag is "frequent" by the default threshold, which then
    # drops most tokens, widens every window across topics and collapses all vectors onto one
    # direction (cross-topic cosine ~1.0 on the synthetic world and on MIND). 1e-2 only thins
    # the truly common tokens.
    sample = 1e-2
    WEIGHTINGS = ("equal", "idf")
    # Character n-gram lengths: "3-6" is fastText's default, made for alphabetic words; a Chinese
    # tag is two to six characters, each a morpheme, so "1-3" lets tags that share characters
    # (股份, 基金...) share subword vectors. "auto" picks "1-3" when a tenth of the vocabulary
    # or more holds CJK characters (Toutiao tune subset: purity@10 0.39 -> 0.46).
    CHAR_NGRAMS = {"3-6": (3, 6), "1-3": (1, 3)}

    def __init__(self, dim: int = 64, epochs: int = 30, *, top: int = 0, weighting: str = "equal",
                 title_words: bool | str = "auto", char_ngrams: str = "auto", **fasttext_params):
        super().__init__(dim=dim, epochs=epochs, **fasttext_params)
        if weighting not in self.WEIGHTINGS:
            raise ValueError(f"tag2vec weighting must be one of {self.WEIGHTINGS}, got {weighting!r}")
        if title_words not in (True, False, "auto"):
            raise ValueError(f"tag2vec title_words must be true, false or auto, got {title_words!r}")
        if char_ngrams != "auto" and char_ngrams not in self.CHAR_NGRAMS:
            raise ValueError(f"tag2vec char_ngrams must be auto or one of {sorted(self.CHAR_NGRAMS)}, "
                             f"got {char_ngrams!r}")
        self.top = top
        self.weighting = weighting
        self.title_words = title_words
        self.char_ngrams = char_ngrams
        self.document_frequency_: dict[str, int] = {}
        self.tagged_articles_ = 0

    def params(self) -> dict:
        return {**super().params(), "top": self.top, "weighting": self.weighting,
                "title_words": self.title_words, "char_ngrams": self.char_ngrams}

    def _settle_like(self, previous: Self) -> None:
        self.char_ngrams, self.title_words = previous.char_ngrams, previous.title_words

    def _subword_lengths(self, words: list[str]) -> tuple[int, int]:
        if self.char_ngrams == "auto":
            self.char_ngrams = "1-3" if cjk_share(words) >= CJK_SHARE else "3-6"
        return self.CHAR_NGRAMS[self.char_ngrams]

    def _tags(self, article: ArticleRecord) -> list[str]:
        return top_tags(article, k=self.top or len(article.tags))

    def sentences(self, corpus: TrainingCorpus) -> Iterable[list[str]]:
        every_tag = {aid: self._readable(lambda a: top_tags(a, k=len(a.tags)), a, [])
                     for aid, a in corpus.articles.items()}
        if self.title_words == "auto":  # settled by the tags' language, as char_ngrams
            self.title_words = cjk_share(t for tags in every_tag.values() for t in tags) >= CJK_SHARE
        for aid, article in corpus.articles.items():
            tags = list(every_tag[aid])
            if tags and self.title_words:
                # The title's words tie a headline's rare tags to the common words around them.
                tags += self._readable(lambda a: tokenize(a.title), article, [])
            if len(tags) > 1:
                yield tags
        top = {aid: self._readable(top_tags, a, []) for aid, a in corpus.articles.items() if a.tags}
        for clicks in corpus.click_sequences.values():
            yield [t for aid in clicks for t in top.get(aid, ())]

    def _learn_more(self, corpus: TrainingCorpus) -> None:
        frequency: Counter[str] = Counter()
        tagged = 0
        for article in corpus.articles.values():
            tags = set(self._readable(lambda a: top_tags(a, k=len(a.tags)), article, []))
            tagged += bool(tags)
            frequency.update(tags)
        self.document_frequency_, self.tagged_articles_ = dict(frequency), tagged

    def _extra_state(self) -> dict:
        return {"document_frequency": self.document_frequency_, "tagged_articles": self.tagged_articles_}

    def _restore(self, state: dict) -> None:
        self.document_frequency_ = state["document_frequency"]
        self.tagged_articles_ = state["tagged_articles"]

    def tag_weights(self, tags: Sequence[str]) -> np.ndarray:
        """Each tag's weight in an article's sum: 1, or its IDF (a tag never seen counts as
        seen once: the rarest)."""
        if self.weighting == "equal":
            return np.ones(len(tags), np.float32)
        n = max(self.tagged_articles_, 1)
        return np.array([math.log(n / min(self.document_frequency_.get(t, 1), n)) for t in tags], np.float32)

    def encode(self, articles: Sequence[ArticleRecord]) -> np.ndarray:
        self._require_model()  # even for a batch without tags, which needs no vector
        out = np.zeros((len(articles), self.dim_), np.float32)
        for row, article in enumerate(articles):
            tags = self._readable(self._tags, article, [])
            if tags:
                out[row] = self.tag_weights(tags) @ self.token_vectors(tags)
        return normalise(out)
