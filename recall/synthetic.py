"""A deterministic synthetic news world whose answers are known: who likes which topic.

Topics belong to categories and own a vocabulary of tags; articles are written from one topic's
words and published over the days; users have two or three interest topics and, in each session,
see a list of recent articles and click mostly (``IN_INTEREST_CLICK_SHARE``) inside their
interests, preferring intrinsically popular (Zipf) and recent articles. Tests and the demo rely
on that structure: a route that learns it should recall a user's topics.

One vectorised generator makes every size, from a test's few hundred articles to MIND-large
(161k articles, 1M readers, 25M events, in minutes): ``plan`` draws the articles, the readers and
their sessions as arrays (``PlannedWorld``), whose events then come out in time-ordered chunks
of arrays (``PlannedWorld.event_chunks``), never one Python object per event; ``generate``
turns a small plan into records. Each part draws from its own seeded stream (articles, readers,
sessions, and each chunk of sessions): same arguments, same world.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

from recall.domain import ArticleRecord, EventRecord

# category -> topic -> tag words (a tag is "{topic}_{word}").
TOPICS: dict[str, dict[str, str]] = {
    "sports": {
        "football": "transfer striker goal league coach derby penalty stadium keeper midfield "
                    "champions relegation referee fixture winger captain",
        "tennis": "grand_slam serve ace baseline wimbledon ranking clay tiebreak doubles racket "
                  "volley umpire seed qualifier backhand",
        "basketball": "playoffs dunk rebound draft point_guard three_pointer buzzer court coach "
                      "finals rookie trade roster overtime assist",
    },
    "politics": {
        "election": "poll ballot candidate campaign turnout debate swing_state primary vote "
                    "recount polling_station manifesto coalition endorsement runoff",
        "diplomacy": "summit treaty embassy sanctions ambassador negotiation ceasefire alliance "
                     "delegation envoy talks visa border accord minister",
    },
    "tech": {
        "ai": "model training chatbot neural_network gpu dataset benchmark robotics inference "
              "startup regulation alignment open_source transformer agent",
        "gadgets": "smartphone laptop battery camera launch review headphones tablet chip "
                   "wearable screen charger foldable smartwatch upgrade",
        "security": "breach ransomware phishing password vulnerability patch hacker malware "
                    "encryption firewall leak zero_day botnet audit exploit",
    },
    "finance": {
        "markets": "stocks index rally selloff bonds yield earnings dividend ipo volatility "
                   "futures bull bear trader portfolio",
        "economy": "inflation interest_rate central_bank gdp unemployment recession wages "
                   "budget deficit tariff housing growth exports consumer spending",
    },
    "health": {
        "medicine": "vaccine trial hospital surgery cancer diagnosis therapy nurse outbreak "
                    "antibiotic clinic patient doctor drug research",
        "fitness": "workout running yoga diet protein marathon gym stretching sleep cardio "
                   "nutrition weight strength recovery habit",
    },
    "entertainment": {
        "movies": "box_office premiere director sequel trailer oscar actor streaming "
                  "blockbuster festival casting review animation script studio",
        "music": "album tour concert single chart band festival singer lyrics grammy vinyl "
                 "playlist rapper guitar debut",
    },
    "travel": {
        "destinations": "beach island museum hiking city_break resort castle island_hopping "
                        "road_trip mountains old_town cruise safari lake market",
        "aviation": "airline flight airport delay pilot ticket lounge route runway jet "
                    "strike baggage boarding fare airshow",
    },
}
GENERIC_TAGS = ("breaking", "analysis", "opinion", "video", "live", "exclusive")
FILLER_WORDS = "the a new after as over with amid why how what report says week".split()

IN_INTEREST_CLICK_SHARE = 0.85
INTEREST_IMPRESSION_SHARE = 0.6
LIVE_HOURS = 72  # what a session can show: articles published in the last three days
EXPIRES_AFTER = timedelta(days=3)
EVERGREEN_SHARE = 0.1  # articles that never expire
MEDIA_PER_TOPIC = 3
GENERAL_MEDIA = ("wire_1", "wire_2", "wire_3")
VISITS_PER_DAY = 1.8  # a reader's sessions a day unless an event count is asked for
EVENTS_PER_SESSION = 16.5  # 10-20 impressions and 0-3 clicks
SESSIONS_PER_CHUNK = 20_000  # events are drawn for this many sessions at a time (~330k events)
# Sessions whose pool of articles is at most this large draw from the whole pool at once; larger
# pools draw with replacement and drop repeats (both are the same successive sampling).
WHOLE_POOL_MAX = 100
REDRAW_ROUNDS = 30  # then the few sessions still short draw from their whole pool
TAGS_MAX = 6  # topic tags per article (3-6), plus one generic tag for some
BODY_WORDS_MAX = 39


@dataclass
class SyntheticWorld:
    articles: list[ArticleRecord]
    events: list[EventRecord]  # impressions and clicks, ordered by ts
    user_interests: dict[str, list[str]]  # user -> 2-3 topics
    article_topic: dict[str, str]
    user_group: dict[str, int] = field(default_factory=dict)  # planted groups only


@dataclass(frozen=True)
class _Topic:
    name: str
    category: str
    words: tuple[str, ...]
    tags: tuple[str, ...]


def _topics() -> list[_Topic]:
    return [_Topic(topic, category, tuple(words.split()), tuple(f"{topic}_{word}" for word in words.split()))
            for category, topics in TOPICS.items() for topic, words in topics.items()]


def _zipf_weights(n: int, exponent: float = 1.0) -> np.ndarray:
    weights = 1.0 / np.arange(1, n + 1) ** exponent
    return weights / weights.sum()


def _top_k_per_segment(rng: np.random.Generator, segments: np.ndarray, weights: np.ndarray,
                       k: np.ndarray) -> np.ndarray:
    """A mask of what each segment keeps (``segments``: the segment of each item): ``k[segment]``
    items drawn without replacement proportionally to ``weights``.

    Exponential clocks (the item whose clock rings first is taken first) give the same draw as
    repeated weighted choice, for every segment in one vectorised step.
    """
    clocks = rng.exponential(size=len(segments)) / weights
    order = np.lexsort((clocks, segments))
    ordered = segments[order]
    first = np.searchsorted(ordered, ordered, side="left")  # where each item's segment starts
    keep = np.zeros(len(segments), dtype=bool)
    keep[order] = np.arange(len(segments)) - first < k[ordered]
    return keep


def _ranges(starts: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The concatenated ranges ``starts[i] + arange(counts[i])`` and the range each value is of."""
    owner = np.repeat(np.arange(len(counts)), counts)
    offsets = np.arange(len(owner)) - np.repeat(np.cumsum(counts) - counts, counts)
    return starts[owner] + offsets, owner


