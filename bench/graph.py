"""The item graph's size, walk generation and graph2vec / eges training time on this machine.

Run from the project root: ``python -m bench.graph [--articles 20000,161000] [--users-per-article 0.25]
[--mind]``. Worlds: the synthetic generator at each article count (readers = articles x
``--users-per-article``, 7 days, click times kept so sessions and decay apply), and with
``--mind`` the real MIND sample's histories. Walks are DeepWalk (p = q = 1) and Node2vec
(p = 0.5, q = 2: the rejection sampler's extra draws), 10 per node of length 20; the encoders
train with their defaults (graph2vec: fastText on ``--threads``; eges: torch on one thread).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:
    sys.path[0] = str(Path(__file__).resolve().parents[1])  # else bench/graph.py shadows the package

import argparse
import time

from rich.console import Console
from rich.table import Table

from bench.encoders import mind_corpus
from encoders.base import TrainingCorpus
from encoders.eges import EGESEncoder
from encoders.graph import Walker, build_item_graph
from encoders.graph2vec import Graph2VecEncoder
from recall.domain import to_unix
from recall.synthetic import generate

SESSION_GAP, HALF_LIFE, WALKS, LENGTH = 1800.0, 7.0, 10, 20


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--articles", default="20000", help="comma-separated synthetic catalogue sizes")
    parser.add_argument("--users-per-article", type=float, default=0.25)
    parser.add_argument("--mind", action="store_true", help="also the MIND sample's histories")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
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
    Console().print(table)


if __name__ == "__main__":
    main()
