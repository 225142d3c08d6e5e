"""eges: Enhanced Graph Embedding with Side information (Wang et al., Alibaba, KDD 2018).

Skipgram over the same walks as graph2vec (``encoders.graph``), where the centre article's
vector is an attention-weighted sum of five field vectors: its own id embedding and the
embeddings of its side information, the mean of its top tags, its category, subcategory and
media (``encoders.dssm.feature_slots``). Each article learns its own attention logits over the
five fields (``H_v = sum_j exp(a_vj) W_vj / sum_j exp(a_vj)``, absent fields left out); the
context side is an id-only output embedding, and each positive pair is trained against
``negatives`` articles drawn by walk frequency (a node's weighted degree, to the 3/4).

An article the graph does not hold (brand new, never clicked, or isolated) is encoded from its
side information alone, weighted by the mean attention the graph's articles learned over the
side fields: the paper's cold start, and what makes a just-posted article recallable by this
route through the fast path. An article with neither a node nor any known side value is a zero
row. Side values seen on fewer than ``min_count`` graph articles are not learned.

Training is capped at ``max_pairs`` skip-gram pairs over all epochs: a larger graph's epoch
takes a random share of its walks (at MIND-large scale about 37M pairs an epoch, 499 s on one
thread here; the synthetic small world and mind-sample stay under the cap).

All tables are sparse embeddings trained with SparseAdam on one torch thread by default: small
dimensions, and only the rows of a batch move.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Self

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from encoders.base import NotFitted, SkipsUnreadable, TrainingCorpus
from encoders.dssm import FIELD_SLOTS, SLOTS, feature_slots
from encoders.graph import GraphWalks
from encoders.threads import torch_threads
from encoders.warm import load_warm, shared_rows
from recall.domain import ArticleRecord

FIELDS = 1 + len(FIELD_SLOTS)  # the id, then tags, category, subcategory, media
PAIR_WALKS = 20_000  # walks turned into training pairs at a time


class EGESNet(nn.Module):
    def __init__(self, nodes: int, side_vocab: int, dim: int):
        super().__init__()
        self.ids = nn.Embedding(nodes, dim, sparse=True)
        self.side = nn.Embedding(side_vocab, dim, padding_idx=0, sparse=True)
        self.attention = nn.Embedding(nodes, FIELDS, sparse=True)
        self.context = nn.Embedding(nodes, dim, sparse=True)
        bound = 0.5 / dim
        for table in (self.ids, self.side):
            nn.init.uniform_(table.weight, -bound, bound)
        with torch.no_grad():
            self.side.weight[0].zero_()
        nn.init.zeros_(self.attention.weight)
        nn.init.zeros_(self.context.weight)

    def fields(self, nodes: torch.Tensor, side: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(n,) node rows (-1: none) and (n, SLOTS) side ids -> (n, FIELDS, dim) field vectors
        and their (n, FIELDS) presence."""
        known = nodes >= 0
        own = self.ids(nodes.clamp(min=0)) * known.unsqueeze(1)
        vectors, present = self.side(side), (side != 0).float()
        means = [vectors[:, s].sum(1) / present[:, s].sum(1).clamp(min=1).unsqueeze(1) for s in FIELD_SLOTS]
        presence = torch.stack([known.float(), *(present[:, s].amax(1) for s in FIELD_SLOTS)], dim=1)
        return torch.stack([own, *means], dim=1), presence

    def mean_attention(self) -> torch.Tensor:
        return self.attention.weight.mean(0)

    def articles(self, nodes: torch.Tensor, side: torch.Tensor) -> torch.Tensor:
        """The attention-weighted sum of each article's present fields; zero when none is."""
        vectors, presence = self.fields(nodes, side)
        logits = torch.where((nodes >= 0).unsqueeze(1), self.attention(nodes.clamp(min=0)),
                             self.mean_attention().detach().expand(len(nodes), FIELDS))
        weights = torch.softmax(logits.masked_fill(presence == 0, float("-inf")), dim=1)
        weights = torch.nan_to_num(weights) * presence  # a row with no field: all weights 0
        return (weights.unsqueeze(2) * vectors).sum(1)


