"""Article metadata the request path needs, held as columns indexed by row.

A row is an integer naming one article in this process: routes return rows, filters are
boolean masks over the columns (publish time, expiry, category code, hidden), the scorer reads
them by fancy indexing. ``ItemMeta`` (one object per article) stays for what is not on the hot
path: profiles, the admin pages, the nightly job.

The nightly job writes the catalog as ``catalog.jsonl`` into each build; the fast path appends
new articles to the live copy, and ids met online that no build describes (a click on an
article another worker just indexed) get a placeholder row that passes every metadata filter
until their metadata arrives. Rows are only ever appended, never reused: columns grow by
doubling under a lock, and a reader holding an older (shorter) column simply knows fewer rows.
A request never asks SQL about an article.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from recall.domain import ArticleRecord, tag_token, to_unix

# Tags kept per article for user profiles: the strongest few carry the article's subject.
PROFILE_TAGS = 5
NO_CATEGORY = -1


@dataclass(frozen=True, slots=True)
class ItemMeta:
    category: str | None = None
    published: float | None = None  # unix seconds; None = always live
    expires: float | None = None
    hidden: bool = False
    title: str | None = None
    subcategory: str | None = None
    # The strongest tags as (tag2vec token, weight): what a click adds to the user's profile.
    tags: tuple[tuple[str, float], ...] = ()

    @classmethod
    def of(cls, article: ArticleRecord) -> ItemMeta:
        ranked = [tw for tw in article.ranked_tags if tw[0] and tw[0].strip()]
        return cls(
            category=article.category,
            published=to_unix(article.published_at),
            expires=to_unix(article.expires_at),
            hidden=article.status == "hidden",
            title=article.title,
            subcategory=article.subcategory,
            tags=tuple((tag_token(t), float(w)) for t, w in ranked[:PROFILE_TAGS]),
        )


class ItemCatalog:
    """ids <-> rows, ``ItemMeta`` per row, and the filter columns as numpy arrays.

    Columns (read them through the properties, which cut them to the rows that exist):
    ``published`` (float64, -inf when unknown: always live), ``expires`` (float64, +inf when
    never), ``category`` (int32 code into ``categories``, -1 when none) and ``hidden`` (bool).
    """

    def __init__(self, items: dict[str, ItemMeta] | None = None):
        self.ids: list[str] = []
        self.row_of: dict[str, int] = {}
        self._meta: list[ItemMeta | None] = []  # None: a placeholder row (no metadata yet)
        self.categories: list[str] = []
        self._category_code: dict[str, int] = {}
        self._size = 0
        self._published = np.zeros(0, np.float64)
        self._expires = np.zeros(0, np.float64)
        self._category = np.zeros(0, np.int32)
        self._hidden = np.zeros(0, bool)
        self._lock = threading.Lock()
        for item_id, meta in (items or {}).items():
            self.put(item_id, meta)

    # ---- columns ------------------------------------------------------------------------
    @property
    def published(self) -> np.ndarray:
        return self._published[: self._size]

    @property
    def expires(self) -> np.ndarray:
        return self._expires[: self._size]

    @property
    def category(self) -> np.ndarray:
        return self._category[: self._size]

    @property
    def hidden(self) -> np.ndarray:
        return self._hidden[: self._size]

    def category_code(self, category: str | None) -> int:
        """The code of ``category``; an unknown one gets a code no row has (matches nothing)."""
        return self._category_code.get(category, len(self.categories)) if category else NO_CATEGORY

    # ---- rows ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._size

    def __contains__(self, item_id: str) -> bool:
        row = self.row_of.get(item_id)
        return row is not None and self._meta[row] is not None

    def get(self, item_id: str) -> ItemMeta | None:
        row = self.row_of.get(item_id)
        return None if row is None else self._meta[row]

    def meta(self, row: int) -> ItemMeta | None:
        return self._meta[row]

    def items(self) -> Iterable[tuple[str, ItemMeta]]:
        return [(i, m) for i, m in zip(self.ids, self._meta) if m is not None]

    def rows(self, item_ids: Sequence[str]) -> np.ndarray:
        """Rows of the ids the catalog knows, in order (unknown ids are left out)."""
        row_of = self.row_of
        return np.fromiter((r for r in map(row_of.get, item_ids) if r is not None), np.int32)

    def ensure(self, item_ids: Sequence[str]) -> np.ndarray:
        """Rows of every id, giving unknown ones a placeholder row (ids seen online before any
        metadata: they pass the metadata filters, as nothing says they are not live)."""
        row_of = self.row_of
        rows = [row_of.get(i) for i in item_ids]
        if None in rows:
            with self._lock:
                for n, item_id in enumerate(item_ids):
                    if rows[n] is None:
                        rows[n] = self._append(item_id, None)
        return np.asarray(rows, np.int32)

    def put(self, item_id: str, meta: ItemMeta) -> int:
        """Add or update an article's metadata; returns its row."""
        with self._lock:
            row = self.row_of.get(item_id)
            if row is None:
                return self._append(item_id, meta)
            self._write(row, meta)
            return row

    def _append(self, item_id: str, meta: ItemMeta | None) -> int:
        row = self._size
        if row == len(self._published):
            self._grow(max(1024, 2 * row))
        self.ids.append(item_id)
        self._meta.append(None)
        self._write(row, meta)
        self.row_of[item_id] = row
        self._size = row + 1  # last: a reader never sees a row before its columns are written
        return row

    def _write(self, row: int, meta: ItemMeta | None) -> None:
        meta_or_empty = meta or ItemMeta()
        self._published[row] = -np.inf if meta_or_empty.published is None else meta_or_empty.published
        self._expires[row] = np.inf if meta_or_empty.expires is None else meta_or_empty.expires
        self._hidden[row] = meta_or_empty.hidden
        category = meta_or_empty.category
        if category and category not in self._category_code:
            self._category_code[category] = len(self.categories)
            self.categories.append(category)
        self._category[row] = self._category_code[category] if category else NO_CATEGORY
        self._meta[row] = meta

    def _grow(self, capacity: int) -> None:
        """New, larger columns; readers keep the old ones they hold, which stay valid."""
        def grown(column: np.ndarray) -> np.ndarray:
            out = np.zeros(capacity, column.dtype)
            out[: len(column)] = column
            return out
        self._published, self._expires = grown(self._published), grown(self._expires)
        self._category, self._hidden = grown(self._category), grown(self._hidden)

    # ---- files --------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        with path.open("w", encoding="utf-8") as fh:
            for item_id, meta in self.items():
                fh.write(json.dumps({"id": item_id, **asdict(meta)}, ensure_ascii=False) + "\n")

    @classmethod
    def load(cls, path: Path) -> ItemCatalog:
        catalog = cls()
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                row = json.loads(line)
                item_id = row.pop("id")
                row["tags"] = tuple(tuple(tw) for tw in row.get("tags", ()))
                catalog.put(item_id, ItemMeta(**row))
        return catalog
