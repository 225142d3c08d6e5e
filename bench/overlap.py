"""Same answers: every vector route's served list against exact search, on a built world.

The request path answers i2i routes from neighbour tables precomputed at build time (cut at
``RECALL_NEIGHBOUR_DEPTH``) and u2i routes from an HNSW graph above ``RECALL_ANN_THRESHOLD``.
This compares, for random known users, each route's list with what an exact search over every
vector gives under the object-based algorithm the tables replaced (each seed's nearest
``n + seeds`` above the floor, summed over seeds; a user vector's nearest ``n + clicks``), and
prints overlap@n per route (the share of the exact list that the served one holds).

    RECALL_VAR_DIR=... RECALL_REDIS_URL=... python -m bench.overlap --users 200
"""

from __future__ import annotations

import argparse
import random

import numpy as np
from rich.console import Console
from rich.table import Table
from sqlalchemy import text

from recall.db import make_engine
from recall.index import normalise
from recall.online import OnlineStore, connect_redis
from recall.routes import ROUTES
from recall.service import RecallService
from recall.serving import ServingState
from recall.settings import Settings


def exact_i2i(route, ctx, n: int, capped: bool) -> list[str]:
    """Exact i2i: every seed's neighbours above the floor, summed; ``capped``: each seed's
    nearest ``n + seeds`` only, as the object-based code asked its index for."""
    index = route.index
    vectors = np.asarray(index.vectors)
    seeds = [i for i in ctx.recent_clicks if i in index.row_of][: route.seed_count]
    total: dict[str, float] = {}
    for seed in seeds:
        sims = vectors @ vectors[index.row_of[seed]]
        for row in np.argsort(-sims, kind="stable")[: n + len(seeds) if capped else None]:
            if sims[row] < route.cosine_floor:
                break
            if index.ids[row] != seed:
                total[index.ids[row]] = total.get(index.ids[row], 0.0) + float(sims[row])
    return [i for i, _ in sorted(total.items(), key=lambda kv: -kv[1])[:n]]


def exact_user_vector(route, ctx, n: int, capped: bool = True) -> list[str]:
    vector = ctx.user_vectors.get(route.vector_kind)
    if vector is None or vector.shape[0] != route.index.dim:
        return []
    sims = np.asarray(route.index.vectors) @ normalise(vector[None, :])[0]
    top = np.argsort(-sims, kind="stable")[: n + len(ctx.recent_clicks)]
    return [route.index.ids[r] for r in top if sims[r] >= route.cosine_floor][:n]


def exact_for(route, kind: str):
    """The exact reference of a route whose list comes from tables or an ANN index, or None."""
    if kind == "i2i":
        return exact_i2i
    return exact_user_vector if hasattr(route, "vector_kind") else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    settings = Settings()
    service = RecallService(OnlineStore(connect_redis(settings), settings), ServingState.load(settings),
                            enforce_budgets=False)
    pipeline = service.pipeline
    ids = pipeline.state.catalog.ids
    with make_engine(settings.sqlalchemy_url).connect() as conn:
        users = [row[0] for row in conn.execute(text("SELECT DISTINCT user_id FROM events WHERE kind = 'click'"))]
    random.Random(args.seed).shuffle(users)
    table = Table(title=f"served vs exact, {args.users} random users, build {pipeline.state.version}")
    for column in ("route", "kind", "n", "users", "overlap@n (exact)", "min",
                   "overlap@n (object-based, n + seeds per seed)", "index", "ANN recall@100"):
        table.add_column(column)
    for name, route in pipeline.routes.items():
        spec = ROUTES[name]
        exact = exact_for(route, spec.kind)
        if exact is None:
            continue
        n = pipeline.configs[name].quota
        overlaps, capped = [], []
        for user in users[: args.users]:
            ctx = service.context(pipeline, user, {name: route})
            want = exact(route, ctx, n, capped=False)
            if want:
                got = {ids[r] for r in route.retrieve(ctx, n).rows}
                overlaps.append(len(got & set(want)) / len(want))
                old = exact(route, ctx, n, capped=True)
                capped.append(len(got & set(old)) / max(len(old), 1))
        ann = (route.index.manifest.get("ann") or {}).get("recall_at_100")
        table.add_row(name, spec.kind, str(n), str(len(overlaps)),
                      f"{np.mean(overlaps):.4f}" if overlaps else "-", f"{np.min(overlaps):.3f}" if overlaps else "-",
                      f"{np.mean(capped):.4f}" if capped else "-",
                      f"{route.index.built:,}" + (" HNSW" if route.index.ann is not None else " exact"),
                      f"{ann}" if ann is not None else "")
    Console().print(table)


if __name__ == "__main__":
    main()
