"""title2vec: a small bidirectional LSTM over title tokens, trained on our own data.

The network embeds tokens (``encoders.text``), runs a BiLSTM, mean-pools its states over the
title's tokens and projects to ``dim``; vectors are L2-normalised. It learns from two signals:

* clicks (primary): two titled articles one user clicked within ``pair_window`` clicks of each
  other are a positive pair. Loss: symmetric InfoNCE with the batch's other titles as negatives
  (copies of the same article are not counted as negatives).
* categories (auxiliary, weight ``category_weight``): each title should be nearer its own
  category's prototype than the others'. Each click step adds a random batch of titles for it,
  so titles never clicked next to another titled article learn too. When the corpus has fewer
  than ``min_pairs`` click pairs (Toutiao: no users at all) this is the only objective.

The category loss is a cosine classifier (learned prototypes on the unit sphere, same
temperature as InfoNCE) rather than a linear head, so it shapes the very space that ``encode``
returns and the recall index searches; the prototypes are dropped after ``fit``. Titles are
packed, not padded, through the LSTM: padding would leak into the backward direction and make an
article's vector depend on the batch it was encoded in.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from encoders.base import NothingToLearn, NotFitted, SkipsUnreadable, TrainingCorpus
from encoders.text import PAD_ID, UNK_ID, Vocabulary, tokenize
from encoders.threads import torch_threads
from encoders.warm import load_warm, shared_rows
from recall.domain import ArticleRecord

ENCODE_BATCH = 256
NO_LABEL = -100  # cross_entropy's ignore_index


class TitleNet(nn.Module):
    def __init__(self, vocab_size: int, embed_dim: int, hidden: int, dim: int):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD_ID)
        self.lstm = nn.LSTM(embed_dim, hidden, batch_first=True, bidirectional=True)
        self.project = nn.Linear(2 * hidden, dim)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(batch, max_len) right-padded ids and their lengths (all > 0) -> (batch, dim) unit rows."""
        packed = pack_padded_sequence(self.embed(ids), lengths, batch_first=True, enforce_sorted=False)
        states, _ = pad_packed_sequence(self.lstm(packed)[0], batch_first=True)  # zeros past each end
        pooled = states.sum(dim=1) / lengths.unsqueeze(1).to(states.dtype)
        return F.normalize(self.project(pooled), dim=1)


