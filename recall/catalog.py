"""Article metadata the request path needs (publish/expiry times, status, category), in memory.

The nightly job writes it as ``catalog.jsonl`` into each build; the fast path adds new articles
to the live copy. A request never asks SQL about an article.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from recall.domain import ArticleRecord, tag_token, to_unix

# Tags kept per article for user profiles: the strongest few carry the article's subject.
PROFILE_TAGS = 5


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
        ranked = sorted((tw for tw in article.tags if tw[0] and tw[0].strip()), key=lambda tw: -float(tw[1]))
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
    def __init__(self, items: dict[str, ItemMeta] | None = None):
        self._items: dict[str, ItemMeta] = dict(items or {})
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, item_id: str) -> bool:
        return item_id in self._items

    def get(self, item_id: str) -> ItemMeta | None:
        return self._items.get(item_id)

    def put(self, item_id: str, meta: ItemMeta) -> None:
        with self._lock:
            self._items[item_id] = meta

    def items(self) -> Iterable[tuple[str, ItemMeta]]:
        return self._items.items()

    def save(self, path: Path) -> None:
        with path.open("w", encoding="utf-8") as fh:
            for item_id, meta in self._items.items():
                fh.write(json.dumps({"id": item_id, **asdict(meta)}, ensure_ascii=False) + "\n")

    @classmethod
    def load(cls, path: Path) -> ItemCatalog:
        items = {}
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                row = json.loads(line)
                item_id = row.pop("id")
                row["tags"] = tuple(tuple(tw) for tw in row.get("tags", ()))
                items[item_id] = ItemMeta(**row)
        return cls(items)
