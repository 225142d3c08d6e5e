"""Hand-built serving worlds for route tests: no Redis, no nightly build.

``make_world`` assembles, from seeded random numbers, everything a registered route can be built
from and read at request time: a catalog of articles in a few categories with publish times,
a clustered vector index for every encoder a route indexes or searches (articles of one category
point the same way; the last few articles sit in each index's live delta, as the fast path puts
them), user models (tag vectors and two cluster schemes, one with group vectors), a live snapshot
(hot window counts, a fresh list) and a filled request context (recent clicks, every kind of
user vector, a profile, memberships and the clusters' lists).

``check_candidates`` is the contract every route's answer must honour.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from recall.catalog import ItemCatalog, ItemMeta
from recall.clustering import ClusterModel
from recall.domain import Candidate, Candidates, RequestContext
from recall.index import VectorIndex, normalise
from recall.live import LiveSnapshot, WindowCounts
from recall.profiles import UserProfile
from recall.routes import ROUTES
from recall.routes.base import RouteConfig
from recall.serving import ServingState
from recall.settings import Settings
from recall.uservectors import TAG_ROUTE, TagVectors, UserModels

NOW = 1_800_000_000.0
HOUR = 3600.0
CATEGORIES = ("sports", "politics", "tech", "culture")
TAGS = {
    "sports": ("football", "tennis", "golf"),
    "politics": ("election", "summit", "budget"),
    "tech": ("ai", "chips", "security"),
    "culture": ("film", "music", "books"),
}
DIMS = {TAG_ROUTE: 16, "dssm": 12}  # every other index: 8
DELTA = 4  # the last articles reach every index through the live delta
UNINDEXED = "not-indexed"  # a clicked id no index and no catalog knows


def index_names() -> list[str]:
    """Every index a registered route reads: its encoder's, or the one it searches."""
    names = {spec.encoder for spec in ROUTES.values() if spec.encoder}
    names |= {spec.searches for spec in ROUTES.values() if spec.searches}
    return sorted(names)


def user_vector_kinds() -> dict[str, str]:
    """user vector kind -> the index it searches."""
    return {spec.user_vector: spec.searches or spec.encoder for spec in ROUTES.values() if spec.user_vector}


def read_only(array: np.ndarray) -> np.ndarray:
    array = np.array(array)
    array.setflags(write=False)
    return array


@dataclass
class World:
    settings: Settings
    state: ServingState
    centres: dict[str, np.ndarray]  # index name -> (categories, dim) unit centres
    category_of: dict[str, str]
    snapshot: LiveSnapshot
    reader: RequestContext  # the filled context; ``context()`` hands out copies

    @property
    def catalog(self) -> ItemCatalog:
        return self.state.catalog

    @property
    def ids(self) -> list[str]:
        return self.state.catalog.ids

    def config(self, name: str, quota: int | None = None, **params) -> RouteConfig:
        spec = ROUTES[name]
        return RouteConfig(name, True, spec.default.weight, spec.default.quota if quota is None else quota,
                           {**spec.default.params, **params})

    def route(self, name: str, quota: int | None = None, **params):
        return ROUTES[name].factory(self.state, self.config(name, quota, **params))

    def context(self, **changes) -> RequestContext:
        """A copy of the reader's context (containers copied, arrays shared read-only)."""
        ctx = self.reader
        copy = dataclasses.replace(
            ctx, recent_clicks=list(ctx.recent_clicks), click_times=list(ctx.click_times),
            user_vectors=dict(ctx.user_vectors), clusters={s: list(v) for s, v in ctx.clusters.items()},
            cluster_lists=dict(ctx.cluster_lists), co_clicks=dict(ctx.co_clicks))
        return dataclasses.replace(copy, **changes) if changes else copy

    def unknown(self, live: LiveSnapshot | None = None, fetched: bool = True) -> RequestContext:
        """An unknown user's context: no clicks, vectors, profile or clusters. ``fetched``: as
        ``fetch_context`` makes it (an empty profile read from Redis), else a bare one."""
        return RequestContext(user_id="nobody", now=NOW, profile=UserProfile() if fetched else None,
                              live=self.snapshot if live is None else live)


