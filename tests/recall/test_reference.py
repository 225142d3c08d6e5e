"""The array paths against slow, obvious reference implementations (plain Python loops over ids,
as the object-based code did), on small random worlds.

* i2i: each seed's exact neighbours by brute-force cosine at or above the floor, summed over
  seeds, the closest seed kept as provenance.
* the merger: weighted reciprocal-rank fusion with the agreement rule of recall/merger.py.

Equal means, for i2i, the same items with the same scores up to float tolerance (tied items may
come in another order, and at the cut either of two tied items may be kept); for the merger, the
same items in the same order, ties broken by id as the object-based merger did.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
import pytest

from recall.catalog import ItemCatalog, ItemMeta
from recall.domain import Candidate, Candidates, RequestContext
from recall.index import VectorIndex, normalise
from recall.merger import WeightedRankMerger
from recall.routes.base import RouteConfig
from recall.routes.i2i import EmbeddingI2IRoute
from recall.serving import ServingState
from recall.settings import Settings

TOL = 1e-5


# ---- item-to-item ------------------------------------------------------------------------------------

def reference_i2i(vectors: dict[str, np.ndarray], recent_clicks: list[str], seed_count: int,
                  floor: float) -> dict[str, tuple[float, str, float]]:
    """item -> (summed similarity, closest seed, its similarity)."""
    seeds = [i for i in recent_clicks if i in vectors][:seed_count]
    total: dict[str, float] = {}
    closest: dict[str, tuple[float, str]] = {}
    for seed in seeds:
        for item, vector in vectors.items():
            if item == seed:
                continue
            sim = float(np.dot(vectors[seed].astype(np.float64), vector.astype(np.float64)))
            if sim < floor:
                continue
            total[item] = total.get(item, 0.0) + sim
            if sim > closest.get(item, (-2.0, ""))[0]:
                closest[item] = (sim, seed)
    return {item: (score, closest[item][1], closest[item][0]) for item, score in total.items()}


def random_i2i_world(seed: int):
    """A clustered index of 20-80 articles (some exact duplicates), a few more in the live delta,
    a random floor and seed count, and a reader whose clicks mix indexed and unknown ids."""
    rng = np.random.default_rng(seed)
    built, delta, dim = int(rng.integers(20, 80)), int(rng.integers(0, 7)), int(rng.integers(4, 17))
    centres = normalise(rng.normal(size=(int(rng.integers(2, 6)), dim)))
    labels = rng.integers(0, len(centres), size=built + delta)
    vectors = centres[labels] + rng.normal(scale=float(rng.uniform(0.1, 0.6)) / np.sqrt(dim), size=(built + delta, dim))
    for _ in range(3):  # near-duplicates sit at cosine ~1 in every space
        a, b = rng.choice(built + delta, size=2, replace=False)
        vectors[b] = vectors[a]
    ids = [f"x{n}" for n in range(built + delta)]
    catalog = ItemCatalog({i: ItemMeta(category="c") for i in ids})
    index = VectorIndex.build(ids[:built], vectors[:built])
    settings = Settings(_env_file=None, neighbour_depth=max(built, 10))
    state = ServingState.in_memory(settings, catalog, {"tag2vec": index})
    if delta:
        index.add(ids[built:], vectors[built:])
    floor = float(rng.choice([-1.0, 0.0, 0.3, 0.6, 0.9]))
    route = EmbeddingI2IRoute("tag2vec", index, cosine_floor=floor, seed_count=int(rng.integers(1, 8)))
    pool = ids + ["unknown-1", "unknown-2"]
    clicks = [str(i) for i in rng.choice(pool, size=int(rng.integers(1, 12)), replace=False)]
    unit = {i: index.vector(i) for i in ids}
    return state, route, clicks, unit


def as_dict(found: Candidates, ids: list[str]) -> dict[str, tuple[float, str, float]]:
    return {c.item_id: (c.score, c.seed, c.raw_similarity) for c in found.to_list("tag2vec", ids)}


def ambiguous(unit: dict[str, np.ndarray], seeds: list[str], floor: float) -> set[str]:
    """Items whose similarity to a seed lies within float error of the floor."""
    return {item for s in seeds if s in unit for item, v in unit.items()
            if abs(float(np.dot(unit[s], v)) - floor) < TOL}


def assert_same_top(fast: dict, reference: dict, n: int) -> None:
    """The fast top n are the reference's top n, up to ties."""
    ranked = sorted(reference.values(), key=lambda v: -v[0])
    expected = [v[0] for v in ranked[:n]]
    got = sorted((v[0] for v in fast.values()), reverse=True)
    assert got == pytest.approx(expected, abs=TOL)
    if len(ranked) > n:
        cut = ranked[n - 1][0]
        assert {i for i, v in reference.items() if v[0] > cut + TOL} <= set(fast)
        assert all(reference[i][0] >= cut - TOL for i in fast)


