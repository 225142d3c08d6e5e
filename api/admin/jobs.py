"""The jobs page: nightly runs (``job_runs`` grouped by run id), newest first, step by step,
each step with the Ray nodes that ran it (its ``nodes`` metric)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import distinct, func, select

from api.admin.templating import Page, templates
from api.deps import SessionDep, SettingsDep
from recall.models import JobRun

router = APIRouter()

# A run's status is its worst step's.
STATUS_ORDER = ("failed", "running", "ok", "skipped")
# Metrics that are tables of their own (system -> {k: value}): the evaluation's recall figures.
FIGURE_TABLES = ("recall",)
# Metrics with a column of their own.
COLUMNS = ("seconds", "nodes")


@dataclass(frozen=True, slots=True)
class Run:
    run_id: str
    job: str
    version: str | None
    started_at: datetime
    finished_at: datetime | None
    steps: list[JobRun]

    @property
    def status(self) -> str:
        statuses = {step.status for step in self.steps}
        return next((s for s in STATUS_ORDER if s in statuses), "unknown")

    @property
    def seconds(self) -> float | None:
        return (self.finished_at - self.started_at).total_seconds() if self.finished_at else None


def figure_tables(metrics: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """The metrics that are tables (row -> column -> value), e.g. Recall@K per route."""
    return {name: value for name in FIGURE_TABLES
            if isinstance(value := metrics.get(name), dict) and all(isinstance(v, dict) for v in value.values())}


def plain_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in metrics.items()
            if name not in figure_tables(metrics) and name not in COLUMNS}


@router.get("/jobs", response_class=HTMLResponse)
def jobs_page(request: Request, session: SessionDep, settings: SettingsDep,
              page: Annotated[int, Query(ge=1)] = 1) -> HTMLResponse:
    run_count = session.scalar(select(func.count(distinct(JobRun.run_id))))
    runs_page = Page.of(page, settings.admin_page_size, run_count)
    started = func.min(JobRun.started_at).label("started")
    newest = session.execute(
        select(JobRun.run_id, started, func.max(JobRun.finished_at))
        .group_by(JobRun.run_id).order_by(started.desc(), JobRun.run_id.desc())
        .offset(runs_page.offset).limit(runs_page.size)).all()
    steps: dict[str, list[JobRun]] = {run_id: [] for run_id, _, _ in newest}
    for step in session.scalars(select(JobRun).where(JobRun.run_id.in_(list(steps))).order_by(JobRun.id)):
        steps[step.run_id].append(step)
    runs = [Run(run_id, steps[run_id][0].job, steps[run_id][-1].artefact_version, first, last, steps[run_id])
            for run_id, first, last in newest]
    return templates.TemplateResponse(request, "jobs.html", {
        "runs": runs, "runs_page": runs_page, "figure_tables": figure_tables, "plain_metrics": plain_metrics})
