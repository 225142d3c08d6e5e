"""The Ray runtime of the nightly: tasks run in workers, say their node, and keep their order.
(Task functions must be importable by workers: these use the standard library's.)"""

from __future__ import annotations

import os

import pytest
import ray
from ray.exceptions import RayTaskError

from jobs.raywork import map_tasks, ray_runtime, run_task, task_cpus


def test_map_tasks_keeps_order_and_names_the_node(settings):
    with ray_runtime(settings):  # the session's Ray: used, not restarted
        results, nodes = map_tasks(pow, [(n, 2) for n in range(8)])
        assert results == [n * n for n in range(8)]
        assert nodes == [ray.get_runtime_context().get_node_id()]
    assert ray.is_initialized()


def test_run_task_runs_in_a_worker_with_no_more_cpus_than_a_node_has(settings):
    assert task_cpus(settings.model_copy(update={"threads": 64})) == 2
    pid, nodes = run_task(os.getpid, cpus=task_cpus(settings))
    assert pid != os.getpid() and len(nodes) == 1


def test_an_exception_a_task_raised_reaches_the_caller_as_itself():
    with pytest.raises(ValueError, match="invalid literal") as raised:
        map_tasks(int, [("7",), ("seven",)])
    assert type(raised.value) is ValueError
    assert isinstance(raised.value.__cause__, RayTaskError)  # with the worker's traceback
