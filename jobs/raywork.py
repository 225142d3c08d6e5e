"""Ray under the nightly: where its work runs, and which nodes ran it.

Every nightly step is Ray work, on one code path: ``ray_runtime`` starts a local Ray (the
embedded default: ``settings.threads`` CPUs, an object store of ``settings.ray_object_store_mb``,
no dashboard, started and stopped by the job) or, when ``settings.ray_address`` is set, joins
that cluster. A Ray already initialised in this process (a test session's, a notebook's) is used
as it is and left running.

On a cluster every node reads the same database and Redis (their URLs must be reachable from the
workers, so no embedded Redis and a SQLite file only on a shared path) and the same ``var_dir``:
the staging build, the models trained into it and the embedding cache are files that workers
read and write by path, so ``var_dir`` must be one shared filesystem mounted at the same path on
every node (README, "The nightly on a Ray cluster").

``map_tasks`` runs one function over argument tuples as Ray tasks and says which nodes ran
them; every step records those node ids as its ``nodes`` metric (``RayJobRecorder``). A task a
dying node took is retried elsewhere (Ray's ``max_retries``); a step that still fails fails the
run, and the previous build keeps serving. An exception a task raised reaches the caller as
itself (``NothingToLearn`` stays ``NothingToLearn``), chained to Ray's error, which holds the
worker's traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import faiss
import ray
from ray.exceptions import RayTaskError

from jobs.runs import JobRecorder
from recall.settings import Settings

# Ray retries a task whose worker or node died; an exception the task raised is not retried.
TASK_RETRIES = 3


@contextmanager
def ray_runtime(settings: Settings) -> Iterator[None]:
    """Ray for one job: the cluster at ``settings.ray_address``, else a local Ray of
    ``settings.threads`` CPUs started here and stopped on the way out."""
    if ray.is_initialized():
        yield
        return
    if settings.ray_address:
        ray.init(address=settings.ray_address, log_to_driver=False, logging_level=logging.WARNING)
    else:
        ray.init(num_cpus=settings.threads, object_store_memory=settings.ray_object_store_mb << 20,
                 include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    try:
        yield
    finally:
        ray.shutdown()


def node_id() -> str:
    return ray.get_runtime_context().get_node_id()


class RayJobRecorder(JobRecorder):
    """Steps whose metrics always name the Ray nodes that ran them (``nodes``): the ones the step
    recorded (its tasks' nodes), else the driver's (the step ran here)."""

    @contextmanager
    def step(self, name: str) -> Iterator[dict[str, Any]]:
        with super().step(name) as metrics:
            try:
                yield metrics
            finally:
                metrics.setdefault("nodes", [node_id()])


def task_cpus(settings: Settings) -> int:
    """CPUs one single-model task asks for: ``settings.threads``, but no more than the largest
    live node has (a task asking for more would never be scheduled)."""
    largest = max((int(node["Resources"].get("CPU", 0)) for node in ray.nodes() if node["Alive"]), default=1)
    return max(1, min(settings.threads, largest))


def _tagged(fn: Callable[..., Any], *args: Any) -> tuple[str, Any]:
    # faiss' OpenMP keeps the thread count a reused worker first had (Ray's OMP_NUM_THREADS comes
    # too late for it): each task uses the CPUs it was given, so tasks side by side do not
    # oversubscribe the node.
    faiss.omp_set_num_threads(max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1))))
    return node_id(), fn(*args)


_remote_tagged = ray.remote(max_retries=TASK_RETRIES)(_tagged)


def map_tasks(fn: Callable[..., Any], arguments: Iterable[Sequence[Any]], *, cpus: float = 1
              ) -> tuple[list[Any], list[str]]:
    """``fn(*args)`` for each argument tuple as a Ray task of ``cpus`` CPUs; the results in
    order, and the sorted ids of the nodes that ran them. ``fn`` must be importable by workers
    (a module-level function); large shared arguments should be ``ray.put`` once by the caller."""
    refs = [_remote_tagged.options(num_cpus=cpus).remote(fn, *args) for args in arguments]
    try:
        tagged = ray.get(refs)
    except RayTaskError as error:
        # The other tasks are left to finish: ray.cancel of a task completing at that moment
        # crashed the driver (Ray 2.60, "Tried to complete task that was not pending"), seen once
        # in the suite when a training task raised NothingToLearn.
        if isinstance(error.cause, Exception):  # else it did not survive the trip: Ray's error says what it was
            raise error.cause from error
        raise
    return [result for _, result in tagged], sorted({node for node, _ in tagged})


def run_task(fn: Callable[..., Any], *args: Any, cpus: float = 1) -> tuple[Any, list[str]]:
    """One Ray task (a model that must be trained whole): its result and its node."""
    results, nodes = map_tasks(fn, [args], cpus=cpus)
    return results[0], nodes
