"""What a click changes beyond recent clicks and hot counters: the user's profile, vectors and
clusters, and the in-cluster CF lists of those clusters.

``apply`` runs on every event batch (``POST /v1/events`` and the evaluation replay), after
``OnlineStore.record_events``: the profile script decays and adds, the user's online vector
kinds are recomputed from the new profile and recent clicks, the user is assigned to the
build's fixed centres (incremental clustering: centres move only in the nightly refresh), and
each click is added to the CF lists of the clicker's clusters. So a click shows up in a
cluster-mate's ``cluster_cf`` candidates on their very next request.

History events (MIND's backfilled click histories, whose real time is unknown) shape profiles
but never the CF lists, for the same reason they never count as hot.

Vectors, memberships and CF lists are the serving build's keys (``b:{version}:``). A click also
reaches the CF lists of every other build version with complete keys in Redis (the previous
builds a rollback or a fallback would serve, and a new build published while this process still
serves the old one), by the memberships that version holds for the clicker: cheap, and so the
clicks of the seconds when two builds are served at once reach both. Their vectors and
memberships stay as they were: only a process holding that build can compute them, and a stale
vector of the right space is still a vector of the right space.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis

from recall import buildkeys
from recall.clusterstore import ClusterStore
from recall.domain import HISTORY_SOURCE, EventRecord, to_unix
from recall.online import BUILD_WHOLE, OnlineStore, OnlineStoreError, parse_memberships
from recall.profiles import UserProfile
from recall.serving import ServingState
from recall.uservectors import TAG_ROUTE


class UserStateUpdater:
    def __init__(self, online: OnlineStore, state: ServingState):
        self.online = online
        self.state = state
        self.clusters = ClusterStore(online, state.version)
        self.settings = online.s

    def apply(self, events: Sequence[EventRecord]) -> dict[str, int]:
        catalog = self.state.catalog
        clicks = [(e, catalog.get(e.article_id)) for e in events if e.kind == "click"]
        clicks = [(e, meta) for e, meta in clicks if meta is not None]
        if not clicks:
            return {"profiles": 0, "cf": 0}
        try:
            self.online.apply_clicks_to_profiles((e.user_id, to_unix(e.ts), meta) for e, meta in clicks)
            memberships = self.refresh_users(list(dict.fromkeys(e.user_id for e, _ in clicks)))
            live = [(to_unix(e.ts), e.article_id, e.user_id) for e, _ in clicks if e.source != HISTORY_SOURCE]
            cf = self.clusters.add_clicks([(ts, article, memberships.get(user, {})) for ts, article, user in live],
                                          self.state.cutoff_ts, self.settings.cluster_cf_half_life_hours,
                                          self.settings.cluster_cf_cap) if live else 0
            if live:
                self.add_to_other_builds(live)
        except redis.RedisError as exc:
            raise OnlineStoreError(str(exc)) from exc
        return {"profiles": len(clicks), "cf": cf}

    def add_to_other_builds(self, clicks: Sequence[tuple[float, str, str]]) -> list[str]:
        """(time, article, user) live clicks -> the CF lists of every other build version whose
        keys are complete, by the clicker's memberships in that version and against its own
        reference time. Returns the versions written."""
        others = {v: ref for v, ref in buildkeys.registered(self.online).items() if v != self.state.version}
        if not others:
            return []
        users = list(dict.fromkeys(user for _, _, user in clicks))
        pipe = self.online.r.pipeline(transaction=False)
        for version in others:
            pipe.exists(self.online.build_key(version, BUILD_WHOLE))
            for user in users:
                pipe.hgetall(self.online.build_key(version, "u", user, "clusters"))
        replies = iter(pipe.execute())
        written = []
        for version, ref in others.items():
            complete = next(replies)
            memberships = {user: parse_memberships(next(replies)) for user in users}
            if complete:  # a version being written gets these clicks from its own replay
                ClusterStore(self.online, version).add_clicks(
                    [(ts, article, memberships[user]) for ts, article, user in clicks], ref,
                    self.settings.cluster_cf_half_life_hours, self.settings.cluster_cf_cap)
                written.append(version)
        return written

    def refresh_users(self, users: list[str]) -> dict[str, dict[str, list[str]]]:
        """Recompute vectors and memberships of ``users``; returns every scheme's labels of each
        (the nightly-only schemes, such as DSSM's, as the job left them)."""
        models = self.state.users
        item_index = self.state.indexes.get(TAG_ROUTE)
        pipe = self.online.r.pipeline(transaction=False)
        for user in users:  # one round trip: each user's new profile, recent clicks and clusters
            pipe.hgetall(self.online.k("u", user, "profile"))
            pipe.zrevrange(self.online.k("u", user, "clicks"), 0, models.recent_clicks - 1)
            pipe.hgetall(self.clusters.k("u", user, "clusters"))
        replies = pipe.execute()
        by_kind: dict[str, list] = {}
        memberships: dict[str, dict[str, list[str]]] = {}
        changed: dict[str, dict[str, list[str]]] = {}
        for n, user in enumerate(users):
            profile = UserProfile.parse(replies[3 * n])
            clicks = [m.decode() for m in replies[3 * n + 1]]
            vectors = models.vectors(profile, clicks, item_index, self.state.catalog)
            for kind, vector in vectors.items():
                by_kind.setdefault(kind, []).append((user, vector))
            changed[user] = models.memberships(vectors, profile)
            memberships[user] = {**parse_memberships(replies[3 * n + 2]), **changed[user]}
        for kind, rows in by_kind.items():
            self.online.set_user_vectors(self.state.version, kind, rows)
        self.clusters.set_memberships({u: m for u, m in changed.items() if m})
        return memberships
