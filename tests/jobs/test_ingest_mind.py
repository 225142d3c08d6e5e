"""MIND ingest: the real sample (loaded twice into one SQLite file, shared by this module's tests)
and small hand-written files for bad rows, load order and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from rich.console import Console
from sqlalchemy import delete, func, select

from jobs.ingest.mind import ingest_mind
from recall.db import make_engine, make_sessionmaker, upgrade
from recall.models import Article, Event, User

QUIET = Console(quiet=True)


def as_dict(session, query) -> dict:
    return dict(session.execute(query).all())


def row_counts(engine) -> dict[str, int]:
    with make_sessionmaker(engine)() as session:
        return {table.__tablename__: session.scalar(select(func.count()).select_from(table))
                for table in (Article, Event, User)}


# ---------------------------------------------------------------------------------------------
# The real sample


@pytest.fixture(scope="module")
def _real_runs():
    cache: dict = {}
    yield cache
    if "engine" in cache:
        cache["engine"].dispose()


@pytest.fixture
def real(shared_data: Path, _real_runs: dict, tmp_path_factory):
    """The sample ingested twice into one SQLite file; built by the first test that asks."""
    if not _real_runs:
        engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('mind') / 'recall.db'}")
        upgrade(engine)
        news, behaviors = (shared_data / "mind-sample" / name for name in ("news.tsv", "behaviors.tsv"))
        first = ingest_mind(engine, news, behaviors, QUIET)
        counts_first = row_counts(engine)
        second = ingest_mind(engine, news, behaviors, QUIET)
        _real_runs.update(engine=engine, sessions=make_sessionmaker(engine), news=news,
                          behaviors=behaviors, first=first, second=second, counts_first=counts_first,
                          counts_second=row_counts(engine))
    return SimpleNamespace(**_real_runs)


def referenced_ids(behaviors: Path) -> set[str]:
    ids: set[str] = set()
    for line in behaviors.read_text().splitlines():
        _, _, _, history, impressions = line.split("\t")
        ids.update(history.split())
        ids.update(entry.split("-")[0] for entry in impressions.split())
    return ids


def test_real_sample_counts(real):
    assert (real.first.rows_read, real.first.rejected, real.first.articles_stored) == (5349, 0, 2000)
    news_ids = {line.split("\t")[0] for line in real.news.read_text().splitlines()}
    expected_id_only = len(referenced_ids(real.behaviors) - news_ids)
    with real.sessions() as session:
        def count(*where):
            return session.scalar(select(func.count()).select_from(Article).where(*where))

        assert count(Article.id_only.is_(False), Article.title.is_not(None)) == 2000
        assert count(Article.id_only.is_(True)) == expected_id_only > 10000
        kinds = as_dict(session, select(Event.kind, func.count()).group_by(Event.kind))
        impression_clicks = session.scalar(select(func.count()).select_from(Event).where(
            Event.kind == "click", Event.impression_id.is_not(None)))
        assert session.scalar(select(func.count()).select_from(User)) == 3104
    assert kinds["impression"] == 127777
    assert impression_clicks == 5040
    assert real.first.events_stored == kinds["impression"] + kinds["click"]


def test_real_sample_second_run_stores_nothing(real):
    assert real.second.stored == 0 and real.second.rejected == 0
    assert real.counts_second == real.counts_first


def test_real_sample_history_clicks_come_before_the_users_impressions(real):
    with real.sessions() as session:
        last_history = as_dict(session, select(Event.user_id, func.max(Event.ts))
                               .where(Event.impression_id.is_(None)).group_by(Event.user_id))
        first_impression = as_dict(session, select(Event.user_id, func.min(Event.ts))
                                   .where(Event.kind == "impression").group_by(Event.user_id))
        first_seen = as_dict(session, select(User.id, User.first_seen_at))
        first_event = as_dict(session, select(Event.user_id, func.min(Event.ts)).group_by(Event.user_id))
    assert len(last_history) > 3000
    assert all(ts < first_impression[user] for user, ts in last_history.items())
    assert first_seen == first_event


def test_real_sample_publish_time_is_the_first_event(real):
    with real.sessions() as session:
        first_event = as_dict(session,
                              select(Event.article_id, func.min(Event.ts)).group_by(Event.article_id))
        published = as_dict(session, select(Article.id, Article.published_at))
    assert {a: published[a] for a in first_event} == first_event
    never_referenced = set(published) - set(first_event)
    assert len(never_referenced) > 1000
    assert all(published[a] is None for a in never_referenced)


def test_real_sample_tags_and_entities(real):
    # N34700: "Fort Lauderdale, Florida" in the title (1.0) and the abstract (0.5), "Caribbean" in
    # the abstract only, subcategory newspolitics.
    with real.sessions() as session:
        article = session.get(Article, "N34700")
    assert article.tags == [["Fort Lauderdale, Florida", 1.5], ["newspolitics", 0.8], ["Caribbean", 0.5]]
    assert article.entities == [
        {"label": "Fort Lauderdale, Florida", "type": "G", "wikidata_id": "Q165972", "confidence": 1.0},
        {"label": "Caribbean", "type": "L", "wikidata_id": "Q664609", "confidence": 1.0},
    ]
    assert (article.category, article.source, article.media_id) == ("news", "mind", None)


# ---------------------------------------------------------------------------------------------
# Small hand-written files, on SQLite and PostgreSQL

NEWS = "\n".join([
    "N1\tsports\tfootball_nfl\tCowboys win\tDallas beat the Giants.\thttps://x/N1\t"
    '[{"Label": "Dallas Cowboys", "Type": "O", "WikidataId": "Q204862", "Confidence": 1.0}]\t'
    '[{"Label": "Dallas Cowboys", "Type": "O", "WikidataId": "Q204862", "Confidence": 0.9},'
    ' {"Label": "New York Giants", "Type": "O", "WikidataId": "Q190618", "Confidence": 1.0}]',
    "N2\tnews\tnewsus\tStorm warning\t\thttps://x/N2\t[]\t[]",
    "N9\tnews\tnewsus\tNobody read this\t\thttps://x/N9\t[]\t[]",
    "N5\tnews\tnewsus\tseven columns only\t\t[]\t[]",
    "N6\tnews\tnewsus\tbad entities\t\thttps://x/N6\t[{\"Label\": \t[]",
    "\tnews\tnewsus\tno id\t\thttps://x/N0\t[]\t[]",
]) + "\n"

BEHAVIORS = "\n".join([
    "1\tU1\t11/12/2019 2:14:46 PM\tN2 N7\tN1-1 N3-0",
    "2\tU2\t11/11/2019 9:00:00 AM\t\tN1-0 N2-1",
    "3\tU1\t11/11/2019 8:00:00 AM\tN2 N7\tN4-0",
    "4\tU3\tyesterday\t\tN1-0",
    "5\tU4\t11/11/2019 9:00:00 AM\t\tN1-x",
    "6\tU5\ttoo few columns",
]) + "\n"


@pytest.fixture
def small_files(tmp_path: Path) -> tuple[Path, Path]:
    news, behaviors = tmp_path / "news.tsv", tmp_path / "behaviors.tsv"
    news.write_text(NEWS)
    behaviors.write_text(BEHAVIORS)
    return news, behaviors


def test_bad_rows_are_reported_with_file_and_line_and_good_rows_kept(engine, small_files):
    report = ingest_mind(engine, *small_files, QUIET)
    assert report.rows_read == 12
    assert [(file, line) for file, line, _ in report.errors] == [
        ("news.tsv", 4), ("news.tsv", 5), ("news.tsv", 6),
        ("behaviors.tsv", 4), ("behaviors.tsv", 5), ("behaviors.tsv", 6)]
    assert report.rejected == 6
    assert "columns" in report.errors[0][2] and "title_entities" in report.errors[1][2]
    assert "time" in report.errors[3][2] and "N1-x" in report.errors[4][2]
    # 3 articles; 2 history clicks, 5 impressions, 2 clicks.
    assert (report.articles_stored, report.events_stored) == (3, 9)
    assert row_counts(engine) == {"articles": 6, "events": 9, "users": 2}


def test_small_files_times_and_id_only_articles(engine, small_files):
    ingest_mind(engine, *small_files, QUIET)
    u1_first = datetime(2019, 11, 11, 8, 0, 0)
    with make_sessionmaker(engine)() as session:
        articles = {a.id: a for a in session.scalars(select(Article))}
        history = as_dict(session, select(Event.article_id, Event.ts).where(Event.event_key.like("mind:h:%")))
        clicks = dict(session.execute(select(Event.impression_id, Event.ts).where(Event.kind == "click",
                                                                               Event.impression_id.is_not(None))).all())
        users = as_dict(session, select(User.id, User.first_seen_at))
    assert history == {"N2": u1_first - timedelta(seconds=2), "N7": u1_first - timedelta(seconds=1)}
    # Impressions keep MIND's number, tagged with a digest of their user and time.
    assert sorted(clicks.values()) == [datetime(2019, 11, 11, 9, 0, 1), datetime(2019, 11, 12, 14, 14, 47)]
    assert sorted(i.split(":")[0] for i in clicks) == ["1", "2"]
    assert users == {"U1": u1_first - timedelta(seconds=2), "U2": datetime(2019, 11, 11, 9, 0, 0)}
    assert {a for a, row in articles.items() if row.id_only} == {"N3", "N4", "N7"}
    assert articles["N1"].published_at == datetime(2019, 11, 11, 9, 0, 0)
    assert articles["N2"].published_at == u1_first - timedelta(seconds=2)
    assert articles["N9"].published_at is None
    # Title 1.0 + abstract 0.5 x 0.9 for the Cowboys, then the subcategory, then the Giants.
    assert articles["N1"].tags == [["Dallas Cowboys", 1.45], ["football_nfl", 0.8], ["New York Giants", 0.5]]


def test_train_and_dev_files_with_colliding_impression_numbers_stay_apart(engine, tmp_path):
    """MIND numbers impressions per file from 1: loading train and dev together must neither
    merge impression 1 of each nor drop the second one's events as repeats."""
    train, dev = tmp_path / "train.tsv", tmp_path / "dev.tsv"
    train.write_text("1\tU1\t11/11/2019 8:00:00 AM\t\tN1-1 N2-0\n")
    dev.write_text("1\tU2\t11/15/2019 9:00:00 AM\t\tN1-0 N3-1\n")
    ingest_mind(engine, None, train, QUIET)
    ingest_mind(engine, None, dev, QUIET)
    ingest_mind(engine, None, dev, QUIET)  # a file loaded twice is still stored once
    with make_sessionmaker(engine)() as session:
        rows = session.execute(select(Event.impression_id, Event.user_id, Event.kind, Event.article_id)
                               .where(Event.impression_id.is_not(None))).all()
    by_impression: dict[str, set] = {}
    for impression, user, kind, article in rows:
        by_impression.setdefault(impression, set()).add((user, kind, article))
    assert len(rows) == 6 and len(by_impression) == 2
    assert sorted(by_impression.values(), key=sorted) == sorted([
        {("U1", "impression", "N1"), ("U1", "impression", "N2"), ("U1", "click", "N1")},
        {("U2", "impression", "N1"), ("U2", "impression", "N3"), ("U2", "click", "N3")}], key=sorted)


def test_news_before_or_after_behaviours_ends_in_the_same_state(engine, small_files):
    news, behaviors = small_files
    sessions = make_sessionmaker(engine)

    def snapshot():
        with sessions() as session:
            return ({a.id: (a.title, a.published_at, a.source, a.id_only, a.content_hash)
                     for a in session.scalars(select(Article))},
                    set(session.execute(select(Event.event_key, Event.ts))),
                    set(session.execute(select(User.id, User.first_seen_at))))

    ingest_mind(engine, news, None, QUIET)
    ingest_mind(engine, None, behaviors, QUIET)
    news_first = snapshot()
    with sessions.begin() as session:
        for table in (Event, User, Article):
            session.execute(delete(table))
    ingest_mind(engine, None, behaviors, QUIET)
    ingest_mind(engine, news, None, QUIET)
    assert snapshot() == news_first


def test_small_files_second_run_stores_nothing(engine, small_files):
    ingest_mind(engine, *small_files, QUIET)
    counts = row_counts(engine)
    again = ingest_mind(engine, *small_files, QUIET)
    assert (again.stored, again.rejected) == (0, 6)
    assert row_counts(engine) == counts
