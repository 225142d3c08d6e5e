"""Encoder throughput on this machine: fit time and items encoded per second, median of 3 runs.

Run from the project root: ``python -m bench.encoders [--threads 2] [--runs 3]`` (or
``python bench/encoders.py``).
Each run builds a fresh encoder, fits it (for frozen pretrained encoders that is loading the
model) and encodes the items. Data: the real MIND sample and images from ``../shared/data``,
and the project's synthetic world, which has enough clicks for the click-trained encoders.
Encoders whose module is absent are skipped with a note.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:
    sys.path[0] = str(Path(__file__).resolve().parents[1])  # else bench/encoders.py shadows encoders/

import argparse
import importlib
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.table import Table

from encoders.base import TrainingCorpus
from jobs.ingest.mind import parse_behavior_line, parse_news_line
from recall.domain import ArticleRecord
from recall.synthetic import generate

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DOC_ARTICLES = 500
IMAGE_REPEATS = 4


@dataclass
class Case:
    name: str
    data: str
    make: Callable[[], Any]  # a fresh, unfitted encoder
    corpus: TrainingCorpus
    items: Sequence[Any]  # articles, or histories for a user tower
    encode: Callable[[Any, Sequence[Any]], Any] = lambda encoder, items: encoder.encode(items)


def mind_corpus() -> TrainingCorpus:
    news = (DATA / "mind-sample" / "news.tsv").read_text(encoding="utf-8").splitlines()
    articles = {a.id: a for line in news for a in parse_news_line(line)}
    clicks: dict[str, list[str]] = {}
    for line in (DATA / "mind-sample" / "behaviors.tsv").read_text(encoding="utf-8").splitlines():
        row = parse_behavior_line(line)
        seen = clicks.setdefault(row.user_id, [])
        clicked = [*row.history, *(aid for aid, was_clicked in row.shown if was_clicked)]
        seen.extend(aid for aid in dict.fromkeys(clicked) if aid not in seen)
    return TrainingCorpus(articles=articles, click_sequences=clicks)


def synthetic_corpus() -> TrainingCorpus:
    world = generate(articles=3000, users=600, days=7, seed=7)
    clicks: dict[str, list[str]] = {}
    for event in world.events:  # already in time order
        if event.kind == "click":
            clicks.setdefault(event.user_id, []).append(event.article_id)
    return TrainingCorpus(articles={a.id: a for a in world.articles}, click_sequences=clicks)


def optional(module: str, name: str) -> Any | None:
    """A class from a module another engineer may not have written yet."""
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None


def cases(mind: TrainingCorpus, synthetic: TrainingCorpus, resnet_dir: Path, threads: int) -> list[Case]:
    from encoders.doc2vec import DocBertEncoder
    from encoders.dssm import DSSMEncoder
    from encoders.img2vec import ImageResNetEncoder
    from encoders.tag2vec import Tag2VecEncoder

    mind_articles = list(mind.articles.values())
    synthetic_articles = list(synthetic.articles.values())
    images = [ArticleRecord(id=f"{p.name}#{i}", image_ref=str(p))
              for i in range(IMAGE_REPEATS) for p in sorted((DATA / "images").iterdir())]
    histories = [[synthetic.articles[aid] for aid in clicks] for clicks in synthetic.click_sequences.values()]
    found = [
        Case("tag2vec", "MIND", lambda: Tag2VecEncoder(threads=threads), mind, mind_articles),
        Case("doc2vec (MiniLM-L6)", "MIND title+abstract", lambda: DocBertEncoder(threads=threads),
             mind, mind_articles[:DOC_ARTICLES]),
        Case("img2vec onnx-nsfw", f"13 images x{IMAGE_REPEATS}",
             lambda: ImageResNetEncoder(backend="onnx-nsfw", threads=threads), mind, images),
        Case("img2vec random ResNet", f"13 images x{IMAGE_REPEATS}",
             lambda: ImageResNetEncoder(resnet_dir, threads=threads), mind, images),
        Case("dssm items", "synthetic", lambda: DSSMEncoder(threads=threads), synthetic, synthetic_articles),
        Case("dssm users", "synthetic", lambda: DSSMEncoder(threads=threads), synthetic, histories,
             lambda encoder, items: encoder.encode_users(items)),
    ]
    later = [("title2vec", "encoders.title2vec", "TitleLSTMEncoder"),
             ("item2vec", "encoders.item2vec", "Item2VecEncoder"),
             ("media2vec", "encoders.item2vec", "Media2VecEncoder")]
    for name, module, class_name in later:
        cls = optional(module, class_name)
        if cls is None:
            print(f"note: {module}.{class_name} is not there yet; {name} skipped")
        else:
            found.append(Case(name, "synthetic", lambda cls=cls: cls(threads=threads), synthetic,
                              synthetic_articles))
    return found


def measure(case: Case, runs: int) -> tuple[float, float, int]:
    """Median fit seconds, median items per second, and the vectors' width."""
    fits, rates = [], []
    for _ in range(runs):
        encoder = case.make()
        start = time.perf_counter()
        encoder.fit(case.corpus)
        fits.append(time.perf_counter() - start)
        start = time.perf_counter()
        case.encode(encoder, case.items)
        rates.append(len(case.items) / (time.perf_counter() - start))
    return statistics.median(fits), statistics.median(rates), encoder.dim


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="threads each encoder may use")
    parser.add_argument("--runs", type=int, default=3, help="runs per encoder; the median is shown")
    args = parser.parse_args()
    from encoders.img2vec import build_random_resnet

    console = Console()
    with tempfile.TemporaryDirectory() as tmp:
        resnet_dir = build_random_resnet(Path(tmp))
        mind, synthetic = mind_corpus(), synthetic_corpus()
        table = Table(title=f"Encoders on this machine ({os.cpu_count()} cores, {args.threads} threads each, "
                            f"median of {args.runs} runs)")
        for column in ("encoder", "data", "items", "dim", "fit s", "encode items/s"):
            table.add_column(column, justify="left" if column in ("encoder", "data") else "right")
        failures = []
        for case in cases(mind, synthetic, resnet_dir, args.threads):
            try:
                fit, rate, dim = measure(case, args.runs)
            except Exception as error:  # one broken encoder should not hide the others' numbers
                failures.append(f"{case.name} failed: {type(error).__name__}: {error}")
                table.add_row(case.name, case.data, str(len(case.items)), "-", "failed", "-")
                continue
            table.add_row(case.name, case.data, str(len(case.items)), str(dim), f"{fit:.2f}", f"{rate:,.0f}")
        console.print(table)
        for failure in failures:
            console.print(failure)
        # Other work on the machine slows every row; this says how busy it was.
        console.print(f"load average (1 min) at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
