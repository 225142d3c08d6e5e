"""``recall eval``: an online replay, because news lives by the hour.

Protocol (the test window):
1. Build (the nightly job) on everything before the split time T.
2. Replay everything after T in time order. An article is published (through the fast path:
   frozen encoders, live indexes, fresh list) at the first moment the data shows it, its
   ``published_at``, but only after the impression that first shows it has been scored: an
   article first seen in an impression is never a candidate for that impression (it would be a
   leak: the newest article on the platform, on top of ``fresh``, is the one being shown). Events
   reach Redis through ``RecallService.record_events``, the code path behind ``POST /v1/events``,
   so before each impression the platform knows every event before that moment, other users'
   clicks included, and the user's history.
3. At each impression (a group of events sharing an ``impression_id``), before its own events are
   applied, the served pipeline is asked for the user's candidates at that moment: every enabled
   route asked for its served quota, filtered, merged by the served merger into the top max K, the
   list the API would return. The clicked articles of the impression found in the top K count as
   hits. Recall@K = hits / clicks, with a 95% bootstrap interval over impressions.

Reported fused, per route alone (what it was asked for: its quota; K beyond it is marked), and for
two baselines asked for max K: popularity over the training period and real-time hot.

Tuning (``tune_from`` T0 < T): build on events before T0, replay [T0, T) asking every route for
``TUNING_DEPTH`` candidates and keeping each list with its filter verdicts, then fit the merger's
route weights, quotas and agreement by coordinate ascent on fused Recall@K over those lists (a
quota of q takes the first q of a route's list, then the filters, as serving does). The fitted
configs are stored as route configs changed by "tuner" and the test window is replayed with them.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Collection, Iterator, Sequence
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
from recall.domain import Candidates, EventRecord, RequestContext, to_unix, top_n
from recall.fastpath import publish_articles
from recall.filters import judge, request_filters
from recall.merger import WeightedRankMerger
from recall.online import OnlineStore
from recall.routeconfig import load_route_configs, update_route_config
from recall.routes import ROUTES
from recall.routes.base import NO_NEEDS, RouteConfig
from recall.routes.fallback import HotRoute
from recall.service import RecallService
from recall.serving import ServingState
from recall.settings import Settings

FUSED = "fused"
SCORE, PUBLISH, APPLY = 0, 1, 2  # what happens first at one moment of the replay
TUNING_DEPTH = 500
QUOTAS = (0, 25, 50, 100, 200, 300, 500)  # quota 0: the route off
WEIGHTS = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0)
AGREEMENTS = (0.0, 0.1, 0.25, 0.5, 1.0)
ROUNDS = 3
BOOTSTRAP_SAMPLES = 1000


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
    window: str
    ks: list[int]
    clicks: list[int] = field(default_factory=list)  # per scored impression
    impression_ids: list[str] = field(default_factory=list)
    # system -> per scored impression, its hits within each K
    hits: dict[str, list[np.ndarray]] = field(default_factory=lambda: defaultdict(list))
    asked: dict[str, int] = field(default_factory=dict)  # system -> candidates it was asked for
    list_sizes: Counter = field(default_factory=Counter)
    # Clicks within the largest K that this served route alone found: what it adds to the others.
    only_here: Counter = field(default_factory=Counter)
    clicks_on_new_articles: int = 0  # articles no event before the window referenced
    build: dict[str, Any] = field(default_factory=dict)
    tuning: dict[str, Any] = field(default_factory=dict)
    validation: EvalReport | None = None

    @property
    def impressions(self) -> int:
        return len(self.clicks)

    @property
    def total_clicks(self) -> int:
        return sum(self.clicks)

    def impression(self, impression_id: str, clicks: int) -> None:
        self.impression_ids.append(impression_id)
        self.clicks.append(clicks)

    def add(self, system: str, ranked: Sequence[str], clicked: Collection[str]) -> set[str]:
        """One system's list for the impression last opened; returns the clicked articles in it."""
        rank = {item: r for r, item in enumerate(ranked)}
        positions = np.array([rank[a] for a in clicked if a in rank], np.int64)
        self.add_hits(system, positions, len(ranked))
        return {a for a in clicked if a in rank}

    def add_hits(self, system: str, positions: np.ndarray, size: int) -> None:
        self.hits[system].append(np.array([(positions < k).sum() for k in self.ks], np.int32))
        self.list_sizes[system] += size

    def recall(self, system: str, k: int) -> float:
        total = self.total_clicks
        return float(np.sum(self.hits[system], axis=0)[self.ks.index(k)]) / total if total else 0.0

    def intervals(self, system: str) -> np.ndarray:
        """95% bootstrap intervals of Recall@K over impressions, one (low, high) per K (seeded)."""
        if not self.clicks:
            return np.zeros((len(self.ks), 2))
        hits, clicks = np.asarray(self.hits[system], np.float64), np.asarray(self.clicks, np.float64)
        draws = np.random.default_rng(0).integers(0, len(clicks), (BOOTSTRAP_SAMPLES, len(clicks)))
        ratios = hits[draws].sum(axis=1) / np.maximum(clicks[draws].sum(axis=1), 1)[:, None]
        return np.percentile(ratios, [2.5, 97.5], axis=0).T

    def as_dict(self) -> dict[str, Any]:
        out = {
            "protocol": "online replay; see jobs/evaluate.py",
            "window": self.window,
            "impressions": self.impressions,
            "clicks": self.total_clicks,
            "share_of_clicks_on_articles_new_in_window": (
                self.clicks_on_new_articles / self.total_clicks if self.total_clicks else 0.0),
            "recall": {s: {str(k): round(self.recall(s, k), 4) for k in self.ks} for s in self.hits},
            "interval95": {s: {str(k): [round(float(lo), 4), round(float(hi), 4)]
                               for k, (lo, hi) in zip(self.ks, self.intervals(s))} for s in self.hits},
            "asked": dict(self.asked),
            "mean_list_size": {s: round(self.list_sizes[s] / max(self.impressions, 1), 1) for s in self.hits},
            "clicks_found_only_by_route": dict(self.only_here),
            "build": self.build,
        }
        if self.tuning:
            out["tuning"] = self.tuning
        if self.validation is not None:
            out["validation"] = self.validation.as_dict()
        return out

    def table(self) -> Table:
        share = self.clicks_on_new_articles / self.total_clicks if self.total_clicks else 0.0
        table = Table(title=f"Recall@K (95% interval), {self.window}: {self.impressions} impressions, "
                            f"{self.total_clicks} clicks ({share:.0%} on articles new in the window)",
                      caption="† K above what the route was asked for (its quota)")
        table.add_column("system")
        table.add_column("asked", justify="right")
        for k in self.ks:
            table.add_column(f"R@{k}", justify="right")
        table.add_column("mean size", justify="right")
        table.add_column(f"only it @{self.ks[-1]}", justify="right")
        for system in self.hits:
            asked = self.asked.get(system, self.ks[-1])
            cells = [f"{self.recall(system, k):.3f} ({lo:.3f}-{hi:.3f}){'†' if k > asked else ''}"
                     for k, (lo, hi) in zip(self.ks, self.intervals(system))]
            table.add_row(system, str(asked), *cells,
                          f"{self.list_sizes[system] / max(self.impressions, 1):.0f}",
                          str(self.only_here[system]) if system in self.only_here else "")
        return table


