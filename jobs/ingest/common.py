"""What every ingest format shares: reading a file line by line with a progress bar, skipping bad
rows with their file and line, writing records in batches through ``recall.sqlstore``, and the
summary table.

A format only supplies a line parser: ``str -> list of records`` that raises ``ValueError``
(``BadRow``, a JSON or timestamp error...) for a row it cannot read. It returns a list, not a
generator, so a row is either taken whole or rejected whole.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text
from sqlalchemy import Engine, update
from sqlalchemy.orm import Session

from recall.db import make_sessionmaker
from recall.domain import ArticleRecord, EventRecord
from recall.sqlstore import ARTICLES, insert_events, upsert_articles

BATCH_SIZE = 5000
# A file of garbage must not fill memory with messages; all rejects are still counted.
MAX_ERRORS_KEPT = 1000
ERRORS_SHOWN = 20
MESSAGE_CHARS = 200  # a message quotes the bad value; a huge value must not flood the summary
# Ids, categories and media ids are VARCHAR(128) in SQL (recall/models.py).
MAX_ID_LENGTH = 128

Record = ArticleRecord | EventRecord
T = TypeVar("T")


class BadRow(ValueError):
    """A row that cannot be read; it is reported with its file and line, then skipped."""


@dataclass
class IngestReport:
    source: str
    rows_read: int = 0
    articles_stored: int = 0  # inserted or changed
    events_stored: int = 0  # new events
    rejected: int = 0
    errors: list[tuple[str, int, str]] = field(default_factory=list)  # (file, line, message)
    seconds: float = 0.0

    @property
    def stored(self) -> int:
        return self.articles_stored + self.events_stored

    def reject(self, file: str, line: int, message: str) -> None:
        self.rejected += 1
        if len(self.errors) < MAX_ERRORS_KEPT:
            self.errors.append((file, line, message[:MESSAGE_CHARS]))

    def table(self) -> Table:
        table = Table(title=f"ingest {self.source}", show_header=False)
        for name, value in [("rows read", self.rows_read), ("articles stored", self.articles_stored),
                            ("events stored", self.events_stored), ("rejected", self.rejected),
                            ("seconds", f"{self.seconds:.1f}")]:
            table.add_row(name, str(value))
        for file, line, message in self.errors[:ERRORS_SHOWN]:
            # Text, not markup: messages quote raw input, whose brackets Rich would parse.
            table.add_row(Text(f"{file}:{line}", style="red"), Text(message))
        if self.rejected > ERRORS_SHOWN:
            table.add_row("[red]...", f"{self.rejected - ERRORS_SHOWN} more rejected rows")
        return table


class IngestRun:
    """One ingest: a progress bar, a report, and writes that commit every ``batch_size`` records.

    Use it as a context manager; a clean exit writes what is left in the buffers.
    """

    def __init__(self, engine: Engine, source: str, console: Console | None = None,
                 batch_size: int = BATCH_SIZE):
        self.report = IngestReport(source)
        self._sessions = make_sessionmaker(engine)
        self._batch_size = batch_size
        self._articles: list[ArticleRecord] = []
        self._events: list[EventRecord] = []
        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                                  TimeElapsedColumn(), console=console or Console(stderr=True),
                                  transient=True)
        self._started = 0.0

    def __enter__(self) -> IngestRun:
        self._started = time.perf_counter()
        self._progress.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self._flush_articles()
                self._flush_events()
        finally:
            self._progress.stop()
            self.report.seconds = time.perf_counter() - self._started

    def load(self, path: Path, parse: Callable[[str], Sequence[Record]]) -> None:
        """Parse every line of ``path`` and store the records; bad rows go to the report."""
        for record in self._lines(path, parse, report_rows=True):
            self._add(record)

    def scan(self, path: Path, parse: Callable[[str], Sequence[T]]) -> Iterator[T]:
        """A first pass over ``path`` that stores nothing; ``load`` reports the bad rows later."""
        return self._lines(path, parse, report_rows=False)

    def write(self, records: Iterable[Record], total: int | None = None,
              description: str = "records") -> None:
        """Store records that are already in memory (nothing to parse)."""
        for record in self.progress(records, total, description):
            self.report.rows_read += 1
            self._add(record)

    def progress(self, items: Iterable[T], total: int | None, description: str) -> Iterator[T]:
        """``items`` with a bar of this run's (writers of their own, e.g. jobs/ingest/bulk.py)."""
        task = self._progress.add_task(description, total=total)
        for item in items:
            yield item
            self._progress.advance(task)

    def _add(self, record: Record) -> None:
        if isinstance(record, ArticleRecord):
            self._articles.append(record)
            if len(self._articles) >= self._batch_size:
                self._flush_articles()
        else:
            self._events.append(record)
            if len(self._events) >= self._batch_size:
                self._flush_events()

    def _flush_articles(self) -> None:
        if self._articles:
            with self._sessions.begin() as session:
                self.report.articles_stored += upsert_articles(session, self._articles)
                record_image_origins(session, self._articles)
            self._articles = []

    def _flush_events(self) -> None:
        if self._events:
            with self._sessions.begin() as session:
                self.report.events_stored += insert_events(session, self._events)
            self._events = []

    def _lines(self, path: Path, parse: Callable[[str], Sequence[T]], report_rows: bool) -> Iterator[T]:
        task = self._progress.add_task(path.name, total=path.stat().st_size)
        # Binary lines: the byte count drives the progress bar and a bad encoding stays one bad row.
        with path.open("rb") as lines:
            for line_no, raw in enumerate(lines, start=1):
                self._progress.advance(task, len(raw))
                if not raw.strip():
                    continue
                if report_rows:
                    self.report.rows_read += 1
                try:
                    text = raw.decode("utf-8").rstrip("\r\n")
                    if "\x00" in text:
                        raise BadRow("text contains a NUL character")  # PostgreSQL cannot store it
                    items = parse(text)
                except ValueError as error:  # includes UnicodeDecodeError and json errors
                    if report_rows:
                        self.report.reject(path.name, line_no, str(error) or type(error).__name__)
                    continue
                yield from items
        self._progress.remove_task(task)


