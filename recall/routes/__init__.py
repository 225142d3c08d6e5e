"""The route registry: every route the platform serves, with its default config.

Adding a route is one class (a candidate source, see ``base.Route``) and one line here; the
API, the merger, the nightly job (which builds an index for each route with an encoder) and
``recall eval`` pick it up from this table.
"""

from __future__ import annotations

from recall.routes.base import RouteConfig, RouteSpec
from recall.routes.cluster import ClusterListRoute, GroupProfileRoute
from recall.routes.crosstag import CrossTagRoute
from recall.routes.fallback import FreshRoute, HotCategoryRoute, HotRoute, TrendingRoute
from recall.routes.i2i import EmbeddingI2IRoute
from recall.routes.itemcf import ItemCFRoute
from recall.routes.u2i import UserVectorRoute


def cfg(name: str, weight: float, quota: int = 200, **params) -> RouteConfig:
    return RouteConfig(name, True, weight, quota, params)


def i2i(name: str, *, floor: float = 0.6, weight: float = 1.0, quota: int = 200, enabled: bool = True,
        description: str = "") -> RouteSpec:
    """An item-to-item route over the index of the encoder of the same name."""
    return RouteSpec(name, "i2i", EmbeddingI2IRoute.factory,
                     RouteConfig(name, enabled, weight, quota, {"cosine_floor": floor}),
                     encoder=name, description=description)


# Default weights and quotas are fitted by `recall eval --tune-from` (README, "Evaluation"): the
# MIND-sample fit for the routes real clicks can measure (shown, hot, trending, itemcf,
# hot_category), the synthetic world's fit for the content, user-vector and cluster routes that
# MIND cannot (3% of its clicked ids have text); fresh stays on where the two disagree (the
# synthetic fit keeps it, MIND's slice drops it). Both fits turned item2vec off. graph2vec and
# eges came after these fits: half weight, as item2vec had.
ROUTES: dict[str, RouteSpec] = {spec.name: spec for spec in [
    i2i("tag2vec", description="neighbours of recent clicks by the sum of their tag vectors (fastText)"),
    i2i("title2vec", weight=0.5, description="neighbours by title, a bidirectional LSTM trained on co-clicks"),
    i2i("doc2vec", floor=0.5, description="neighbours by title + abstract, a frozen sentence encoder (MiniLM; multilingual e5 for Chinese)"),
    i2i("img2vec", weight=0.5, description="neighbours by image, pooled ResNet features"),
    i2i("item2vec", floor=0.5, weight=0.5, enabled=False, description="articles clicked by the same readers (fastText on click sequences)"),
    i2i("media2vec", floor=0.8, weight=0.3, description="articles of media read by the same readers"),
    i2i("entity2vec", weight=0.5, description="neighbours by knowledge-graph entity vectors"),
    i2i("graph2vec", floor=0.5, weight=0.5,
        description="neighbours on the click graph: fastText over DeepWalk/Node2vec walks"),
    i2i("eges", floor=0.5, weight=0.5,
        description="EGES: graph walks with side information; new articles from tags, category, media"),
    RouteSpec("dssm", "u2i", UserVectorRoute.over("dssm", "dssm"), cfg("dssm", 0.1, 300),
              encoder="dssm", user_vector="dssm", searches="dssm",
              description="two-tower DSSM: the user tower's vector against the item tower's index"),
    RouteSpec("user2vec", "u2i", UserVectorRoute.over("tag2vec", "tag"), cfg("user2vec", 1.0), user_vector="tag",
              searches="tag2vec",
              description="the user's decayed tag profile as a tag2vec vector, updated on every click"),
    RouteSpec("user_lstm", "u2i", UserVectorRoute.over("tag2vec", "lstm"), cfg("user_lstm", 0.5, 300), user_vector="lstm",
              searches="tag2vec",
              description="an LSTM over the user's recent clicks, trained to point at the next one"),
    RouteSpec("crosstag", "u2i", CrossTagRoute.factory, cfg("crosstag", 2.0, groups=3, tags_per_group=3),
              searches="tag2vec",
              description="one tag2vec query per interest category, equal quotas per category"),
    RouteSpec("cluster_cf", "cluster", ClusterListRoute.of("cf"), cfg("cluster_cf", 1.0, 100),
              description="what the user's cluster-mates clicked, time-decayed, updated on every click"),
    RouteSpec("cluster_centre", "cluster", ClusterListRoute.of("centre"), cfg("cluster_centre", 0.1, 25),
              description="fresh articles nearest the centres of the user's clusters (nightly)"),
    RouteSpec("group_profile", "cluster", GroupProfileRoute.factory, cfg("group_profile", 0.25),
              searches="tag2vec",
              description="user2vec on the merged profile of the user's clusters"),
    # itemcf, trending: params measured on MIND-sample (README, "Live-signal routes").
    RouteSpec("itemcf", "u2i", ItemCFRoute.factory, cfg("itemcf", 0.25, 100, seeds=30, depth=100, alpha=0.25),
              description="real-time item CF: articles clicked in the same sessions as the user's recent clicks"),
    RouteSpec("hot_category", "cluster", HotCategoryRoute.factory, cfg("hot_category", 0.1, categories=3),
              description="most clicked articles over a recent window within the user's top categories"),
    RouteSpec("trending", "fallback", TrendingRoute.factory,
              RouteConfig("trending", True, 0.5, 50, {"short_hours": 1.0, "long_hours": 6.0}),
              description="articles whose clicks rise fastest: the last hour against the 6 h rate"),
    RouteSpec("hot", "fallback", HotRoute.factory,
              RouteConfig("hot", True, 0.1, 300, {"window_hours": 6.0, "ctr_power": 0.0}),
              description="most clicked articles over a recent window"),
    RouteSpec("shown", "fallback", HotRoute.factory,
              RouteConfig("shown", True, 2.0, 500, {"window_hours": 1.0, "count": "impressions"}),
              description="most shown articles over the last hour (impressions: what the platform shows now)"),
    RouteSpec("fresh", "fallback", FreshRoute.factory, RouteConfig("fresh", True, 0.3, 100, {}),
              description="the newest active articles"),
]}


def default_configs() -> dict[str, RouteConfig]:
    return {name: spec.default for name, spec in ROUTES.items()}
