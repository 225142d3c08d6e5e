"""Warm training against cold, per encoder: how close it stays to yesterday's model, its quality, its seconds.

Run from the project root: ``python -m bench.warm [--encoders tag2vec,eges] [--data mind|synthetic]``.

Yesterday's corpus is today's without a random ``--new`` share of its articles (and their
clicks). Four models per encoder: yesterday's, cold (the same seed as yesterday's), cold with
another seed, and warm (``warm_fit`` from yesterday's for ``--warm-epochs``). Over the articles
both days know, each model against yesterday's: the mean cosine of an article's two vectors
and the overlap of its 10 nearest neighbours; each model's category purity@10 (the share of an
article's 10 nearest neighbours in its category) over all articles and over the new ones; and
its training seconds. Two cold trainings with different seeds show how far apart a retraining
puts the same article anyway: what "close to yesterday" must beat.
"""

from __future__ import annotations

import argparse
import random
import time

import numpy as np
from rich.console import Console
from rich.table import Table

from bench.encoders import mind_corpus
from bench.graph import synthetic_corpus
from encoders.base import TrainingCorpus
from encoders.registry import build_encoder
from recall.settings import Settings

K = 10


def yesterday_of(corpus: TrainingCorpus, share: float, seed: int) -> tuple[TrainingCorpus, set[str]]:
    """The corpus without ``share`` of its articles and their clicks, and the ids left out."""
    new = set(random.Random(seed).sample(sorted(corpus.articles), round(len(corpus.articles) * share)))
    clicks, times = {}, {}
    for user, sequence in corpus.click_sequences.items():
        kept = [n for n, aid in enumerate(sequence) if aid not in new]
        if kept:
            clicks[user] = [sequence[n] for n in kept]
            if user in corpus.click_times:
                times[user] = [corpus.click_times[user][n] for n in kept]
    articles = {aid: a for aid, a in corpus.articles.items() if aid not in new}
    return TrainingCorpus(articles=articles, click_sequences=clicks, click_times=times), new


def neighbours(vectors: np.ndarray) -> np.ndarray:
    """Each row's K nearest other rows by cosine (-1 where the row or the candidate is zero)."""
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, -np.inf)
    similarity[:, ~vectors.any(1)] = -np.inf
    top = np.argsort(-similarity, axis=1)[:, :K]
    top[~vectors.any(1)] = -1
    return top


def purity(top: np.ndarray, categories: np.ndarray, rows: np.ndarray) -> float:
    rows = rows[top[rows, 0] >= 0]
    return float((categories[top[rows]] == categories[rows, None]).mean()) if len(rows) else float("nan")


def closeness(vectors: np.ndarray, top: np.ndarray, reference: np.ndarray, reference_top: np.ndarray,
              rows: np.ndarray) -> tuple[float, float]:
    """Mean cosine to the reference's vector and top-K overlap, over rows both models fill."""
    rows = rows[vectors[rows].any(1) & reference[rows].any(1)]
    cosine = float((vectors[rows] * reference[rows]).sum(1).mean())
    overlap = float(np.mean([len(set(top[r]) & set(reference_top[r])) / K for r in rows]))
    return cosine, overlap


def bench(name: str, corpus: TrainingCorpus, share: float, warm_epochs: int, console: Console) -> Table:
    yesterday, new = yesterday_of(corpus, share, seed=7)
    settings = Settings(_env_file=None, threads=2)
    ids = sorted(corpus.articles)
    articles = [corpus.articles[aid] for aid in ids]
    categories = np.array([a.category or "" for a in articles])
    old_rows = np.array([n for n, aid in enumerate(ids) if aid not in new])
    new_rows = np.array([n for n, aid in enumerate(ids) if aid in new])

    def trained(fit, label):
        started = time.perf_counter()
        encoder = fit()
        console.print(f"  {name} {label}: {time.perf_counter() - started:.1f} s")
        vectors = encoder.encode(articles)
        return encoder, vectors, neighbours(vectors), time.perf_counter() - started

    previous, reference, reference_top, seconds = trained(
        lambda: build_encoder(name, settings).fit(yesterday), "yesterday (cold)")
    models = {
        "yesterday (cold)": (reference, reference_top, seconds),
        "cold": trained(lambda: build_encoder(name, settings).fit(corpus), "cold")[1:],
        "cold, other seed": trained(lambda: build_encoder(name, settings.model_copy(update={"seed": 8})).fit(corpus),
                                    "cold, other seed")[1:],
        f"warm ({warm_epochs} epoch)": trained(
            lambda: build_encoder(name, settings).warm_fit(corpus, previous, warm_epochs), "warm")[1:],
    }
    table = Table(title=f"{name}: {len(ids):,} articles, {len(new_rows)} new; against yesterday's model "
                        f"over the {len(old_rows):,} unchanged")
    for column in ("model", "seconds", "mean cosine", f"top-{K} overlap",
                   f"purity@{K} all", f"purity@{K} new", "new filled"):
        table.add_column(column, justify="right")
    for label, (vectors, top, seconds) in models.items():
        cosine, overlap = closeness(vectors, top, reference, reference_top, old_rows)
        filled = f"{int(vectors[new_rows].any(1).sum())}/{len(new_rows)}"
        table.add_row(label, f"{seconds:.1f}", f"{cosine:.3f}", f"{overlap:.3f}",
                      f"{purity(top, categories, np.arange(len(ids))):.3f}",
                      f"{purity(top, categories, new_rows):.3f}", filled)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--encoders", default="tag2vec,item2vec,graph2vec,eges,title2vec,dssm")
    parser.add_argument("--data", choices=("mind", "synthetic"), default="mind")
    parser.add_argument("--new", type=float, default=0.03, help="share of today's articles new")
    parser.add_argument("--warm-epochs", type=int, default=1)
    args = parser.parse_args()
    console = Console(width=150)
    corpus = mind_corpus() if args.data == "mind" else synthetic_corpus(3000, 600)
    for name in args.encoders.split(","):
        console.print(bench(name, corpus, args.new, args.warm_epochs, console))


if __name__ == "__main__":
    main()
