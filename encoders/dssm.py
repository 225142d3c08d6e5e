"""dssm: a two-tower model of users and articles trained on clicks (in-batch sampled softmax).

Both towers read the same content features, whose embeddings they share: an article's top
``TOP_TAGS`` tags, its category, subcategory and media, one learned vector per value ("t:nba",
"c:sports", ...), mean-pooled per field. Values seen in fewer than ``min_count`` clicked articles
are not learned and are ignored, so an article is encoded from what it has, never from its id:
a never-clicked article is placed from day one, and one with no known feature gets a zero row.

* item tower: the per-field means (4 x ``embed_dim``), plus an optional frozen text vector
  (e.g. doc2vec's), through a two-layer MLP to ``dim``, L2-normalised.
* user tower: the same per-field means taken over the user's last ``history`` clicked articles
  (the long-term profile: feature counts over the history, normalised per field) and again over
  the last ``recent`` ones (what they read just now), plus the mean text vector of the history.
  Pooling the feature embeddings, rather than item-tower outputs, keeps the towers independent
  and makes a profile cost one embedding lookup per feature.

Training: for every user and every click t >= 1, the articles clicked before t are the user's
state and click t the positive; the other positives of the batch are the negatives (copies of the
same article are masked out), softmax at ``temperature``.

Text vectors, when used, are a mapping article id -> vector given to ``fit``, ``encode`` and
``encode_users`` (the same kind of vectors each time); articles missing from it get zeros there.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Self

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from encoders.base import NothingToLearn, NotFitted, SkipsUnreadable, TrainingCorpus
from encoders.tag2vec import top_tags
from encoders.threads import torch_threads
from encoders.warm import load_warm, shared_rows
from recall.domain import ArticleRecord

TOP_TAGS = 5
SLOTS = TOP_TAGS + 3  # tags, then category, subcategory and media: one id each, 0 when absent
FIELD_SLOTS = (slice(0, TOP_TAGS), slice(TOP_TAGS, TOP_TAGS + 1),
               slice(TOP_TAGS + 1, TOP_TAGS + 2), slice(TOP_TAGS + 2, SLOTS))
ENCODE_BATCH = 1024
USER_BATCH = 128  # the click matrices are users x distinct articles, dense
TextVectors = Mapping[str, np.ndarray]


def feature_slots(article: ArticleRecord) -> list[str | None]:
    tags = [f"t:{tag}" for tag in top_tags(article, TOP_TAGS)]
    singles = [("c", article.category), ("s", article.subcategory), ("m", article.media_id)]
    return (tags + [None] * (TOP_TAGS - len(tags))
            + [f"{field}:{'_'.join(value.lower().split())}" if value and value.strip() else None
               for field, value in singles])


class TwoTowerNet(nn.Module):
    def __init__(self, vocab_size: int, embed_dim: int, text_dim: int, hidden: int, dim: int):
        super().__init__()
        pooled = len(FIELD_SLOTS) * embed_dim
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.item_mlp = nn.Sequential(nn.Linear(pooled + text_dim, hidden), nn.ReLU(),
                                      nn.Linear(hidden, dim))
        self.user_mlp = nn.Sequential(nn.Linear(2 * pooled + text_dim, hidden), nn.ReLU(),
                                      nn.Linear(hidden, dim))

    def field_sums(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(n, SLOTS) ids -> per-field embedding sums (n, fields, embed_dim) and counts (n, fields)."""
        vectors, present = self.embed(ids), (ids != 0).float()
        sums = torch.stack([vectors[:, s].sum(1) for s in FIELD_SLOTS], dim=1)
        counts = torch.stack([present[:, s].sum(1) for s in FIELD_SLOTS], dim=1)
        return sums, counts

    @staticmethod
    def _tower(mlp: nn.Module, parts: list[torch.Tensor], has_input: torch.Tensor) -> torch.Tensor:
        # A row with nothing to read is zero, not the MLP's bias direction.
        return F.normalize(mlp(torch.cat(parts, dim=1)), dim=1) * has_input.unsqueeze(1)

    def items(self, ids: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """(n, SLOTS) ids and (n, text_dim) text -> (n, dim)."""
        sums, counts = self.field_sums(ids)
        means = sums / counts.clamp(min=1).unsqueeze(-1)
        has_input = (counts.sum(1) > 0) | (text.abs().sum(1) > 0)
        return self._tower(self.item_mlp, [means.flatten(1), text], has_input)

    def users(self, ids: torch.Tensor, text: torch.Tensor, clicks: torch.Tensor,
              recent_clicks: torch.Tensor) -> torch.Tensor:
        """(b, dim) users from the (m, SLOTS) ids and (m, text_dim) text of the articles in their
        histories, and (b, m) matrices of how often each user clicked each of them, in all and
        among the last ``recent`` clicks. Pooling is a matrix product: one lookup per article."""
        sums, counts = self.field_sums(ids)
        fields, embed_dim = sums.shape[1:]

        def profile(weights: torch.Tensor) -> torch.Tensor:  # feature counts normalised per field
            total = (weights @ sums.flatten(1)).view(-1, fields, embed_dim)
            return (total / (weights @ counts).clamp(min=1).unsqueeze(-1)).flatten(1)

        has_text = (text.abs().sum(1) > 0).float()
        mean_text = (clicks @ text) / (clicks @ has_text).clamp(min=1).unsqueeze(1)
        has_input = (clicks @ counts.sum(1) > 0) | (clicks @ has_text > 0)
        parts = [profile(clicks), profile(recent_clicks), mean_text]
        return self._tower(self.user_mlp, parts, has_input)


def click_matrices(histories: np.ndarray, members: int,
                   recent: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(b, history) member indices, most recent last -> (b, members) click counts, all and recent."""
    def counts(columns: np.ndarray) -> torch.Tensor:
        matrix = np.zeros((len(histories), members), np.float32)
        np.add.at(matrix, (np.arange(len(histories))[:, None], columns), 1.0)
        return torch.from_numpy(matrix)

    return counts(histories), counts(histories[:, -recent:])


class DSSMEncoder(SkipsUnreadable):
    name = "dssm"
    requires_fit = True

    def __init__(self, dim: int = 64, embed_dim: int = 32, hidden: int = 128, history: int = 50,
                 recent: int = 5, min_count: int = 2, temperature: float = 0.07, epochs: int = 5,
                 batch_size: int = 256, lr: float = 3e-3, threads: int = 2, seed: int = 7):
        self.dim_ = dim
        self.embed_dim = embed_dim
        self.hidden = hidden
        self.history = history
        self.recent = recent
        self.min_count = min_count
        self.temperature = temperature
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.threads = threads
        self.seed = seed
        self.version = "untrained"
        self.vocab_: dict[str, int] | None = None
        self.text_dim_ = 0
        self.model_: TwoTowerNet | None = None

    @property
    def dim(self) -> int:
        return self.dim_

    def params(self) -> dict:
        # Not ``threads``: torch's thread count changes only the order of float sums (results
        # in their last bits), and keying the model on it would retrain when the machine changes.
        return {"dim": self.dim_, "embed_dim": self.embed_dim, "hidden": self.hidden,
                "history": self.history, "recent": self.recent, "min_count": self.min_count,
                "temperature": self.temperature, "epochs": self.epochs, "batch_size": self.batch_size,
                "lr": self.lr, "seed": self.seed}

    def _new_model(self) -> TwoTowerNet:
        return TwoTowerNet(len(self.vocab_) + 1, self.embed_dim, self.text_dim_, self.hidden, self.dim_)

    def _ids(self, articles: Sequence[ArticleRecord]) -> np.ndarray:
        ids = np.zeros((len(articles), SLOTS), np.int64)
        for row, article in enumerate(articles):
            slots = self._readable(feature_slots, article, [None] * SLOTS)
            ids[row] = [self.vocab_.get(token, 0) if token else 0 for token in slots]
        return ids

    def _text(self, articles: Sequence[ArticleRecord], text_vectors: TextVectors | None) -> np.ndarray:
        text = np.zeros((len(articles), self.text_dim_), np.float32)
        for row, article in enumerate(articles):
            if self.text_dim_ and text_vectors is not None and article.id in text_vectors:
                text[row] = text_vectors[article.id]
        return text

    def fit(self, corpus: TrainingCorpus, text_vectors: TextVectors | None = None) -> Self:
        return self._fit(corpus, text_vectors, None, self.epochs)

    def warm_fit(self, corpus: TrainingCorpus, previous: Self, epochs: int,
                 text_vectors: TextVectors | None = None) -> Self:
        """``fit`` from ``previous``'s towers and feature rows (``encoders/warm.py``); both read
        text vectors of one width, or none."""
        return self._fit(corpus, text_vectors, previous, epochs)

    def _fit(self, corpus: TrainingCorpus, text_vectors: TextVectors | None, previous: Self | None,
             epochs: int) -> Self:
        clicked = sorted({aid for clicks in corpus.click_sequences.values() for aid in clicks
                          if aid in corpus.articles})
        counts = Counter(t for aid in clicked
                         for t in set(self._readable(feature_slots, corpus.articles[aid], [])) if t)
        kept = sorted(t for t, c in counts.items() if c >= self.min_count)
        self.vocab_ = {token: i for i, token in enumerate(kept, start=1)}
        self.text_dim_ = len(next(iter(text_vectors.values()))) if text_vectors else 0

        # Row 0 of the item table is "no article": the left padding of short histories.
        articles = [ArticleRecord(id="")] + [corpus.articles[aid] for aid in clicked]
        ids, text = self._ids(articles), self._text(articles, text_vectors)
        usable = (ids.any(axis=1) | text.any(axis=1))
        row_of = {a.id: row for row, a in enumerate(articles) if row and usable[row]}
        sequences = [[row_of[aid] for aid in corpus.click_sequences[user] if aid in row_of]
                     for user in sorted(corpus.click_sequences)]
        histories, positives = self._samples(sequences)
        if not len(positives):
            raise NothingToLearn(f"{self.name}: no user has two clicked articles with known features")

        with torch_threads(self.threads):
            torch.manual_seed(self.seed)
            model = self._new_model()
            if previous is not None:
                load_warm(model, previous._require_model(), {"embed.weight": shared_rows(self.vocab_, previous.vocab_)})
            self._train(model, torch.from_numpy(ids), torch.from_numpy(text), histories, positives, epochs)
        self.model_, self.training_metrics_ = model.eval(), {"epochs": epochs}
        clicks = [[articles[row].id for row in seq] for seq in sequences]
        digest = hashlib.sha256(json.dumps([self.params(), kept, clicks]).encode())
        digest.update(ids.tobytes() + text.tobytes())  # what the articles read
        if previous is not None:  # a warm start's weights depend on the model it started from
            digest.update(previous.version.encode())
        self.version = digest.hexdigest()[:16]
        return self

    def _samples(self, sequences: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        """For each click t >= 1: the ``history`` rows before it (left-padded with 0) and row t."""
        histories, positives = [np.zeros((0, self.history), np.int64)], [np.zeros(0, np.int64)]
        for seq in sequences:
            padded = np.concatenate([np.zeros(self.history, np.int64), seq])
            histories.append(np.lib.stride_tricks.sliding_window_view(padded, self.history)[1:len(seq)])
            positives.append(np.asarray(seq[1:], np.int64))
        return np.concatenate(histories), np.concatenate(positives)

    def _train(self, model: TwoTowerNet, ids: torch.Tensor, text: torch.Tensor,
               histories: np.ndarray, positives: np.ndarray, epochs: int) -> None:
        optimiser = torch.optim.Adam(model.parameters(), lr=self.lr)
        rng = np.random.default_rng(self.seed)
        model.train()
        for _ in range(epochs):
            order = rng.permutation(len(positives))
            for start in range(0, len(order), self.batch_size):
                batch = order[start: start + self.batch_size]
                members, local = np.unique(histories[batch], return_inverse=True)
                clicks, recent = click_matrices(local.reshape(len(batch), -1), len(members), self.recent)
                users = model.users(ids[members], text[members], clicks, recent)
                pos = torch.from_numpy(positives[batch])
                items = model.items(ids[pos], text[pos])
                logits = users @ items.T / self.temperature
                same_item = pos[None, :] == pos[:, None]
                same_item.fill_diagonal_(False)  # another copy of my positive is no negative
                loss = F.cross_entropy(logits.masked_fill(same_item, float("-inf")), torch.arange(len(pos)))
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()

    def _require_model(self) -> TwoTowerNet:
        if self.model_ is None:
            raise NotFitted(self.name)
        return self.model_

    def encode(self, articles: Sequence[ArticleRecord],
               text_vectors: TextVectors | None = None) -> np.ndarray:
        """The item tower; reads only content features, so it needs no click on the article."""
        model = self._require_model()
        out = np.zeros((len(articles), self.dim_), np.float32)
        with torch_threads(self.threads), torch.inference_mode():
            for start in range(0, len(articles), ENCODE_BATCH):
                chunk = articles[start: start + ENCODE_BATCH]
                ids, text = self._ids(chunk), self._text(chunk, text_vectors)
                out[start: start + len(chunk)] = model.items(torch.from_numpy(ids), torch.from_numpy(text)).numpy()
        return out

    def encode_users(self, histories: Sequence[Sequence[ArticleRecord]],
                     text_vectors: TextVectors | None = None) -> np.ndarray:
        """The user tower over each user's clicked articles, most recent last; empty -> zero row."""
        model = self._require_model()
        out = np.zeros((len(histories), self.dim_), np.float32)
        with torch_threads(self.threads), torch.inference_mode():
            for start in range(0, len(histories), USER_BATCH):
                chunk = histories[start: start + USER_BATCH]
                articles = [ArticleRecord(id="")]  # member 0 is "no article": the left padding
                member_of: dict[str, int] = {}
                columns = np.zeros((len(chunk), self.history), np.int64)
                for row, history in enumerate(chunk):
                    last = list(history)[-self.history:]
                    for column, article in enumerate(last, start=self.history - len(last)):
                        if article.id not in member_of:
                            member_of[article.id] = len(articles)
                            articles.append(article)
                        columns[row, column] = member_of[article.id]
                clicks, recent = click_matrices(columns, len(articles), self.recent)
                ids, text = self._ids(articles), self._text(articles, text_vectors)
                users = model.users(torch.from_numpy(ids), torch.from_numpy(text), clicks, recent)
                out[start: start + len(chunk)] = users.numpy()
        return out

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        torch.save(self._require_model().state_dict(), directory / "model.pt")
        (directory / "vocab.json").write_text(json.dumps(sorted(self.vocab_, key=self.vocab_.get)))
        (directory / "params.json").write_text(json.dumps(
            {**self.params(), "threads": self.threads, "version": self.version, "text_dim": self.text_dim_}))

    @classmethod
    def load(cls, directory: Path) -> Self:
        params = json.loads((directory / "params.json").read_text())
        version, text_dim = params.pop("version"), params.pop("text_dim")
        encoder = cls(**params)
        words = json.loads((directory / "vocab.json").read_text())
        encoder.vocab_ = {token: i for i, token in enumerate(words, start=1)}
        encoder.text_dim_, encoder.version = text_dim, version
        model = encoder._new_model()
        model.load_state_dict(torch.load(directory / "model.pt", weights_only=True))
        encoder.model_ = model.eval()
        return encoder