def timeline(events: list[EventRecord], new_articles: dict[str, Any]) -> list[tuple[float, int, Any]]:
    """Publications, impressions and loose events in one time-ordered list.

    An impression group is keyed by its first event's time (its clicks, seconds later, travel
    with it) and appears twice: scored first, its events applied last. Between them come the
    publications of that moment, so an article first shown in an impression is live only after
    that impression was scored (its ``published_at`` is the impression's time).
    """
    groups: dict[str, list[EventRecord]] = defaultdict(list)
    items: list[tuple[float, int, Any]] = []
    for ev in events:
        if ev.impression_id:
            groups[ev.impression_id].append(ev)
        else:
            items.append((to_unix(ev.ts), APPLY, [ev]))
    for group in groups.values():
        ts = min(to_unix(e.ts) for e in group)
        items += [(ts, SCORE, group), (ts, APPLY, group)]
    items.extend((to_unix(a.published_at), PUBLISH, a) for a in new_articles.values())
    items.sort(key=lambda x: (x[0], x[1]))
    return items


class Replay:
    """A build on the events before ``start`` and the replay of those in [start, end)."""

    def __init__(self, settings: Settings, engine: Engine, online: OnlineStore, start: datetime,
                 end: datetime | None, configs: dict[str, RouteConfig] | None = None,
                 console: Console | None = None):
        online.flush_namespace()
        self.online, self.console = online, console
        self.result = run_nightly(settings, engine, online, cutoff=start, console=console)
        sessions = make_sessionmaker(engine)
        with sessions() as session:
            configs = configs or load_route_configs(session)
            self.popular = sqlstore.article_click_counts(session, since=None, before=start)
            events = list(sqlstore.iter_events(session, after=start, before=end))
            self.new_articles = {a.id: a for a in sqlstore.iter_articles(session)
                                 if a.published_at is not None and a.published_at >= start
                                 and (end is None or a.published_at < end)}
        self.service = RecallService(online, ServingState.load(settings), configs,
                                     WeightedRankMerger(agreement=settings.merger_agreement),
                                     enforce_budgets=False)
        self.steps = timeline(events, self.new_articles)

    def impressions(self) -> Iterator[tuple[float, str, str, set[str]]]:
        """(moment, impression id, user, clicked articles) of each impression with a click, before its events
        are applied; everything else in the window is applied as it comes."""
        service = self.service
        with progress(self.console) as bar:
            task = bar.add_task("replay", total=len(self.steps))
            for ts, kind, payload in self.steps:
                bar.advance(task)
                if kind == PUBLISH:
                    publish_articles(service.pipeline, self.online, [payload])
                elif kind == APPLY:
                    service.record_events(payload)
                else:
                    clicked = {e.article_id for e in payload if e.kind == "click"}
                    if clicked:
                        yield ts, payload[0].impression_id, payload[0].user_id, clicked

    def baselines(self, hot_hours: float) -> dict[str, Any]:
        ranked = sorted(((i, float(c)) for i, (c, _) in self.popular.items() if c), key=lambda x: -x[1])
        catalog = self.service.state.catalog
        return {"baseline:popular": StaticListRoute("baseline:popular", catalog.ensure([i for i, _ in ranked]),
                                                    np.array([c for _, c in ranked], np.float32)),
                f"baseline:hot{hot_hours:g}h": HotRoute(f"baseline:hot{hot_hours:g}h", window_hours=hot_hours)}


