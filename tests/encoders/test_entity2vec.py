"""entity2vec over a small file in MIND's entity_embedding.vec format, with real MIND entity ids."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from encoders.base import TrainingCorpus
from encoders.entity2vec import EntityVectorEncoder
from recall.domain import ArticleRecord

DIM = 8


def write_vec(path: Path, table: dict[str, np.ndarray]) -> Path:
    # MIND's lines end with a tab before the newline.
    lines = ("\t".join([entity, *(f"{x:.6f}" for x in vector)]) + "\t\n" for entity, vector in table.items())
    path.write_text("".join(lines), encoding="utf-8")
    return path


@pytest.fixture
def mind_articles(shared_data: Path) -> list[ArticleRecord]:
    """The first 50 MIND articles with their title and abstract entities, as ingest keeps them."""
    articles = []
    with (shared_data / "mind-sample" / "news.tsv").open(encoding="utf-8") as fh:
        for line, _ in zip(fh, range(50)):
            fields = line.rstrip("\n").split("\t")
            entities = json.loads(fields[6] or "[]") + json.loads(fields[7] or "[]")
            articles.append(ArticleRecord(id=fields[0], title=fields[3], entities=tuple(
                {"wikidata_id": e["WikidataId"], "label": e["Label"]} for e in entities)))
    return articles


@pytest.fixture
def table(mind_articles) -> dict[str, np.ndarray]:
    """Vectors for every other entity of those articles: the rest stay unknown."""
    ids = sorted({e["wikidata_id"] for a in mind_articles for e in a.entities})[::2]
    rng = np.random.default_rng(0)
    return {entity: rng.normal(size=DIM).round(6) for entity in ids}


@pytest.fixture
def encoder(tmp_path: Path, table) -> EntityVectorEncoder:
    path = write_vec(tmp_path / "entity_embedding.vec", table)
    return EntityVectorEncoder(path, dim=DIM).fit(TrainingCorpus())


def test_article_vector_is_the_normalised_mean_of_its_known_entities(encoder, table, mind_articles):
    checked = 0
    for article, row in zip(mind_articles, encoder.encode(mind_articles)):
        known = list(dict.fromkeys(e["wikidata_id"] for e in article.entities if e["wikidata_id"] in table))
        if not known:
            assert not row.any()
            continue
        mean = np.mean([table[e] for e in known], axis=0)
        np.testing.assert_allclose(row, mean / np.linalg.norm(mean), atol=1e-5)
        checked += 1
    assert checked > 10


def test_articles_sharing_entities_are_nearer_than_unrelated_ones(encoder, table):
    a, b, c, d = list(table)[:4]
    rows = encoder.encode([
        ArticleRecord(id="1", entities=({"wikidata_id": a}, {"wikidata_id": b})),
        ArticleRecord(id="2", entities=({"wikidata_id": a}, {"wikidata_id": b}, {"wikidata_id": c})),
        ArticleRecord(id="3", entities=({"wikidata_id": d},)),
    ])
    assert rows[0] @ rows[1] > rows[0] @ rows[2]


def test_nothing_known_gives_zero_rows(encoder, table):
    known = next(iter(table))
    rows = encoder.encode([
        ArticleRecord(id="none"),
        ArticleRecord(id="unknown", entities=({"wikidata_id": "Q999999999"},)),
        ArticleRecord(id="no-id", entities=({"label": "Somewhere"}, {"wikidata_id": None})),
        ArticleRecord(id="one-known", entities=({"wikidata_id": "Q999999999"}, {"wikidata_id": known})),
    ])
    assert not rows[:3].any()
    np.testing.assert_allclose(rows[3], table[known] / np.linalg.norm(table[known]), atol=1e-5)


def test_an_article_it_cannot_read_is_a_zero_row_counted_and_the_batch_goes_on(encoder, table):
    """Rows SQL may hold from before the API checked entities: the bad article is skipped, never
    the batch it came in (the fast path, catch-up, the nightly build)."""
    a, b = list(table)[:2]
    good = ArticleRecord(id="good", entities=({"wikidata_id": a}, {"wikidata_id": b}))
    bad = [ArticleRecord(id="list-id", entities=({"wikidata_id": [a]},)),
           ArticleRecord(id="number-id", entities=({"wikidata_id": 42}, {"wikidata_id": a})),
           ArticleRecord(id="not-an-object", entities=(a,)),
           ArticleRecord(id="dict-id", entities=({"wikidata_id": {"id": a}},))]
    rows = encoder.encode([bad[0], good, *bad[1:]])
    assert not rows[[0, 2, 3, 4]].any()
    np.testing.assert_array_equal(rows[1], encoder.encode([good])[0])
    assert encoder.skipped == len(bad)


def test_an_entity_counts_once_per_article(encoder, table):
    a, b = list(table)[:2]
    rows = encoder.encode([
        ArticleRecord(id="twice", entities=({"wikidata_id": a}, {"wikidata_id": a}, {"wikidata_id": b})),
        ArticleRecord(id="once", entities=({"wikidata_id": a}, {"wikidata_id": b})),
    ])
    np.testing.assert_array_equal(rows[0], rows[1])


def test_save_then_load_needs_no_source_file(encoder, mind_articles, tmp_path: Path):
    encoder.save(tmp_path / "model")
    Path(encoder.embeddings_path).unlink()
    loaded = EntityVectorEncoder.load(tmp_path / "model")
    np.testing.assert_array_equal(loaded.encode(mind_articles), encoder.encode(mind_articles))
    assert (loaded.name, loaded.version, loaded.dim) == ("entity2vec", encoder.version, DIM)


def test_version_follows_the_file(tmp_path: Path, table):
    first = EntityVectorEncoder(write_vec(tmp_path / "a.vec", table), dim=DIM)
    assert first.version == "unloaded"
    same = EntityVectorEncoder(write_vec(tmp_path / "b.vec", table), dim=DIM).fit(TrainingCorpus())
    changed = {**table, next(iter(table)): np.ones(DIM)}
    other = EntityVectorEncoder(write_vec(tmp_path / "c.vec", changed), dim=DIM).fit(TrainingCorpus())
    assert first.fit(TrainingCorpus()).version == same.version != other.version


def test_a_file_of_another_dimension_is_rejected(tmp_path: Path, table):
    path = write_vec(tmp_path / "entity_embedding.vec", table)
    with pytest.raises(ValueError, match=r"entity_embedding.vec:1: .* 8 numbers"):
        EntityVectorEncoder(path, dim=100).fit(TrainingCorpus())


def test_a_missing_file_fails_when_first_read_not_when_built(tmp_path: Path):
    encoder = EntityVectorEncoder(tmp_path / "missing.vec")  # needs no fit: encode reads the file
    with pytest.raises(FileNotFoundError):
        encoder.encode([ArticleRecord(id="a")])
