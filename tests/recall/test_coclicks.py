"""The nightly's in-process co-click count against the API's ``CO_CLICK`` script, in a real
Redis: over random click streams that reach every cap and tie, the lists, their scores, the
reference time and the TTLs are the same, key by key and bit by bit."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import pytest

from recall.coclicks import CoClickCounter
from recall.domain import HISTORY_SOURCE, EventRecord, to_unix
from recall.online import OnlineStore
from tests.recall.test_online import make_store  # noqa: F401 (a fixture)

T0 = datetime(2026, 11, 10, 12, 0)
# Small caps, so that lists and recent clicks overflow: the order of what is dropped must match.
SMALL = dict(itemcf_cap=10, itemcf_partners=3, recent_clicks_cap=6, itemcf_session_minutes=20,
             itemcf_half_life_hours=1.5)


def click_stream(seed: int, n: int = 3000) -> list[EventRecord]:
    """Clicks in time order by a few users over a few articles; some share a second (ties), some
    re-click, some are history clicks; impressions in between are not clicks."""
    rng = random.Random(seed)
    events, t = [], 0.0
    for i in range(n):
        t += rng.choice([0.0, 0.0, 0.5, 3.0, 40.0])  # seconds; zeros make ties
        if rng.random() < 0.02:
            t += 3600.0 * rng.random()  # a gap: gains grow, sessions end
        user, article = f"u{rng.randrange(12)}", f"a{rng.randrange(60):02d}"
        kind = "impression" if rng.random() < 0.1 else "click"
        source = HISTORY_SOURCE if rng.random() < 0.15 else "api"
        events.append(EventRecord(key=str(i), user_id=user, article_id=article, kind=kind,
                                  ts=T0 + timedelta(seconds=t), source=source))
    return events


def co_click_state(store: OnlineStore) -> dict[str, list]:
    keys = sorted(k.decode() for k in store.r.scan_iter(match=store.k("icf", "*"), count=1000))
    return {key: store.r.get(key) if store.r.type(key) == b"string" else store.r.zrange(key, 0, -1, withscores=True)
            for key in keys}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_counter_writes_what_the_script_writes(make_store, seed):
    script = make_store(**SMALL)
    counted = make_store(**SMALL, redis_prefix=script.p + "counted:")
    events = click_stream(seed)
    for start in range(0, len(events), 500):  # batches, as the replay sends them
        script.record_events(events[start:start + 500], effects=frozenset({"clicks", "co_clicks"}))
    counter = CoClickCounter(counted)
    for start in range(0, len(events), 700):
        counter.add(events[start:start + 700])
    assert counter.write() > 10
    got = {key.replace(counted.p, script.p, 1): value for key, value in co_click_state(counted).items()}
    assert got == co_click_state(script)  # exact floats: the same pairs, gains, sums and drops
    assert any(len(scores) == SMALL["itemcf_cap"] for scores in got.values() if isinstance(scores, list))
    assert max(len(clicks) for clicks in counter.recent.values()) == SMALL["recent_clicks_cap"]
    some_list = next(key for key in got if not key.endswith(":ref"))
    assert 0 < counted.r.ttl(some_list.replace(script.p, counted.p, 1)) <= counted.co_click_args()[4]


def test_history_clicks_are_partners_never_sources(make_store):
    store = make_store(**SMALL)
    counter = CoClickCounter(store)
    events = [EventRecord(key=str(i), user_id="u", article_id=a, kind="click", ts=T0 + timedelta(seconds=i),
                          source=source)
              for i, (a, source) in enumerate([("h1", HISTORY_SOURCE), ("h2", HISTORY_SOURCE), ("x", "api")])]
    counter.add(events)
    assert counter.lists == {"x": {"h2": 1.0, "h1": 1.0}, "h2": {"x": 1.0}, "h1": {"x": 1.0}}
    assert counter.ref == to_unix(events[2].ts)  # the scores grow from the first live click
