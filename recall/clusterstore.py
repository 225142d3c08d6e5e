"""Cluster state in Redis: memberships, profiles, in-cluster CF lists, cluster-centre candidates.

Keys (under the online store's prefix, then ``b:{version}:``: labels are those of one build's
cluster models, so every key here is that build's; see ``recall/buildkeys.py``):

================================  ======  ==================================================
key                               type    meaning
================================  ======  ==================================================
``u:{user}:clusters``             hash    scheme -> the user's labels, nearest first ("c3,c7")
``cl:schemes``                    hash    scheme -> JSON summary (k, elbow, stability, sizes)
``cl:{scheme}:sizes``             zset    label -> members (the clusters page sorts by it)
``cl:{scheme}:p:{label}``         string  JSON profile: size, centre, top tags and categories,
                                          members by activity
``cl:{scheme}:cf:{label}``        zset    article -> clicks by members, time-decayed
``cl:{scheme}:centre:{label}``    zset    article -> similarity to the centre (nightly)
================================  ======  ==================================================

CF scores grow instead of decaying: a click at time t adds ``2 ** ((t - ref) / half_life)``,
``ref`` being the build's cutoff, so an increment never rewrites the list; reading divides by
the same factor at "now", which gives decayed click counts. Each build's lists count against
its own cutoff, which keeps the exponents small.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass

import redis

from recall import sqlstore
from recall.domain import HISTORY_SOURCE, to_unix
from recall.online import OnlineStore, parse_memberships

CF_HALF_LIVES = 4  # a rebuilt CF list replays this many half-lives of clicks
MAX_EXPONENT = 900.0  # 2**900 still fits a double; only reached if no build runs for months


@dataclass(frozen=True, slots=True)
class SchemeSummary:
    name: str
    kind: str
    vector_kind: str | None
    k: int
    refreshed_at: str | None
    label_stability: float | None
    sizes: list[int]
    elbow: list[tuple[int, float]] | None = None
    size_distribution: dict | None = None


@dataclass(frozen=True, slots=True)
class ClusterProfile:
    scheme: str
    label: str
    size: int
    top_tags: list[tuple[str, float]]
    top_categories: list[tuple[str, float]]
    activity: dict[str, int]  # members by clicks over the last week: heavy, regular, light, dormant
    centre: list[float] | None = None  # in the clustered user vector space (k-means schemes)


class ClusterStore:
    """The cluster state of build ``version`` (the keys under ``b:{version}:``)."""

    def __init__(self, online: OnlineStore, version: str | None):
        self.online = online
        self.version = version
        self.r = online.r

    def k(self, *parts: object) -> str:
        return self.online.build_key(self.version, *parts)

    # ---- the nightly job writes --------------------------------------------------------
    def write_scheme(self, summary: SchemeSummary, memberships: Mapping[str, Sequence[str]],
                     profiles: Sequence[ClusterProfile],
                     centre_lists: Mapping[str, Sequence[tuple[str, float]]]) -> None:
        """Write a scheme of a new build: memberships, profiles, sizes and centre candidates
        (its CF lists are replayed by ``replay_clicks``). A new version starts with no keys, so
        nothing of an older build's scheme is left to remove."""
        scheme = summary.name
        pipe = self.r.pipeline(transaction=False)
        for profile in profiles:
            pipe.zadd(self.k("cl", scheme, "sizes"), {profile.label: profile.size})
            pipe.set(self.k("cl", scheme, "p", profile.label), json.dumps(asdict(profile)))
        for label, items in centre_lists.items():
            if items:
                pipe.zadd(self.k("cl", scheme, "centre", label), dict(items))
        pipe.execute()
        self.set_memberships({user: {scheme: labels} for user, labels in memberships.items()})
        self.r.hset(self.k("cl", "schemes"), scheme, json.dumps(asdict(summary)))

    def set_memberships(self, memberships: Mapping[str, Mapping[str, Sequence[str]]]) -> None:
        """user -> scheme -> labels, pipelined in batches."""
        pipe = self.r.pipeline(transaction=False)
        for n, (user, schemes) in enumerate(memberships.items(), 1):
            key = self.k("u", user, "clusters")
            joined = {scheme: ",".join(labels) for scheme, labels in schemes.items() if labels}
            if joined:
                pipe.hset(key, mapping=joined)
            if len(joined) < len(schemes):  # no cluster in a scheme any more (rule's "other")
                pipe.hdel(key, *[scheme for scheme, labels in schemes.items() if not labels])
            if n % 10_000 == 0:
                pipe.execute()
        pipe.execute()

    def add_clicks(self, clicks: Iterable[tuple[float, str, Mapping[str, Sequence[str]]]],
                   ref: float, half_life_hours: float, cap: int) -> int:
        """(time, article, the clicker's scheme -> labels) -> the clusters' CF lists."""
        pipe = self.r.pipeline(transaction=False)
        touched: set[str] = set()
        n = 0
        for ts, article, schemes in clicks:
            gain = 2.0 ** min((ts - ref) / (half_life_hours * 3600), MAX_EXPONENT)
            for scheme, labels in schemes.items():
                for label in labels:
                    key = self.k("cl", scheme, "cf", label)
                    pipe.zincrby(key, gain, article)
                    touched.add(key)
            n += 1
        for key in touched:  # keep each list to the strongest ``cap`` articles
            pipe.zremrangebyrank(key, 0, -cap - 1)
        pipe.execute()
        return n

    def replay_clicks(self, sessions, memberships: Mapping[str, Mapping[str, Sequence[str]]],
                      until: datetime, ref: float, half_life_hours: float, cap: int) -> int:
        """Refill the CF lists from SQL: the live clicks of the last ``CF_HALF_LIVES`` half-lives
        before ``until`` (history clicks excluded, as online), by the clickers' clusters."""
        since = until - timedelta(hours=CF_HALF_LIVES * half_life_hours)
        with sessions() as session:
            clicks = [(to_unix(e.ts), e.article_id, memberships.get(e.user_id, {}))
                      for e in sqlstore.iter_events(session, after=since, before=until)
                      if e.kind == "click" and e.source != HISTORY_SOURCE]
        return self.add_clicks(clicks, ref, half_life_hours, cap) if clicks else 0

    # ---- the request path reads ----------------------------------------------------------
    def lists(self, list_kind: str, clusters: Sequence[tuple[str, str]], n: int
              ) -> dict[tuple[str, str], list[tuple[str, float]]]:
        """Top ``n`` of each (scheme, label)'s "cf" or "centre" list, in one round trip;
        empty when Redis is down (counted in the online store's errors)."""
        if not clusters:
            return {}
        pipe = self.r.pipeline(transaction=False)
        for scheme, label in clusters:
            pipe.zrevrange(self.k("cl", scheme, list_kind, label), 0, n - 1, withscores=True)
        try:
            results = pipe.execute()
        except redis.RedisError:
            self.online.errors += 1
            return {}
        return {c: [(m.decode(), float(s)) for m, s in rows] for c, rows in zip(clusters, results)}

    # ---- the admin page reads ------------------------------------------------------------
    def schemes(self) -> list[SchemeSummary]:
        raw = self.r.hgetall(self.k("cl", "schemes"))
        return sorted((_summary(json.loads(v)) for v in raw.values()), key=lambda s: s.name)

    def scheme(self, name: str) -> SchemeSummary | None:
        raw = self.r.hget(self.k("cl", "schemes"), name)
        return _summary(json.loads(raw)) if raw else None

    def clusters(self, scheme: str, offset: int = 0, limit: int = 50) -> tuple[int, list[ClusterProfile]]:
        """(how many clusters, one page of them), biggest first."""
        sizes_key = self.k("cl", scheme, "sizes")
        total = self.r.zcard(sizes_key)
        labels = [m.decode() for m in self.r.zrevrange(sizes_key, offset, offset + limit - 1)]
        page = [self.profile(scheme, label) for label in labels]
        return total, [p for p in page if p is not None]

    def profile(self, scheme: str, label: str) -> ClusterProfile | None:
        raw = self.r.get(self.k("cl", scheme, "p", label))
        if not raw:
            return None
        data = json.loads(raw)
        return ClusterProfile(data["scheme"], data["label"], data["size"],
                              [tuple(x) for x in data["top_tags"]],
                              [tuple(x) for x in data["top_categories"]], data["activity"],
                              data.get("centre"))

    def top_items(self, scheme: str, label: str, n: int = 20) -> list[tuple[str, float]]:
        """The cluster's CF list: what its members clicked most, by decayed score."""
        return self.lists("cf", [(scheme, label)], n).get((scheme, label), [])

    def memberships(self, user_id: str) -> dict[str, list[str]]:
        raw = self.r.hgetall(self.k("u", user_id, "clusters"))
        return parse_memberships(raw)


def _summary(data: dict) -> SchemeSummary:
    data["elbow"] = [tuple(x) for x in data.get("elbow") or []] or None
    return SchemeSummary(**data)
