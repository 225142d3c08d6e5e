"""Job steps recorded in ``job_runs``: one row per step with status, timings, counts, errors."""

from __future__ import annotations

import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from recall.models import JobRun


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class JobRecorder:
    def __init__(self, sessions: sessionmaker[Session], job: str, run_id: str, version: str | None = None):
        self.sessions = sessions
        self.job = job
        self.run_id = run_id
        self.version = version

    @contextmanager
    def step(self, name: str) -> Iterator[dict[str, Any]]:
        """Record a step; the body fills the yielded dict with its metrics.

        The row is written as ``running`` first, so a killed job leaves a visible trace.
        """
        metrics: dict[str, Any] = {}
        with self.sessions() as session:
            row = JobRun(run_id=self.run_id, job=self.job, step=name, status="running",
                         started_at=utcnow(), metrics={}, artefact_version=self.version)
            session.add(row)
            session.commit()
            row_id = row.id
        start = time.perf_counter()
        status, error = "ok", None
        try:
            yield metrics
            if "skipped" in metrics:  # the body said why it did nothing
                status = "skipped"
        except BaseException as exc:
            status, error = "failed", "".join(traceback.format_exception(exc))[-4000:]
            raise
        finally:
            seconds = time.perf_counter() - start
            metrics.setdefault("seconds", round(seconds, 3))
            if "items" in metrics and seconds > 0:  # every step that handles items reports its rate
                metrics["items_per_second"] = round(metrics["items"] / seconds, 1)
            with self.sessions() as session:
                row = session.get(JobRun, row_id)
                row.status, row.error, row.metrics = status, error, metrics
                row.finished_at = utcnow()
                row.artefact_version = self.version
                session.commit()