def clustered(rng: np.random.Generator, centres: np.ndarray, labels: Iterable[int], spread: float) -> np.ndarray:
    labels = np.asarray(list(labels))
    dim = centres.shape[1]
    return (centres[labels] + rng.normal(scale=spread / math.sqrt(dim), size=(len(labels), dim))).astype(np.float32)


def make_world(seed: int = 0, articles: int = 60, settings: Settings | None = None,
               windows: Iterable[float] = ()) -> World:
    rng = np.random.default_rng(seed)
    settings = settings or Settings(_env_file=None)
    ids = [f"a{n:02d}" for n in range(articles)]
    category = [n % len(CATEGORIES) for n in range(articles)]
    category_of = {i: CATEGORIES[c] for i, c in zip(ids, category)}
    # Published over the last four days, newest last; the very last is scheduled for later.
    published = {i: NOW - (articles - n) * 1.5 * HOUR for n, i in enumerate(ids)}
    published[ids[-1]] = NOW + 2 * HOUR

    # Tag vectors, and one clustered index per encoder. Article tags are their category's.
    tag_centres = normalise(rng.normal(size=(len(CATEGORIES), DIMS[TAG_ROUTE])))
    tags = [t for c in CATEGORIES for t in TAGS[c]]
    tag_vectors = TagVectors(tags, clustered(rng, tag_centres, [CATEGORIES.index(c) for c in CATEGORIES
                                                                  for _ in TAGS[c]], 0.3))
    catalog = ItemCatalog()
    for n, item in enumerate(ids):
        words = TAGS[category_of[item]]
        catalog.put(item, ItemMeta(category=category_of[item], published=published[item], title=f"title {item}",
                                   subcategory=words[n % 3],
                                   tags=tuple((w, 1.0 - 0.2 * k) for k, w in enumerate(words))))
    centres, vectors = {}, {}
    for name in index_names():
        dim = DIMS.get(name, 8)
        centres[name] = tag_centres if name == TAG_ROUTE else normalise(rng.normal(size=(len(CATEGORIES), dim)))
        vectors[name] = clustered(rng, centres[name], category, 0.35)
        if name == "img2vec":  # a sparse input: a few articles have no image
            vectors[name][[5, 9, 13]] = 0
    built = articles - DELTA
    indexes = {name: VectorIndex.build(ids[:built], v[:built], route=name) for name, v in vectors.items()}

    # Two cluster schemes: k-means over tag vectors (with group vectors) and rules (without), each
    # with its centre lists (the build holds those; the CF lists come from Redis with the context).
    kmeans_labels = [f"c{k}" for k in range(len(CATEGORIES))]
    rule_labels = ["sports", "sports>tech", "politics"]
    clusters = {
        "kmeans-tag": ClusterModel("kmeans-tag", "kmeans", "tag", kmeans_labels, TAG_ROUTE, centres=tag_centres.copy(),
                                   group_vectors=tag_centres.copy(),
                                   centre_lists={label: centre_list(ids, vectors[TAG_ROUTE], tag_centres[k])
                                                 for k, label in enumerate(kmeans_labels)}),
        "rule": ClusterModel("rule", "rule", None, rule_labels, TAG_ROUTE, top_k=2,
                             centre_lists={label: centre_list(ids, vectors[TAG_ROUTE], rule_centre(label, tag_centres))
                                           for label in rule_labels}),
    }
    users = UserModels(tag_vectors=tag_vectors, categories=list(CATEGORIES), clusters=clusters,
                       top_tags=settings.profile_top_tags, recent_clicks=settings.user_vector_clicks)
    state = ServingState.in_memory(settings, catalog, indexes, users, version="world")
    for name, index in indexes.items():  # posted after the build: the fast path's live delta
        index.add(ids[built:], vectors[name][built:])
    assert all(len(index) == articles - (3 if name == "img2vec" else 0) for name, index in indexes.items())

    rows = catalog.rows(ids)
    routes = [ROUTES[name].factory(state, ROUTES[name].default) for name in ROUTES]
    hours = sorted({float(settings.hot_window_hours), 6.0, 24.0, *map(float, windows),
                    *(float(h) for route in routes if route is not None for h in route.windows)})
    snapshot = make_snapshot(rng, rows, np.array([published[i] for i in ids]), hours)

    # The reader: mostly sports, some tech; one of the clicks is in the live delta, one unknown.
    sports = [i for i in ids if category_of[i] == "sports" and published[i] <= NOW]
    tech = [i for i in ids if category_of[i] == "tech" and published[i] <= NOW]
    clicks = [sports[-1], sports[0], UNINDEXED, tech[2], sports[3], sports[5], tech[4]]
    click_times = [NOW - (k + 1) * 0.7 * HOUR for k in range(len(clicks))]
    kinds = user_vector_kinds()
    user_vectors = {kind: read_only(normalise((centres[index][0] + 0.5 * centres[index][2]
                                               + rng.normal(scale=0.05, size=centres[index].shape[1]))[None, :])[0])
                    for kind, index in kinds.items()}
    profile = UserProfile(
        tags={("sports", "football"): 3.0, ("sports", "tennis"): 1.5, ("tech", "ai"): 2.0,
              ("tech", "chips"): 0.5, ("politics", "election"): 0.4, ("sports", "not-a-known-tag"): 9.0},
        topics={"football": 3.0, "ai": 2.0, "election": 0.4}, categories={"sports": 4.5, "tech": 2.5, "politics": 0.4},
        updated=NOW - HOUR)
    memberships = {"kmeans-tag": ["c0", "c2"], "rule": ["sports>tech", "unknown-label"]}
    lists = cf_lists(rng, catalog, ids, category_of, memberships)
    reader = RequestContext(user_id="reader", now=NOW, recent_clicks=clicks, click_times=click_times,
                            user_vectors=user_vectors, profile=profile, clusters=memberships,
                            seen_rows=read_only(catalog.rows(clicks)), cluster_lists=lists, live=snapshot,
                            co_clicks=co_click_lists(rng, catalog, ids, category_of, clicks))
    return World(settings, state, centres, category_of, snapshot, reader)