def window_name(kind: str, start: datetime, end: datetime | None) -> str:
    return f"{kind} window [{start:%Y-%m-%d %H:%M}, {end:%Y-%m-%d %H:%M})" if end else \
        f"{kind} window after {start:%Y-%m-%d %H:%M}"


def evaluate(settings: Settings, engine: Engine, online: OnlineStore, split: datetime,
             ks: list[int], console: Console | None = None, hot_hours: float = 6.0,
             tune_from: datetime | None = None, configs_engine: Engine | None = None) -> EvalReport:
    """Replay the test window after ``split`` through the served pipeline. With ``tune_from``,
    first fit the fusion on [tune_from, split), replay the test window with it, and store it as
    route configs (changed by "tuner") in ``configs_engine`` when one is given. Uses (and clears) ``online``'s key
    prefix and ``settings.var_dir``: run it on a scratch prefix and directory."""
    ks = sorted(ks)
    validation, tuning, configs = None, {}, None
    if tune_from is not None:
        if tune_from >= split:
            raise ValueError(f"the tuning window must start before the split ({tune_from} >= {split})")
        validation, configs, agreement, tuning = tune(settings, engine, online, tune_from, split, ks, console)
        if configs_engine is not None:
            store_configs(configs_engine, configs)
        settings = settings.model_copy(update={"merger_agreement": agreement})
    replay = Replay(settings, engine, online, split, None, configs, console)
    report = replay_served(replay, ks, hot_hours, window_name("test", split, None))
    report.validation, report.tuning = validation, tuning
    return report


def replay_served(replay: Replay, ks: list[int], hot_hours: float, window: str) -> EvalReport:
    """The served pipeline at every impression, its routes alone, and the baselines."""
    service, max_k = replay.service, max(ks)
    pipeline = service.pipeline
    ids = pipeline.state.catalog.ids
    served = {name: route for name, route in pipeline.routes.items() if pipeline.configs[name].enabled}
    baselines = replay.baselines(hot_hours)
    asked = {name: RouteConfig(name, quota=max_k) for name in baselines}
    report = EvalReport(window, ks, build={"version": replay.result.version, **replay.result.counts})
    report.asked = {FUSED: max_k, **{r: pipeline.configs[r].quota for r in served},
                    **{name: max_k for name in baselines}}
    for ts, impression_id, user, clicked in replay.impressions():
        report.impression(impression_id, len(clicked))
        report.clicks_on_new_articles += len(clicked & replay.new_articles.keys())
        retrieved = service.retrieve(pipeline, user, served, pipeline.configs, now=ts)
        fused, _ = service.merger.merge(retrieved.per_route, pipeline.configs, max_k, ids)
        report.add(FUSED, [f.item_id for f in fused], clicked)
        found_by: dict[str, list[str]] = defaultdict(list)
        for name, candidates in retrieved.per_route.items():
            for article in report.add(name, [ids[row] for row in candidates.rows[:max_k]], clicked):
                found_by[article].append(name)
        report.only_here.update(names[0] for names in found_by.values() if len(names) == 1)
        for name, candidates in service.retrieve(pipeline, user, baselines, asked, now=ts).per_route.items():
            report.add(name, [ids[row] for row in candidates.rows], clicked)
    return report


