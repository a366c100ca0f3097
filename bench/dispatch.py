"""Dispatch benchmark of the embedded system: per-task cost, throughput and latency of SHELL `true` tasks.

The Queen runs in this process (`Queen(QueenSettings(grpc_port=0, http_port=0, ...))`); the Ants are
real child processes (`python -m sdk ant --methods SHELL --log-level warning ...`) on the real Ant
stream over loopback, as `formicary dev` runs its Ant. Work is submitted through the service layer
(`queen.services.requests.submit(local_identity, Submission(...))`), so the figures include the
scheduler, the supervisors, every database transaction, the stream and the Ant's shell executor, but
no client-side gRPC hop.

Workloads (a pass runs them on one database, with the baselines measured in the same pass):

- w1       a 20-task chain (`on_completed`) of SHELL `true`, run `--runs` times (the first is a warm-up):
           median total and per task, beside the bare fork/exec of `true` (and of `bash -c true`, the
           floor of the Ant's shell executor), measured at the start of the pass in a child
           interpreter while the system is idle (every ratio to "bare spawn" uses it).
- w2       200 one-task requests submitted at once (`asyncio.gather`) over 2 Ants: tasks/s from the
           first submit to the last request's `ended_at`.
- echo     a raw `grpc.aio` bidi echo (in process, loopback; round trip and pipelined messages/s) beside
           the Ant stream itself, driven through `AntRegistry.run()` (the supervisor's `TaskDispatcher`
           contract) with no database and no supervisor: dispatch -> TaskAccepted round trip, and
           tasks/s with many attempts in flight; once with the real Ants running SHELL `true`, once
           with two Ants whose executor does nothing (the stream and the Ant's own work alone, no
           process spawned: what compares with the echo).
- latency  submit -> first task EXECUTING (`started_at`, set when the Ant's TaskAccepted is committed,
           vs the request's `created_at`), p50/p99 over spaced-out single-task submissions, with the
           stages read from the request's event log.

For w1, w2 and the stream, the pass also reports what each task cost: CPU of the Queen (this
process), of the Ants and of the Ants' children (the shell), from /proc (Linux), and the database
commits and statements per task (SQLAlchemy engine events, and the store's counters of what bypasses
them).

Waiting is event-driven, never a fixed sleep: by default a job's end is awaited on the Supervisors'
`on_finished` hook and confirmed by one read; `--observer notifier` waits on
`ChangeNotifier.next_change()` and re-reads the request at each wake-up, as a WatchJobRequest client
does. The hook is the default because the re-reads add about one read transaction per task, and on
SQLite every transaction, reads included, takes the write lock (BEGIN IMMEDIATE): that observer slows
down what it measures.

Figures are printed with ratios taken in the same pass (these machines are noisy; ratios travel
better), beside reference figures measured earlier on this machine (`REFERENCE`) and the targets.
`--profile-w1 FILE` and `--profile-w2 FILE` run cProfile over the measured W1 runs or the W2 burst;
`--profile-noop FILE` over the no-op Ants' pipelined attempts in this process, and over each no-op Ant's
whole life in its own (figures are then inflated).

Usage: .venv/bin/python bench/dispatch.py [--database sqlite|postgresql|both] [--postgres-url URL]
       [--runs N] [--workload w1,w2,echo,latency] [--capacity N] [--observer hook|notifier]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import dataclasses
import itertools
import json
import logging
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import psycopg
import structlog
from psycopg import sql
from sqlalchemy import event
from sqlalchemy.engine import make_url

from queen.ants.registry import AntRegistry
from queen.ants.session import StreamEnd, StreamHandle
from queen.app import Queen
from queen.domain.definition_parser import check_job_definition
from queen.domain.job_definition import TaskDefinition
from queen.domain.states import JobState, TaskState
from queen.domain.work import TaskWork
from queen.services.requests import RequestDetails, Submission
from queen.settings import QueenSettings
from queen.store import EventRecord, events
from queen.store import _fast as fast_statements

# ------------------------------------------------------------------------------------------ constants

CHAIN_LENGTH = 20
W2_REQUESTS = 200
W2_ANTS = 2
SPAWNS = 200
ECHO_ROUND_TRIPS = 5_000
ECHO_PIPELINED = 30_000
ECHO_PAYLOAD = bytes(256)  # about the size of the DispatchTask frame of a SHELL `true` task
STREAM_ROUND_TRIPS = 200
STREAM_PIPELINED = 400
NOOP_PIPELINED = 2_000
NOOP_TAG = "bench-noop"  # only the no-op Ants offer it: the no-op attempts go to them alone
LATENCY_SAMPLES = 100

W1_JOB = "bench-w1-chain"
W2_JOB = "bench-w2-one"
LATENCY_JOB = "bench-latency-one"

ANT_READY_TIMEOUT = 30.0
ANT_STOP_GRACE = 10.0
JOB_TIMEOUT = 120.0
W2_TIMEOUT = 600.0
POSTGRES_READY_TIMEOUT = 30.0
POSTGRES_BINDIRS = ("/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/17/bin")

TERMINAL = (JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED)
WORKLOADS = ("w1", "w2", "echo", "latency")


@dataclass(frozen=True, slots=True)
class Reference:
    """Figures measured earlier on this machine (the issue's "for scale"), and the targets."""

    celery_chain_ms: float = 2.4
    celery_w2_tasks_per_s: float = 427.0
    prefect_chain_ms: float = 54.0
    grpc_round_trip_us: float = 103.0
    spawn_true_ms: float = 0.48
    target_chain_sqlite_ms: float = 1.5
    target_chain_postgresql_ms: float = 3.0
    target_w2_tasks_per_s: float = 600.0


REFERENCE = Reference()


class BenchError(Exception):
    """The benchmark could not run (a child did not start, a job did not complete)."""


# ------------------------------------------------------------------------------------------ statistics


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear between closest ranks (numpy's default)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True, slots=True)
class Summary:
    """p50 / p99 / mean of a sample, in the sample's unit."""

    count: int
    p50: float
    p99: float
    mean: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        return cls(len(values), percentile(values, 50), percentile(values, 99), statistics.fmean(values))


# ------------------------------------------------------------------------------------------ job definitions


def chain_definition(length: int) -> str:
    lines = [f"job_type: {W1_JOB}", "description: bench W1, a chain of SHELL true", "tasks:"]
    for number in range(1, length + 1):
        lines += [f"- task_type: t{number:02d}", "  method: SHELL", "  script: ['true']"]
        if number < length:
            lines.append(f"  on_completed: t{number + 1:02d}")
    return "\n".join(lines) + "\n"


def one_task_definition(job_type: str) -> str:
    return (
        f"job_type: {job_type}\ndescription: bench, one SHELL true\n"
        "tasks:\n- task_type: only\n  method: SHELL\n  script: ['true']\n"
    )


def shell_true_task() -> TaskDefinition:
    """The task of a one-task definition, to dispatch straight through the registry."""
    report = check_job_definition(one_task_definition("bench-stream"))
    if report.definition is None:
        raise BenchError(f"bench definition rejected: {report.problems}")
    return report.definition.tasks[0]


# ------------------------------------------------------------------------------------------ helpers


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def utc_now() -> datetime:
    return datetime.now(UTC)


def seconds_between(start: datetime, end: datetime) -> float:
    return (end - start).total_seconds()


def configure_logging(level: str) -> None:
    """structlog for the Queen in this process (entry points configure it): JSON on stderr from `level`."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )


# ------------------------------------------------------------------------------------------ PostgreSQL


def postgres_bindir() -> Path:
    for candidate in POSTGRES_BINDIRS:
        path = Path(candidate)
        if (path / "initdb").is_file() and (path / "postgres").is_file():
            return path
    raise BenchError(f"PostgreSQL server binaries not found in {', '.join(POSTGRES_BINDIRS)}")


class PrivateCluster:
    """A throw-away PostgreSQL cluster: initdb in a temporary directory, the postmaster on a free loopback
    port (as the `postgres` user when we are root: the server refuses root), stopped by PID.

    `durable=True` keeps PostgreSQL's defaults (fsync, synchronous_commit): each commit waits for its WAL
    flush, as in production. `durable=False` turns both off (the test suite's settings).
    """

    def __init__(self, root: Path, *, durable: bool) -> None:
        self._root = root
        self._durable = durable
        self._process: subprocess.Popen[bytes] | None = None
        self.port = 0

    @staticmethod
    def _as_postgres() -> dict[str, Any]:
        return {"user": "postgres", "group": "postgres"} if os.geteuid() == 0 else {}

    def start(self) -> str:
        """Start the cluster; the SQLAlchemy URL of its `postgres` database (passes make their own)."""
        bindir = postgres_bindir()
        self._root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self._root, "postgres", "postgres")
        self._root.chmod(0o700)
        data = self._root / "data"
        initdb_log = self._root / "initdb.log"
        with initdb_log.open("wb") as out:
            done = subprocess.run(
                [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                 "--no-locale", "--no-sync"],
                stdout=out, stderr=subprocess.STDOUT, cwd=self._root, check=False,
                env={**os.environ, "HOME": str(self._root)}, **self._as_postgres(),
            )  # fmt: skip
        if done.returncode != 0:
            raise BenchError(f"initdb failed:\n{initdb_log.read_text(errors='replace')[-2000:]}")
        self.port = free_port()
        options = ["-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200"]
        if not self._durable:
            options += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        with (self._root / "postgres.log").open("wb") as log:
            # the postmaster itself (`pg_ctl start` daemonises) so that its PID is known at once; a session
            # of its own so that a Ctrl-C in the terminal reaches only us, and we stop it
            self._process = subprocess.Popen(
                [str(bindir / "postgres"), "-D", str(data), "-p", str(self.port), "-k", str(self._root),
                 *options],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self._root,
                start_new_session=True, **self._as_postgres(),
            )  # fmt: skip
        admin = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        deadline = time.monotonic() + POSTGRES_READY_TIMEOUT
        while True:
            try:
                with psycopg.connect(admin, autocommit=True, connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                break
            except psycopg.OperationalError as exc:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    tail = (self._root / "postgres.log").read_text(errors="replace")[-2000:]
                    raise BenchError(f"PostgreSQL did not start: {exc}\n{tail}") from exc
                time.sleep(0.05)  # a start-up probe of a child process, not part of any figure
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        """Fast shutdown (SIGINT), then immediate (SIGQUIT) if it is still there after 15 s; by PID."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGQUIT)
            process.wait(timeout=15)


@contextlib.contextmanager
def scratch_database(server_url: str) -> Iterator[str]:
    """A fresh database `bench_<hex>` on the server of `server_url`, dropped afterwards (or the given
    database itself when we may not create one)."""
    url = make_url(server_url)
    admin = url.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    name = f"bench_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.Error as exc:
        print(f"  (cannot create a scratch database, using {url.database!r} as it is: {exc})")
        yield server_url
        return
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


# ------------------------------------------------------------------------------------------ the system


@dataclass
class AntChild:
    """One `python -m sdk ant` child process."""

    ant_id: str
    process: asyncio.subprocess.Process
    log_path: Path

    async def stop(self) -> None:
        """SIGTERM (leave once running tasks end), SIGKILL after the grace; by PID."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(ANT_STOP_GRACE):
                    await self.process.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.process.send_signal(signal.SIGKILL)
        await self.process.wait()


class System:
    """The Queen in this process and its Ants as child processes on loopback."""

    def __init__(self, queen: Queen, work_dir: Path, *, observer: str) -> None:
        self.queen = queen
        self.identity = queen.services.local_identity
        self._work_dir = work_dir
        self._observer = observer
        self.ants: list[AntChild] = []
        self._finished = asyncio.Event()
        self.supervisors_ended = 0  # supervisors that ended (job finished, paused or at a gate)
        previous = queen.supervisors.on_finished

        def finished() -> None:
            previous()
            self.supervisors_ended += 1
            self._finished.set()

        # called when a supervisor ends: its job finished (or paused, or waits at a gate)
        queen.supervisors.on_finished = finished

    async def start_ants(self, count: int, capacity: int) -> None:
        address = f"127.0.0.1:{self.queen.grpc_port}"
        for number in range(1, count + 1):
            ant_id = f"bench-ant-{number}"
            work_dir = self._work_dir / ant_id
            argv = [
                sys.executable, "-m", "sdk", "ant", "--queen", address, "--ant-id", ant_id,
                "--methods", "SHELL", "--capacity", str(capacity), "--work-dir", str(work_dir),
                "--log-level", "warning",
            ]  # fmt: skip
            self.ants.append(await self._spawn_ant(ant_id, argv, work_dir))
        await self._wait_for_ants({ant.ant_id for ant in self.ants})

    @contextlib.asynccontextmanager
    async def noop_ants(self, count: int, capacity: int, profile: Path | None = None) -> AsyncIterator[None]:
        """`count` more Ants, offering NOOP_TAG, whose SHELL executor returns COMPLETED at once (the
        real stream client and attempt runner, no process spawned); in `ants` (so metered) until the
        block ends, then stopped. With `profile`, each runs under cProfile and writes
        `<profile>-<ant id>.pstats` when it stops."""
        address = f"127.0.0.1:{self.queen.grpc_port}"
        started: list[AntChild] = []
        try:
            for number in range(1, count + 1):
                ant_id = f"bench-noop-ant-{number}"
                work_dir = self._work_dir / ant_id
                argv = [
                    sys.executable,
                    "-c",
                    _NOOP_ANT,
                    address,
                    ant_id,
                    str(capacity),
                    str(work_dir),
                    NOOP_TAG,
                ]
                if profile is not None:
                    argv.append(str(profile.with_name(f"{profile.stem}-{ant_id}.pstats")))
                started.append(await self._spawn_ant(ant_id, argv, work_dir))
            self.ants.extend(started)
            await self._wait_for_ants({ant.ant_id for ant in started})
            yield
        finally:
            self.ants = [ant for ant in self.ants if ant not in started]
            await asyncio.gather(*(ant.stop() for ant in started))

    async def _spawn_ant(self, ant_id: str, argv: list[str], work_dir: Path) -> AntChild:
        await asyncio.to_thread(work_dir.mkdir, parents=True, exist_ok=True)
        log_path = self._work_dir / f"{ant_id}.log"
        with log_path.open("wb") as log:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,  # a terminal Ctrl-C reaches us only; we stop them by PID
            )  # fmt: skip
        return AntChild(ant_id, process, log_path)

    async def _wait_for_ants(self, ant_ids: set[str]) -> None:
        """Until every Ant is registered with free slots (a start-up probe, not part of any figure)."""
        deadline = time.monotonic() + ANT_READY_TIMEOUT
        while True:
            ready = {a.ant_id for a in self.queen.registry.snapshot() if a.connected and a.free_slots > 0}
            if ant_ids <= ready:
                return
            for ant in self.ants:
                if ant.ant_id in ant_ids and ant.process.returncode is not None:
                    raise BenchError(f"{ant.ant_id} exited:\n{ant.log_path.read_text(errors='replace')}")
            if time.monotonic() > deadline:
                raise BenchError(f"Ants not ready after {ANT_READY_TIMEOUT:g}s: {sorted(ant_ids - ready)}")
            await asyncio.sleep(0.02)

    async def stop_ants(self) -> None:
        ants, self.ants = self.ants, []
        await asyncio.gather(*(ant.stop() for ant in ants))

    async def upload(self, yaml: str) -> None:
        await self.queen.services.definitions.upload(self.identity, yaml)

    async def submit(self, job_type: str) -> int:
        record = await self.queen.services.requests.submit(self.identity, Submission(job_type, {}))
        return record.id

    async def details(self, request_id: int) -> RequestDetails:
        return await self.queen.services.requests.get(self.identity, request_id)

    async def wait_done(self, request_id: int) -> RequestDetails:
        """The request once terminal; BenchError unless it COMPLETED."""
        async with asyncio.timeout(JOB_TIMEOUT):
            while True:
                wake = self._next_wake(request_id)
                details = await self.details(request_id)
                if details.request.job_state in TERMINAL:
                    break
                await wake.wait()
        if details.request.job_state is not JobState.COMPLETED:
            raise BenchError(f"request {request_id} ended {details.request.job_state}: {details.request}")
        return details

    async def wait_all_done(self, job_type: str, count: int, *, ends: int, ended_before: int) -> None:
        """Until `count` requests of `job_type` are terminal. With the hook observer: until `ends`
        supervisors have ended since there were `ended_before` (no reads while the jobs run), then one
        count query to confirm; with the notifier: one count query per wake-up."""
        requests = self.queen.services.requests
        async with asyncio.timeout(W2_TIMEOUT):
            while True:
                wake = self._next_wake(None)
                if self._observer == "hook" and self.supervisors_ended - ended_before < ends:
                    await wake.wait()
                    continue
                _, done = await requests.list_requests(
                    self.identity, job_type=job_type, states=TERMINAL, limit=1, offset=0
                )
                if done >= count:
                    return
                await wake.wait()

    def _next_wake(self, request_id: int | None) -> asyncio.Event:
        """The event to await after the next read (taken before it, so no change is missed)."""
        if self._observer == "notifier":
            notifier = self.queen.notifier
            return notifier.next_change_of_any() if request_id is None else notifier.next_change(request_id)
        self._finished.clear()
        return self._finished


@contextlib.asynccontextmanager
async def running_system(
    database_url: str, data_dir: Path, *, ants: int, capacity: int, observer: str
) -> AsyncIterator[System]:
    # the embedded system's settings: the local identity, no tokens (the Ants authenticate once per
    # stream in any case, off the per-task path)
    settings = QueenSettings(
        grpc_port=0, http_port=0, data_dir=data_dir, database_url=database_url, auth_required=False
    )
    queen = Queen(settings)
    await queen.start()
    try:
        system = System(queen, data_dir / "ants", observer=observer)
        try:
            await system.start_ants(ants, capacity)
            yield system
        finally:
            await system.stop_ants()
    finally:
        await queen.stop()


# ------------------------------------------------------------------------------------------ what a task costs


def _proc_cpu(pid: int) -> tuple[float, float]:
    """(CPU of the process, CPU of its reaped children) in seconds, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks, (int(fields[13]) + int(fields[14])) / ticks


@dataclass(frozen=True, slots=True)
class Usage:
    """What the system spent per task over a window: CPU seconds and database round trips."""

    queen_cpu: float  # this process: the Queen (and the bench, which waits on events)
    ants_cpu: float  # the Ant processes (nan without /proc)
    shell_cpu: float  # the Ants' reaped children: bash and `true` (nan without /proc)
    commits: float
    statements: float


class Meter:
    """Counts the Queen's commits and statements (SQLAlchemy engine events) and reads CPU times."""

    def __init__(self, system: System) -> None:
        self._system = system
        self.commits = 0
        self.statements = 0
        engine = system.queen.db.engine.sync_engine
        event.listen(engine, "commit", self._on_commit)
        event.listen(engine, "before_cursor_execute", self._on_statement)

    def _on_commit(self, *_: Any) -> None:
        self.commits += 1

    def _on_statement(self, *_: Any) -> None:
        self.statements += 1

    def reading(self) -> Reading:
        times = os.times()
        ants = shell = float("nan")
        with contextlib.suppress(OSError, ValueError, IndexError):
            cpu = [_proc_cpu(ant.process.pid) for ant in self._system.ants]
            ants, shell = sum(c[0] for c in cpu), sum(c[1] for c in cpu)
        statements = self.statements + fast_statements.executed()  # the dispatch path's own statements
        commits = self.commits + fast_statements.committed()  # transactions of _fast statements only
        return times.user + times.system, ants, shell, commits, statements

    def per_task(self, start: Reading, tasks: int) -> Usage:
        return usage_per_task(spent(start, self.reading()), tasks)


Reading = tuple[float, float, float, int, int]  # Queen CPU, Ants CPU, shell CPU, commits, statements


def spent(start: Reading, end: Reading, before: Sequence[float] = (0, 0, 0, 0, 0)) -> tuple[float, ...]:
    """What was spent between two readings (added to `before`)."""
    return tuple(b + (z - a) for b, a, z in zip(before, start, end, strict=True))


def usage_per_task(total: Sequence[float], tasks: int) -> Usage:
    queen, ants, shell, commits, statements = (value / tasks for value in total)
    return Usage(queen, ants, shell, commits, statements)


# ------------------------------------------------------------------------------------------ baselines


# Run in a fresh interpreter: spawned from this process, the time would also measure how busy the
# Queen's event loop is (the child's exit is noticed by the loop), not how fast the machine forks.
_SPAWN_PROBE = """
import asyncio, json, sys, time

async def spawn(argv):
    start = time.perf_counter()
    process = await asyncio.create_subprocess_exec(*argv)
    await process.wait()
    return time.perf_counter() - start

async def main(count, argvs):
    for argv in argvs:
        await spawn(argv)  # warm-up
    samples = [[] for _ in argvs]
    for _ in range(count):  # alternately, so that every command sees the same moments
        for argv, taken in zip(argvs, samples):
            taken.append(await spawn(argv))
    print(json.dumps(samples))

asyncio.run(main(int(sys.argv[1]), json.loads(sys.argv[2])))
"""


# An Ant whose SHELL executor does nothing: the real `AntClient` (stream, ledger, log and result
# sending) and `AttemptRunner` (the attempt's directory), without a process per task. Leaves on SIGTERM
# as `formicary ant` does.
_NOOP_ANT = """
import asyncio, signal, sys
from ant.cli import configure_logging
from ant.executors.methods import Method
from ant.executors.registry import ExecutorRegistry
from ant.executors.result import ExecutionResult, ExecutionStatus
from ant.settings import AntSettings
from ant.stream import AntClient

class Noop:
    async def run(self, spec, ctx):
        return ExecutionResult(status=ExecutionStatus.COMPLETED, exit_code="0")

async def main(address, ant_id, capacity, work_dir, tag, profile=None):
    settings = AntSettings(queen_address=address, ant_id=ant_id, methods=["SHELL"], tags=[sys.argv[5]],
                           capacity=int(capacity), work_dir=work_dir)
    client = AntClient(settings, ExecutorRegistry({Method.SHELL: Noop()}))
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, client.request_shutdown)
    if profile is None:
        await client.run()
        return
    import cProfile
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        await client.run()
    finally:
        profiler.disable()
        profiler.dump_stats(profile)

configure_logging("warning")
asyncio.run(main(*sys.argv[1:]))
"""


async def measure_spawns(count: int) -> tuple[list[float], list[float]]:
    """Seconds per `asyncio.create_subprocess_exec(...)` + wait of `true` and of `bash -c true`, `count`
    of each, alternately, one at a time, in a child interpreter."""
    argvs = [[shutil.which("true") or "/bin/true"], [shutil.which("bash") or "/bin/sh", "-c", "true"]]
    probe = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _SPAWN_PROBE, str(count), json.dumps(argvs),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, _ = await probe.communicate()
    except asyncio.CancelledError:
        with contextlib.suppress(ProcessLookupError):
            probe.kill()
        await probe.wait()
        raise
    if probe.returncode != 0:
        raise BenchError(f"the spawn probe failed with exit status {probe.returncode}")
    true_samples, bash_samples = json.loads(out)
    return true_samples, bash_samples


@dataclass(frozen=True, slots=True)
class Echo:
    round_trip: Summary  # seconds per message, send one / await one
    pipelined_per_s: float  # messages/s, a writer and a reader on one stream


async def measure_echo(round_trips: int, pipelined: int) -> Echo:
    """A raw `grpc.aio` bidi echo of bytes (no protobuf), server and client in this process, loopback."""

    async def echo(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        async for message in requests:
            yield message

    handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Echo": grpc.stream_stream_rpc_method_handler(echo)}
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            connect: Any = channel.stream_stream("/bench.Echo/Echo")
            call: Any = connect()
            for _ in range(100):  # warm-up
                await call.write(ECHO_PAYLOAD)
                await call.read()
            samples = []
            for _ in range(round_trips):
                start = time.perf_counter()
                await call.write(ECHO_PAYLOAD)
                await call.read()
                samples.append(time.perf_counter() - start)
            await call.done_writing()
            await call.code()

            call = connect()

            async def write_all() -> None:
                for _ in range(pipelined):
                    await call.write(ECHO_PAYLOAD)
                await call.done_writing()

            start = time.perf_counter()
            async with asyncio.TaskGroup() as group:  # owns the writer, also when we are cancelled
                group.create_task(write_all())
                for _ in range(pipelined):
                    await call.read()
                elapsed = time.perf_counter() - start
            await call.code()
    finally:
        await server.stop(1.0)  # graceful: an immediate stop makes grpc log a GOAWAY at INFO level
    return Echo(Summary.of(samples), pipelined / elapsed)


# ------------------------------------------------------------------------------------------ the stream alone


class _Timing:
    """A DispatchProgress that only notes when the attempt was accepted (the time the registry saw the
    TaskAccepted frame: reported late, or with the outcome, see AntRegistry._follow)."""

    def __init__(self) -> None:
        self.accepted_at: datetime | None = None

    async def waiting(self, reason: str) -> None:
        return None

    async def dispatched(self, ant_id: str, ant_host: str) -> None:
        return None

    async def accepted(self, ant_id: str, at: datetime | None = None) -> None:
        self.accepted_at = at


@dataclass(frozen=True, slots=True)
class StreamFigures:
    accept_round_trip: Summary  # dispatch -> TaskAccepted back in the Queen, one at a time (seconds)
    result_round_trip: Summary  # dispatch -> TaskResult back (the Ant ran the task), one at a time
    pipelined_per_s: float  # attempts/s with many in flight (the Ants' windows bound it)
    frames_per_task: float  # protocol frames on the stream per attempt, both directions, while pipelined
    messages_per_task: float  # gRPC messages carrying them (fewer than frames when Batches travel)
    usage: Usage  # per attempt, over the pipelined part


class _FrameCounter:
    """Counts the gRPC messages of every Ant stream in both directions, and the protocol's frames in them
    (a protocol-3 Batch is one message of several frames): what the registry receives, and what the
    servicers' writers take from the sessions' stream handles (wrapped while counting)."""

    def __init__(self, registry: AntRegistry) -> None:
        self._registry = registry
        self.messages = 0
        self.frames = 0

    def _count(self, frame: Any) -> None:
        self.messages += 1
        self.frames += len(frame.batch.frames) if frame.WhichOneof("frame") == "batch" else 1

    @contextlib.contextmanager
    def counting(self) -> Iterator[None]:
        registry = self._registry
        received, take = registry.received, StreamHandle.take

        def count_received(session: Any, frame: Any) -> str | None:
            self._count(frame)
            return received(session, frame)

        def count_taken(stream: StreamHandle) -> Any:
            frame = take(stream)
            if frame is not None and not isinstance(frame, StreamEnd):
                self._count(frame)
            return frame

        registry.received = count_received  # type: ignore[method-assign]
        StreamHandle.take = count_taken  # type: ignore[method-assign,assignment]
        try:
            yield
        finally:
            del registry.received
            StreamHandle.take = take  # type: ignore[method-assign]


async def measure_stream(
    system: System,
    meter: Meter,
    round_trips: int,
    pipelined: int,
    *,
    tags: tuple[str, ...] = (),
    profile: cProfile.Profile | None = None,
) -> StreamFigures:
    """SHELL `true` attempts straight through `AntRegistry.run()`: the real stream and Ants, no database,
    no supervisor (what the stream and the Ant cost by themselves). `tags` route them to some Ants;
    `profile` runs over the pipelined attempts."""
    queen = system.queen
    task = dataclasses.replace(shell_true_task(), tags=tags)

    def work() -> TaskWork:
        task_id = f"bench-{uuid.uuid4().hex}"
        return TaskWork(
            job_request_id=0,
            job_definition_id="bench",
            job_type="bench-stream",
            job_version=1,
            job_execution_id="bench",
            task_execution_id=task_id,
            correlation_id=f"{task_id}:0.0",
            task=task,
            variables={},
        )

    async def one() -> tuple[float, float]:
        progress = _Timing()
        start, started_at = time.perf_counter(), datetime.now(UTC)
        outcome = await queen.registry.run(work(), progress)
        end = time.perf_counter()
        await outcome.ack()
        if outcome.report.state is not TaskState.COMPLETED:
            raise BenchError(f"stream attempt ended {outcome.report}")
        accepted_at = outcome.accepted.at if outcome.accepted is not None else progress.accepted_at
        if accepted_at is None:
            raise BenchError("a stream attempt finished without being accepted")
        return (accepted_at - started_at).total_seconds(), end - start

    for _ in range(20):  # warm-up
        await one()
    accepts, results = [], []
    for _ in range(round_trips):
        accept, result = await one()
        accepts.append(accept)
        results.append(result)
    counter = _FrameCounter(queen.registry)
    reading = meter.reading()
    start = time.perf_counter()
    if profile is not None:
        profile.enable()
    with counter.counting():
        await asyncio.gather(*(one() for _ in range(pipelined)))
    if profile is not None:
        profile.disable()
    rate = pipelined / (time.perf_counter() - start)
    return StreamFigures(
        Summary.of(accepts),
        Summary.of(results),
        rate,
        counter.frames / pipelined,
        counter.messages / pipelined,
        meter.per_task(reading, pipelined),
    )


async def measure_noop_stream(
    system: System, meter: Meter, capacity: int, profile: Path | None, database: str
) -> StreamFigures:
    """The same through two Ants whose executor does nothing: the stream's own dispatch rate. With
    `profile`, cProfile over the pipelined attempts here and over each Ant's life in the Ant."""
    target = None if profile is None else profile.with_name(f"{profile.stem}-{database}")
    profiler = None if profile is None else cProfile.Profile()
    async with system.noop_ants(W2_ANTS, capacity, target):
        figures = await measure_stream(
            system, meter, STREAM_ROUND_TRIPS, NOOP_PIPELINED, tags=(NOOP_TAG,), profile=profiler
        )
    _write_profile(profiler, profile, database, "no-op stream (the Ants' beside it)")
    return figures


# ------------------------------------------------------------------------------------------ W1, W2, latency


@dataclass(frozen=True, slots=True)
class W1Figures:
    totals: tuple[float, ...]  # seconds, submit -> COMPLETED seen, measured runs (warm-up excluded)
    cycles: Summary  # seconds between consecutive tasks' started_at (the steady-state cycle per task)
    usage: Usage

    @property
    def median_total(self) -> float:
        return statistics.median(self.totals)

    @property
    def per_task(self) -> float:
        return self.median_total / CHAIN_LENGTH


async def run_w1(system: System, meter: Meter, runs: int, profile: cProfile.Profile | None) -> W1Figures:
    """The chain, `runs` times (the first a warm-up)."""
    await system.upload(chain_definition(CHAIN_LENGTH))
    await system.wait_done(await system.submit(W1_JOB))  # warm-up
    totals, cycles = [], []
    used: tuple[float, ...] = (0, 0, 0, 0, 0)
    for _ in range(runs - 1):
        reading = meter.reading()
        if profile is not None:
            profile.enable()
        start = time.perf_counter()
        request_id = await system.submit(W1_JOB)
        details = await system.wait_done(request_id)
        totals.append(time.perf_counter() - start)
        if profile is not None:
            profile.disable()
        used = spent(reading, meter.reading(), used)
        starts = sorted(t.started_at for t in details.tasks if t.started_at is not None)
        if len(starts) != CHAIN_LENGTH:
            raise BenchError(f"W1 request {request_id} ran {len(starts)} tasks, not {CHAIN_LENGTH}")
        cycles += [seconds_between(a, b) for a, b in itertools.pairwise(starts)]
    usage = usage_per_task(used, (runs - 1) * CHAIN_LENGTH)
    return W1Figures(tuple(totals), Summary.of(cycles), usage)


@dataclass(frozen=True, slots=True)
class W2Figures:
    submit_seconds: float  # the gather of 200 submits
    wall_seconds: float  # first submit -> the last request's ended_at
    dispatch_per_s: float  # the tasks' started_at: count / (last - first)
    usage: Usage

    @property
    def tasks_per_s(self) -> float:
        return W2_REQUESTS / self.wall_seconds


async def run_w2(system: System, meter: Meter, profile: cProfile.Profile | None = None) -> W2Figures:
    await system.upload(one_task_definition(W2_JOB))
    await system.wait_done(await system.submit(W2_JOB))  # warm-up: first-use paths, cached definition
    reading = meter.reading()
    start = utc_now()
    ended_before = system.supervisors_ended
    if profile is not None:
        profile.enable()
    submit_start = time.perf_counter()
    ids = await asyncio.gather(*(system.submit(W2_JOB) for _ in range(W2_REQUESTS)))
    submit_seconds = time.perf_counter() - submit_start
    await system.wait_all_done(W2_JOB, W2_REQUESTS + 1, ends=W2_REQUESTS, ended_before=ended_before)
    if profile is not None:
        profile.disable()
    usage = meter.per_task(reading, W2_REQUESTS)
    ended, started = [], []
    for request_id in ids:
        item = await system.details(request_id)
        if item.request.job_state is not JobState.COMPLETED or item.request.ended_at is None:
            raise BenchError(f"W2 request {request_id} ended {item.request.job_state}")
        ended.append(item.request.ended_at)
        started += [t.started_at for t in item.tasks if t.started_at is not None]
    wall = seconds_between(start, max(ended))
    span = seconds_between(min(started), max(started))
    dispatch_rate = (len(started) - 1) / span if span > 0 else float("nan")
    return W2Figures(submit_seconds, wall, dispatch_rate, usage)


_STAGES = (
    ("submitted -> READY (scheduler)", "submitted", "ready"),
    ("READY -> job EXECUTING (supervisor)", "ready", "job_executing"),
    ("job EXECUTING -> task EXECUTING", "job_executing", "task_executing"),
    ("task EXECUTING -> task ended (Ant)", "task_executing", "task_ended"),
    ("task ended -> job COMPLETED", "task_ended", "job_ended"),
)


@dataclass(frozen=True, slots=True)
class LatencyFigures:
    to_first_task: Summary  # request created_at -> first task EXECUTING (seconds)
    stages: dict[str, Summary] = field(default_factory=dict)


async def run_latency(system: System, samples: int) -> LatencyFigures:
    await system.upload(one_task_definition(LATENCY_JOB))
    await system.wait_done(await system.submit(LATENCY_JOB))  # warm-up
    totals: list[float] = []
    stages: dict[str, list[float]] = {name: [] for name, _, _ in _STAGES}
    for _ in range(samples):
        request_id = await system.submit(LATENCY_JOB)
        await system.wait_done(request_id)  # one at a time: spaced out, never concurrent
        async with system.queen.db.transaction() as session:
            log = await events.events_since(session, request_id, 0, 500)
        moments = _moments(log)
        totals.append(seconds_between(moments["submitted"], moments["task_executing"]))
        for name, start, end in _STAGES:
            stages[name].append(seconds_between(moments[start], moments[end]))
    return LatencyFigures(Summary.of(totals), {name: Summary.of(v) for name, v in stages.items()})


def _moments(log: Sequence[EventRecord]) -> dict[str, datetime]:
    """When each stage of a one-task request happened, from its event log (first occurrence)."""
    found: dict[str, datetime] = {}
    for record in log:
        key = None
        if record.kind == events.EventKind.REQUEST_SUBMITTED:
            key = "submitted"
        elif record.kind == events.EventKind.JOB_STATE_CHANGED:
            key = {"READY": "ready", "EXECUTING": "job_executing", "COMPLETED": "job_ended"}.get(
                str(record.to_state)
            )
        elif record.kind == events.EventKind.TASK_STATE_CHANGED:
            key = {"EXECUTING": "task_executing", "COMPLETED": "task_ended"}.get(str(record.to_state))
        if key is not None:
            found.setdefault(key, record.created_at)
    missing = {name for _, a, b in _STAGES for name in (a, b)} - set(found)
    if missing:
        raise BenchError(f"events missing from the log: {sorted(missing)}: {[r.kind for r in log]}")
    return found


# ------------------------------------------------------------------------------------------ one pass


@dataclass
class PassFigures:
    database: str
    spawn_true: Summary | None = None
    spawn_bash: Summary | None = None
    echo: Echo | None = None
    stream: StreamFigures | None = None
    noop_stream: StreamFigures | None = None
    w1: W1Figures | None = None
    w2: W2Figures | None = None
    latency: LatencyFigures | None = None


@dataclass(frozen=True, slots=True)
class Options:
    databases: tuple[str, ...]
    postgres_url: str | None
    postgres_durable: bool
    runs: int
    workloads: frozenset[str]
    capacity: int
    observer: str
    profile_w1: Path | None
    profile_w2: Path | None
    profile_noop: Path | None
    keep: bool


async def run_pass(database: str, server_url: str, options: Options, root: Path) -> PassFigures:
    """Every chosen workload on one database (`server_url`: a PostgreSQL server; unused for SQLite)."""
    figures = PassFigures(database)
    data_dir = root / database
    data_dir.mkdir(parents=True)
    async with contextlib.AsyncExitStack() as stack:
        if database == "sqlite":
            url = f"sqlite+aiosqlite:///{data_dir / 'formicary.db'}"
        else:
            url = stack.enter_context(scratch_database(server_url))
        system = await stack.enter_async_context(
            running_system(url, data_dir, ants=W2_ANTS, capacity=options.capacity, observer=options.observer)
        )
        meter = Meter(system)
        print(f"  Queen 127.0.0.1:{system.queen.grpc_port}, {W2_ANTS} Ants of capacity {options.capacity}")
        # first, while the Queen and the Ants are idle: after a job the Queen still works for a while
        # (its log archive), and a probe then measures that rather than the machine
        spawn_true, spawn_bash = await measure_spawns(SPAWNS)
        figures.spawn_true, figures.spawn_bash = Summary.of(spawn_true), Summary.of(spawn_bash)
        if "echo" in options.workloads:
            figures.echo = await measure_echo(ECHO_ROUND_TRIPS, ECHO_PIPELINED)
            figures.stream = await measure_stream(system, meter, STREAM_ROUND_TRIPS, STREAM_PIPELINED)
            figures.noop_stream = await measure_noop_stream(
                system, meter, options.capacity, options.profile_noop, database
            )
        if "w1" in options.workloads:
            profile = cProfile.Profile() if options.profile_w1 is not None else None
            figures.w1 = await run_w1(system, meter, options.runs, profile)
            _write_profile(profile, options.profile_w1, database, "W1")
        if "w2" in options.workloads:
            profile = cProfile.Profile() if options.profile_w2 is not None else None
            figures.w2 = await run_w2(system, meter, profile)
            _write_profile(profile, options.profile_w2, database, "W2")
        if "latency" in options.workloads:
            figures.latency = await run_latency(system, LATENCY_SAMPLES)
    return figures


def _write_profile(profile: cProfile.Profile | None, path: Path | None, database: str, workload: str) -> None:
    if profile is None or path is None:
        return
    target = path.with_name(f"{path.stem}-{database}.pstats")
    profile.dump_stats(target)
    print(f"  {workload} profile written to {target} (figures taken with the profiler on)")


# ------------------------------------------------------------------------------------------ report


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms"


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:.0f} µs"


def _load() -> str:
    """The 1-minute load average: other work on the machine skews every figure."""
    try:
        return f"load average {os.getloadavg()[0]:.2f}"
    except OSError:
        return "load average unknown"


def _verdict(ok: bool) -> str:
    return "target met" if ok else "target MISSED"


def _usage_rows(label: str, usage: Usage) -> list[tuple[str, str, str]]:
    cpu = f"{usage.queen_cpu * 1e3:.2f} / {usage.ants_cpu * 1e3:.2f} / {usage.shell_cpu * 1e3:.2f} ms"
    rows = [(f"  {label}: CPU per task, Queen / Ants / shell", cpu, f"{os.cpu_count()} CPUs in all")]
    if usage.commits or usage.statements:
        database = f"{usage.commits:.1f} commits"
        rows.append((f"  {label}: database per task", database, f"{usage.statements:.1f} statements"))
    return rows


def _quartiles(values: Sequence[float]) -> str:
    first, _, third = statistics.quantiles(values, n=4)
    return f"{first:.0f} / {third:.0f}"


def _w1_rows(w1: W1Figures, database: str, spawn: float | None) -> list[tuple[str, str, str]]:
    ref = REFERENCE
    target = ref.target_chain_sqlite_ms if database == "sqlite" else ref.target_chain_postgresql_ms
    totals = [t * 1e3 for t in w1.totals]
    if len(totals) > 6:
        low, high = min(totals), max(totals)
        runs = f"runs {low:.0f} to {high:.0f} ms (quartiles {_quartiles(totals)})"
    else:
        runs = ("runs " if len(totals) > 1 else "run ") + ", ".join(f"{t:.0f}" for t in totals) + " ms"
    verdict = _verdict(w1.per_task * 1e3 <= target)
    others = f"Celery {ref.celery_chain_ms:g} ms, Prefect {ref.prefect_chain_ms:g} ms"
    versus = f"{verdict} (<= {target:g} ms); {others}"
    rows = [
        (f"W1 chain of {CHAIN_LENGTH}, median total of {len(w1.totals)}", _ms(w1.median_total), runs),
        ("W1 per task (total / 20)", _ms(w1.per_task), versus),
    ]
    if spawn:
        # the reference figures were taken when a bare spawn took REFERENCE.spawn_true_ms
        scale = ref.spawn_true_ms
        others = f"Celery {ref.celery_chain_ms / scale:.1f}x, Prefect {ref.prefect_chain_ms / scale:.0f}x"
        note = f"target {target / scale:.1f}x; {others} (reference figures / {scale:g} ms)"
        rows.append(("W1 per task / bare spawn", f"{w1.per_task / spawn:.1f}x", note))
    cycle = f"{_ms(w1.cycles.p50)} / {_ms(w1.cycles.p99)}"
    rows.append(("W1 cycle between task starts (p50 / p99)", cycle, "steady state: no submit, no finish"))
    return rows + _usage_rows("W1", w1.usage)


def _w2_rows(w2: W2Figures, spawn: float | None) -> list[tuple[str, str, str]]:
    ref = REFERENCE
    verdict = _verdict(w2.tasks_per_s >= ref.target_w2_tasks_per_s)
    note = f"{verdict} (>= {ref.target_w2_tasks_per_s:g}/s); Celery {ref.celery_w2_tasks_per_s:g}/s"
    walls = f"{_ms(w2.wall_seconds)} / {_ms(w2.submit_seconds)}"
    rows = [
        (f"W2 {W2_REQUESTS} one-task requests over {W2_ANTS} Ants", f"{w2.tasks_per_s:.1f} tasks/s", note),
        ("W2 wall / submit phase", walls, f"dispatch rate {w2.dispatch_per_s:.1f}/s (task starts)"),
    ]
    if spawn:
        scale = ref.spawn_true_ms / 1e3
        target = 1 / ref.target_w2_tasks_per_s / scale
        celery = 1 / ref.celery_w2_tasks_per_s / scale
        ratio = f"{1 / w2.tasks_per_s / spawn:.1f}x"
        rows.append(("W2 wall per task / bare spawn", ratio, f"target {target:.2f}x, Celery {celery:.2f}x"))
    return rows + _usage_rows("W2", w2.usage)


def _stream_rows(figures: PassFigures, spawn: float | None) -> list[tuple[str, str, str]]:
    ref = REFERENCE
    echo, stream, noop = figures.echo, figures.stream, figures.noop_stream
    assert echo is not None
    assert stream is not None
    echo_rt = f"{_us(echo.round_trip.p50)} / {_us(echo.round_trip.p99)}"
    echo_frames = 2 * echo.pipelined_per_s
    rows = [
        ("raw grpc.aio echo round trip (p50 / p99)", echo_rt, f"reference {ref.grpc_round_trip_us:g} µs"),
        ("raw grpc.aio echo pipelined", f"{echo.pipelined_per_s:,.0f} msg/s", f"{echo_frames:,.0f} frames/s"),
    ]

    def pipelined_rows(label: str, figures: StreamFigures) -> list[tuple[str, str, str]]:
        messages = figures.pipelined_per_s * figures.messages_per_task
        dispatch_rate = f"{figures.pipelined_per_s / echo.pipelined_per_s:.2f}x echo msg/s"
        per_message = (
            f"{figures.messages_per_task:.1f} messages, {figures.frames_per_task:.1f} frames per task; "
            f"{messages / echo_frames:.2f}x echo frames/s"
        )
        return [
            (label, f"{figures.pipelined_per_s:,.1f} tasks/s", dispatch_rate),
            ("  gRPC messages on the streams", f"{messages:,.0f} /s", per_message),
        ]

    if noop is not None:
        accept = f"{_us(noop.accept_round_trip.p50)} / {_us(noop.accept_round_trip.p99)}"
        result = f"{_us(noop.result_round_trip.p50)} / {_us(noop.result_round_trip.p99)}"
        rows += [
            (
                "no-op Ant: dispatch -> accepted (p50 / p99)",
                accept,
                f"{noop.accept_round_trip.p50 / echo.round_trip.p50:.1f}x echo round trip",
            ),
            (
                "no-op Ant: dispatch -> result (p50 / p99)",
                result,
                f"{noop.result_round_trip.p50 / echo.round_trip.p50:.1f}x echo round trip",
            ),
            *pipelined_rows(f"no-op Ant: {NOOP_PIPELINED} in flight, no DB", noop),
        ]
        rows += _usage_rows("no-op", noop.usage)
    accept_rt = f"{_us(stream.accept_round_trip.p50)} / {_us(stream.accept_round_trip.p99)}"
    accept_ratio = f"{stream.accept_round_trip.p50 / echo.round_trip.p50:.1f}x echo round trip"
    result_note = ""
    if spawn:
        result_note = f"{stream.result_round_trip.p50 / spawn:.1f}x bare spawn"
        if figures.spawn_bash is not None:
            beyond = stream.result_round_trip.p50 - figures.spawn_bash.p50
            result_note += f", {_ms(beyond)} beyond `bash -c true`"
    pipelined = pipelined_rows(f"Ant stream, {STREAM_PIPELINED} in flight, no DB", stream)
    if figures.w2 is not None:
        label, value, note = pipelined[0]
        pipelined[0] = (
            label,
            value,
            f"{note}; W2 reaches {figures.w2.tasks_per_s / stream.pipelined_per_s:.2f}x of it",
        )
    rows += [
        ("Ant stream dispatch -> accepted (p50 / p99)", accept_rt, accept_ratio),
        ("Ant stream dispatch -> result of `true` (p50)", _ms(stream.result_round_trip.p50), result_note),
        *pipelined,
    ]
    return rows + _usage_rows("stream", stream.usage)


def _latency_rows(latency: LatencyFigures, spawn: float | None) -> list[tuple[str, str, str]]:
    total = latency.to_first_task
    name = f"submit -> first task EXECUTING (p50 / p99, n={total.count})"
    ratio = f"{total.p50 / spawn:.1f}x bare spawn" if spawn else ""
    rows = [(name, f"{_ms(total.p50)} / {_ms(total.p99)}", ratio)]
    rows += [(f"  {stage}", f"{_ms(s.p50)} / {_ms(s.p99)}", "") for stage, s in latency.stages.items()]
    return rows


def report(figures: PassFigures) -> None:
    """Print the pass's figures as a table: figure, value, same-pass ratio or comparison."""
    rows: list[tuple[str, str, str]] = []
    spawn = figures.spawn_true.p50 if figures.spawn_true else None
    if figures.spawn_true:
        rows.append(("bare spawn of `true` (p50)", _ms(figures.spawn_true.p50), "reference 0.48 ms"))
    if figures.spawn_true and figures.spawn_bash:
        bash = figures.spawn_bash.p50
        rows.append(("spawn of `bash -c true` (p50)", _ms(bash), f"{bash / figures.spawn_true.p50:.1f}x"))
    if figures.w1 is not None:
        rows += _w1_rows(figures.w1, figures.database, spawn)
    if figures.w2 is not None:
        rows += _w2_rows(figures.w2, spawn)
    if figures.echo is not None and figures.stream is not None:
        rows += _stream_rows(figures, spawn)
    if figures.latency is not None:
        rows += _latency_rows(figures.latency, spawn)
    if not rows:
        return
    name_width = max(len(r[0]) for r in rows)
    value_width = max(len(r[1]) for r in rows)
    print(f"\n== {figures.database} == ({_load()} at the end of the pass)")
    for name, value, note in rows:
        print(f"  {name:<{name_width}}  {value:>{value_width}}  {note}".rstrip())


# ------------------------------------------------------------------------------------------ main


def parse_args(argv: Sequence[str] | None) -> tuple[Options, str]:
    parser = argparse.ArgumentParser(
        prog="bench/dispatch.py",
        description="Per-task cost, throughput and latency of the embedded system (SHELL `true` tasks).",
    )
    parser.add_argument(
        "--database", choices=("sqlite", "postgresql", "both"), default="both", help="default: both, in turn."
    )
    parser.add_argument(
        "--postgres-url",
        help="SQLAlchemy URL of a PostgreSQL server to use (a scratch database is created on it and "
        "dropped); without it, a private cluster is started in a temporary directory and stopped at the end.",
    )
    parser.add_argument(
        "--postgres-fsync",
        choices=("on", "off"),
        default="on",
        help="private cluster only: `on` keeps PostgreSQL's durable defaults (each commit waits for its "
        "WAL flush); `off` sets fsync=off, synchronous_commit=off (the test suite's settings).",
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=21,
        help="W1 runs, the first one a warm-up (>= 2); a run takes about 0.1 s, and this machine's noise "
        "moves single runs by a quarter.",
    )
    parser.add_argument(
        "--workload", default=",".join(WORKLOADS), help=f"comma-separated subset of {','.join(WORKLOADS)}."
    )
    parser.add_argument("--capacity", type=int, default=8, help="capacity of each of the 2 Ants.")
    parser.add_argument(
        "--observer",
        choices=("hook", "notifier"),
        default="hook",
        help="how the bench waits for jobs: the Supervisors' on_finished hook (no reads while a job "
        "runs) or ChangeNotifier wake-ups with a re-read each (what a WatchJobRequest client costs).",
    )
    parser.add_argument(
        "--profile-w1",
        type=Path,
        metavar="FILE",
        help="cProfile this process over the measured W1 runs; writes FILE-<database>.pstats.",
    )
    parser.add_argument(
        "--profile-w2",
        type=Path,
        metavar="FILE",
        help="cProfile this process over the W2 burst; writes FILE-<database>.pstats.",
    )
    parser.add_argument(
        "--profile-noop",
        type=Path,
        metavar="FILE",
        help="cProfile this process over the no-op Ants' pipelined attempts (FILE-<database>.pstats) "
        "and each no-op Ant over its life (FILE-<database>-<ant id>.pstats).",
    )
    parser.add_argument(
        "--queen-log-level", default="warning", help="structlog level of the Queen in this process."
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary directory (Ant logs, SQLite file)."
    )
    args = parser.parse_args(argv)
    workloads = frozenset(w.strip() for w in args.workload.split(",") if w.strip())
    unknown = workloads - set(WORKLOADS)
    if unknown or not workloads:
        parser.error(f"unknown workloads: {', '.join(sorted(unknown)) or '(none given)'}")
    if args.runs < 2:
        parser.error("--runs must be at least 2 (the first run is a warm-up)")
    if args.capacity < 1:
        parser.error("--capacity must be at least 1")
    databases = ("sqlite", "postgresql") if args.database == "both" else (args.database,)
    options = Options(
        databases=databases,
        postgres_url=args.postgres_url,
        postgres_durable=args.postgres_fsync == "on",
        runs=args.runs,
        workloads=workloads,
        capacity=args.capacity,
        observer=args.observer,
        profile_w1=args.profile_w1,
        profile_w2=args.profile_w2,
        profile_noop=args.profile_noop,
        keep=args.keep,
    )
    return options, args.queen_log_level


async def amain(options: Options, root: Path, server_url: str) -> None:
    """Every pass in turn. SIGINT/SIGTERM cancel it once (later ones are ignored), so the Ants and the
    Queen are stopped by the context managers on the way out, whatever gRPC is doing at that moment."""
    loop = asyncio.get_running_loop()
    this = asyncio.current_task()
    assert this is not None

    def stop(signum: signal.Signals) -> None:
        if this.cancelling():
            print(f"\n{signum.name}: already stopping the Ants and the Queen", file=sys.stderr)
            return
        print(f"\n{signum.name}: stopping the Ants and the Queen", file=sys.stderr)
        this.cancel()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop, signum)
    try:
        for database in options.databases:
            print(f"\n{database}: {', '.join(w for w in WORKLOADS if w in options.workloads)}")
            report(await run_pass(database, server_url, options, root))
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def main(argv: Sequence[str] | None = None) -> int:
    options, log_level = parse_args(argv)
    configure_logging(log_level)
    print(
        f"bench/dispatch.py {utc_now():%Y-%m-%d %H:%M} UTC: Python {platform.python_version()}, "
        f"grpcio {grpc.__version__}, {os.cpu_count()} CPUs, observer {options.observer}, {_load()}"
    )
    root = Path(tempfile.mkdtemp(prefix="formicary-bench-"))
    root.chmod(0o755)  # the private cluster's `postgres` user must reach its own subdirectory
    cluster: PrivateCluster | None = None
    try:
        server_url = options.postgres_url or ""
        if "postgresql" in options.databases and not server_url:
            # before any gRPC thread exists: forking it (as another user) later makes gRPC log noise
            cluster = PrivateCluster(root / "postgres", durable=options.postgres_durable)
            server_url = cluster.start()
            durability = "fsync, synchronous_commit on" if options.postgres_durable else "fsync off"
            print(f"private PostgreSQL cluster on 127.0.0.1:{cluster.port} ({durability})")
        asyncio.run(amain(options, root, server_url))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted: the Ants, the Queen and the private cluster were stopped", file=sys.stderr)
        return 130
    except BenchError as exc:
        print(f"\nbench failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if cluster is not None:
            cluster.stop()
        if options.keep:
            print(f"\nkept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
