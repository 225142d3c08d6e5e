"""A real two-node Ray cluster on this machine, for the cluster tests and ``bench/nightly.py``.

Each node is one ``ray start --block`` process: with ``--block`` it leads a process group of its
own holding every process of the node (GCS, raylet, agents, workers), and takes them down when
it is terminated. Stopping the cluster therefore ends exactly what it started (the node's
group), never ``ray stop``, which would kill every Ray on the machine: the test session's local
Ray and other users' clusters.

Both nodes run on this machine, on ports picked free for each (GCS, node manager, object
manager, the agents, metrics; workers take OS-assigned ports), with their logs and sessions
under the cluster's own temp dir (short, under /tmp: Ray's unix sockets live in it, and a
socket path may not exceed 107 bytes), removed when it stops. (Ray advertises the host's own
address even when told 127.0.0.1, so nodes find each other there; a driver joins at
``127.0.0.1:port``.) Their processes get ``PYTHONPATH`` = this checkout, so Ray workers on both
nodes import the code under test rather than an installed copy.

A driver joins with ``cluster.driver_env`` (``RECALL_RAY_ADDRESS`` = ``cluster.address``) and runs
in a process of its own: one process connects to one Ray, and pytest's is the session's.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[2]
STORE_MB = 200  # object store of each node: the test worlds are small, and the machine is shared

# A driver that joins the cluster and runs one task pinned to each live node, which imports the
# project there: prints {node id: the file ``jobs`` was imported from}. The task is defined in
# the driver's __main__, so Ray ships it by value (workers could not import it from a test module).
PROBE = """
import json, sys
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

@ray.remote(num_cpus=1)
def where_is_the_project():
    import jobs.raywork
    return jobs.raywork.node_id(), jobs.raywork.__file__

ray.init(address=sys.argv[1], log_to_driver=False, logging_level="WARNING")
alive = [node["NodeID"] for node in ray.nodes() if node["Alive"]]
pinned = [where_is_the_project.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False))
          for node in alive]
print(json.dumps(dict(ray.get([task.remote() for task in pinned], timeout=60))))
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def node_ports() -> list[str]:
    """The ports one node listens on besides the GCS, each picked free."""
    options = ("--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port",
               "--dashboard-agent-grpc-port", "--runtime-env-agent-port", "--metrics-export-port")
    return [arg for option in options for arg in (option, str(free_port()))]


@dataclass
class RayNode:
    """One node: its ``ray start --block`` process, the leader of the node's process group."""

    process: subprocess.Popen
    log: Path

    def processes(self) -> list[psutil.Process]:
        try:
            leader = psutil.Process(self.process.pid)
            return [leader, *leader.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def raylet(self) -> psutil.Process:
        return next(p for p in self.processes() if p.name() == "raylet")

    def running_tasks(self) -> list[str]:
        """The process titles of this node's Ray workers busy with a task or an actor (a worker
        renames itself ``ray::<task>`` while it runs one, ``ray::IDLE`` between)."""
        idle = ("ray::IDLE", "ray::DashboardA", "ray::RuntimeEnv")  # titles as /proc shows them (15 chars)
        titles = []
        for process in self.processes():
            try:
                titles.append(process.name())
            except psutil.NoSuchProcess:
                continue
        return [title for title in titles if title.startswith("ray::") and not title.startswith(idle)]

    def stop(self, grace: float = 30) -> None:
        """Terminate the node (its ``ray start`` shuts its processes down), then kill whatever of
        its process group is left after ``grace`` seconds."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # the group is the node's own (setpgrp)
        except ProcessLookupError:
            pass
        self.process.wait()


@dataclass
class LoopbackCluster:
    """A head and one worker node on this machine, each of ``cpus`` CPUs; ``node_ids`` once started."""

    cpus: int = 1
    temp_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="ray-")))
    port: int = field(default_factory=free_port)
    nodes: list[RayNode] = field(default_factory=list)
    node_ids: list[str] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def driver_env(self) -> dict[str, str]:
        """What a driver's environment needs to join the cluster (a ``recall nightly`` adds it to
        its own). A local ``ray.init`` (the test session's) leaves a token in ~/.ray that would
        turn token auth on for ``ray start`` but not for every client: auth is off on this
        loopback cluster, explicitly, for its nodes and its drivers."""
        return {"PYTHONPATH": str(ROOT), "RAY_AUTH_MODE": "disabled", "RECALL_RAY_ADDRESS": self.address}

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, **self.driver_env}

    @property
    def head(self) -> RayNode:
        return self.nodes[0]

    @property
    def worker(self) -> RayNode:
        return self.nodes[1]

    def _start_node(self, name: str, *role: str) -> RayNode:
        log = self.temp_dir / f"{name}.log"
        command = ["ray", "start", *role, "--num-cpus", str(self.cpus),
                   "--object-store-memory", str(STORE_MB << 20), *node_ports(),
                   "--disable-usage-stats", "--block"]
        with log.open("w") as out:
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=self.env,
                                       cwd=self.temp_dir, start_new_session=True)
        node = RayNode(process, log)
        self.nodes.append(node)
        return node

    def start(self, timeout: float = 90) -> LoopbackCluster:
        """Start both nodes and wait (at most ``timeout`` seconds) until a task has run on each."""
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        self._start_node("head", "--head", "--port", str(self.port), "--include-dashboard", "false",
                         "--temp-dir", str(self.temp_dir / "ray"))
        self._start_node("worker", "--address", self.address)
        deadline = time.monotonic() + timeout
        while True:
            failed = [node for node in self.nodes if node.process.poll() is not None]
            if failed:
                self._fail(RuntimeError, "ray start exited early")
            found = self.probe(timeout=max(deadline - time.monotonic(), 1))
            if len(found) == 2:
                self.node_ids = sorted(found)
                return self
            if time.monotonic() > deadline:
                self._fail(TimeoutError, f"{len(found)} of 2 Ray nodes up after {timeout:.0f} s")
            time.sleep(1)

    def _fail(self, error: type[Exception], what: str) -> None:
        logs = "\n".join(f"--- {node.log.name}\n{node.log.read_text()[-2000:]}" for node in self.nodes)
        self.stop()
        raise error(f"{what}\n{logs}")

    def probe(self, timeout: float = 60) -> dict[str, str]:
        """{node id: where its worker imported the project from} for every live node; empty when
        the cluster does not answer yet."""
        try:
            done = subprocess.run([sys.executable, "-c", PROBE, self.address], capture_output=True, text=True,
                                  env=self.env, cwd=self.temp_dir, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {}
        lines = done.stdout.strip().splitlines()
        return json.loads(lines[-1]) if done.returncode == 0 and lines else {}

    def stop(self) -> None:
        for node in reversed(self.nodes):  # the worker first: the head's GCS outlives its raylet
            node.stop()
        self.nodes.clear()
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> LoopbackCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
