"""A deterministic synthetic news world whose answers are known: who likes which topic.

Topics belong to categories and own a vocabulary of tags; articles are written from one topic's
words and published over the days; users have two or three interest topics and, in each session,
see a list of recent articles and click mostly (``IN_INTEREST_CLICK_SHARE``) inside their
interests, preferring intrinsically popular (Zipf) and recent articles. Tests and the demo rely
on that structure: a route that learns it should recall a user's topics.

Everything comes from one numpy ``Generator`` seeded with ``seed``: same arguments, same world.
"""

from __future__ import annotations

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


def _pick(rng: np.random.Generator, pool: np.ndarray, weights: np.ndarray | None, k: int) -> np.ndarray:
    """``k`` items of ``pool`` without replacement, proportionally to ``weights`` (None = uniform).

    Exponential clocks (the item whose clock rings first is taken first) give the same draw as
    repeated weighted choice, in one vectorised step.
    """
    k = min(k, len(pool))
    if k == 0:
        return pool[:0]
    clocks = rng.exponential(size=len(pool))
    if weights is not None:
        clocks = clocks / weights
    return pool[np.argsort(clocks)[:k]]


def _write_article(rng: np.random.Generator, n: int, topic: _Topic, published: datetime) -> ArticleRecord:
    # Some words of a topic are much more common than others, as in real tag data.
    word_weights = _zipf_weights(len(topic.words))
    picked = _pick(rng, np.arange(len(topic.words)), word_weights, int(rng.integers(3, 7)))
    strengths = np.sort(rng.uniform(0.4, 1.0, size=len(picked)))[::-1]
    tags = [(topic.tags[i], round(float(s), 3)) for i, s in zip(picked, strengths)]
    if rng.random() < 0.3:
        tags.append((GENERIC_TAGS[rng.integers(len(GENERIC_TAGS))], 0.2))
    title_words = [topic.words[i].replace("_", " ") for i in picked]
    title = " ".join([FILLER_WORDS[rng.integers(len(FILLER_WORDS))].capitalize(), *title_words])
    body_words = rng.choice(len(topic.words), size=int(rng.integers(20, 40)), p=word_weights)
    body = " ".join(topic.words[i].replace("_", " ") for i in body_words) + "."
    media = (f"{topic.name}_media_{rng.integers(MEDIA_PER_TOPIC)}" if rng.random() < 0.8
             else GENERAL_MEDIA[rng.integers(len(GENERAL_MEDIA))])
    evergreen = rng.random() < EVERGREEN_SHARE
    return ArticleRecord(
        id=f"a{n}",
        title=title,
        body=body,
        category=topic.category,
        subcategory=topic.name,
        media_id=media,
        tags=tuple(tags),
        published_at=published,
        expires_at=None if evergreen else published + EXPIRES_AFTER,
        source="synthetic",
    )


class _Catalogue:
    """Articles ordered by publish time (article n is the n-th published) and their appeal."""

    def __init__(self, published_hours: np.ndarray, appeal: np.ndarray):
        self.published = published_hours
        self.appeal = appeal

    def live(self, hour: float) -> np.ndarray:
        """Articles published in the LIVE_HOURS before ``hour``."""
        lo, hi = np.searchsorted(self.published, [hour - LIVE_HOURS, hour], side="right")
        return np.arange(lo, hi)

    def attractiveness(self, items: np.ndarray, hour: float) -> np.ndarray:
        """Intrinsic appeal times recency: a day-old article is half as attractive."""
        age = hour - self.published[items]
        return self.appeal[items] * 0.5 ** (age / 24.0)


def _hours_to_datetimes(start: datetime, hours: np.ndarray) -> list[datetime]:
    micros = np.round(hours * 3600e6).astype("timedelta64[us]")
    return (np.datetime64(start, "us") + micros).tolist()