def record_image_origins(session: Session, records: Sequence[ArticleRecord]) -> None:
    """Write where each stored article's image_ref came from (``articles.image_origin``): "local"
    for what an operator ingests (its image_ref may name a file on the server, which img2vec
    reads), so an article first posted to the API and now ingested is marked anew, and the
    other way round (api/routes/articles.py)."""
    by_origin: dict[str, list[str]] = {}
    for record in records:
        if not record.id_only:
            by_origin.setdefault(record.image_source, []).append(record.id)
    for origin, ids in by_origin.items():
        session.execute(update(ARTICLES).where(ARTICLES.c.id.in_(ids), ARTICLES.c.image_origin != origin)
                        .values(image_origin=origin))


def parse_json(text: str) -> Any:
    value = json.loads(text)
    if "\\u" in text:
        # Escapes can smuggle in what no database stores (a lone surrogate "\ud800"; PostgreSQL
        # refuses NUL): reject the row here rather than fail the whole batch it would land in.
        dumped = json.dumps(value, ensure_ascii=False)
        dumped.encode("utf-8")
        if "\\u0000" in dumped:
            raise BadRow("text contains a NUL character")
    return value


def json_object(line: str) -> dict[str, Any]:
    row = parse_json(line)
    if not isinstance(row, dict):
        raise BadRow("expected a JSON object")
    return row


def optional_text(row: dict[str, Any], name: str, max_length: int | None = None) -> str | None:
    """A text field: missing, null or blank is None; anything but a string is a bad row."""
    value = row.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRow(f"{name} must be a string, got {value!r}")
    return checked_length(value.strip(), name, max_length) or None


def required_id(row: dict[str, Any], name: str) -> str:
    """An identifier: text, or an integer written as a number."""
    value = row.get(name)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    text = optional_text({name: value}, name, MAX_ID_LENGTH)
    if text is None:
        raise BadRow(f"missing {name}")
    return text


def checked_length(value: str, name: str, max_length: int | None = MAX_ID_LENGTH) -> str:
    # PostgreSQL rejects a too long value with an error that would fail the whole batch.
    if max_length is not None and len(value) > max_length:
        raise BadRow(f"{name} is longer than {max_length} characters")
    return value


def parse_timestamp(value: Any) -> datetime:
    """ISO-8601 text or unix seconds -> naive UTC (the project stores no zones)."""
    if isinstance(value, bool):  # bool is an int in Python, never a time
        raise BadRow(f"not a timestamp: {value!r}")
    if isinstance(value, int | float):
        try:
            return datetime.fromtimestamp(value, timezone.utc).replace(tzinfo=None)
        except (OverflowError, OSError) as error:
            raise BadRow(f"timestamp out of range: {value!r}") from error
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError as error:
            raise BadRow(f"not an ISO-8601 timestamp: {value!r}") from error
        return parsed.astimezone(timezone.utc).replace(tzinfo=None) if parsed.tzinfo else parsed
    raise BadRow(f"not a timestamp: {value!r}")


def ranked_tags(keywords: Sequence[Any]) -> tuple[tuple[str, float], ...]:
    """Tags given strongest first without weights: 1.0, 0.9, 0.8... (never below 0.1)."""
    if not isinstance(keywords, list | tuple) or not all(isinstance(k, str) for k in keywords):
        raise BadRow(f"tags must be a list of strings, got {keywords!r}")
    unique = dict.fromkeys(k.strip() for k in keywords if k.strip())
    return tuple((tag, round(max(1.0 - 0.1 * rank, 0.1), 2)) for rank, tag in enumerate(unique))
