"""``recall eval``: an online replay, because news lives by the hour.

Protocol:
1. Build (the nightly job) on everything before the split time T.
2. Replay everything after T in time order. An article becomes live at the first moment the
   data shows it (its ``published_at``) and is then published through the fast path (frozen
   encoders, live indexes, fresh list). Events reach Redis through ``RecallService.record_events``,
   the code path behind ``POST /v1/events``, so before each impression the platform knows every
   event before that moment, other users' clicks included, and the user's history.
3. At each impression (a group of events sharing an ``impression_id``), before its own events
   are applied, the platform is asked for candidates for the user at that moment; the clicked
   articles of the impression found in the top K count as hits. Recall@K = hits / clicks.

Reported per route alone, fused (the served configuration), and for two baselines: popularity
over the training period and real-time hot (clicks in the last 6 hours before the moment).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine

from jobs.nightly import progress, run_nightly
from jobs.runs import JobRecorder
from recall import sqlstore
from recall.db import make_sessionmaker
from recall.domain import Candidates, EventRecord, RequestContext, to_unix
from recall.fastpath import publish_articles
from recall.online import OnlineStore
from recall.routes import ROUTES
from recall.routes.base import NO_NEEDS, RouteConfig
from recall.routes.fallback import HotRoute
from recall.service import RecallService
from recall.serving import ServingState
from recall.settings import Settings

FUSED = "fused"


@dataclass
class StaticListRoute:
    """A fixed ranked list (the training-period popularity baseline), as catalog rows."""

    name: str
    rows: np.ndarray
    scores: np.ndarray
    kind: str = "fallback"
    needs = NO_NEEDS
    windows: tuple[float, ...] = ()

    def retrieve(self, ctx: RequestContext, n: int) -> Candidates:
        return Candidates.of(self.rows[:n], self.scores[:n], np.zeros(min(n, len(self.rows)), np.int32),
                             self.scores[:n], ["train_clicks"])


@dataclass
class EvalReport:
    split_time: str
    ks: list[int]
    impressions: int = 0
    clicks: int = 0
    clicks_on_new_articles: int = 0  # articles no event before T referenced
    hits: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    list_sizes: dict[str, int] = field(default_factory=Counter)
    # Clicks within the largest K that this served route alone found: what it adds to the others.
    only_here: Counter = field(default_factory=Counter)
    build: dict[str, Any] = field(default_factory=dict)

    def recall(self, system: str, k: int) -> float:
        return self.hits[system][k] / self.clicks if self.clicks else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "protocol": "online replay; see jobs/evaluate.py",
            "split_time": self.split_time,
            "impressions": self.impressions,
            "clicks": self.clicks,
            "share_of_clicks_on_articles_new_after_split": (
                self.clicks_on_new_articles / self.clicks if self.clicks else 0.0),
            "recall": {s: {str(k): round(self.recall(s, k), 4) for k in self.ks} for s in self.hits},
            "mean_list_size": {s: round(self.list_sizes[s] / max(self.impressions, 1), 1) for s in self.hits},
            "clicks_found_only_by_route": dict(self.only_here),
            "build": self.build,
        }

    def table(self) -> Table:
        share = self.clicks_on_new_articles / self.clicks if self.clicks else 0.0
        table = Table(title=f"Recall@K, replay after {self.split_time}: {self.impressions} impressions, "
                            f"{self.clicks} clicks ({share:.0%} on articles new after the split)")
        table.add_column("system")
        for k in self.ks:
            table.add_column(f"R@{k}", justify="right")
        table.add_column("mean size", justify="right")
        table.add_column(f"only it @{self.ks[-1]}", justify="right")
        for system in self.hits:
            table.add_row(system, *(f"{self.recall(system, k):.3f}" for k in self.ks),
                          f"{self.list_sizes[system] / max(self.impressions, 1):.0f}",
                          str(self.only_here[system]) if system in self.only_here else "")
        return table


def timeline(events: list[EventRecord], new_articles: dict[str, Any]) -> list[tuple[float, int, Any]]:
    """Merge publications, impressions (grouped) and loose events into one time-ordered list.

    Publications sort first at equal times (an article shown at t is live at t); an impression
    group is keyed by its first event's time, so its clicks (seconds later) travel with it.
    """
    groups: dict[str, list[EventRecord]] = defaultdict(list)
    items: list[tuple[float, int, Any]] = []
    for ev in events:
        if ev.impression_id:
            groups[ev.impression_id].append(ev)
        else:
            items.append((to_unix(ev.ts), 1, [ev]))
    items.extend((min(to_unix(e.ts) for e in g), 1, g) for g in groups.values())
    items.extend((to_unix(a.published_at), 0, a) for a in new_articles.values())
    items.sort(key=lambda x: (x[0], x[1]))
    return items


def evaluate(settings: Settings, engine: Engine, online: OnlineStore, split: datetime,
             ks: list[int], console: Console | None = None, hot_hours: float = 6.0) -> EvalReport:
    """Build at ``split`` and replay what follows. Uses (and clears) ``online``'s key prefix and
    ``settings.var_dir``: run it on a scratch prefix and directory, never on the serving ones."""
    online.flush_namespace()
    # Every route is asked for the largest K: its precomputed neighbours must reach that deep.
    settings = settings.model_copy(update={
        "neighbour_depth": max(settings.neighbour_depth, max(ks) + settings.seed_count)})
    result = run_nightly(settings, engine, online, cutoff=split, console=console)
    state = ServingState.load(settings)
    service = RecallService(online, state, enforce_budgets=False)
    pipeline = service.pipeline
    ids = state.catalog.ids
    max_k = max(ks)
    report = EvalReport(split.isoformat(sep=" "), sorted(ks), build={"version": result.version,
                                                                       **result.counts})
    sessions = make_sessionmaker(engine)
    with sessions() as session:
        popular = sqlstore.article_click_counts(session, since=None, before=split)
        events = list(sqlstore.iter_events(session, after=split))
        new_articles = {a.id: a for a in sqlstore.iter_articles(session)
                        if a.published_at is not None and a.published_at >= split}

    # Every route (and baseline) runs once per impression with the largest K as its quota; the
    # fused list is the served configuration's merge of the same candidates (the merger applies
    # the served quotas), so "route alone" and "fused" see exactly the same retrievals.
    served = [name for name in service.routes if service.configs[name].enabled]
    # Each route built for the replay's quota: what it prefetches (its cluster lists' depth)
    # follows the quota it is asked for.
    routes = {name: ROUTES[name].factory(state, replace(service.configs[name], quota=max_k)) for name in served}
    ranked = sorted(((i, float(c)) for i, (c, _) in popular.items() if c), key=lambda x: -x[1])
    routes["baseline:popular"] = StaticListRoute("baseline:popular", state.catalog.ensure([i for i, _ in ranked]),
                                                 np.array([c for _, c in ranked], np.float32))
    routes[f"baseline:hot{hot_hours:g}h"] = HotRoute(f"baseline:hot{hot_hours:g}h", window_hours=hot_hours)
    retrieval = {name: RouteConfig(name, quota=max_k) for name in routes}
    for system in [FUSED, *routes]:
        report.hits[system] = Counter()

    steps = timeline(events, new_articles)
    with progress(console) as bar:
        task = bar.add_task("replay", total=len(steps))
        for ts, kind, payload in steps:
            bar.advance(task)
            if kind == 0:
                publish_articles(pipeline, online, [payload])
                continue
            clicked = {e.article_id for e in payload if e.kind == "click" and e.impression_id}
            if clicked:
                report.impressions += 1
                report.clicks += len(clicked)
                report.clicks_on_new_articles += len(clicked & new_articles.keys())
                user = payload[0].user_id
                retrieved = service.retrieve(pipeline, user, routes, retrieval, now=ts)
                fused, _ = service.merger.merge({r: retrieved.per_route[r] for r in served},
                                                service.configs, max_k, ids)
                lists = {FUSED: [f.item_id for f in fused],
                         **{r: [ids[row] for row in c.rows] for r, c in retrieved.per_route.items()}}
                found_by: dict[str, list[str]] = defaultdict(list)
                for system, found in lists.items():
                    report.list_sizes[system] += len(found)
                    rank = {item: r for r, item in enumerate(found)}
                    for k in ks:
                        report.hits[system][k] += sum(1 for a in clicked if rank.get(a, max_k) < k)
                    if system in served:
                        for a in clicked & rank.keys():
                            found_by[a].append(system)
                report.only_here.update(systems[0] for systems in found_by.values() if len(systems) == 1)
            service.record_events(payload)
    return report


def record(report: EvalReport, sessions, run_id: str, data: str) -> None:
    """The figures as a job run (job "eval", step "evaluate") in ``job_runs``, where the admin
    jobs page shows them next to the nightly runs."""
    run = JobRecorder(sessions, "eval", run_id=run_id, version=report.build.get("version"))
    with run.step("evaluate") as metrics:
        metrics.update(data=data, **report.as_dict())


def write_json(report: EvalReport, path) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(report.as_dict(), fh, indent=2)