@pytest.mark.parametrize("seed", range(12))
def test_i2i_equals_brute_force_over_every_seed(seed):
    state, route, clicks, unit = random_i2i_world(seed)
    ids = state.catalog.ids
    reference = reference_i2i(unit, clicks, route.seed_count, route.cosine_floor)
    ctx = RequestContext("u", 0.0, recent_clicks=clicks)
    fast = as_dict(route.retrieve(ctx, len(unit) + 5), ids)
    unsure = ambiguous(unit, clicks[: route.seed_count + 2], route.cosine_floor)
    assert set(fast) - unsure == set(reference) - unsure
    for item in set(fast) - unsure:
        score, seed_id, raw = fast[item]
        ref_score, ref_seed, ref_raw = reference[item]
        assert score == pytest.approx(ref_score, abs=TOL) and raw == pytest.approx(ref_raw, abs=TOL)
        # The closest seed: the reference's, unless another seed is as close.
        if seed_id != ref_seed:
            assert float(np.dot(unit[seed_id], unit[item])) == pytest.approx(ref_raw, abs=TOL)
    if not unsure:
        for n in (1, 3, 10):
            assert_same_top(as_dict(route.retrieve(ctx, n), ids), reference, n)


@pytest.mark.parametrize("seed", range(6))
def test_similar_equals_brute_force_for_one_article(seed):
    state, route, _, unit = random_i2i_world(100 + seed)
    for item in list(unit)[::7] + list(unit)[-2:]:
        reference = reference_i2i(unit, [item], 1, route.cosine_floor)
        if ambiguous(unit, [item], route.cosine_floor):
            continue
        fast = as_dict(route.similar(item, len(unit)), state.catalog.ids)
        assert set(fast) == set(reference)
        assert all(fast[i][0] == pytest.approx(reference[i][0], abs=TOL) and fast[i][1] == item for i in fast)
        assert_same_top(as_dict(route.similar(item, 4), state.catalog.ids), reference, 4)
    assert len(route.similar("unknown", 5)) == 0


# ---- the merger --------------------------------------------------------------------------------------

def reference_merge(per_route: dict[str, list[Candidate]], configs: dict[str, RouteConfig], n: int,
                    rrf_k: float, agreement: float) -> tuple[list[tuple[str, float, list[Candidate]]], Counter]:
    """(item, fused score, provenance in route order) best first, ties by id; drop counts."""
    parts: dict[str, list[float]] = defaultdict(list)
    provenance: dict[str, list[Candidate]] = defaultdict(list)
    dropped: Counter = Counter()
    for route, candidates in per_route.items():
        config = configs[route]
        for rank, c in enumerate(candidates, 1):
            if rank > config.quota:
                dropped["quota"] += 1
                continue
            if c.item_id in parts:
                dropped["duplicate"] += 1
            parts[c.item_id].append(config.weight / (rrf_k + rank))
            provenance[c.item_id].append(c)
    fused = {}
    for item, contributions in parts.items():
        best = max(contributions)
        fused[item] = best + agreement * (sum(contributions) - best)
    ranked = sorted(fused, key=lambda i: (-fused[i], i))[: max(n, 0)]
    return [(i, fused[i], provenance[i]) for i in ranked], dropped


def provenance(c) -> tuple:
    """What a response says of one route behind an item."""
    return c.route, c.seed, c.raw_similarity, c.score


def random_routes(seed: int):
    rng = np.random.default_rng(seed)
    ids = [f"i{n:02d}" for n in rng.permutation(40)]  # row order is not id order
    per_route, configs = {}, {}
    for r in range(int(rng.integers(1, 7))):
        name = f"r{r}"
        rows = rng.choice(len(ids), size=int(rng.integers(0, 30)), replace=False)
        scores = np.sort(rng.choice([0.5, 1.0, 2.0, 3.0], size=len(rows)))[::-1]  # ties in scores too
        per_route[name] = Candidates.of(rows, scores, np.zeros(len(rows), np.int32), scores, [f"{name}-seed"])
        configs[name] = RouteConfig(name, True, float(rng.choice([0.0, 0.3, 1.0, 1.0, 2.0])),
                                    int(rng.choice([0, 1, 5, 12, 200])))
    return ids, per_route, configs


@pytest.mark.parametrize("agreement", [0.0, 0.25, 1.0])
@pytest.mark.parametrize("seed", range(15))
def test_merger_equals_weighted_rrf_with_agreement(seed, agreement):
    ids, per_route, configs = random_routes(seed)
    merger = WeightedRankMerger(agreement=agreement)
    objects = {r: c.to_list(r, ids) for r, c in per_route.items()}
    for n in (0, 1, 7, 100):
        fused, dropped = merger.merge(per_route, configs, n, ids)
        reference, ref_dropped = reference_merge(objects, configs, n, merger.rrf_k, agreement)
        assert dropped == ref_dropped
        # The same items in the same order (best first, ties by id, at the cut too: which of two
        # tied items is kept must not depend on the process' catalog rows), every route's
        # provenance in route order.
        assert [f.item_id for f in fused] == [i for i, _, _ in reference]
        assert [f.score for f in fused] == pytest.approx([s for _, s, _ in reference], rel=1e-12)
        got = [[provenance(c) for c in f.routes] for f in fused]
        assert got == [[provenance(c) for c in p] for _, _, p in reference]
