"""Job steps recorded in ``job_runs`` (one row per step with status, timings, counts, errors),
and the lock that lets one run of a job at a time (``RunLock``).

A run holds its job's lock from its first step to its last. Whoever holds it knows that no other
run of the job is alive, so every row of the job still ``running`` belongs to a run that died
(killed, its host gone): ``mark_abandoned`` marks them ``failed``.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import resource
import socket
import time
import traceback
import zlib
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from recall.models import JobRun


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def process_memory() -> dict[str, float]:
    """This process' resident memory now (``rss_mb``; Linux, else left out), the part of it
    that is shared memory (``shm_mb``: the pages of Ray's object store this process wrote or
    read count in its RSS) and its peak so far (``peak_rss_mb``): a step's row shows what the
    process held after it and whether it raised the peak."""
    out = {"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    with suppress(OSError):
        status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
        out.update(rss_mb=round(int(status["VmRSS"].split()[0]) / 1024, 1),
                   shm_mb=round(int(status["RssShmem"].split()[0]) / 1024, 1))
    return out


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
            metrics.update(process_memory())
            if "items" in metrics and seconds > 0:  # every step that handles items reports its rate
                metrics["items_per_second"] = round(metrics["items"] / seconds, 1)
            with self.sessions() as session:
                row = session.get(JobRun, row_id)
                row.status, row.error, row.metrics = status, error, metrics
                row.finished_at = utcnow()
                row.artefact_version = self.version
                session.commit()


def mark_abandoned(sessions: sessionmaker[Session], job: str, by_run: str) -> list[str]:
    """Mark ``failed`` every row of ``job`` still ``running`` that another run wrote; returns
    their run ids. Call it only holding the job's lock: then no other run is alive, and a row
    still running is one its run will never finish (killed, or its host lost)."""
    now = utcnow()
    still = (JobRun.job == job, JobRun.status == "running", JobRun.run_id != by_run)
    with sessions() as session:
        runs = sorted(set(session.scalars(select(JobRun.run_id).where(*still))))
        if runs:
            session.execute(
                update(JobRun).where(*still).values(
                    status="failed", finished_at=now,
                    error=f"abandoned: the run ended without finishing this step (killed, or its host "
                          f"lost); found by run {by_run} at {now.isoformat(timespec='seconds')}"),
                execution_options={"synchronize_session": False})
            session.commit()
    return runs


# ---- the run lock ---------------------------------------------------------------------------------

class RunLocked(RuntimeError):
    """Another run of the job holds its lock; the message says since when and who."""

    def __init__(self, job: str, holder: LockHolder | None, where: str):
        self.job, self.holder, self.where = job, holder, where
        who = holder.describe() if holder else "since an unknown time (its holder left no record)"
        super().__init__(f"another {job} run holds the lock {who} ({where}); not starting a second one")


class LockLost(RuntimeError):
    """The run no longer holds its lock (its database session ended): it must not publish."""


@dataclass(frozen=True)
class LockHolder:
    since: datetime | None
    pid: int | None
    host: str | None
    run_id: str | None = None
    note: str | None = None

    def describe(self) -> str:
        since = f"since {self.since.isoformat(timespec='seconds')} UTC" if self.since else "since an unknown time"
        parts = [since]
        if self.run_id:
            parts.append(f"run {self.run_id}")
        if self.pid is not None:
            parts.append(f"pid {self.pid}" + (f" on {self.host}" if self.host else ""))
        elif self.host:
            parts.append(f"from {self.host}")
        if self.note:
            parts.append(self.note)
        return ", ".join(parts)


def _me() -> tuple[int, str]:
    return os.getpid(), socket.gethostname()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


class RunLock:
    """An exclusive, non-blocking lock for the whole run of one job (``with RunLock.of(...)``).

    * PostgreSQL: a session-level advisory lock (``pg_try_advisory_lock``) on a connection of
      its own, held for the run. It holds across hosts, and it dies with its holder: a killed
      process closes its connection, and a vanished host's session is ended by TCP keepalives
      (set on the session: about two minutes). The key is the job and the schema, so
      deployments (and tests) in other schemas of one database do not exclude each other.
    * SQLite (the embedded default: one host): ``fcntl.flock`` on ``{var_dir}/{job}.lock``. The
      kernel drops it when its holder dies, however it dies, so a stale holder cannot block;
      pid, host, run and start time are written into the file to name the holder.

    ``acquire`` raises ``RunLocked`` at once when another run holds the lock (no waiting: a
    second nightly run has nothing to add to the first). ``still_held`` tells whether the lock
    is still ours (PostgreSQL: the session may have been cut); check it before publishing.
    """

    def __init__(self, job: str, run_id: str):
        self.job, self.run_id = job, run_id
        self.since: datetime | None = None

    @staticmethod
    def of(engine: Engine, var_dir: Path, job: str, run_id: str) -> RunLock:
        if engine.dialect.name == "postgresql":
            return PgAdvisoryLock(engine, job, run_id)
        return FileLock(Path(var_dir) / f"{job}.lock", job, run_id)

    def acquire(self) -> RunLock:
        raise NotImplementedError

    def release(self) -> None:
        raise NotImplementedError

    def still_held(self) -> bool:
        raise NotImplementedError

    def holder(self) -> LockHolder | None:
        """Who holds the lock now (None when nobody does)."""
        raise NotImplementedError

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


class FileLock(RunLock):
    def __init__(self, path: Path, job: str, run_id: str):
        super().__init__(job, run_id)
        self.path = path
        self._fd: int | None = None

    def _open(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)

    def acquire(self) -> FileLock:
        fd = self._open()
        for attempt in range(5):  # a holder() probe holds a shared lock for an instant: look again
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES) or attempt == 4:
                    os.close(fd)
                    if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                        raise
                    raise RunLocked(self.job, self._read(), f"lock file {self.path}") from None
                time.sleep(0.02)
        # Never unlink the file: a run waiting on the old inode would then lock a file nobody
        # else sees. Its content is only the holder's name card.
        self.since = utcnow()
        pid, host = _me()
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": pid, "host": host, "run_id": self.run_id,
                                  "since": self.since.isoformat()}).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)  # before unlocking: never erase the next holder's card
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
            self._fd = None

    def still_held(self) -> bool:
        return self._fd is not None  # a flock lasts as long as its open file

    def _read(self) -> LockHolder | None:
        try:
            card = json.loads(self.path.read_text() or "null")
        except (OSError, ValueError):
            card = None
        if not isinstance(card, dict):
            return None
        since, pid, host = card.get("since"), card.get("pid"), card.get("host")
        note = None
        if isinstance(pid, int) and host == socket.gethostname() and not _alive(pid):
            # flock outlives its taker only in a child that inherited the open file (a fork).
            note = f"its pid {pid} is gone, so a process it forked still holds the file open"
        return LockHolder(datetime.fromisoformat(since) if since else None, pid, host, card.get("run_id"), note)

    def holder(self) -> LockHolder | None:
        if self._fd is not None:
            return self._read()
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return self._read() or LockHolder(None, None, None)
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)


# The first key of every advisory lock newsrecall takes (positive, so it reads the same as an oid).
LOCK_NAMESPACE = zlib.crc32(b"newsrecall") & 0x7FFFFFFF
APP_NAME = "recall-lock"  # application_name of a lock session: "recall-lock {job} {epoch} {pid}@{host}"


class PgAdvisoryLock(RunLock):
    def __init__(self, engine: Engine, job: str, run_id: str):
        super().__init__(job, run_id)
        self.engine = engine
        self._conn: Connection | None = None
        self._key: int | None = None

    def key(self, conn: Connection) -> int:
        schema = conn.execute(text("SELECT current_schema()")).scalar()
        return zlib.crc32(f"{self.job}:{schema}".encode()) & 0x7FFFFFFF

    def acquire(self) -> PgAdvisoryLock:
        conn = self.engine.connect()
        try:
            key = self.key(conn)
            pid, host = _me()
            # Named before it locks, so whoever sees the lock also sees who holds it. A session
            # whose host vanished is ended (and the lock freed) within about two minutes.
            conn.execute(text("SELECT set_config('application_name', :n, false), "
                              "set_config('tcp_keepalives_idle', '60', false), "
                              "set_config('tcp_keepalives_interval', '10', false), "
                              "set_config('tcp_keepalives_count', '6', false)"),
                         {"n": f"{APP_NAME} {self.job} {int(time.time())} {pid}@{host}"[:63]})
            got = conn.execute(text("SELECT pg_try_advisory_lock(CAST(:a AS integer), CAST(:b AS integer))"),
                               {"a": LOCK_NAMESPACE, "b": key}).scalar()
            conn.commit()  # never idle in a transaction for the hours of a run
            if not got:
                raise RunLocked(self.job, self._holder(conn, key), "PostgreSQL advisory lock")
            self.since = utcnow()
        except BaseException:
            conn.invalidate()  # a session of ours never goes back to the pool
            conn.close()
            raise
        self._conn, self._key = conn, key
        return self

    def release(self) -> None:
        if self._conn is None:
            return
        conn, self._conn = self._conn, None
        try:
            conn.execute(text("SELECT pg_advisory_unlock(CAST(:a AS integer), CAST(:b AS integer))"),
                         {"a": LOCK_NAMESPACE, "b": self._key})
            conn.commit()
        except Exception:  # the session is gone, and the lock with it
            pass
        finally:
            conn.invalidate()  # closed, not pooled: the session ends, whatever it still held
            conn.close()

    def still_held(self) -> bool:
        if self._conn is None:
            return False
        try:
            held = self._conn.execute(text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() "
                "AND classid::bigint = :a AND objid::bigint = :b AND objsubid = 2 AND granted"),
                {"a": LOCK_NAMESPACE, "b": self._key}).scalar()
            self._conn.commit()
            return bool(held)
        except Exception:
            return False

    def _holder(self, conn: Connection, key: int) -> LockHolder | None:
        row = conn.execute(text(
            "SELECT a.application_name, a.backend_start, a.client_addr FROM pg_locks l "
            "LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.classid::bigint = :a AND l.objid::bigint = :b "
            "AND l.objsubid = 2 AND l.granted "
            "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"),
            {"a": LOCK_NAMESPACE, "b": key}).first()
        conn.commit()
        if row is None:
            return None
        name, started, addr = row
        parts = (name or "").split(" ")
        if len(parts) == 4 and parts[0] == APP_NAME and parts[2].isdigit():
            pid, _, host = parts[3].partition("@")
            since = datetime.fromtimestamp(int(parts[2]), timezone.utc).replace(tzinfo=None)
            return LockHolder(since, int(pid) if pid.isdigit() else None, host or None)
        if started is not None and started.tzinfo is not None:
            started = started.astimezone(timezone.utc).replace(tzinfo=None)
        return LockHolder(started, None, str(addr) if addr else None)

    def holder(self) -> LockHolder | None:
        with self.engine.connect() as conn:
            return self._holder(conn, self.key(conn))
