"""Purity@10 of every item-to-item route on Toutiao headlines, against baselines from the same run.

Two disjoint subsets of ``tnews_train.jsonl`` (seeded): "tune" (defaults were chosen on it) and
"report" (the README's figures). Each is ingested alone into a scratch SQLite file and an
embedded Redis in a temporary var folder, through ``recall ingest tnews``'s code and
``run_nightly``; then, for 200 seeded random articles with at least one tag, the top 10 of
``RecallService.similar`` (what ``/similar`` answers) per i2i route with an index. Purity@10 is
the share of those 10 with the probe's category; a missing neighbour counts as a miss.

Baselines on the same probes and articles: chance (the share of the other articles in the
probe's category), TF-IDF over character bigrams of the titles (cosine), and shared-tag
overlap (Jaccard of the tag sets; articles sharing no tag are no neighbours). Routes trained on
the category labels (title2vec's category objective, the only objective without clicks) are
shown but flagged "label-trained": their purity is not a fair comparison.

To save time the bench's nightly builds only the encoders that have i2i routes and learn from
text or tags (``BENCH_ENCODERS``: tag2vec, doc2vec, title2vec; ``build_encoders`` in
``--settings`` narrows it further); the click and image encoders have nothing to learn from
headlines without readers or pictures.

    python -m bench.purity [--subsets tune,report] [--size 9000] [--probes 200]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table
from sklearn.feature_extraction.text import TfidfVectorizer

from jobs.ingest.tnews import ingest_tnews, parse_tnews_line
from jobs.nightly import run_nightly
from recall.db import make_engine, upgrade
from recall.domain import ArticleRecord, tag_token
from recall.online import OnlineStore, close_redis, connect_redis
from recall.routes import ROUTES
from recall.service import RecallService
from recall.serving import ServingState
from recall.settings import Settings

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "tnews" / "tnews_train.jsonl"
SUBSETS = ("tune", "report")
BENCH_ENCODERS = "tag2vec,doc2vec,title2vec"
# Trained on the category labels that purity measures (title2vec without clicks).
LABEL_TRAINED = {"title2vec"}
K = 10


def subset_lines(name: str, size: int = 9000, seed: int = 11, path: Path = DATA) -> list[str]:
    """The lines of one subset: the file shuffled by ``seed``, "tune" the first ``size``
    lines, "report" the next ``size`` (disjoint by construction)."""
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    random.Random(seed).shuffle(lines)
    start = SUBSETS.index(name) * size
    return lines[start: start + size]


def pick_probes(articles: Sequence[ArticleRecord], count: int = 200, seed: int = 7) -> list[ArticleRecord]:
    tagged = [a for a in articles if a.tags]
    return random.Random(seed).sample(tagged, min(count, len(tagged)))


def purity(probes: Sequence[ArticleRecord], neighbours: Callable[[ArticleRecord], list[str]],
           category: dict[str, str | None], k: int = K) -> float:
    """Mean over probes of (neighbours among the first k with the probe's category) / k."""
    hits = [sum(category.get(n) == p.category for n in neighbours(p)[:k]) / k for p in probes]
    return float(np.mean(hits))


def top_k_by_score(scores: np.ndarray, own: int, ids: list[str], k: int = K) -> list[str]:
    """The ids of the k best positive scores, the probe itself excluded, best first (stable)."""
    scores = scores.copy()
    scores[own] = -np.inf
    order = np.argsort(-scores, kind="stable")[:k]
    return [ids[r] for r in order if scores[r] > 0]


@dataclass(frozen=True)
class Baselines:
    chance: float
    tfidf_bigrams: float
    shared_tags: float


def baselines(articles: Sequence[ArticleRecord], probes: Sequence[ArticleRecord], k: int = K) -> Baselines:
    ids = [a.id for a in articles]
    row_of = {aid: r for r, aid in enumerate(ids)}
    category = {a.id: a.category for a in articles}
    categories = np.array([a.category or "" for a in articles])
    chance = float(np.mean([((categories == p.category).sum() - 1) / (len(articles) - 1) for p in probes]))

    tfidf = TfidfVectorizer(analyzer="char", ngram_range=(2, 2)).fit_transform([a.title or "" for a in articles])
    by_text = {p.id: top_k_by_score((tfidf @ tfidf[row_of[p.id]].T).toarray().ravel(), row_of[p.id], ids, k)
               for p in probes}

    tag_sets = [{tag_token(t) for t, _ in a.tags} for a in articles]
    def by_tags(p: ArticleRecord) -> list[str]:
        mine = tag_sets[row_of[p.id]]
        jaccard = np.array([len(mine & s) / len(mine | s) if s else 0.0 for s in tag_sets])
        return top_k_by_score(jaccard, row_of[p.id], ids, k)

    return Baselines(chance, purity(probes, lambda p: by_text[p.id], category, k),
                     purity(probes, by_tags, category, k))


def bench_settings(var_dir: Path, overrides: dict | None = None) -> Settings:
    return Settings(_env_file=None, **{"var_dir": var_dir, "database_url": "", "redis_url": "",
                                       "build_encoders": BENCH_ENCODERS, **(overrides or {})})


def toutiao_purity(subset: str = "report", settings_overrides: dict | None = None, *, size: int = 9000,
                   probes: int = 200, console: Console | None = None) -> dict:
    """Ingest one subset alone, run the nightly build, and measure purity@10 of every i2i route
    with an index and of the baselines on the same probes.

    Returns ``{"subset", "articles", "probes", "routes": {route: purity}, "label_trained":
    [...], "baselines": {"chance", "tfidf_bigrams", "shared_tags"}, "build": version}``.
    """
    lines = subset_lines(subset, size)
    articles = [a for line in lines for a in parse_tnews_line(line)]
    chosen = pick_probes(articles, probes)
    category = {a.id: a.category for a in articles}
    with tempfile.TemporaryDirectory(prefix=f"purity-{subset}-") as tmp:
        settings = bench_settings(Path(tmp), settings_overrides)
        data = Path(tmp) / f"tnews-{subset}.jsonl"
        data.write_text("\n".join(lines) + "\n", encoding="utf-8")
        engine = make_engine(settings.sqlalchemy_url)
        upgrade(engine)
        ingest_tnews(engine, data, console)
        client = connect_redis(settings)
        try:
            online = OnlineStore(client, settings)
            build = run_nightly(settings, engine, online, console=console).version
            service = RecallService(online, ServingState.load(settings), enforce_budgets=False)
            served = [name for name in service.pipeline.routes if ROUTES[name].kind == "i2i"]
            routes = {name: purity(chosen, lambda p, name=name: [c.item_id for c in service.similar(p.id, name, K)],
                                   category) for name in served}
        finally:
            close_redis(client)
        engine.dispose()
    base = baselines(articles, chosen)
    return {"subset": subset, "articles": len(articles), "probes": len(chosen), "routes": routes,
            "label_trained": sorted(LABEL_TRAINED & set(routes)), "build": build,
            "baselines": {"chance": base.chance, "tfidf_bigrams": base.tfidf_bigrams,
                          "shared_tags": base.shared_tags}}


def table_of(result: dict) -> Table:
    table = Table(title=f"purity@{K} on Toutiao, {result['subset']} subset: {result['articles']:,} headlines, "
                        f"{result['probes']} probes, build {result['build']}")
    for column in ("route / baseline", "purity@10", "note"):
        table.add_column(column)
    for name, value in sorted(result["routes"].items(), key=lambda kv: -kv[1]):
        table.add_row(name, f"{value:.3f}", "label-trained" if name in result["label_trained"] else "i2i route")
    notes = {"chance": "category share", "tfidf_bigrams": "TF-IDF, character bigrams of the title",
             "shared_tags": "Jaccard of tag sets"}
    for name, value in result["baselines"].items():
        table.add_row(name, f"{value:.3f}", f"baseline: {notes[name]}")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subsets", default=",".join(SUBSETS))
    parser.add_argument("--size", type=int, default=9000)
    parser.add_argument("--probes", type=int, default=200)
    parser.add_argument("--settings", default="{}", help="JSON of Settings overrides, e.g. '{\"tag2vec_top\": 3}'")
    args = parser.parse_args()
    console = Console()
    for subset in args.subsets.split(","):
        result = toutiao_purity(subset, json.loads(args.settings), size=args.size, probes=args.probes)
        console.print(table_of(result))


if __name__ == "__main__":
    main()