def pad(sequences: Sequence[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(s) for s in sequences])
    ids = torch.full((len(sequences), int(lengths.max())), PAD_ID, dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(seq)
    return ids, lengths


def info_nce(anchors: torch.Tensor, positives: torch.Tensor, anchor_ids: torch.Tensor,
             positive_ids: torch.Tensor, temperature: float) -> torch.Tensor:
    """Each anchor must pick its own positive among the batch's positives.

    Another pair's positive that is the same article as this pair's positive or anchor is no
    negative (it would push an article away from itself), so it is masked out.
    """
    logits = anchors @ positives.T / temperature
    same_article = ((positive_ids[None, :] == positive_ids[:, None])
                    | (positive_ids[None, :] == anchor_ids[:, None]))
    same_article.fill_diagonal_(False)
    logits = logits.masked_fill(same_article, float("-inf"))
    return F.cross_entropy(logits, torch.arange(len(anchors)))


def has_words(ids: list[int]) -> bool:
    """A title made only of unknown words says nothing: its article gets a zero row."""
    return any(i != UNK_ID for i in ids)


@dataclass
class TitleTrainingSet:
    titles: list[list[int]]  # token ids of each usable title
    labels: np.ndarray  # category index per title, NO_LABEL when it has none
    categories: list[str]
    pairs: np.ndarray  # (n, 2) indices into titles of co-clicked articles, each pair once

    @classmethod
    def from_corpus(cls, corpus: TrainingCorpus, tokens_of: dict[str, list[str]], vocab: Vocabulary,
                    max_tokens: int, pair_window: int) -> Self:
        titles, article_ids, categories_of = [], [], []
        for aid in sorted(tokens_of):
            ids = vocab.ids(tokens_of[aid], max_tokens)
            if has_words(ids):
                titles.append(ids)
                article_ids.append(aid)
                categories_of.append(corpus.articles[aid].category)
        categories = sorted({c for c in categories_of if c})
        label_of = {c: i for i, c in enumerate(categories)}
        labels = np.array([label_of.get(c, NO_LABEL) for c in categories_of], dtype=np.int64)

        index_of = {aid: i for i, aid in enumerate(article_ids)}
        pairs: set[tuple[int, int]] = set()
        for clicks in corpus.click_sequences.values():
            indices = [index_of.get(aid) for aid in clicks]
            for pos, a in enumerate(indices):
                for b in indices[pos + 1: pos + 1 + pair_window]:
                    if a is not None and b is not None and a != b:
                        pairs.add((min(a, b), max(a, b)))
        pair_array = np.array(sorted(pairs), dtype=np.int64).reshape(-1, 2)
        return cls(titles, labels, categories, pair_array)


class TitleLSTMEncoder(SkipsUnreadable):
    """``threads`` defaults to 1: a small LSTM's per-step products gain little from a second
    thread, and when other processes hold the cores, OpenMP threads waiting for each other made
    encoding 60 times slower in our measurements."""

    name = "title2vec"
    requires_fit = True

    def __init__(self, dim: int = 64, embed_dim: int = 64, hidden: int = 64, max_tokens: int = 30,
                 min_count: int = 2, max_vocab: int = 50_000, pair_window: int = 3,
                 min_pairs: int = 256, category_weight: float = 0.5, temperature: float = 0.1,
                 epochs: int = 5, batch_size: int = 128, lr: float = 1e-2, threads: int = 1,
                 seed: int = 7):
        self.dim_ = dim
        self.embed_dim = embed_dim
        self.hidden = hidden
        self.max_tokens = max_tokens
        self.min_count = min_count
        self.max_vocab = max_vocab
        self.pair_window = pair_window
        self.min_pairs = min_pairs
        self.category_weight = category_weight
        self.temperature = temperature
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.threads = threads
        self.seed = seed
        self.version = "untrained"
        self.objective_: str | None = None
        self.vocab_: Vocabulary | None = None
        self.model_: TitleNet | None = None

    @property
    def dim(self) -> int:
        return self.dim_

    def params(self) -> dict:
        # Not ``threads``: torch's thread count changes only the order of float sums (results
        # in their last bits), and keying the model on it would retrain when the machine changes.
        return {"dim": self.dim_, "embed_dim": self.embed_dim, "hidden": self.hidden,
                "max_tokens": self.max_tokens, "min_count": self.min_count,
                "max_vocab": self.max_vocab, "pair_window": self.pair_window,
                "min_pairs": self.min_pairs, "category_weight": self.category_weight,
                "temperature": self.temperature, "epochs": self.epochs,
                "batch_size": self.batch_size, "lr": self.lr, "seed": self.seed}

    def _new_model(self, vocab_size: int) -> TitleNet:
        return TitleNet(vocab_size, self.embed_dim, self.hidden, self.dim_)

    def fit(self, corpus: TrainingCorpus) -> Self:
        return self._fit(corpus, None, self.epochs)

    def warm_fit(self, corpus: TrainingCorpus, previous: Self, epochs: int) -> Self:
        """``fit`` from ``previous``'s token rows, LSTM and projection (``encoders/warm.py``);
        the category prototypes, which ``fit`` drops, start at the categories' mean title
        vectors under those weights."""
        return self._fit(corpus, previous, epochs)

    def _fit(self, corpus: TrainingCorpus, previous: Self | None, epochs: int) -> Self:
        tokens_of = {aid: self._readable(lambda a: tokenize(a.title), a, [])
                     for aid, a in corpus.articles.items() if a.title}
        vocab = Vocabulary.build(tokens_of.values(), self.min_count, self.max_vocab)
        data = TitleTrainingSet.from_corpus(corpus, tokens_of, vocab, self.max_tokens, self.pair_window)
        use_clicks = len(data.pairs) >= self.min_pairs
        use_categories = len(data.categories) > 1 and (self.category_weight > 0 or not use_clicks)
        if not (use_clicks or use_categories):
            raise NothingToLearn(f"{self.name}: {len(data.pairs)} click pairs (needs {self.min_pairs}) "
                             f"and {len(data.categories)} categories: nothing to learn from")
        with torch_threads(self.threads):
            torch.manual_seed(self.seed)
            model = self._new_model(len(vocab))
            prototypes = (nn.Parameter(torch.randn(len(data.categories), self.dim_))
                          if use_categories else None)
            if previous is not None:
                load_warm(model, previous.model_, {"embed.weight": shared_rows(vocab.id_of, previous.vocab_.id_of)})
                if prototypes is not None:
                    self._category_means(model, data, prototypes)
            self._train(model, prototypes, data, use_clicks, epochs)
        self.objective_ = "+".join(["clicks"] * use_clicks + ["category"] * use_categories)
        self.vocab_, self.model_, self.training_metrics_ = vocab, model.eval(), {"epochs": epochs}
        digest = hashlib.sha256(json.dumps(
            [self.params(), vocab.words, data.titles, data.labels.tolist(), data.pairs.tolist()]).encode())
        if previous is not None:  # a warm start's weights depend on the model it started from
            digest.update(previous.version.encode())
        self.version = digest.hexdigest()[:16]
        return self

    def _category_means(self, model: TitleNet, data: TitleTrainingSet, prototypes: nn.Parameter) -> None:
        """Point each category's prototype at the sum of its titles' vectors (the loss
        normalises it; every category is some title's)."""
        labelled = np.flatnonzero(data.labels != NO_LABEL)
        with torch.no_grad():
            prototypes.zero_()
            for start in range(0, len(labelled), ENCODE_BATCH):
                chunk = labelled[start: start + ENCODE_BATCH]
                prototypes.index_add_(0, torch.from_numpy(data.labels[chunk]),
                                      model(*pad([data.titles[t] for t in chunk])))

    def _train(self, model: TitleNet, prototypes: nn.Parameter | None, data: TitleTrainingSet,
               use_clicks: bool, epochs: int) -> None:
        parameters = list(model.parameters()) + ([prototypes] if prototypes is not None else [])
        optimiser = torch.optim.Adam(parameters, lr=self.lr)
        category_weight = self.category_weight if use_clicks else 1.0
        rng = np.random.default_rng(self.seed)
        model.train()
        for _ in range(epochs):
            for pairs, titles in self._batches(data, use_clicks, prototypes is not None, rng):
                members = np.unique(np.concatenate([pairs.ravel(), titles]))  # sorted, for searchsorted
                vectors = model(*pad([data.titles[m] for m in members]))
                loss = torch.zeros(())
                if len(pairs):
                    loss = loss + self._pair_loss(vectors, members, pairs)
                if len(titles):
                    rows = torch.from_numpy(np.searchsorted(members, titles))
                    loss = loss + category_weight * self._category_loss(
                        vectors[rows], data.labels[titles], prototypes)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()

    def _batches(self, data: TitleTrainingSet, use_clicks: bool, use_categories: bool,
                 rng: np.random.Generator) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """One epoch of (pairs, titles for the category loss) batches.

        With clicks an epoch is a pass over the pairs, and each step adds a random batch of
        titles for the category loss, so that titles never clicked next to another titled
        article still learn from their category; without clicks it is a pass over the titles.
        """
        no_pairs, no_titles = np.empty((0, 2), np.int64), np.empty(0, np.int64)
        if not use_clicks:
            order = rng.permutation(len(data.titles))
            for start in range(0, len(order), self.batch_size):
                yield no_pairs, order[start: start + self.batch_size]
            return
        order = rng.permutation(len(data.pairs))
        for start in range(0, len(order), self.batch_size):
            titles = (rng.choice(len(data.titles), size=min(self.batch_size, len(data.titles)), replace=False)
                      if use_categories else no_titles)
            yield data.pairs[order[start: start + self.batch_size]], titles

    def _pair_loss(self, vectors: torch.Tensor, members: np.ndarray, pairs: np.ndarray) -> torch.Tensor:
        left = torch.from_numpy(np.searchsorted(members, pairs[:, 0]))
        right = torch.from_numpy(np.searchsorted(members, pairs[:, 1]))
        ids = torch.from_numpy(members)
        return 0.5 * (info_nce(vectors[left], vectors[right], ids[left], ids[right], self.temperature)
                      + info_nce(vectors[right], vectors[left], ids[right], ids[left], self.temperature))

    def _category_loss(self, vectors: torch.Tensor, labels: np.ndarray,
                       prototypes: nn.Parameter) -> torch.Tensor:
        if not (labels != NO_LABEL).any():
            return torch.zeros(())
        logits = vectors @ F.normalize(prototypes, dim=1).T / self.temperature
        return F.cross_entropy(logits, torch.from_numpy(labels), ignore_index=NO_LABEL)

    def encode(self, articles: Sequence[ArticleRecord]) -> np.ndarray:
        if self.model_ is None or self.vocab_ is None:
            raise NotFitted(self.name)
        out = np.zeros((len(articles), self.dim_), np.float32)
        ids = [self._readable(lambda a: self.vocab_.ids(tokenize(a.title), self.max_tokens), a, [])
               for a in articles]
        rows = [r for r, seq in enumerate(ids) if has_words(seq)]
        with torch_threads(self.threads), torch.inference_mode():
            for start in range(0, len(rows), ENCODE_BATCH):
                chunk = rows[start: start + ENCODE_BATCH]
                out[chunk] = self.model_(*pad([ids[r] for r in chunk])).numpy()
        return out

    def save(self, directory: Path) -> None:
        if self.model_ is None or self.vocab_ is None:
            raise NotFitted(self.name)
        directory.mkdir(parents=True, exist_ok=True)
        torch.save(self.model_.state_dict(), directory / "model.pt")
        (directory / "vocab.json").write_text(json.dumps(self.vocab_.to_json()))
        (directory / "params.json").write_text(json.dumps(
            {**self.params(), "threads": self.threads, "version": self.version, "objective": self.objective_}))

    @classmethod
    def load(cls, directory: Path) -> Self:
        params = json.loads((directory / "params.json").read_text())
        version, objective = params.pop("version"), params.pop("objective")
        encoder = cls(**params)
        encoder.vocab_ = Vocabulary.from_json(json.loads((directory / "vocab.json").read_text()))
        model = encoder._new_model(len(encoder.vocab_))
        model.load_state_dict(torch.load(directory / "model.pt", weights_only=True))
        encoder.model_, encoder.version, encoder.objective_ = model.eval(), version, objective
        return encoder
