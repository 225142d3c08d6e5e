"""The nightly job's user half: profiles, user vectors, clustering (full refresh), cluster lists.

Steps, each recorded in ``job_runs`` with the Ray nodes that did its work (``nodes``):

* ``users:profiles``: every user's profile rebuilt from SQL clicks through the same Lua script
  that applies live clicks (``OnlineStore.apply_clicks_to_profiles``), one user at a time, so
  a profile is never missing for longer than its own rebuild. It stays in the driver: its work
  is the Redis server's (one script call per thousand users), which tasks in parallel would only
  queue on, and the driver already holds the clicks. The profiles stay in Redis only: parsed,
  a million of them were the driver's largest structure.
* ``users:vectors``: the tag2vec vector of every tag; the LSTM over recent clicks (trained
  whole in one Ray task); every user's vectors of each kind, computed by ``UserModels`` exactly
  as online, by partitions of ``settings.user_partition_users`` users as Ray tasks (the models
  and the article inputs put in the object store once), each reading its users' profiles from
  Redis and returning one matrix per kind (``UserVectors``) and the users' top topics.
* ``clusters:kmeans-{kind}``: k by the elbow and faiss k-means in one Ray task of
  ``task_cpus`` CPUs, labels matched to the previous build's centres (Hungarian),
  multi-membership, label stability against the previous build.
* ``clusters:rule``: dynamic rule clustering over the users' top topics, one Ray task.
* ``clusters:profiles``: in the driver, one pass over the profiles in Redis for every scheme's
  cluster profiles and group profiles (``group_profiles``), then group vectors and
  cluster-centre candidates.

Nothing here touches what requests read (the profiles excepted: they are online state, in tag
space whatever the build, rebuilt from the same SQL events). ``publish_users`` writes the new
build's own keys (``b:{version}:``, ``recall/buildkeys.py``) before the build is published, and
no serving process reads them until it loads that build.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

import numpy as np
import ray

from encoders.base import NothingToLearn, TrainingCorpus
from encoders.registry import load_encoder
from jobs.raywork import map_tasks, run_task, task_cpus
from jobs.runs import JobRecorder
from recall import buildkeys, clustering, sqlstore
from recall.catalog import ItemCatalog, ItemMeta
from recall.clusterstore import ClusterProfile, ClusterStore, SchemeSummary
from recall.domain import ArticleRecord, tag_token
from recall.index import VectorIndex, normalise
from recall.online import OnlineStore, close_redis, connect_redis
from recall.rebuild import derive_user_keys, utc_now
from recall.profiles import UserProfile
from recall.serving import ServingState
from recall.settings import Settings
from recall.uservectors import TAG_ROUTE, TagVectors, UserModels

ACTIVITY_DAYS = 7
# Members by clicks over the last ACTIVITY_DAYS: (name, fewest clicks).
ACTIVITY_LEVELS = (("heavy", 10), ("regular", 3), ("light", 1), ("dormant", 0))


@dataclass
class SchemeBuild:
    summary: SchemeSummary
    memberships: dict[str, list[str]]
    profiles: list[ClusterProfile]
    centre_lists: dict[str, list[tuple[str, float]]]


@dataclass
class UserVectors:
    """One kind's vectors of many users: row r of ``vectors`` is ``users[r]``'s. One matrix, not
    a small array per user: a million users' arrays of three kinds cost their headers and dict
    slots again, and pickle (Ray's results) one object at a time."""

    users: list[str]
    vectors: np.ndarray

    @classmethod
    def of(cls, rows: Mapping[str, np.ndarray]) -> UserVectors:
        return cls(list(rows), np.stack(list(rows.values())))

    @classmethod
    def concat(cls, parts: Sequence[UserVectors]) -> UserVectors:
        return cls([u for part in parts for u in part.users], np.concatenate([part.vectors for part in parts]))

    def __len__(self) -> int:
        return len(self.users)

    def items(self) -> Iterator[tuple[str, np.ndarray]]:
        return zip(self.users, self.vectors)

    def by_user(self) -> UserVectors:
        """Rows in user id order (k-means' input order)."""
        order = sorted(range(len(self.users)), key=self.users.__getitem__)
        return UserVectors([self.users[r] for r in order], self.vectors[order])


@dataclass
class UserBuild:
    models: UserModels
    vectors: dict[str, UserVectors] = field(default_factory=dict)  # by kind
    schemes: list[SchemeBuild] = field(default_factory=list)


def rebuild_profiles(online: OnlineStore, corpus: TrainingCorpus, catalog: ItemCatalog) -> int:
    """Every user's profile rebuilt in Redis from the corpus' clicks; how many users. Nothing is
    kept here: a million parsed profiles are the driver's largest structure (~3.6 kB a user), and
    what is needed of them is read back by user partitions (``user_vector_partition``) and in
    one pass for the cluster profiles (``group_profiles``)."""
    users = sorted(corpus.click_sequences)
    for start in range(0, len(users), 1_000):
        batch = users[start:start + 1_000]
        online.r.delete(*[online.k("u", u, "profile") for u in batch])
        online.apply_clicks_to_profiles(
            (user, ts, meta)
            for user in batch
            for aid, ts in zip(corpus.click_sequences[user], corpus.click_times.get(user, ()))
            if (meta := catalog.get(aid)) is not None
        )
    return len(users)


def tag_vectors(encoder, corpus: TrainingCorpus) -> TagVectors:
    tags = sorted({tag_token(t) for a in corpus.articles.values() for t, _ in a.tags if t and t.strip()})
    return TagVectors(tags, encoder.token_vectors(tags) if tags else np.zeros((0, encoder.dim), np.float32))


def train_lstm(settings: Settings, click_sequences: Mapping[str, Sequence[str]], items: ItemInputs):
    """The click LSTM, trained whole: the nightly runs it as one Ray task of the one CPU it
    uses (one thread: the build's vectors do not depend on how many CPUs a node has)."""
    from encoders.user_lstm import ClickLSTMUserEncoder

    item_index = items.item_index()
    sequences = [_all_click_vectors(clicks, item_index) for clicks in click_sequences.values()]
    return ClickLSTMUserEncoder(item_index.dim, max_clicks=settings.user_vector_clicks,
                                epochs=settings.user_lstm_epochs, seed=settings.seed).fit(sequences)


def _all_click_vectors(clicks: Sequence[str], item_index: VectorIndex) -> np.ndarray:
    """Vectors of a user's clicks, oldest first; zero rows where an article has none."""
    out = np.zeros((len(clicks), item_index.dim), np.float32)
    for row, aid in enumerate(clicks):
        vector = item_index.vector(aid)
        if vector is not None:
            out[row] = vector
    return out


def user_vectors(models: UserModels, click_sequences: Mapping[str, Sequence[str]],
                 profiles: Mapping[str, UserProfile], item_index: VectorIndex | None, catalog: ItemCatalog
                 ) -> dict[str, UserVectors]:
    """The users' vectors of each online kind (users in ``click_sequences``' order), computed as
    ``UserModels.vectors`` does online (the LSTM batched: one call for every user). One process'
    reference and each user partition's work (``user_vector_partition``)."""
    out: dict[str, dict[str, np.ndarray]] = {}
    lstm_inputs: list[tuple[str, np.ndarray]] = []
    for user, clicks in click_sequences.items():
        newest_first = clicks[::-1]
        for kind, vector in models.vectors(profiles[user], newest_first, item_index, catalog,
                                           with_lstm=False).items():
            out.setdefault(kind, {})[user] = vector
        if models.lstm is not None and item_index is not None:
            lstm_inputs.append((user, models.click_vectors(newest_first, item_index)))
    tables = {kind: UserVectors.of(rows) for kind, rows in out.items()}
    lstm_inputs = [(u, v) for u, v in lstm_inputs if len(v)]
    if lstm_inputs:
        tables["lstm"] = UserVectors([u for u, _ in lstm_inputs], models.lstm.encode([v for _, v in lstm_inputs]))
    return tables


def partitions(users: Sequence[str], size: int) -> list[Sequence[str]]:
    return [users[start:start + size] for start in range(0, len(users), size)]


@dataclass(frozen=True)
class ItemInputs:
    """What the user tasks read of the articles, put in the object store once: the item index's
    rows (its vector lookups; its search structures stay behind) and the catalog's metadata (an
    index and a catalog hold locks, which do not pickle)."""

    item_ids: list[str] | None
    item_vectors: np.ndarray | None
    items: dict[str, ItemMeta]

    @classmethod
    def of(cls, item_index: VectorIndex | None, catalog: ItemCatalog) -> ItemInputs:
        if item_index is None:
            return cls(None, None, dict(catalog.items()))
        return cls(item_index.ids, np.asarray(item_index.vectors), dict(catalog.items()))

    def item_index(self) -> VectorIndex | None:
        return None if self.item_ids is None else VectorIndex(self.item_ids, self.item_vectors)

    def catalog(self) -> ItemCatalog:
        return ItemCatalog(self.items)


@dataclass
class UserPartition:
    """What the users:vectors step computes of some users (one partition's, or every user's
    merged): their vectors by kind, the rule clusters' input (the top ``rule_top_k`` topics of
    each user with a profile) and how many of their profiles have tags."""

    vectors: dict[str, UserVectors]
    interests: dict[str, list[str]]
    with_tags: int

    @classmethod
    def merge(cls, parts: Sequence[UserPartition]) -> UserPartition:
        kinds = dict.fromkeys(kind for part in parts for kind in part.vectors)
        return cls({kind: UserVectors.concat([part.vectors[kind] for part in parts if kind in part.vectors])
                    for kind in kinds},
                   {user: topics for part in parts for user, topics in part.interests.items()},
                   sum(part.with_tags for part in parts))


def user_vector_partition(settings: Settings, models: UserModels, items: ItemInputs,
                          click_sequences: dict[str, Sequence[str]]) -> UserPartition:
    """A Ray task of the users:vectors step: its users' profiles read from Redis (where
    ``rebuild_profiles`` left them), then what the step computes of them."""
    client = connect_redis(settings)
    try:
        profiles = OnlineStore(client, settings).profiles(list(click_sequences))
    finally:
        close_redis(client)
    return UserPartition(user_vectors(models, click_sequences, profiles, items.item_index(), items.catalog()),
                         {u: p.interests(settings.rule_top_k) for u, p in profiles.items() if p},
                         sum(1 for p in profiles.values() if p.tags))


def partitioned_user_vectors(settings: Settings, models: UserModels, corpus: TrainingCorpus,
                             items: ray.ObjectRef) -> tuple[UserPartition, list[str]]:
    """``user_vector_partition`` of every user, by partitions of ``settings.user_partition_users``
    users as Ray tasks (``items``: the put ``ItemInputs``); merged (users in the corpus' order),
    and the nodes that computed them."""
    shared = ray.put(models)
    users = list(corpus.click_sequences)
    parts, nodes = map_tasks(user_vector_partition, [
        (settings, shared, items, {u: corpus.click_sequences[u] for u in part})
        for part in partitions(users, settings.user_partition_users)])
    return UserPartition.merge(parts), nodes


def user_histories(articles: Mapping[str, ArticleRecord], click_sequences: Iterable[Sequence[str]]
                   ) -> list[list[ArticleRecord]]:
    """Each user's clicked articles, oldest first (id-only records where undescribed)."""
    return [[articles.get(aid) or ArticleRecord(id=aid, id_only=True) for aid in clicks] for clicks in click_sequences]


def encode_user_partition(encoder_name: str, model_dir: Path, articles: dict[str, ArticleRecord],
                          click_sequences: list[Sequence[str]]) -> np.ndarray:
    return load_encoder(encoder_name, model_dir).encode_users(user_histories(articles, click_sequences))


def encode_users_partitioned(encoder_name: str, model_dir: Path, corpus: TrainingCorpus, partition_users: int
                             ) -> tuple[UserVectors, list[str]]:
    """An encoder's user tower (``encode_users``) over every user, by partitions of
    ``partition_users`` users as Ray tasks, each loading the model saved in ``model_dir`` (a path
    every node reads) and given the articles its users clicked: every user's vector (the corpus'
    order), and the nodes."""
    users = list(corpus.click_sequences)
    arguments = []
    for part in partitions(users, partition_users):
        clicks = [corpus.click_sequences[u] for u in part]
        clicked = {aid for sequence in clicks for aid in sequence}
        arguments.append((encoder_name, model_dir, {aid: corpus.articles[aid] for aid in clicked
                                                    if aid in corpus.articles}, clicks))
    encoded, nodes = map_tasks(encode_user_partition, arguments)
    return UserVectors(users, np.concatenate(encoded) if encoded else np.zeros((0, 0), np.float32)), nodes


def activity(corpus: TrainingCorpus, cutoff_ts: float) -> dict[str, str]:
    since = cutoff_ts - ACTIVITY_DAYS * 86400
    levels = {}
    for user, times in corpus.click_times.items():
        recent = sum(1 for t in times if t >= since)
        levels[user] = next(name for name, least in ACTIVITY_LEVELS if recent >= least)
    return levels


def fresh_articles(catalog: ItemCatalog, index: VectorIndex, cutoff_ts: float, hours: float
                   ) -> tuple[list[str], np.ndarray]:
    """Live articles published in the ``hours`` before the cutoff that ``index`` holds."""
    since = cutoff_ts - hours * 3600
    ids = [i for i, meta in catalog.items()
           if meta.published is not None and since <= meta.published <= cutoff_ts and not meta.hidden
           and (meta.expires is None or meta.expires > cutoff_ts) and i in index.row_of]
    vectors = np.stack([index.vector(i) for i in ids]) if ids else np.zeros((0, index.dim), np.float32)
    return ids, vectors


def nearest(queries: np.ndarray, ids: list[str], vectors: np.ndarray, n: int) -> list[list[tuple[str, float]]]:
    if not ids:
        return [[] for _ in queries]
    scores = normalise(queries) @ vectors.T
    top = np.argsort(-scores, axis=1)[:, :n]
    return [[(ids[c], float(scores[r, c])) for c in row] for r, row in enumerate(top)]


def primary_members(model: clustering.ClusterModel, members: dict[str, list[str]]) -> dict[str, list[str]]:
    """label -> the users whose first label it is (every label of the model, members' order)."""
    by_label: dict[str, list[str]] = {label: [] for label in model.labels}
    for user, user_labels in members.items():
        if user_labels:
            by_label.setdefault(user_labels[0], []).append(user)
    return by_label


def group_profiles(online: OnlineStore, users: Sequence[str], memberships: Sequence[Mapping[str, Sequence[str]]],
                   batch: int = 10_000) -> list[dict[str, UserProfile]]:
    """For each scheme (``memberships[i]``: user -> labels, primary first), label -> the merged
    profile of its primary members (``merge_profiles``), in one pass over the profiles in Redis,
    ``batch`` users at a time. ``users`` must be in the members' order (user id order, the
    k-means and rule tasks' both), so that each sum adds in the order a merge of them does."""
    groups: list[dict[str, UserProfile]] = [{} for _ in memberships]
    for start in range(0, len(users), batch):
        for user, profile in online.profiles(users[start:start + batch]).items():
            share = profile.share()
            for members, scheme_groups in zip(memberships, groups):
                if labels := members.get(user):
                    scheme_groups.setdefault(labels[0], UserProfile()).add(share)
    return groups


def describe_clusters(model: clustering.ClusterModel, by_label: dict[str, list[str]],
                      groups: dict[str, UserProfile], levels: dict[str, str]) -> list[ClusterProfile]:
    """Each label's profile, from its primary members (``by_label``) and their merged profile."""
    described = []
    for row, (label, users) in enumerate(by_label.items()):
        group = groups.get(label, UserProfile())
        counts = Counter(levels.get(u, "dormant") for u in users)
        centre = model.centres[row].round(5).tolist() if model.centres is not None else None
        described.append(ClusterProfile(model.scheme, label, len(users), group.top_tags(10),
                                        group.top_categories(5), dict(counts), centre))
    return described


def group_vectors(models: UserModels, labels: Sequence[str], groups: dict[str, UserProfile]) -> np.ndarray | None:
    if models.tag_vectors is None or not labels:
        return None
    rows = []
    for label in labels:
        vector = models.tag_vector(groups.get(label, UserProfile()))
        rows.append(vector if vector is not None else np.zeros(models.tag_vectors.vectors.shape[1], np.float32))
    return np.stack(rows).astype(np.float32)


def previous_model(previous_dir: Path | None, scheme: str) -> tuple[clustering.ClusterModel | None, dict[str, str]]:
    """The previous build's model of a scheme and its users' primary labels."""
    directory = previous_dir / "users" / "clusters" if previous_dir else None
    if directory is None or not (directory / f"{scheme}.json").exists():
        return None, {}
    model = clustering.ClusterModel.load(directory, scheme)
    primary = directory / f"{scheme}.primary.json"
    return model, json.loads(primary.read_text()) if primary.exists() else {}


def cluster_kmeans(settings: Settings, scheme: str, kind: str, users: Sequence[str], vectors: np.ndarray,
                   item_route: str, previous_dir: Path | None) -> tuple[clustering.ClusterModel, dict[str, list[str]], dict]:
    """One scheme's k-means over the users' vectors (row r: ``users[r]``'s). The nightly runs it
    as one Ray task of ``task_cpus`` CPUs (faiss uses them); the previous build is read by path."""
    x = normalise(vectors)
    candidates = [int(k) for k in settings.cluster_k_candidates.split(",") if k.strip()]
    k, curve = clustering.choose_k(x, candidates, seed=settings.seed)
    fit = clustering.fit_kmeans(x, k, seed=settings.seed)
    old, old_primary = previous_model(previous_dir, scheme)
    labels = clustering.match_labels(old.centres if old else None, old.labels if old else [], fit.centres)
    model = clustering.ClusterModel(scheme, "kmeans", kind, labels, item_route, fit.centres,
                                    max_memberships=settings.cluster_max_memberships,
                                    ratio=settings.cluster_distance_ratio)
    assigned = model.assign(x)
    members = dict(zip(users, assigned))
    new_primary = {u: labels[0] for u, labels in members.items()}
    metrics = {"users": len(users), "k": k, "elbow": curve, "inertia": fit.inertia,
               "label_stability": clustering.label_stability(old_primary, new_primary),
               "multi_membership_share": sum(len(v) > 1 for v in assigned) / max(len(assigned), 1)}
    return model, members, metrics


def cluster_rule(settings: Settings, interests: Mapping[str, Sequence[str]], previous_dir: Path | None
                 ) -> tuple[clustering.ClusterModel, dict[str, list[str]], dict]:
    """Rule clusters over each user's top ``settings.rule_top_k`` topics (users with a profile);
    one Ray task in the nightly, given the topics rather than the whole profiles."""
    assignment = clustering.rule_labels(interests, settings.rule_top_k, settings.rule_min_size)
    labels = sorted(set(assignment.values()) - {clustering.OTHER})
    model = clustering.ClusterModel("rule", "rule", None, labels, TAG_ROUTE, top_k=settings.rule_top_k)
    _, old_primary = previous_model(previous_dir, "rule")
    sizes = Counter(label for label in assignment.values() if label != clustering.OTHER)
    metrics = {"users": len(assignment), "k": len(labels),
               "other": sum(1 for label in assignment.values() if label == clustering.OTHER),
               "label_stability": clustering.label_stability(old_primary, assignment),
               "sizes": clustering.size_distribution(list(sizes.values())),
               "under_threshold": sum(1 for n in sizes.values() if n < settings.rule_min_size)}
    # The leftover "other" is no group of readers: its members get no rule cluster to read from.
    return model, {u: [label] if label != clustering.OTHER else [] for u, label in assignment.items()}, metrics


def build_users(settings: Settings, run: JobRecorder, online: OnlineStore, corpus: TrainingCorpus,
                catalog: ItemCatalog, indexes: dict[str, VectorIndex], encoders: dict[str, object],
                nightly_vectors: dict[str, UserVectors], previous_dir: Path | None,
                cutoff_ts: float, staging: Path) -> UserBuild:
    models = UserModels(top_tags=settings.profile_top_tags, recent_clicks=settings.user_vector_clicks)
    item_index = indexes.get(TAG_ROUTE)
    with run.step("users:profiles") as m:
        m["items"] = rebuild_profiles(online, corpus, catalog)  # nodes: the driver's (RayJobRecorder)

    with run.step("users:vectors") as m:
        if TAG_ROUTE in encoders:
            models.tag_vectors = tag_vectors(encoders[TAG_ROUTE], corpus)
            m["tags"] = len(models.tag_vectors.tags)
        models.categories = sorted({meta.category for _, meta in catalog.items() if meta.category})
        items, nodes = ray.put(ItemInputs.of(item_index, catalog)), set()
        if item_index is not None:
            try:
                models.lstm, lstm_nodes = run_task(train_lstm, settings, corpus.click_sequences, items)
                nodes.update(lstm_nodes)
            except NothingToLearn as exc:
                m["lstm_skipped"] = str(exc)
        computed, vector_nodes = partitioned_user_vectors(settings, models, corpus, items)
        vectors = {**computed.vectors, **nightly_vectors}
        m.update(items=len(corpus.click_sequences), with_tags=computed.with_tags,
                 nodes=sorted(nodes.union(vector_nodes)), **{f"users:{k}": len(v) for k, v in vectors.items()})

    build = UserBuild(models, vectors)
    # (model, members, metrics, primary members by label) of each scheme clustered
    clustered: list[tuple[clustering.ClusterModel, dict[str, list[str]], dict, dict[str, list[str]]]] = []

    def add(model: clustering.ClusterModel, members: dict[str, list[str]], metrics: dict) -> None:
        by_label = primary_members(model, members)
        metrics["sizes"] = metrics.get("sizes") or clustering.size_distribution([len(u) for u in by_label.values()])
        clustered.append((model, members, metrics, by_label))

    kinds = [k.strip() for k in settings.cluster_kinds.split(",") if k.strip()]
    for kind in kinds:
        scheme = f"kmeans-{kind}"
        with run.step(f"clusters:{scheme}") as m:
            if len(vectors.get(kind, ())) < 10:
                m["skipped"] = f"{len(vectors.get(kind, ()))} users have a {kind} vector; 10 needed"
                continue
            item_route = "dssm" if kind == "dssm" else TAG_ROUTE
            ordered = vectors[kind].by_user()
            (model, members, metrics), nodes = run_task(
                cluster_kmeans, settings, scheme, kind, ordered.users, ordered.vectors,
                item_route, previous_dir, cpus=task_cpus(settings))
            add(model, members, metrics)
            m.update(metrics, nodes=nodes)
    with run.step("clusters:rule") as m:
        if not computed.interests:
            m["skipped"] = "no user has a profile"
        else:
            interests = dict(sorted(computed.interests.items()))  # user id order, as every scheme's members
            (model, members, metrics), nodes = run_task(cluster_rule, settings, interests, previous_dir)
            if model.labels:
                add(model, members, metrics)
            else:
                m["skipped"] = f"no interest combination has {settings.rule_min_size} readers"
            m.update(metrics, nodes=nodes)
    with run.step("clusters:profiles") as m:
        users = sorted(corpus.click_sequences)
        groups = group_profiles(online, users, [members for _, members, _, _ in clustered])
        levels = activity(corpus, cutoff_ts)
        for (model, members, metrics, by_label), scheme_groups in zip(clustered, groups):
            build.schemes.append(finish_scheme(settings, model, members, metrics, by_label, scheme_groups, levels,
                                               catalog, indexes, models, cutoff_ts, staging))
        m.update(items=len(users), schemes=[model.scheme for model, *_ in clustered])
    models.save(staging)
    return build


def finish_scheme(settings: Settings, model: clustering.ClusterModel, members: dict[str, list[str]],
                  metrics: dict, by_label: dict[str, list[str]], groups: dict[str, UserProfile],
                  levels: dict[str, str], catalog: ItemCatalog, indexes: dict[str, VectorIndex],
                  models: UserModels, cutoff_ts: float, staging: Path) -> SchemeBuild:
    """Profiles, group vectors and centre candidates of a clustered scheme (``by_label``: its
    primary members, ``groups``: their merged profiles); the model goes into the user models
    (saved with the build), its primary labels next to it for the next refresh."""
    described = describe_clusters(model, by_label, groups, levels)
    model.group_vectors = group_vectors(models, model.labels, groups)
    centre_lists: dict[str, list[tuple[str, float]]] = {}
    index = indexes.get(model.item_route)
    if index is not None:
        if model.centres is not None:
            queries = model.centres[:, : index.dim]  # bnb: the first block is the item space
        else:
            queries = model.group_vectors if model.group_vectors is not None and model.group_vectors.shape[1] == index.dim else None
        if queries is not None:
            ids, vectors = fresh_articles(catalog, index, cutoff_ts, settings.cluster_centre_fresh_hours)
            lists = nearest(queries, ids, vectors, settings.cluster_centre_candidates)
            centre_lists = dict(zip(model.labels, lists))
    model.centre_lists = centre_lists  # served from the build; Redis keeps a copy for the admin pages
    sizes = [p.size for p in described]
    model.meta = {k: v for k, v in metrics.items() if k != "elbow"}
    models.clusters[model.scheme] = model
    directory = staging / "users" / "clusters"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{model.scheme}.primary.json").write_text(
        json.dumps({u: labels[0] for u, labels in members.items() if labels}))
    summary = SchemeSummary(model.scheme, model.kind, model.vector_kind, len(model.labels), None,
                            metrics.get("label_stability"), sorted(sizes, reverse=True),
                            metrics.get("elbow"), metrics["sizes"])
    return SchemeBuild(summary, members, described, centre_lists)


