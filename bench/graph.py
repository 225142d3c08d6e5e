"""The item graph's size, walk generation and graph2vec / eges training time on this machine.

Run from the project root:
``python -m bench.graph [--articles 20000,161000] [--users-per-article 0.25] [--mind]``.
Worlds: the synthetic generator at each article count (readers = articles x
``--users-per-article``, 7 days, click times kept so sessions and decay apply), and with
``--mind`` the real MIND sample's histories. Walks are DeepWalk (p = q = 1) and Node2vec
(p = 0.5, q = 2: the rejection sampler's extra draws), 5 per node of 10 steps (the settings'
defaults); the encoders train with their defaults (graph2vec: fastText on ``--threads``; eges:
torch on one thread). Fit times include building the graph and walking it.

``python -m bench.graph --coverage DIR``: the cold-start table of a replay kept with
``recall eval --keep`` (DIR: its scratch folder, ``var/eval/RUN``): the share of the articles
clicked after the split (and of those clicks) to which each click-trained encoder of the test
build gives a vector, encoding them as the fast path does. Clicks are those of impressions, the
ones the replay scores (not MIND's histories, stamped at their impression).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:
    sys.path[0] = str(Path(__file__).resolve().parents[1])  # else bench/graph.py shadows the package

import argparse
import json
import time
from collections import Counter
from datetime import datetime

import numpy as np
from rich.console import Console
from rich.table import Table

from bench.encoders import mind_corpus
from encoders.base import TrainingCorpus
from encoders.eges import EGESEncoder
from encoders.graph import Walker, build_item_graph
from encoders.graph2vec import Graph2VecEncoder
from encoders.registry import load_encoder
from recall import sqlstore
from recall.db import make_engine, make_sessionmaker
from recall.domain import ArticleRecord, to_unix
from recall.synthetic import generate

SESSION_GAP, HALF_LIFE, WALKS, LENGTH = 1800.0, 7.0, 5, 10
COVERED = ("item2vec", "graph2vec", "eges")


def synthetic_corpus(articles: int, users: int) -> TrainingCorpus:
    world = generate(articles=articles, users=users, days=7, seed=7)
    clicks: dict[str, list[str]] = {}
    times: dict[str, list[float]] = {}
    for event in world.events:  # already in time order
        if event.kind == "click":
            clicks.setdefault(event.user_id, []).append(event.article_id)
            times.setdefault(event.user_id, []).append(to_unix(event.ts))
    return TrainingCorpus(articles={a.id: a for a in world.articles}, click_sequences=clicks, click_times=times)


def timed(work) -> tuple[object, float]:
    start = time.perf_counter()
    result = work()
    return result, time.perf_counter() - start


def measure(label: str, corpus: TrainingCorpus, threads: int) -> list[str]:
    graph, graph_s = timed(lambda: build_item_graph(corpus, SESSION_GAP, HALF_LIFE))
    walks = {}
    for name, (p, q) in {"deepwalk": (1.0, 1.0), "node2vec": (0.5, 2.0)}.items():
        walker = Walker(graph.adjacency, p, q)
        walks[name] = timed(lambda: sum(len(b) for b in walker.walks(WALKS, LENGTH, seed=7)))[1]
    _, g2v_s = timed(lambda: Graph2VecEncoder(threads=threads).fit(corpus))
    _, eges_s = timed(lambda: EGESEncoder(threads=1).fit(corpus))
    m = graph.metrics()
    clicks = sum(map(len, corpus.click_sequences.values()))
    return [label, f"{len(corpus.articles):,}", f"{clicks:,}", f"{m['graph_nodes']:,}", f"{m['graph_edges']:,}",
            f"{m['graph_degree_p50']:.0f}/{m['graph_degree_p99']:.0f}", f"{graph_s:.1f}",
            f"{walks['deepwalk']:.1f}", f"{walks['node2vec']:.1f}", f"{g2v_s:.1f}", f"{eges_s:.1f}"]


def coverage(scratch: Path) -> Table:
    """Cold start: of the test window's clicked articles, the share each encoder gives a vector."""
    builds = [json.loads(m.read_text()) | {"dir": m.parent} for m in (scratch / "builds").glob("*/manifest.json")]
    test_build = max(builds, key=lambda manifest: manifest["cutoff"])  # the tuning build is older
    split = datetime.fromisoformat(test_build["cutoff"])
    engine = make_engine(f"sqlite:///{(scratch / 'eval.db').resolve()}")
    with make_sessionmaker(engine)() as session:
        articles = {a.id: a for a in sqlstore.iter_articles(session)}
        clicks = Counter(e.article_id for e in sqlstore.iter_events(session, after=split)
                         if e.kind == "click" and e.impression_id)
        trained = {aid for seq in sqlstore.click_sequences(session, before=split).values() for aid, _ in seq}
    engine.dispose()
    clicked = sorted(clicks)
    records = [articles.get(aid) or ArticleRecord(id=aid, id_only=True) for aid in clicked]
    weights = np.array([clicks[aid] for aid in clicked], float)
    table = Table(title=f"cold start: {len(clicked):,} articles clicked after {split:%Y-%m-%d %H:%M} "
                        f"({int(weights.sum()):,} clicks)")
    for column in ("", "share of articles", "share of clicks"):
        table.add_column(column, justify="left" if not column else "right")
    unclicked = np.array([aid not in trained for aid in clicked])
    table.add_row("never clicked before the build", f"{unclicked.mean():.1%}",
                  f"{weights[unclicked].sum() / weights.sum():.1%}")
    for name in COVERED:
        model = test_build["dir"] / "models" / name
        if not model.exists():
            table.add_row(f"{name}: no model in the build", "", "")
            continue
        has = np.linalg.norm(load_encoder(name, model).encode(records), axis=1) > 0
        table.add_row(f"{name} gives a vector", f"{has.mean():.1%}", f"{weights[has].sum() / weights.sum():.1%}")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--articles", default="20000", help="comma-separated synthetic catalogue sizes")
    parser.add_argument("--users-per-article", type=float, default=0.25)
    parser.add_argument("--mind", action="store_true", help="also the MIND sample's histories")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--coverage", type=Path, help="a kept replay's scratch folder: the cold-start table only")
    args = parser.parse_args()
    if args.coverage:
        Console(width=160).print(coverage(args.coverage))
        return
    table = Table(title=f"item graph, {WALKS} walks/node of {LENGTH} steps (seconds)")
    for column in ("world", "articles", "clicks", "nodes", "edges", "degree p50/p99", "graph",
                   "DeepWalk", "Node2vec", "graph2vec fit", "eges fit"):
        table.add_column(column, justify="left" if column == "world" else "right")
    worlds = [(f"synthetic {n:,}", lambda n=n: synthetic_corpus(n, int(n * args.users_per_article)))
              for n in (int(x) for x in args.articles.split(",") if x.strip())]
    if args.mind:
        worlds.insert(0, ("MIND sample", mind_corpus))
    for label, corpus in worlds:
        table.add_row(*measure(label, corpus(), args.threads))
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