# ---- tuning -------------------------------------------------------------------------------
@dataclass(slots=True)
class DumpedImpression:
    """One impression of the tuning window: each route's deep list and the filters' verdicts."""

    impression_id: str
    clicks: int
    clicked: np.ndarray  # catalog rows of the clicked articles the catalog knew at that moment
    lists: dict[str, tuple[np.ndarray, np.ndarray]]  # route -> (rows best first, kept by the filters)


def dump_window(replay: Replay) -> list[DumpedImpression]:
    """Every route the build serves, enabled or not, asked for ``TUNING_DEPTH`` at each impression."""
    service = replay.service
    pipeline = service.pipeline
    state = pipeline.state
    deep_configs = {name: replace(config, quota=TUNING_DEPTH) for name, config in pipeline.configs.items()}
    routes = {name: route for name in pipeline.routes
              if (route := ROUTES[name].factory(state, deep_configs[name])) is not None}
    dumped = []
    for ts, impression_id, user, clicked in replay.impressions():
        ctx = service.context(pipeline, user, routes, ts)
        per_route, _ = service.run_routes(pipeline, ctx, routes, deep_configs)
        filters = request_filters(ctx, state.catalog)
        rows = state.catalog.row_of
        dumped.append(DumpedImpression(
            impression_id, len(clicked), np.array([rows[a] for a in clicked if a in rows], np.int32),
            {name: (c.rows, judge(c.rows, filters) < 0) for name, c in per_route.items()}))
    return dumped


@dataclass(frozen=True)
class Fusion:
    """What the tuner fits: each route's (weight, quota; 0 = off) and the merger's agreement."""

    routes: dict[str, tuple[float, int]]
    agreement: float

    @classmethod
    def of(cls, configs: dict[str, RouteConfig], names: Collection[str], agreement: float) -> Fusion:
        return cls({name: (configs[name].weight, configs[name].quota if configs[name].enabled else 0)
                    for name in names}, agreement)

    def set(self, route: str | None, weight: float | None = None, quota: int | None = None,
            agreement: float | None = None) -> Fusion:
        routes = dict(self.routes)
        if route is not None:
            old_weight, old_quota = routes[route]
            routes[route] = (old_weight if weight is None else weight, old_quota if quota is None else quota)
        return Fusion(routes, self.agreement if agreement is None else agreement)

    def positions(self, impression: DumpedImpression, depth: int) -> np.ndarray:
        """Where this fusion's list (its top ``depth``) puts the impression's clicked articles."""
        lists, weights = [], []
        for name, (weight, quota) in self.routes.items():
            if quota > 0 and name in impression.lists:
                rows, kept = impression.lists[name]
                lists.append(rows[:quota][kept[:quota]])
                weights.append(weight)
        items, fused, _ = WeightedRankMerger(agreement=self.agreement).fuse(lists, weights)
        top = items[top_n(fused, depth)]
        return np.flatnonzero(np.isin(top, impression.clicked))


def score_fusion(fusion: Fusion, dumped: list[DumpedImpression], ks: list[int]) -> np.ndarray:
    """Fused Recall@K over the dumped impressions, one per K."""
    hits = np.zeros(len(ks))
    clicks = 0
    for impression in dumped:
        positions = fusion.positions(impression, max(ks))
        hits += [(positions < k).sum() for k in ks]
        clicks += impression.clicks
    return hits / max(clicks, 1)


