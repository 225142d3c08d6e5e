"""Recall quality on real and synthetic news, every figure from ``recall eval`` in this run.

For mind-sample (tuned on 2019-11-13, reported after 2019-11-14) and the synthetic world (tuned
on day 5, reported after day 6 of 7): Recall@50/100/200/500 with 95% bootstrap intervals over
impressions, for the validation window (the fusion as fitted there, as served by default, with
equal weights, and every route alone) and for the test window (fused as fitted, every served
route alone at its quota, the baselines), and fused over real-time hot at K=200. For Toutiao:
purity@10 of every i2i route against chance, TF-IDF bigrams and shared-tag overlap
(``bench.purity``, computed in the same run).

    RECALL_REDIS_URL=redis://127.0.0.1:6379/3 python -m bench.quality [--skip-toutiao]

Each eval runs ``python -m jobs.cli eval`` in a scratch folder (a scratch SQLite file, the Redis
prefix ``nr:eval:<run>:``), exactly as a user would.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
KS = (50, 100, 200, 500)
HOT = "baseline:hot6h"
EVALS = {
    "mind-sample": ["--news", str(DATA / "mind-sample" / "news.tsv"),
                    "--behaviors", str(DATA / "mind-sample" / "behaviors.tsv"),
                    "--tune-from", "2019-11-13T00:00:00", "--split-time", "2019-11-14T00:00:00"],
    "synthetic 2000,500,7": ["--synthetic", "2000,500,7",
                             "--tune-from", "2026-11-05T00:00:00", "--split-time", "2026-11-06T00:00:00"],
}


def run_eval(name: str, args: list[str], folder: Path, console: Console) -> dict:
    out = folder / f"{name.split()[0]}.json"
    env = {**os.environ, "RECALL_VAR_DIR": str(folder / "var")}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "jobs.cli", "eval", *args, "--k", ",".join(map(str, KS)),
                    "--no-record", "--json", str(out)], check=True, env=env, stdout=subprocess.DEVNULL)
    console.print(f"{name}: eval took {time.perf_counter() - start:.0f} s")
    return json.loads(out.read_text())


def window_table(title: str, figures: dict) -> Table:
    table = Table(title=f"{title}: {figures['window']}, {figures['impressions']} impressions, "
                        f"{figures['clicks']} clicks", caption="† K above what the route was asked for")
    table.add_column("system")
    table.add_column("asked", justify="right")
    for k in KS:
        table.add_column(f"R@{k} (95%)", justify="right")
    for system, recall in figures["recall"].items():
        asked = figures["asked"].get(system, max(KS))
        cells = []
        for k in KS:
            low, high = figures["interval95"][system][str(k)]
            cells.append(f"{recall[str(k)]:.3f} ({low:.3f}-{high:.3f}){'†' if k > asked else ''}")
        table.add_row(system, str(asked), *cells)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-toutiao", action="store_true")
    args = parser.parse_args()
    console = Console(width=200)
    summary = Table(title="fused / real-time hot at K=200 (test window)")
    for column in ("data", "fused R@200", "hot R@200", "ratio"):
        summary.add_column(column, justify="right")
    with tempfile.TemporaryDirectory(prefix="quality-") as scratch:
        for name, eval_args in EVALS.items():
            figures = run_eval(name, eval_args, Path(scratch), console)
            console.print(window_table(f"{name}, validation", figures["validation"]))
            console.print(f"fitted: agreement {figures['tuning']['agreement']}, "
                          f"changed {json.dumps({r: c['to'] for r, c in figures['tuning']['changed'].items()})}")
            console.print(window_table(f"{name}, test", figures))
            fused, hot = figures["recall"]["fused"]["200"], figures["recall"][HOT]["200"]
            summary.add_row(name, f"{fused:.3f}", f"{hot:.3f}", f"{fused / hot:.2f}" if hot else "-")
    console.print(summary)
    if not args.skip_toutiao:
        from bench.purity import SUBSETS, table_of, toutiao_purity

        for subset in SUBSETS:
            console.print(table_of(toutiao_purity(subset)))


if __name__ == "__main__":
    main()