def generate(articles: int, users: int, days: int, seed: int,
             start: datetime = datetime(2026, 11, 1), groups: int = 0) -> SyntheticWorld:
    """A world of ``users`` readers; with ``groups``, reader u belongs to planted group
    ``u % groups`` (``SyntheticWorld.user_group``), whose members share two interest topics."""
    rng = np.random.default_rng(seed)
    topics = _topics()

    published_hours = np.sort(rng.uniform(0, days * 24, size=articles))
    topic_of = rng.integers(len(topics), size=articles)
    # Zipf-like appeal: a few articles are far more clickable than the rest.
    appeal = 1.0 / (1 + rng.permutation(articles)) ** 0.6
    catalogue = _Catalogue(published_hours, appeal)
    records = [
        _write_article(rng, n, topics[topic_of[n]], published)
        for n, published in enumerate(_hours_to_datetimes(start, published_hours))
    ]

    if groups:
        # Planted groups: every member of a group shares the group's two topics exactly; up to
        # eight groups get disjoint pairs, so that the groups are recoverable.
        order = rng.permutation(len(topics))
        group_topics = [order[2 * g: 2 * g + 2] if 2 * g + 2 <= len(topics)
                        else rng.choice(len(topics), size=2, replace=False) for g in range(groups)]
        interests = [group_topics[u % groups] for u in range(users)]
    else:
        interests = [rng.choice(len(topics), size=int(rng.integers(2, 4)), replace=False) for _ in range(users)]
    raw_events: list[tuple[float, int, int, str, int]] = []  # (hour, user, article, kind, session)
    session_no = 0
    for user, user_topics in enumerate(interests):
        likes = np.isin(topic_of, user_topics)
        for day in range(days):
            for hour in np.sort(rng.uniform(day * 24 + 6, day * 24 + 23, size=1 + rng.poisson(0.8))):
                shown, clicked = _session(rng, catalogue, likes, float(hour))
                if len(shown) == 0:
                    continue
                session_no += 1
                raw_events.extend((float(hour), user, int(a), "impression", session_no) for a in shown)
                delays = rng.uniform(2, 60, size=len(clicked)) / 3600
                raw_events.extend((float(hour + d), user, int(a), "click", session_no)
                                  for a, d in zip(clicked, delays))

    raw_events.sort()
    times = _hours_to_datetimes(start, np.array([e[0] for e in raw_events]))
    events = [
        EventRecord(key=f"syn:{seed}:{n}", user_id=f"u{user}", article_id=f"a{article}", kind=kind,
                    ts=ts, impression_id=f"syn:{seed}:s{session}", source="synthetic")
        for n, ((_, user, article, kind, session), ts) in enumerate(zip(raw_events, times))
    ]
    return SyntheticWorld(
        articles=records,
        events=events,
        user_interests={f"u{u}": [topics[t].name for t in user_topics]
                        for u, user_topics in enumerate(interests)},
        article_topic={f"a{n}": topics[topic_of[n]].name for n in range(articles)},
        user_group={f"u{u}": u % groups for u in range(users)} if groups else {},
    )


def _session(rng: np.random.Generator, catalogue: _Catalogue, likes: np.ndarray,
             hour: float) -> tuple[np.ndarray, np.ndarray]:
    """One visit: the list shown (interests and random recent articles) and what was clicked."""
    live = catalogue.live(hour)
    liked_pool, other_pool = live[likes[live]], live[~likes[live]]
    size = int(rng.integers(10, 21))
    liked = _pick(rng, liked_pool, catalogue.attractiveness(liked_pool, hour),
                  round(size * INTEREST_IMPRESSION_SHARE))
    other = _pick(rng, other_pool, None, size - len(liked))
    shown = np.concatenate([liked, other])
    rng.shuffle(shown)

    # The share of clicks inside the interests is the known answer tests measure.
    clicks = int(rng.integers(0, 4))
    liked_clicks = int(rng.binomial(clicks, IN_INTEREST_CLICK_SHARE))
    clicked = np.concatenate([
        _pick(rng, liked, catalogue.attractiveness(liked, hour), liked_clicks),
        _pick(rng, other, catalogue.attractiveness(other, hour), clicks - liked_clicks),
    ])
    return shown, clicked