def fit_fusion(start: Fusion, dumped: list[DumpedImpression], ks: list[int]
               ) -> tuple[Fusion, list[dict[str, Any]]]:
    """Coordinate ascent on mean fused Recall@K over ``ks``: each route's quota, then its weight,
    then the agreement, for a few rounds. A change must gain at least half a click's worth, so
    noise in a small window does not move the defaults."""
    clicks = sum(i.clicks for i in dumped)
    min_gain = 0.5 / max(clicks, 1)
    best, best_score = start, float(score_fusion(start, dumped, ks).mean())
    trace = [{"round": 0, "objective": round(best_score, 4)}]
    for round_ in range(1, ROUNDS + 1):
        moved = False
        trials = [dict(route=r, quota=q) for r in start.routes for q in QUOTAS] + \
                 [dict(route=r, weight=w) for r in start.routes for w in WEIGHTS] + \
                 [dict(route=None, agreement=a) for a in AGREEMENTS]
        for trial in trials:
            if trial.get("weight") is not None and best.routes[trial["route"]][1] == 0:
                continue  # the weight of a route that is off changes nothing
            candidate = best.set(**trial)
            if candidate == best:
                continue
            score = float(score_fusion(candidate, dumped, ks).mean())
            if score >= best_score + min_gain:
                best, best_score, moved = candidate, score, True
        trace.append({"round": round_, "objective": round(best_score, 4)})
        if not moved:
            break
    return best, trace


def tune(settings: Settings, engine: Engine, online: OnlineStore, start: datetime, end: datetime,
         ks: list[int], console: Console | None = None
         ) -> tuple[EvalReport, dict[str, RouteConfig], float, dict[str, Any]]:
    """Fit the fusion on [start, end) over a build made before ``start``: the validation
    window's report (fused as fitted, as served by default, and with equal weights; every route
    alone at its default quota), the fitted configs and agreement, and a summary."""
    settings = settings.model_copy(update={
        # Deep lists: the precomputed neighbours must reach the deepest quota tried.
        "neighbour_depth": max(settings.neighbour_depth, TUNING_DEPTH + settings.seed_count)})
    replay = Replay(settings, engine, online, start, end, console=console)
    configs = replay.service.configs
    dumped = dump_window(replay)
    names = sorted({name for impression in dumped for name in impression.lists}) or list(replay.service.routes)
    defaults = Fusion.of(configs, names, settings.merger_agreement)
    equal = Fusion({name: (1.0, quota) for name, (_, quota) in defaults.routes.items()}, defaults.agreement)
    fitted, trace = fit_fusion(defaults, dumped, ks)

    report = EvalReport(window_name("validation", start, end), ks,
                        build={"version": replay.result.version, **replay.result.counts})
    variants = {f"{FUSED} (tuned)": fitted, f"{FUSED} (defaults)": defaults, f"{FUSED} (equal weights)": equal}
    alone = {name: Fusion({name: (1.0, configs[name].quota)}, 0.0) for name in names}
    for impression in dumped:
        report.impression(impression.impression_id, impression.clicks)
        for system, fusion in {**variants, **alone}.items():
            report.add_hits(system, fusion.positions(impression, max(ks)),
                            min(max(ks), sum(q for _, q in fusion.routes.values())))
    report.asked = {**{system: max(ks) for system in variants}, **{name: configs[name].quota for name in names}}

    tuned = {}
    for name, (weight, quota) in fitted.routes.items():
        old = configs[name]
        tuned[name] = RouteConfig(name, quota > 0, weight, quota if quota > 0 else old.quota, old.params)
    summary = {
        "window": report.window, "objective": f"mean fused Recall@K over K in {ks}",
        "trace": trace, "agreement": fitted.agreement,
        "changed": {name: {"from": configs[name].as_dict(), "to": tuned[name].as_dict()}
                    for name in names if tuned[name] != configs[name]},
        "variants": {system: [round(x, 4) for x in score_fusion(f, dumped, ks)] for system, f in variants.items()},
    }
    return report, tuned, fitted.agreement, summary


def store_configs(engine: Engine, configs: dict[str, RouteConfig]) -> None:
    """Write the fitted configs where they differ, with the audit trail, changed by "tuner"."""
    with make_sessionmaker(engine)() as session:
        current = load_route_configs(session)
        for name, config in configs.items():
            if config != current[name]:
                update_route_config(session, name, "tuner", enabled=config.enabled, weight=config.weight,
                                    quota=config.quota)


def record(report: EvalReport, sessions, run_id: str, data: str) -> None:
    """The figures as a job run (job "eval", step "evaluate") in ``job_runs``, where the admin
    jobs page shows them next to the nightly runs."""
    run = JobRecorder(sessions, "eval", run_id=run_id, version=report.build.get("version"))
    with run.step("evaluate") as metrics:
        metrics.update(data=data, **report.as_dict())


def write_json(report: EvalReport, path) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(report.as_dict(), fh, indent=2)
