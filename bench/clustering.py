"""Clustering at scale: time to cluster and to assign users, 100k and 1M synthetic users, dim 64.

Run from the project root: ``python -m bench.clustering [--sizes 100000,1000000] [--runs 3]``.

Users are drawn around ``GROUPS`` planted centres on the unit sphere (as user tag vectors are),
so the table also shows how well each run recovers the groups (adjusted Rand index). Columns:

* choose k: the elbow over the nightly job's k candidates, fitted on a 20k sample;
* fit: faiss k-means at the chosen k (best of 10 starts, at most 256 points per centre);
* assign all: every user's clusters (nearest plus those within the distance ratio), as the
  nightly refresh does;
* assign one: one user at a time, as ``POST /v1/events`` does for a clicking user (median
  microseconds over 2,000 users), i.e. the incremental path between refreshes;
* match: Hungarian matching of the new centres to the previous refresh's labels.

Times are medians of ``--runs`` runs on this machine (2 cores; faiss uses both).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from rich.console import Console
from rich.table import Table
from sklearn.metrics import adjusted_rand_score

from recall import clustering
from recall.index import normalise
from recall.settings import Settings

DIM, GROUPS, NOISE = 64, 32, 0.09
ONE_BY_ONE = 2_000


def planted_users(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = normalise(rng.normal(size=(GROUPS, DIM)).astype(np.float32))
    truth = rng.integers(GROUPS, size=n)
    x = centres[truth] + NOISE * rng.normal(size=(n, DIM)).astype(np.float32)
    return normalise(x), truth


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def run_once(n: int, seed: int, settings: Settings) -> dict[str, float]:
    x, truth = planted_users(n, seed)
    candidates = [int(k) for k in settings.cluster_k_candidates.split(",")]
    (k, _), choose_s = timed(lambda: clustering.choose_k(x, candidates, seed=seed))
    fit, fit_s = timed(lambda: clustering.fit_kmeans(x, k, seed=seed))
    rows, assign_s = timed(lambda: clustering.assign(x, fit.centres, settings.cluster_max_memberships,
                                                     settings.cluster_distance_ratio))
    one_by_one = []
    for row in x[:ONE_BY_ONE]:
        _, seconds = timed(lambda: clustering.assign(row[None, :], fit.centres, settings.cluster_max_memberships,
                                                     settings.cluster_distance_ratio))
        one_by_one.append(seconds)
    moved = fit.centres[np.random.default_rng(seed).permutation(len(fit.centres))]
    _, match_s = timed(lambda: clustering.match_labels(fit.centres, [f"c{i}" for i in range(k)], moved))
    return {"k": k, "choose_k_s": choose_s, "fit_s": fit_s, "assign_all_s": assign_s,
            "assign_one_us": statistics.median(one_by_one) * 1e6, "match_ms": match_s * 1000,
            "ari": adjusted_rand_score(truth, [r[0] for r in rows]),
            "multi": sum(len(r) > 1 for r in rows) / n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    settings = Settings(_env_file=None)
    console = Console(width=140)
    table = Table(title=f"Clustering {DIM}-d user vectors ({GROUPS} planted groups), median of {args.runs} runs")
    for column in ["users", "k (elbow)", "choose k", "fit", "assign all", "assign one", "match",
                   "ARI", "multi-membership"]:
        table.add_column(column, justify="right")
    for n in (int(s) for s in args.sizes.split(",")):
        runs = [run_once(n, seed, settings) for seed in range(args.runs)]
        med = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        table.add_row(f"{n:,}", f"{med['k']:g}", f"{med['choose_k_s']:.1f} s", f"{med['fit_s']:.1f} s",
                      f"{med['assign_all_s']:.1f} s", f"{med['assign_one_us']:.0f} µs",
                      f"{med['match_ms']:.1f} ms", f"{med['ari']:.3f}", f"{med['multi']:.1%}")
        console.print(f"done: {n:,} users")
    console.print(table)


if __name__ == "__main__":
    main()