def publish_users(online: OnlineStore, build: UserBuild, staged: ServingState, sessions, cutoff: datetime,
                  refreshed_at: str, catch_up: bool) -> dict[str, int]:
    """Before the build is published: its own keys (``b:{version}:``). The nightly's user
    vectors and cluster state; then, with ``catch_up``, the users who clicked since the cutoff
    (while the build was made) recomputed with the staged build as a click would; the CF lists
    replayed from the live clicks of the last few half-lives up to now (``catch_up``) or the
    cutoff (history clicks excluded, as online). The version is marked complete last, so it is
    whole before ``ACTIVE`` names it; from then on clicks served by other builds reach its CF
    lists too (``UserStateUpdater``), and only those of the seconds of the replay are missed."""
    version = staged.version
    buildkeys.register(online, version, staged.cutoff_ts)
    counts = {}
    for kind, vectors in build.vectors.items():
        counts[f"user_vectors:{kind}"] = online.set_user_vectors(version, kind, vectors.items())
    store = ClusterStore(online, version)
    memberships: dict[str, dict[str, list[str]]] = {}
    for scheme in build.schemes:
        store.write_scheme(replace(scheme.summary, refreshed_at=refreshed_at), scheme.memberships, scheme.profiles,
                           scheme.centre_lists)
        for user, labels in scheme.memberships.items():
            memberships.setdefault(user, {})[scheme.summary.name] = labels
        counts[f"clusters:{scheme.summary.name}"] = len(scheme.profiles)
    until = utc_now() if catch_up else cutoff
    with sessions() as session:
        late = sqlstore.clickers(session, after=cutoff, before=until) if catch_up else []
    counts.update(derive_user_keys(online, staged, sessions, late, memberships, until))
    buildkeys.mark_complete(online, version, "nightly")
    return counts
