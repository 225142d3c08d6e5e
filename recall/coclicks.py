"""Item CF's co-click lists counted in process, for the nightly's recount.

The API pairs each live click in Redis, one ``CO_CLICK`` script call per click
(``recall/online.py``); the nightly recounts every list from the seen window's clicks. Through
the script that cost one round of Lua per click, the online step's largest pass (8,600 clicks a
second at ``bench.replay``'s small size). ``CoClickCounter`` runs the same arithmetic over the
clicks in memory and writes each list once: the same pairs, gains, caps and tie order, so the
lists it writes equal the script's to the last bit (``tests/recall/test_coclicks.py`` compares
them key by key). Its memory is the users' recent clicks of the window and the lists themselves.
"""

from __future__ import annotations

from collections.abc import Iterable

from recall.domain import HISTORY_SOURCE, EventRecord, to_unix
from recall.online import OnlineStore


def add_capped(scores: dict[str, float], cap: int) -> None:
    """Drop the lowest (score, member) while over ``cap``: ``ZREMRANGEBYRANK key 0 -cap-1``."""
    while len(scores) > cap:
        del scores[min(scores.items(), key=lambda kv: (kv[1], kv[0]))[0]]


class CoClickCounter:
    """``CO_CLICK`` over a stream of clicks in time order, into ``store``'s keys (the nightly's
    staged ones); ``write`` puts the lists and their reference time in Redis."""

    def __init__(self, store: OnlineStore):
        self.store = store
        self.window, self.half_life, self.cap, self.partners, self.ttl, _ = store.co_click_args()
        self.recent_cap = store.s.recent_clicks_cap
        self.ref: float | None = None
        self.recent: dict[str, dict[str, float]] = {}  # user -> article -> last click time
        self.lists: dict[str, dict[str, float]] = {}  # article -> co-clicked article -> score

    def add(self, events: Iterable[EventRecord]) -> int:
        """Apply a batch of events; only clicks count (a history click as a partner alone)."""
        n = 0
        for n, ev in enumerate(events, 1):
            if ev.kind != "click":
                continue
            ts = to_unix(ev.ts)
            clicks = self.recent.setdefault(ev.user_id, {})
            if clicks.get(ev.article_id, float("-inf")) < ts:  # ZADD GT
                clicks[ev.article_id] = ts
                add_capped(clicks, self.recent_cap)
            if ev.source != HISTORY_SOURCE:
                self.pair(ev.article_id, ts, clicks)
        return n

    def pair(self, article: str, ts: float, clicks: dict[str, float]) -> None:
        if self.ref is None:
            self.ref = ts
        gain = 2.0 ** min((ts - self.ref) / self.half_life, 900.0)
        # ZREVRANGEBYSCORE ts ts-window LIMIT 0 partners+1: newest first, ties by member descending
        earlier = sorted(((when, other) for other, when in clicks.items() if ts - self.window <= when <= ts),
                         reverse=True)[:self.partners + 1]
        partners = [other for _, other in earlier if other != article][:self.partners]
        for other in partners:
            for source, target in ((article, other), (other, article)):
                scores = self.lists.setdefault(source, {})
                scores[target] = scores.get(target, 0.0) + gain
                add_capped(scores, self.cap)

    def write(self, chunk: int = 1000) -> int:
        """ZADD each list whole with its TTL, and SET the reference time; returns the lists."""
        store = self.store
        pipe = store.r.pipeline(transaction=False)
        for n, (article, scores) in enumerate(self.lists.items(), 1):
            key = store.k("icf", article)
            pipe.zadd(key, scores)
            pipe.expire(key, self.ttl)
            if n % chunk == 0:
                pipe.execute()
        if self.ref is not None:
            pipe.set(store.k("icf", "ref"), self.ref)
        pipe.execute()
        return len(self.lists)