def training_pairs(walks: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """(centre, context) node pairs within ``window`` steps, both directions."""
    centres, contexts = [], []
    for offset in range(1, min(window, walks.shape[1] - 1) + 1):
        left, right = walks[:, :-offset].ravel(), walks[:, offset:].ravel()
        centres += [left, right]
        contexts += [right, left]
    return np.concatenate(centres).astype(np.int64), np.concatenate(contexts).astype(np.int64)


class EGESEncoder(GraphWalks, SkipsUnreadable):
    name = "eges"
    requires_fit = True

    def __init__(self, dim: int = 32, epochs: int = 1, window: int = 3, negatives: int = 5,
                 batch_size: int = 4096, lr: float = 0.03, min_count: int = 2, threads: int = 1,
                 seed: int = 7, session_gap_seconds: float = 1800.0, half_life_days: float = 7.0,
                 walks_per_node: int = 5, walk_length: int = 10, p: float = 1.0, q: float = 1.0,
                 max_pairs: int = 10_000_000):
        self.dim_ = dim
        self.epochs = epochs
        self.window = window
        self.negatives = negatives
        self.batch_size = batch_size
        self.lr = lr
        self.min_count = min_count
        self.threads = threads
        self.seed = seed
        self.max_pairs = max_pairs
        self._walk_params(session_gap_seconds, half_life_days, walks_per_node, walk_length, p, q)
        self.version = "untrained"
        self.nodes_: dict[str, int] | None = None
        self.vocab_: dict[str, int] | None = None
        self.model_: EGESNet | None = None

    @property
    def dim(self) -> int:
        return self.dim_

    def params(self) -> dict:
        # Not ``threads``: it changes torch's float sums in their last bits only.
        return {"dim": self.dim_, "epochs": self.epochs, "window": self.window, "negatives": self.negatives,
                "batch_size": self.batch_size, "lr": self.lr, "min_count": self.min_count,
                "seed": self.seed, "max_pairs": self.max_pairs, **self.walk_params()}

    def _side_ids(self, articles: Sequence[ArticleRecord | None]) -> np.ndarray:
        ids = np.zeros((len(articles), SLOTS), np.int64)
        for row, article in enumerate(articles):
            if article is not None:
                slots = self._readable(feature_slots, article, [None] * SLOTS)
                ids[row] = [self.vocab_.get(token, 0) if token else 0 for token in slots]
        return ids

    def fit(self, corpus: TrainingCorpus) -> Self:
        return self._fit(corpus, None, self.epochs)

    def warm_fit(self, corpus: TrainingCorpus, previous: Self, epochs: int) -> Self:
        """``fit`` from ``previous``'s id, attention, context and side rows (``encoders/warm.py``)."""
        return self._fit(corpus, previous, epochs)

    def _fit(self, corpus: TrainingCorpus, previous: Self | None, epochs: int) -> Self:
        graph, walk_batches = self.graph_walks(corpus, self.seed)
        walks = list(walk_batches)
        records = [corpus.articles.get(aid) for aid in graph.nodes]
        counts = Counter(t for a in records if a is not None
                         for t in set(self._readable(feature_slots, a, [])) if t)
        self.vocab_ = {t: i for i, t in enumerate(sorted(t for t, c in counts.items() if c >= self.min_count), 1)}
        self.nodes_ = {aid: row for row, aid in enumerate(graph.nodes)}
        side = torch.from_numpy(self._side_ids(records))
        pairs = sum(len(training_pairs(batch[:1], self.window)[0]) * len(batch) for batch in walks)
        share = min(1.0, self.max_pairs / max(pairs * epochs, 1))
        self.training_metrics_.update(nodes_without_side_info=int((side == 0).all(1).sum()), epochs=epochs,
                                      walk_share=round(share, 4), pairs=int(pairs * epochs * share))

        strength = np.asarray(graph.adjacency.sum(axis=1)).ravel() ** 0.75
        with torch_threads(self.threads):
            torch.manual_seed(self.seed)
            model = EGESNet(len(graph.nodes), len(self.vocab_) + 1, self.dim_)
            if previous is not None:
                nodes = shared_rows(self.nodes_, previous.nodes_)
                load_warm(model, previous._require_model(), {
                    "ids.weight": nodes, "attention.weight": nodes, "context.weight": nodes,
                    "side.weight": shared_rows(self.vocab_, previous.vocab_)})
            self._train(model, side, walks, torch.from_numpy(strength / strength.sum()), epochs, share)
        self.model_ = model.eval()
        digest = hashlib.sha256(json.dumps([self.params(), graph.nodes, sorted(self.vocab_)]).encode())
        for tensor in model.state_dict().values():
            digest.update(tensor.numpy().tobytes())
        self.version = digest.hexdigest()[:16]
        return self

    def _train(self, model: EGESNet, side: torch.Tensor, walks: list[np.ndarray],
               negative_odds: torch.Tensor, epochs: int, share: float) -> None:
        """SparseAdam over the walks' pairs; each epoch over a random ``share`` of the walks."""
        optimiser = torch.optim.SparseAdam(list(model.parameters()), lr=self.lr)
        rng = np.random.default_rng(self.seed)
        generator = torch.Generator().manual_seed(self.seed)
        model.train()
        for _ in range(epochs):
            for batch in walks:
                if share < 1.0:
                    batch = batch[rng.random(len(batch)) < share]
                for first in range(0, len(batch), PAIR_WALKS):
                    centres, contexts = map(torch.from_numpy,
                                            training_pairs(batch[first:first + PAIR_WALKS], self.window))
                    order = torch.from_numpy(rng.permutation(len(centres)))
                    for start in range(0, len(order), self.batch_size):
                        chosen = order[start:start + self.batch_size]
                        centre, context = centres[chosen], contexts[chosen]
                        negative = torch.multinomial(negative_odds, len(chosen) * self.negatives, True,
                                                     generator=generator).view(len(chosen), self.negatives)
                        h = model.articles(centre, side[centre])
                        positive = (h * model.context(context)).sum(1)
                        negatives = torch.einsum("bd,bkd->bk", h, model.context(negative))
                        loss = -(F.logsigmoid(positive) + F.logsigmoid(-negatives).sum(1)).mean()
                        optimiser.zero_grad()
                        loss.backward()
                        optimiser.step()

    def _require_model(self) -> EGESNet:
        if self.model_ is None:
            raise NotFitted(self.name)
        return self.model_

    def encode(self, articles: Sequence[ArticleRecord]) -> np.ndarray:
        model = self._require_model()
        nodes = torch.tensor([self.nodes_.get(self._readable(lambda a: a.id, a, None), -1) for a in articles],
                             dtype=torch.int64)
        side = torch.from_numpy(self._side_ids(articles))
        with torch_threads(self.threads), torch.inference_mode():
            vectors = model.articles(nodes, side) if len(articles) else torch.zeros((0, self.dim_))
        return F.normalize(vectors, dim=1).numpy().astype(np.float32)

    def save(self, directory: Path) -> None:
        model = self._require_model()
        directory.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), directory / "model.pt")
        (directory / "vocab.json").write_text(json.dumps(
            {"nodes": sorted(self.nodes_, key=self.nodes_.get), "side": sorted(self.vocab_, key=self.vocab_.get)}))
        (directory / "params.json").write_text(json.dumps(
            {**self.params(), "threads": self.threads, "version": self.version}))

    @classmethod
    def load(cls, directory: Path) -> Self:
        params = json.loads((directory / "params.json").read_text())
        version = params.pop("version")
        encoder = cls(**params)
        vocab = json.loads((directory / "vocab.json").read_text())
        encoder.nodes_ = {aid: row for row, aid in enumerate(vocab["nodes"])}
        encoder.vocab_ = {token: i for i, token in enumerate(vocab["side"], start=1)}
        model = EGESNet(len(encoder.nodes_), len(encoder.vocab_) + 1, encoder.dim_)
        model.load_state_dict(torch.load(directory / "model.pt", weights_only=True))
        encoder.model_, encoder.version = model.eval(), version
        return encoder