@dataclass
class EventColumns:
    """A time-ordered run of a world's events as arrays (``PlannedWorld.event_chunks``)."""

    n: np.ndarray  # int64 position in the world's event stream (its key is "syn:{seed}:{n}")
    ts: np.ndarray  # datetime64[us]
    user: np.ndarray  # int64: user "u{user}"
    article: np.ndarray  # int64: article "a{article}"
    click: np.ndarray  # bool: a click, else an impression
    session: np.ndarray  # int64: impression "syn:{seed}:s{session}"

    def __len__(self) -> int:
        return len(self.n)

    def select(self, mask: np.ndarray) -> EventColumns:
        return EventColumns(self.n[mask], self.ts[mask], self.user[mask], self.article[mask],
                            self.click[mask], self.session[mask])

    @staticmethod
    def concat(parts: list[EventColumns]) -> EventColumns:
        return EventColumns(*(np.concatenate([getattr(p, name) for p in parts])
                              for name in ("n", "ts", "user", "article", "click", "session")))


class _Catalogue:
    """Articles ordered by publish time (article n is the n-th published), grouped by topic.

    A session at hour h shows articles published in (h - LIVE_HOURS, h]; their attractiveness
    is intrinsic appeal times recency (a day-old article is half as attractive), so within one
    session it is proportional to ``appeal * 2 ** (published / 24)``, a weight of the article
    alone: cumulative sums of it per topic give any window's weight in two look-ups.
    """

    def __init__(self, published_hours: np.ndarray, topic_of: np.ndarray, appeal: np.ndarray, topics: int):
        end = float(published_hours[-1]) if len(published_hours) else 0.0
        # Relative to the last article, so the weights stay within floating point for long worlds.
        self.weight = appeal * np.exp2((published_hours - end) / 24.0)
        self.by_topic = np.argsort(topic_of, kind="stable")  # by topic, then by publish time
        counts = np.bincount(topic_of, minlength=topics)
        self.topic_start = np.concatenate([[0], np.cumsum(counts)])
        self.topic_published = [published_hours[self.by_topic[a:b]]
                                for a, b in zip(self.topic_start[:-1], self.topic_start[1:])]
        self.topic_cumweight = [np.concatenate([[0.0], np.cumsum(self.weight[self.by_topic[a:b]])])
                                for a, b in zip(self.topic_start[:-1], self.topic_start[1:])]

    def windows(self, hours: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per session and topic, the live articles' range in that topic (start, count)."""
        starts = np.empty((len(hours), len(self.topic_published)), dtype=np.int64)
        ends = np.empty_like(starts)
        for t, published in enumerate(self.topic_published):
            starts[:, t] = np.searchsorted(published, hours - LIVE_HOURS, side="right")
            ends[:, t] = np.searchsorted(published, hours, side="right")
        return starts, ends - starts

    def draw(self, rng: np.random.Generator, starts: np.ndarray, counts: np.ndarray, wanted: np.ndarray,
             weighted: bool) -> tuple[np.ndarray, np.ndarray]:
        """Per session, ``wanted`` distinct articles of the windows ``starts``/``counts`` (zero
        counts for topics not drawn from), by attractiveness or uniformly: (session, article)."""
        pools = counts.sum(axis=1)
        wanted = np.minimum(wanted, pools)
        whole = pools <= WHOLE_POOL_MAX
        chosen = [self._draw_whole(rng, starts, counts, np.where(whole, wanted, 0), weighted)]
        large = np.flatnonzero(~whole & (wanted > 0))
        if len(large):
            chosen.append(self._draw_repeatedly(rng, starts, counts, wanted, weighted, large))
        sessions, articles = (np.concatenate(parts) for parts in zip(*chosen))
        return sessions, articles

    def _pool(self, starts: np.ndarray, counts: np.ndarray, sessions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every (session, article) pair of the sessions' windows."""
        slot_counts = counts[sessions].ravel()
        slot_starts = (self.topic_start[:-1][None, :] + starts[sessions]).ravel()
        positions, slot = _ranges(slot_starts, slot_counts)
        return sessions[slot // counts.shape[1]], self.by_topic[positions]

    def _draw_whole(self, rng: np.random.Generator, starts: np.ndarray, counts: np.ndarray,
                    wanted: np.ndarray, weighted: bool,
                    exclude: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Draws from every article of the pools at once; ``exclude``d (session, article) pairs
        are never drawn."""
        sessions = np.flatnonzero(wanted > 0)
        pool_sessions, pool_articles = self._pool(starts, counts, sessions)
        weights = self.weight[pool_articles] if weighted else np.ones(len(pool_articles))
        if exclude is not None:
            taken = np.isin(pool_sessions * len(self.weight) + pool_articles,
                            exclude[0] * len(self.weight) + exclude[1])
            weights = np.where(taken, 0.0, weights)
        with np.errstate(divide="ignore"):
            keep = _top_k_per_segment(rng, pool_sessions, weights, wanted)
        return pool_sessions[keep], pool_articles[keep]

    def _draw_repeatedly(self, rng: np.random.Generator, starts: np.ndarray, counts: np.ndarray,
                         wanted: np.ndarray, weighted: bool,
                         sessions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Draws with replacement, keeping the first of repeats, until every session has its
        count: the same successive sampling as the whole-pool draw, at a cost that does not grow
        with the pool (tens of thousands of live articles at MIND-large scale)."""
        n_articles = len(self.weight)
        topic_mass = np.stack([
            (cum[starts[sessions, t] + counts[sessions, t]] - cum[starts[sessions, t]]) if weighted
            else counts[sessions, t].astype(float)
            for t, cum in enumerate(self.topic_cumweight)], axis=1)
        topic_mass[counts[sessions] == 0] = 0.0
        cumulative_mass = np.cumsum(topic_mass, axis=1)
        got_keys = np.empty(0, dtype=np.int64)
        need = wanted[sessions].copy()
        for _ in range(REDRAW_ROUNDS):
            active = np.flatnonzero(need > 0)
            if not len(active):
                break
            slot_owner = np.repeat(active, need[active])  # index into ``sessions``
            u = rng.random(len(slot_owner)) * cumulative_mass[slot_owner, -1]
            topic = (cumulative_mass[slot_owner] <= u[:, None]).sum(axis=1)
            topic = np.minimum(topic, counts.shape[1] - 1)
            session = sessions[slot_owner]
            lo, size = starts[session, topic], counts[session, topic]
            position = np.empty(len(slot_owner), dtype=np.int64)
            if weighted:
                for t in np.unique(topic):
                    at = topic == t
                    cum = self.topic_cumweight[t]
                    target = cum[lo[at]] + rng.random(at.sum()) * (cum[lo[at] + size[at]] - cum[lo[at]])
                    position[at] = np.clip(np.searchsorted(cum, target, side="right") - 1,
                                           lo[at], lo[at] + size[at] - 1)
            else:
                position = lo + (rng.random(len(slot_owner)) * size).astype(np.int64)
            article = self.by_topic[self.topic_start[topic] + position]
            keys = session * n_articles + article
            # Keep each pair's first draw only: what was drawn before, then this round in order.
            _, first = np.unique(np.concatenate([got_keys, keys]), return_index=True)
            fresh = np.sort(first[first >= len(got_keys)]) - len(got_keys)
            got_keys = np.concatenate([got_keys, keys[fresh]])
            np.subtract.at(need, slot_owner[fresh], 1)
        got_sessions, got_articles = got_keys // n_articles, got_keys % n_articles
        short = need > 0
        if short.any():  # a pool dominated by a few heavy articles: take the rest from it whole
            rest = np.zeros_like(wanted)
            rest[sessions[short]] = need[short]
            more_sessions, more_articles = self._draw_whole(rng, starts, counts, rest, weighted,
                                                            exclude=(got_sessions, got_articles))
            got_sessions = np.concatenate([got_sessions, more_sessions])
            got_articles = np.concatenate([got_articles, more_articles])
        return got_sessions, got_articles


@dataclass
class PlannedWorld:
    """A world drawn as arrays: its articles (written on demand), its readers and their sessions.

    ``generate`` makes records of it (small worlds); ``event_chunks`` streams its events as
    arrays to bulk writers (jobs/ingest/bulk.py).
    """

    seed: int
    start: datetime
    topics: list[_Topic]
    published_hours: np.ndarray  # float, sorted: article n is the n-th published
    topic_of: np.ndarray  # topic index per article
    appeal: np.ndarray
    interests: np.ndarray  # (users, 3) topic indices, -1 where a reader has only two
    groups: int
    session_hours: np.ndarray  # sorted
    session_users: np.ndarray

    @property
    def users(self) -> int:
        return len(self.interests)

    @property
    def event_key_prefix(self) -> str:
        return f"syn:{self.seed}:"

    @property
    def impression_prefix(self) -> str:
        return f"syn:{self.seed}:s"

    def articles(self) -> list[ArticleRecord]:
        """Every article, in publish order (161k records at MIND-large scale: a few seconds)."""
        rng = np.random.default_rng([self.seed, 1])
        n = len(self.topic_of)
        width = max(len(topic.words) for topic in self.topics)
        word_weights = np.zeros((len(self.topics), width))
        for t, topic in enumerate(self.topics):
            word_weights[t, :len(topic.words)] = _zipf_weights(len(topic.words))
        # Tags: 3-6 of the topic's words without replacement, common words first more often.
        tag_count = rng.integers(3, TAGS_MAX + 1, size=n)
        with np.errstate(divide="ignore"):
            clocks = rng.exponential(size=(n, width)) / word_weights[self.topic_of]
        picked = np.argsort(clocks, axis=1)[:, :TAGS_MAX]
        strengths = rng.uniform(0.4, 1.0, size=(n, TAGS_MAX))
        strengths[np.arange(TAGS_MAX)[None, :] >= tag_count[:, None]] = -1.0  # unused slots sort last
        strengths = np.round(-np.sort(-strengths, axis=1), 3)
        generic = np.where(rng.random(n) < 0.3, rng.integers(len(GENERIC_TAGS), size=n), -1)
        filler = rng.integers(len(FILLER_WORDS), size=n)
        body_length = rng.integers(20, BODY_WORDS_MAX + 1, size=n)
        cumulative = np.cumsum(word_weights, axis=1)
        body_words = np.empty((n, BODY_WORDS_MAX), dtype=np.int64)
        draws = rng.random((n, BODY_WORDS_MAX))
        for t, topic in enumerate(self.topics):
            at = self.topic_of == t
            body_words[at] = np.minimum(np.searchsorted(cumulative[t], draws[at] * cumulative[t, -1], side="right"),
                                        len(topic.words) - 1)
        media = np.where(rng.random(n) < 0.8, rng.integers(MEDIA_PER_TOPIC, size=n),
                         -1 - rng.integers(len(GENERAL_MEDIA), size=n))
        evergreen = rng.random(n) < EVERGREEN_SHARE
        published = _datetimes(self.start, self.published_hours)
        spoken = [tuple(word.replace("_", " ") for word in topic.words) for topic in self.topics]

        records = []
        for a in range(n):
            topic, words = self.topics[self.topic_of[a]], spoken[self.topic_of[a]]
            tag_words = picked[a, :tag_count[a]]
            tags = [(topic.tags[w], float(s)) for w, s in zip(tag_words, strengths[a])]
            if generic[a] >= 0:
                tags.append((GENERIC_TAGS[generic[a]], 0.2))
            title = " ".join([FILLER_WORDS[filler[a]].capitalize(), *(words[w] for w in tag_words)])
            body = " ".join(words[w] for w in body_words[a, :body_length[a]]) + "."
            records.append(ArticleRecord(
                id=f"a{a}",
                title=title,
                body=body,
                category=topic.category,
                subcategory=topic.name,
                media_id=f"{topic.name}_media_{media[a]}" if media[a] >= 0 else GENERAL_MEDIA[-1 - media[a]],
                tags=tuple(tags),
                published_at=published[a],
                expires_at=None if evergreen[a] else published[a] + EXPIRES_AFTER,
                source="synthetic",
            ))
        return records

    def event_chunks(self) -> Iterator[EventColumns]:
        """The world's events in time order, a chunk of sessions at a time (a few hundred
        thousand events), as arrays. The order is (time, session, impressions first, article)."""
        catalogue = _Catalogue(self.published_hours, self.topic_of, self.appeal, len(self.topics))
        origin = np.datetime64(self.start, "us")
        carried: list[EventColumns] = []
        position = 0
        for chunk, first in enumerate(range(0, len(self.session_hours), SESSIONS_PER_CHUNK)):
            last = min(first + SESSIONS_PER_CHUNK, len(self.session_hours))
            events = EventColumns.concat([*carried, self._sessions(chunk, first, last, catalogue, origin)])
            order = np.lexsort((events.article, events.click, events.session, events.ts))
            events = events.select(order)
            # A click may come after the next chunk's first session: hold it back until then.
            if last < len(self.session_hours):
                ready = events.ts < origin + _micros(self.session_hours[last:last + 1])[0]
                carried = [events.select(~ready)]
                events = events.select(ready)
            events.n = np.arange(position, position + len(events), dtype=np.int64)
            position += len(events)
            yield events

    def _sessions(self, chunk: int, first: int, last: int, catalogue: _Catalogue,
                  origin: np.datetime64) -> EventColumns:
        """The events of sessions ``first`` to ``last``, from the chunk's own random stream."""
        rng = np.random.default_rng([self.seed, 3, chunk])
        hours, users = self.session_hours[first:last], self.session_users[first:last]
        n = len(hours)
        likes = np.zeros((n, len(self.topics)), dtype=bool)
        for column in self.interests[users].T:
            likes[np.arange(n)[column >= 0], column[column >= 0]] = True
        starts, counts = catalogue.windows(hours)
        liked_counts, other_counts = np.where(likes, counts, 0), np.where(likes, 0, counts)
        size = rng.integers(10, 21, size=n)
        liked_wanted = np.minimum(np.round(size * INTEREST_IMPRESSION_SHARE).astype(np.int64),
                                  liked_counts.sum(axis=1))
        liked_s, liked_a = catalogue.draw(rng, starts, liked_counts, liked_wanted, weighted=True)
        other_s, other_a = catalogue.draw(rng, starts, other_counts, size - liked_wanted, weighted=False)
        shown_s, shown_a = np.concatenate([liked_s, other_s]), np.concatenate([liked_a, other_a])
        is_other = np.concatenate([np.zeros(len(liked_s), bool), np.ones(len(other_s), bool)])

        # The share of clicks inside the interests is the known answer tests measure.
        clicks = rng.integers(0, 4, size=n)
        liked_clicks = rng.binomial(clicks, IN_INTEREST_CLICK_SHARE)
        wanted = np.stack([liked_clicks, clicks - liked_clicks], axis=1).ravel()  # per (session, side)
        # Within one session the catalogue's weight is proportional to attractiveness.
        clicked = np.flatnonzero(_top_k_per_segment(rng, shown_s * 2 + is_other, catalogue.weight[shown_a], wanted))
        click_s, click_a = shown_s[clicked], shown_a[clicked]
        delays = rng.uniform(2, 60, size=len(click_s)) / 3600

        session_no = np.arange(first, last, dtype=np.int64) + 1
        return EventColumns(
            n=np.zeros(len(shown_s) + len(click_s), dtype=np.int64),
            ts=origin + _micros(np.concatenate([hours[shown_s], hours[click_s] + delays])),
            user=users[np.concatenate([shown_s, click_s])].astype(np.int64),
            article=np.concatenate([shown_a, click_a]).astype(np.int64),
            click=np.concatenate([np.zeros(len(shown_s), bool), np.ones(len(click_s), bool)]),
            session=session_no[np.concatenate([shown_s, click_s])],
        )

    def event_records(self) -> list[EventRecord]:
        """Every event as a record (small worlds: the row path and the tests)."""
        records = []
        key_prefix, impression_prefix = self.event_key_prefix, self.impression_prefix
        for events in self.event_chunks():
            for n, ts, user, article, click, session in zip(
                    events.n.tolist(), events.ts.tolist(), events.user.tolist(), events.article.tolist(),
                    events.click.tolist(), events.session.tolist()):
                records.append(EventRecord(key=f"{key_prefix}{n}", user_id=f"u{user}",
                                           article_id=f"a{article}", kind="click" if click else "impression",
                                           ts=ts, impression_id=f"{impression_prefix}{session}",
                                           source="synthetic"))
        return records

    def records(self) -> SyntheticWorld:
        return SyntheticWorld(articles=self.articles(), events=self.event_records(),
                              user_interests=self.user_interests(), article_topic=self.article_topic(),
                              user_group=self.user_group())

    def user_interests(self) -> dict[str, list[str]]:
        return {f"u{u}": [self.topics[t].name for t in row if t >= 0] for u, row in enumerate(self.interests.tolist())}

    def article_topic(self) -> dict[str, str]:
        return {f"a{n}": self.topics[t].name for n, t in enumerate(self.topic_of.tolist())}

    def user_group(self) -> dict[str, int]:
        return {f"u{u}": u % self.groups for u in range(self.users)} if self.groups else {}


def _micros(hours: np.ndarray) -> np.ndarray:
    return np.round(hours * 3600e6).astype("timedelta64[us]")


def _datetimes(start: datetime, hours: np.ndarray) -> list[datetime]:
    return (np.datetime64(start, "us") + _micros(hours)).tolist()


def visits_for(events: int, users: int, days: int) -> float:
    """The visits a day that give a world of about ``events`` events (``plan``'s readers)."""
    sessions = events / EVENTS_PER_SESSION / users  # per reader
    if sessions >= days:
        return sessions / days
    # Below a visit a day, a reader's count is Poisson(rate * days) raised to at least one,
    # whose mean is x + exp(-x): solve that for x (it grows with x).
    low, high = 0.0, sessions
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if middle + np.exp(-middle) < sessions else (low, middle)
    return low / days


def plan(articles: int, users: int, days: int, seed: int, start: datetime = datetime(2026, 11, 1),
         groups: int = 0, visits_per_day: float = VISITS_PER_DAY) -> PlannedWorld:
    """A world of ``users`` readers who visit ``visits_per_day`` times a day on average (at least
    once a day when that is 1 or more; at least once in the world otherwise). With ``groups``,
    reader u belongs to planted group ``u % groups``, whose members share two interest topics."""
    topics = _topics()
    rng = np.random.default_rng([seed, 0])
    published_hours = np.sort(rng.uniform(0, days * 24, size=articles))
    topic_of = rng.integers(len(topics), size=articles)
    # Zipf-like appeal: a few articles are far more clickable than the rest.
    appeal = 1.0 / (1 + rng.permutation(articles)) ** 0.6

    rng = np.random.default_rng([seed, 2])
    interests = np.full((users, 3), -1, dtype=np.int64)
    if groups:
        # Planted groups: every member of a group shares the group's two topics exactly; up to
        # eight groups get disjoint pairs, so that the groups are recoverable.
        order = rng.permutation(len(topics))
        group_topics = np.array([order[2 * g: 2 * g + 2] if 2 * g + 2 <= len(topics)
                                 else rng.choice(len(topics), size=2, replace=False) for g in range(groups)])
        interests[:, :2] = group_topics[np.arange(users) % groups]
    else:
        interests[:] = np.argsort(rng.random((users, len(topics))), axis=1)[:, :3]
        interests[rng.integers(2, 4, size=users) == 2, 2] = -1

    # Visits: one a day when the rate allows, the rest spread uniformly over the days (a sum of
    # daily Poisson counts is one Poisson count over the world); a reader never seen gets one.
    daily = int(visits_per_day >= 1)
    extra = rng.poisson((visits_per_day - daily) * days, size=users)
    extra[(extra == 0) & (daily == 0)] = 1
    session_users = np.concatenate([np.repeat(np.arange(users), days * daily), np.repeat(np.arange(users), extra)])
    session_days = np.concatenate([np.tile(np.arange(days), users * daily), rng.integers(days, size=extra.sum())])
    session_hours = session_days * 24 + rng.uniform(6, 23, size=len(session_days))
    order = np.lexsort((session_users, session_hours))
    return PlannedWorld(seed=seed, start=start, topics=topics, published_hours=published_hours, topic_of=topic_of,
                        appeal=appeal, interests=interests, groups=groups, session_hours=session_hours[order],
                        session_users=session_users[order])


def generate(articles: int, users: int, days: int, seed: int,
             start: datetime = datetime(2026, 11, 1), groups: int = 0,
             visits_per_day: float = VISITS_PER_DAY) -> SyntheticWorld:
    """A world as records (``plan`` for its arguments); for worlds that fit in memory as objects."""
    return plan(articles, users, days, seed, start, groups, visits_per_day).records()
