"""Train the title LSTM on real titles and print the nearest titles of a few probes.

Toutiao (Chinese, no users): 20,000 headlines, category objective; probes are unseen headlines,
one per category. MIND (English): the 2,000 titled articles of mind-sample, click pairs from the
users' histories plus the category objective; probes are the most clicked titled articles.

Run from the project root: ``python -m bench.title2vec_probe [path/to/shared/data]``.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from encoders.base import TrainingCorpus
from encoders.title2vec import TitleLSTMEncoder
from jobs.ingest.mind import parse_behavior_line, parse_news_line
from jobs.ingest.tnews import parse_tnews_line
from recall.domain import ArticleRecord

TOUTIAO_TITLES, PROBES, NEIGHBOURS = 20_000, 5, 5


def toutiao(data: Path) -> tuple[TrainingCorpus, list[ArticleRecord]]:
    with (data / "tnews" / "tnews_train.jsonl").open(encoding="utf-8") as fh:
        articles = [a for line, _ in zip(fh, range(TOUTIAO_TITLES + 1000)) for a in parse_tnews_line(line)]
    train, unseen = articles[:TOUTIAO_TITLES], articles[TOUTIAO_TITLES:]
    probes = list({a.category: a for a in unseen}.values())[:PROBES]
    return TrainingCorpus(articles={a.id: a for a in train}), probes


def mind(data: Path) -> tuple[TrainingCorpus, list[ArticleRecord]]:
    with (data / "mind-sample" / "news.tsv").open(encoding="utf-8") as fh:
        articles = {a.id: a for line in fh for a in parse_news_line(line.rstrip("\n"))}
    histories: dict[str, list[str]] = {}
    with (data / "mind-sample" / "behaviors.tsv").open(encoding="utf-8") as fh:
        for line in fh:
            row = parse_behavior_line(line.rstrip("\n"))
            histories.setdefault(row.user_id, row.history)
    # The most clicked titled articles: the ones whose neighbours the clicks had most say in.
    clicks = Counter(aid for history in histories.values() for aid in history if aid in articles)
    probes = [articles[aid] for aid, _ in clicks.most_common(PROBES)]
    return TrainingCorpus(articles=articles, click_sequences=histories), probes


def show(label: str, encoder: TitleLSTMEncoder, corpus: TrainingCorpus, probes: list[ArticleRecord]) -> None:
    start = time.perf_counter()
    encoder.fit(corpus)
    pool = [a for a in corpus.articles.values() if a.title]
    pool_vectors = encoder.encode(pool)
    print(f"\n== {label}: objective {encoder.objective_}, {len(pool)} titles, vocabulary "
          f"{len(encoder.vocab_)}, fit {time.perf_counter() - start:.1f}s")
    for probe, vector in zip(probes, encoder.encode(probes)):
        print(f"\n[{probe.category}] {probe.title}")
        sims = pool_vectors @ vector
        for row in [r for r in np.argsort(-sims) if pool[r].id != probe.id][:NEIGHBOURS]:
            print(f"   {sims[row]:.2f} [{pool[row].category}] {pool[row].title}")


def main() -> None:
    data = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared" / "data"
    show("Toutiao, category objective", TitleLSTMEncoder(epochs=5), *toutiao(data))
    show("MIND, clicks + category", TitleLSTMEncoder(epochs=20, pair_window=10), *mind(data))


if __name__ == "__main__":
    main()