def make_snapshot(rng: np.random.Generator, rows: np.ndarray, published: np.ndarray,
                  hours: Iterable[float]) -> LiveSnapshot:
    """Clicks on a third of the articles (wider windows count more), a fresh list of every
    article newest first, the scheduled one included (``LiveState.publish`` lists it at once)."""
    size = int(rows.max()) + 1
    clicked = rng.choice(rows, size=max(len(rows) // 3, 1), replace=False)
    base = rng.integers(1, 30, size=len(clicked)).astype(np.float32)
    windows = {}
    for h in hours:
        clicks = np.zeros(size, np.float32)
        impressions = np.zeros(size, np.float32)
        clicks[clicked] = np.floor(base * (1 + h / 24))
        impressions[clicked] = clicks[clicked] * rng.integers(3, 30, size=len(clicked))
        windows[h] = WindowCounts(h, read_only(clicks), read_only(impressions))
    order = np.argsort(-published, kind="stable")
    return LiveSnapshot(NOW, windows, read_only(rows[order]), read_only(published[order]),
                        read_only(np.zeros(0, np.int32)))


def rule_centre(label: str, centres: np.ndarray) -> np.ndarray:
    return normalise(sum(centres[CATEGORIES.index(c)] for c in label.split(">"))[None, :])[0]


def centre_list(ids: list[str], vectors: np.ndarray, centre: np.ndarray, depth: int = 25) -> list[tuple[str, float]]:
    """The articles nearest a centre with their cosines, best first; it reaches past the
    cluster, so its tail points away (negative cosines)."""
    cos = normalise(vectors) @ centre
    return [(ids[n], float(cos[n])) for n in np.argsort(-cos)[:depth]]


def cf_lists(rng, catalog: ItemCatalog, ids: list[str], category_of: dict[str, str],
             memberships: dict[str, list[str]]) -> dict[tuple[str, str, str], tuple[np.ndarray, np.ndarray]]:
    """The CF lists of the reader's clusters as the context holds them: decayed click counts of
    the cluster's articles, best first (float64, as Redis gives them)."""
    out = {}
    for scheme, labels in memberships.items():
        for label in labels:
            if label == "unknown-label":
                continue  # a membership whose lists are gone: the routes skip it
            wanted = {CATEGORIES[int(label[1:])]} if scheme == "kmeans-tag" else set(label.split(">"))
            members = [n for n, i in enumerate(ids) if category_of[i] in wanted]
            picked = rng.choice(members, size=min(12, len(members)), replace=False)
            scores = np.sort(rng.uniform(0.1, 8.0, size=len(picked)))[::-1]
            out[("cf", scheme, label)] = (read_only(catalog.rows([ids[n] for n in picked])), read_only(scores))
    return out


def co_click_lists(rng, catalog: ItemCatalog, ids: list[str], category_of: dict[str, str],
                   clicks: list[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The co-click lists of the reader's clicks as the context holds them (the unindexed click
    has none): decayed counts of articles mostly of the click's category, strongest first."""
    out = {}
    for click in clicks:
        if click not in category_of:
            continue
        same = [i for i in ids if category_of[i] == category_of[click] and i != click]
        other = [i for i in ids if category_of[i] != category_of[click]]
        picked = list(rng.choice(same, size=6, replace=False)) + list(rng.choice(other, size=2, replace=False))
        scores = np.sort(rng.uniform(0.05, 5.0, size=len(picked)))[::-1]
        out[click] = (read_only(catalog.rows(picked)), read_only(scores))
    return out


# ---- the contract of a route's answer -------------------------------------------------------------

def check_candidates(found: Candidates, n: int, route, catalog: ItemCatalog,
                     ctx: RequestContext | None = None) -> list[Candidate]:
    """What every route's answer promises, whatever the route; returns it as objects."""
    name = route.name
    spec = ROUTES[name]
    assert isinstance(found, Candidates), f"{name} returned {type(found).__name__}, not Candidates"
    size = len(found)
    assert size <= max(n, 0), f"{name}: {size} candidates for n={n}"
    for column in ("rows", "scores", "seeds", "raw"):
        assert len(getattr(found, column)) == size, f"{name}: column {column} has another length"
    assert found.rows.dtype.kind == "i" and found.seeds.dtype.kind == "i"
    scores = found.scores.astype(np.float64)
    assert np.all(np.isfinite(scores)), f"{name}: non-finite scores"
    assert np.all(np.diff(scores) <= 0), f"{name}: scores not sorted best first"
    assert len(np.unique(found.rows)) == size, f"{name}: an article listed twice"
    assert np.all((found.rows >= 0) & (found.rows < len(catalog))), f"{name}: rows outside the catalog"
    labels = found.seed_labels
    assert np.all((found.seeds >= -1) & (found.seeds < len(labels))), f"{name}: seed index outside its labels"
    assert all(isinstance(label, str) and label for label in labels)
    raw = found.raw.astype(np.float64)
    assert np.all(np.isnan(raw) | np.isfinite(raw))
    listed = found.to_list(name, catalog.ids)
    assert len(listed) == size
    for row, c in zip(found.rows, listed):
        assert c.route == name and c.item_id == catalog.ids[row]
        if spec.kind != "fallback":
            assert c.seed, f"{name}: a personal candidate without what led to it"
    if spec.kind == "i2i":
        for c in listed:
            assert ctx is None or c.seed in ctx.recent_clicks
            assert c.item_id != c.seed
            assert c.raw_similarity is not None and c.raw_similarity >= route.cosine_floor - 1e-6
    return listed


def restricted(ctx: RequestContext, route) -> RequestContext:
    """The context as the service fetches it for ``route`` alone: only what the route declares
    in ``needs`` (lists cut to its depth) and only the hot windows it names."""
    needs = route.needs
    lists = {}
    if needs.clusters:
        lists = {key: (rows[: needs.list_depth], scores[: needs.list_depth])
                 for key, (rows, scores) in ctx.cluster_lists.items()
                 if key[0] in needs.list_kinds and key[2] in ctx.clusters.get(key[1], ())}
    live = ctx.live
    if live is not None:
        live = LiveSnapshot(live.taken_at, {h: w for h, w in live.windows.items() if h in route.windows},
                            live.fresh_rows, live.fresh_times, live.hidden_rows)
    co_clicks = {seed: (rows[: needs.co_click_depth], scores[: needs.co_click_depth])
                 for seed, (rows, scores) in ctx.co_clicks.items()
                 if seed in ctx.recent_clicks[: needs.co_click_seeds]}
    return dataclasses.replace(
        ctx, co_clicks=co_clicks,
        user_vectors={k: v for k, v in ctx.user_vectors.items() if k in needs.vector_kinds},
        profile=ctx.profile if needs.profile else None, clusters=dict(ctx.clusters) if needs.clusters else {},
        cluster_lists=lists, live=live)
