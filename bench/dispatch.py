"""Dispatch benchmark of the embedded system: per-task cost, throughput and latency of SHELL `true` tasks.

The Queen runs in this process (`Queen(QueenSettings(grpc_port=0, ...))`); the Ants are real child
processes (`python -m sdk ant --methods SHELL ...`) on the real Ant stream over loopback, as
`formicary dev` runs them. Work is submitted through the service layer
(`queen.services.requests.submit(local_identity, Submission(...))`), so the figures include the
scheduler, the supervisors, every database transaction, the stream and the Ant's shell executor, but
no client-side gRPC hop.

Workloads (each pass runs them on one database, with the baselines measured in the same pass):

- w1       a 20-task chain (`on_completed`) of SHELL `true`, run `--runs` times (the first is a warm-up):
           median total and per task, beside the bare fork/exec of `true` (and of `bash -c true`, the
           floor of the Ant's shell executor) measured in the same pass.
- w2       200 one-task requests submitted at once (`asyncio.gather`) over 2 Ants: tasks/s from the
           first submit to the last request's `ended_at`.
- echo     a raw `grpc.aio` bidi echo (in process, loopback: round trip and pipelined messages/s)
           beside the Ant stream itself, driven through `AntRegistry.run()` (the supervisor's
           `TaskDispatcher` contract) with no database: dispatch -> TaskAccepted round trip, and
           tasks/s with many attempts in flight.
- latency  submit -> first task EXECUTING (the task's `started_at`, set when the Ant's TaskAccepted is
           committed, vs the request's `created_at`), p50/p99 over spaced-out single-task submissions,
           with the stages taken from the request's event log.

Waiting is event-driven: a job's end is awaited on the Supervisors' `on_finished` hook (or, with
`--observer notifier`, on `ChangeNotifier.next_change()` + a re-read per wake-up) and confirmed by
reading the request. The hook is the default because a reader per wake-up adds a few database
transactions per task, and on SQLite every transaction, reads included, takes the write lock
(BEGIN IMMEDIATE): the observer would slow down what it measures.

Figures are printed with ratios taken in the same pass (machines are noisy; ratios travel better),
next to reference figures measured earlier on this machine (see REFERENCE below) and the targets.

Usage: .venv/bin/python bench/dispatch.py [--database sqlite|postgresql|both] [--postgres-url URL]
       [--runs N] [--workload w1,w2,echo,latency] [--capacity N] [--profile-w1 FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import logging
import os
import platform
import pstats
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
from sqlalchemy.engine import make_url

from queen.app import Queen
from queen.domain.definition_parser import check_job_definition
from queen.domain.job_definition import TaskDefinition
from queen.domain.states import JobState, TaskState
from queen.domain.work import TaskWork
from queen.services.requests import RequestDetails, Submission
from queen.settings import QueenSettings
from queen.store import events

# ------------------------------------------------------------------------------------------ constants

CHAIN_LENGTH = 20
W2_REQUESTS = 200
W2_ANTS = 2
SPAWNS = 200
ECHO_ROUND_TRIPS = 5_000
ECHO_PIPELINED = 50_000
ECHO_PAYLOAD = bytes(256)  # about the size of a DispatchTask frame of a SHELL `true` task
STREAM_ROUND_TRIPS = 200
STREAM_PIPELINED = 400
LATENCY_SAMPLES = 100

W1_JOB = "bench-w1-chain"
W2_JOB = "bench-w2-one"
LATENCY_JOB = "bench-latency-one"

ANT_READY_TIMEOUT = 30.0
ANT_STOP_GRACE = 10.0
JOB_TIMEOUT = 120.0
POSTGRES_READY_TIMEOUT = 30.0
POSTGRES_BINDIRS = ("/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/17/bin")

TERMINAL = (JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED)


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
    """The q-th percentile (0..100), linear between closest ranks (as numpy's default)."""
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
    """The task of a one-task definition, for dispatching straight through the registry."""
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
    """structlog for the Queen in this process: JSON on stderr from `level` up (entry points configure)."""
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
    port (run as the `postgres` user when we are root; the server refuses root), stopped by PID.

    `durable=True` keeps PostgreSQL's defaults (fsync, synchronous_commit): each commit waits for its WAL
    flush, as in production. `durable=False` turns both off (test-suite settings).
    """

    def __init__(self, root: Path, *, durable: bool) -> None:
        self._root = root
        self._durable = durable
        self._process: subprocess.Popen[bytes] | None = None
        self.port = 0

    def _as_postgres(self) -> dict[str, Any]:
        return {"user": "postgres", "group": "postgres"} if os.geteuid() == 0 else {}

    def start(self) -> str:
        """Start the cluster; the SQLAlchemy URL of its `formicary_bench` database."""
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
        log = (self._root / "postgres.log").open("wb")
        # the postmaster itself (not `pg_ctl start`, which daemonises) so that its PID is known at once;
        # a session of its own so that a Ctrl-C in the terminal reaches only us, and we stop it
        self._process = subprocess.Popen(
            [str(bindir / "postgres"), "-D", str(data), "-p", str(self.port), "-k", str(self._root), *options],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self._root,
            start_new_session=True, **self._as_postgres(),
        )  # fmt: skip
        log.close()
        admin = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        deadline = time.monotonic() + POSTGRES_READY_TIMEOUT
        while True:
            try:
                with psycopg.connect(admin, autocommit=True, connect_timeout=2) as conn:
                    conn.execute("CREATE DATABASE formicary_bench")
                break
            except psycopg.OperationalError as exc:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    tail = (self._root / "postgres.log").read_text(errors="replace")[-2000:]
                    raise BenchError(f"PostgreSQL did not start: {exc}\n{tail}") from exc
                time.sleep(0.05)  # start-up probe of a child process, not a measurement
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/formicary_bench"

    def stop(self) -> None:
        """Fast shutdown (SIGINT), then SIGQUIT (immediate) if it is still there after 15 s."""
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
    """A fresh database `bench_<hex>` on the server of `server_url`, dropped afterwards; the given
    database itself when we may not create one."""
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
        """SIGTERM (leave after running tasks), SIGKILL after the grace; by PID."""
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
        previous = queen.supervisors.on_finished

        def finished() -> None:
            previous()
            self._finished.set()

        # told when a supervisor ends: its job finished (or paused, or waits at a gate)
        queen.supervisors.on_finished = finished

    async def start_ants(self, count: int, capacity: int) -> None:
        address = f"127.0.0.1:{self.queen.grpc_port}"
        for number in range(1, count + 1):
            ant_id = f"bench-ant-{number}"
            work_dir = self._work_dir / ant_id
            work_dir.mkdir(parents=True, exist_ok=True)
            log_path = self._work_dir / f"{ant_id}.log"
            with log_path.open("wb") as log:
                process = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "sdk", "ant", "--queen", address, "--ant-id", ant_id,
                    "--methods", "SHELL", "--capacity", str(capacity), "--work-dir", str(work_dir),
                    "--log-level", "warning",
                    stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=asyncio.subprocess.STDOUT,
                    start_new_session=True,  # a terminal Ctrl-C reaches us only; we stop them by PID
                )  # fmt: skip
            self.ants.append(AntChild(ant_id, process, log_path))
        await self._wait_for_ants({ant.ant_id for ant in self.ants})

    async def _wait_for_ants(self, ant_ids: set[str]) -> None:
        """Until every Ant is registered with free slots (a start-up probe, not part of any figure)."""
        deadline = time.monotonic() + ANT_READY_TIMEOUT
        while True:
            ready = {
                ant.ant_id for ant in self.queen.registry.snapshot() if ant.connected and ant.free_slots > 0
            }
            if ant_ids <= ready:
                return
            for ant in self.ants:
                if ant.process.returncode is not None:
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
        """The request once terminal (COMPLETED required)."""
        async with asyncio.timeout(JOB_TIMEOUT):
            if self._observer == "notifier":
                details = await self._wait_notified(request_id)
            else:
                details = await self._wait_hooked(request_id)
        if details.request.job_state is not JobState.COMPLETED:
            raise BenchError(f"request {request_id} ended {details.request.job_state}: {details.request}")
        return details

    async def _wait_hooked(self, request_id: int) -> RequestDetails:
        while True:
            self._finished.clear()
            details = await self.details(request_id)
            if details.request.job_state in TERMINAL:
                return details
            await self._finished.wait()

    async def _wait_notified(self, request_id: int) -> RequestDetails:
        while True:
            change = self.queen.notifier.next_change(request_id)
            details = await self.details(request_id)
            if details.request.job_state in TERMINAL:
                return details
            await change.wait()

    async def wait_all_done(self, job_type: str, count: int) -> None:
        """Until `count` requests of `job_type` are terminal (one count query per wake-up)."""
        requests = self.queen.services.requests
        async with asyncio.timeout(JOB_TIMEOUT):
            while True:
                if self._observer == "notifier":
                    wake: asyncio.Event = self.queen.notifier.next_change_of_any()
                else:
                    self._finished.clear()
                    wake = self._finished
                _, done = await requests.list_requests(
                    self.identity, job_type=job_type, states=TERMINAL, limit=1, offset=0
                )
                if done >= count:
                    return
                await wake.wait()


@contextlib.asynccontextmanager
async def running_system(
    database_url: str, data_dir: Path, *, ants: int, capacity: int, observer: str
) -> AsyncIterator[System]:
    queen = Queen(QueenSettings(grpc_port=0, data_dir=data_dir, database_url=database_url))
    await queen.start()
    system = System(queen, data_dir / "ants", observer=observer)
    try:
        await system.start_ants(ants, capacity)
        yield system
    finally:
        try:
            await system.stop_ants()
        finally:
            await queen.stop()


# ------------------------------------------------------------------------------------------ baselines


async def spawn_once(argv: Sequence[str]) -> float:
    start = time.perf_counter()
    process = await asyncio.create_subprocess_exec(*argv)
    await process.wait()
    return time.perf_counter() - start


async def measure_spawns(argv: Sequence[str], count: int) -> Summary:
    """`asyncio.create_subprocess_exec(*argv)` + wait, one after the other, seconds each."""
    await spawn_once(argv)  # warm-up
    return Summary.of([await spawn_once(argv) for _ in range(count)])


@dataclass(frozen=True, slots=True)
class Echo:
    round_trip: Summary  # seconds per message, send one / await one
    pipelined_per_s: float  # messages/s, a writer and a reader on one stream


async def measure_echo(round_trips: int, pipelined: int) -> Echo:
    """A raw `grpc.aio` bidi echo of bytes (no protobuf), server and client in this process, loopback."""

    async def echo(request_iterator: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        async for message in request_iterator:
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
            connect = channel.stream_stream("/bench.Echo/Echo")
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
            writer = asyncio.create_task(write_all())
            for _ in range(pipelined):
                await call.read()
            elapsed = time.perf_counter() - start
            await writer
            await call.code()
    finally:
        await server.stop(None)
    return Echo(Summary.of(samples), pipelined / elapsed)


# ------------------------------------------------------------------------------------------ the stream alone


class _Timing:
    """A DispatchProgress that only notes when the attempt was accepted."""

    def __init__(self) -> None:
        self.accepted_at: float | None = None

    async def waiting(self, reason: str) -> None:
        return None

    async def dispatched(self, ant_id: str, ant_host: str) -> None:
        return None

    async def accepted(self, ant_id: str) -> None:
        self.accepted_at = time.perf_counter()


@dataclass(frozen=True, slots=True)
class StreamFigures:
    accept_round_trip: Summary  # dispatch -> TaskAccepted back on the Queen, one at a time (seconds)
    result_round_trip: Summary  # dispatch -> TaskResult back (the Ant ran `true`), one at a time
    pipelined_per_s: float  # attempts/s with STREAM_PIPELINED in flight (the Ants' windows bound it)


async def measure_stream(queen: Queen, round_trips: int, pipelined: int) -> StreamFigures:
    """SHELL `true` attempts straight through `AntRegistry.run()`: the real stream and Ants, no database,
    no supervisor (what the stream and the Ant cost by themselves)."""
    task = shell_true_task()

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
        start = time.perf_counter()
        outcome = await queen.registry.run(work(), progress)
        end = time.perf_counter()
        await outcome.ack()
        if outcome.report.state is not TaskState.COMPLETED:
            raise BenchError(f"stream attempt ended {outcome.report}")
        assert progress.accepted_at is not None
        return progress.accepted_at - start, end - start

    for _ in range(20):  # warm-up
        await one()
    accepts, results = [], []
    for _ in range(round_trips):
        accept, result = await one()
        accepts.append(accept)
        results.append(result)
    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(pipelined)))
    rate = pipelined / (time.perf_counter() - start)
    return StreamFigures(Summary.of(accepts), Summary.of(results), rate)


# ------------------------------------------------------------------------------------------ W1, W2, latency


@dataclass(frozen=True, slots=True)
class W1Figures:
    totals: tuple[float, ...]  # seconds, submit -> COMPLETED seen, measured runs (warm-up excluded)
    db_totals: tuple[float, ...]  # seconds, request created_at -> ended_at
    cycles: Summary  # seconds between consecutive tasks' started_at (steady-state cycle per task)

    @property
    def median_total(self) -> float:
        return statistics.median(self.totals)

    @property
    def per_task(self) -> float:
        return self.median_total / CHAIN_LENGTH


async def run_w1(system: System, runs: int, profile: cProfile.Profile | None) -> W1Figures:
    await system.upload(chain_definition(CHAIN_LENGTH))
    totals, db_totals, cycles = [], [], []
    for run in range(runs):
        if profile is not None and run == 1:
            profile.enable()
        start = time.perf_counter()
        request_id = await system.submit(W1_JOB)
        details = await system.wait_done(request_id)
        elapsed = time.perf_counter() - start
        if run == 0:
            continue  # warm-up
        totals.append(elapsed)
        request = details.request
        assert request.ended_at is not None
        db_totals.append(seconds_between(request.created_at, request.ended_at))
        starts = sorted(t.started_at for t in details.tasks if t.started_at is not None)
        if len(starts) != CHAIN_LENGTH:
            raise BenchError(f"W1 request {request_id} ran {len(starts)} tasks, not {CHAIN_LENGTH}")
        cycles += [seconds_between(a, b) for a, b in zip(starts, starts[1:], strict=False)]
    if profile is not None:
        profile.disable()
    return W1Figures(tuple(totals), tuple(db_totals), Summary.of(cycles))


@dataclass(frozen=True, slots=True)
class W2Figures:
    submit_seconds: float  # the gather of 200 submits
    wall_seconds: float  # first submit -> last request ended_at
    dispatch_per_s: float  # tasks' started_at: count / (last - first)

    @property
    def tasks_per_s(self) -> float:
        return W2_REQUESTS / self.wall_seconds


async def run_w2(system: System) -> W2Figures:
    await system.upload(one_task_definition(W2_JOB))
    # warm-up: one request, so that the definition and the first-use paths are cached
    await system.wait_done(await system.submit(W2_JOB))
    start = utc_now()
    submit_start = time.perf_counter()
    ids = await asyncio.gather(*(system.submit(W2_JOB) for _ in range(W2_REQUESTS)))
    submit_seconds = time.perf_counter() - submit_start
    await system.wait_all_done(W2_JOB, W2_REQUESTS + 1)
    details = [await system.details(request_id) for request_id in ids]
    ended = []
    started = []
    for item in details:
        if item.request.job_state is not JobState.COMPLETED or item.request.ended_at is None:
            raise BenchError(f"W2 request {item.request.id} ended {item.request.job_state}")
        ended.append(item.request.ended_at)
        started += [t.started_at for t in item.tasks if t.started_at is not None]
    wall = seconds_between(start, max(ended))
    span = seconds_between(min(started), max(started))
    return W2Figures(submit_seconds, wall, (len(started) - 1) / span if span > 0 else float("nan"))


@dataclass(frozen=True, slots=True)
class LatencyFigures:
    to_first_task: Summary  # request created_at -> first task EXECUTING (seconds)
    stages: dict[str, Summary] = field(default_factory=dict)


async def run_latency(system: System, samples: int) -> LatencyFigures:
    await system.upload(one_task_definition(LATENCY_JOB))
    await system.wait_done(await system.submit(LATENCY_JOB))  # warm-up
    totals: list[float] = []
    stages: dict[str, list[float]] = {
        "submitted -> READY (scheduler)": [],
        "READY -> job EXECUTING (supervisor)": [],
        "job EXECUTING -> task EXECUTING": [],
        "task EXECUTING -> task ended": [],
        "task ended -> job COMPLETED": [],
    }
    for _ in range(samples):
        request_id = await system.submit(LATENCY_JOB)
        await system.wait_done(request_id)  # one at a time: spaced out, never concurrent
        async with system.queen.db.transaction() as session:
            log = await events.events_since(session, request_id, 0, 500)
        moments = _moments(log)
        totals.append(seconds_between(moments["submitted"], moments["task_executing"]))
        pairs = [
            ("submitted", "ready"),
            ("ready", "job_executing"),
            ("job_executing", "task_executing"),
            ("task_executing", "task_ended"),
            ("task_ended", "job_ended"),
        ]
        for name, (a, b) in zip(stages, pairs, strict=True):
            stages[name].append(seconds_between(moments[a], moments[b]))
    return LatencyFigures(Summary.of(totals), {name: Summary.of(v) for name, v in stages.items()})


def _moments(log: Sequence[Any]) -> dict[str, datetime]:
    """When each stage of a one-task request happened, from its event log."""
    found: dict[str, datetime] = {}
    for event in log:
        key = None
        if event.kind == events.EventKind.REQUEST_SUBMITTED:
            key = "submitted"
        elif event.kind == events.EventKind.JOB_STATE_CHANGED:
            key = {"READY": "ready", "EXECUTING": "job_executing", "COMPLETED": "job_ended"}.get(
                str(event.to_state)
            )
        elif event.kind == events.EventKind.TASK_STATE_CHANGED:
            key = {"EXECUTING": "task_executing", "COMPLETED": "task_ended"}.get(str(event.to_state))
        if key is not None:
            found.setdefault(key, event.created_at)
    missing = {"submitted", "ready", "job_executing", "task_executing", "task_ended", "job_ended"} - set(found)
    if missing:
        raise BenchError(f"events missing from the log: {sorted(missing)}: {[e.kind for e in log]}")
    return found


# ------------------------------------------------------------------------------------------ one pass


@dataclass
class PassFigures:
    database: str
    spawn_true: Summary | None = None
    spawn_bash: Summary | None = None
    echo: Echo | None = None
    stream: StreamFigures | None = None
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
    keep: bool


async def run_pass(database: str, options: Options, root: Path) -> PassFigures:
    figures = PassFigures(database)
    data_dir = root / database
    data_dir.mkdir(parents=True)
    async with contextlib.AsyncExitStack() as stack:
        if database == "sqlite":
            url = f"sqlite+aiosqlite:///{data_dir / 'formicary.db'}"
        elif options.postgres_url:
            url = stack.enter_context(scratch_database(options.postgres_url))
        else:
            cluster = PrivateCluster(root / "postgres", durable=options.postgres_durable)
            stack.callback(cluster.stop)
            url = await asyncio.to_thread(cluster.start)
            print(
                f"  private PostgreSQL cluster on 127.0.0.1:{cluster.port} "
                f"({'durable: fsync, synchronous_commit on' if options.postgres_durable else 'fsync off'})"
            )
        system = await stack.enter_async_context(
            running_system(url, data_dir, ants=W2_ANTS, capacity=options.capacity, observer=options.observer)
        )
        print(f"  Queen on 127.0.0.1:{system.queen.grpc_port}, {W2_ANTS} Ants (capacity {options.capacity})")
        if "w1" in options.workloads:
            true = shutil.which("true") or "/bin/true"
            bash = shutil.which("bash") or "/bin/sh"
            figures.spawn_true = await measure_spawns([true], SPAWNS)
            figures.spawn_bash = await measure_spawns([bash, "-c", "true"], SPAWNS)
        if "echo" in options.workloads:
            figures.echo = await measure_echo(ECHO_ROUND_TRIPS, ECHO_PIPELINED)
            figures.stream = await measure_stream(system.queen, STREAM_ROUND_TRIPS, STREAM_PIPELINED)
        if "w1" in options.workloads:
            profile = cProfile.Profile() if options.profile_w1 else None
            figures.w1 = await run_w1(system, options.runs, profile)
            if profile is not None and options.profile_w1 is not None:
                target = options.profile_w1.with_name(f"{options.profile_w1.stem}-{database}.pstats")
                profile.dump_stats(target)
                print(f"  W1 profile (runs 2..{options.runs}, profiler on) written to {target}")
        if "w2" in options.workloads:
            figures.w2 = await run_w2(system)
        if "latency" in options.workloads:
            figures.latency = await run_latency(system, LATENCY_SAMPLES)
    return figures


# ------------------------------------------------------------------------------------------ report


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms"


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:.0f} µs"


def _verdict(ok: bool) -> str:
    return "target met" if ok else "target MISSED"


def report(figures: PassFigures, options: Options) -> None:
    ref = REFERENCE
    rows: list[tuple[str, str, str]] = []  # figure, value, same-pass ratio / comparison

    spawn = figures.spawn_true.p50 if figures.spawn_true else None
    if figures.spawn_true and figures.spawn_bash:
        rows.append(("bare spawn of `true` (p50)", _ms(figures.spawn_true.p50),
                     f"reference {ref.spawn_true_ms:.2f} ms"))  # fmt: skip
        rows.append(("spawn of `bash -c true` (p50)", _ms(figures.spawn_bash.p50),
                     f"{figures.spawn_bash.p50 / figures.spawn_true.p50:.1f}x bare spawn"))  # fmt: skip
    if figures.w1 is not None:
        w1 = figures.w1
        target = ref.target_chain_sqlite_ms if figures.database == "sqlite" else ref.target_chain_postgresql_ms
        per_task_ms = w1.per_task * 1e3
        rows.append((f"W1 chain of {CHAIN_LENGTH}: median total ({len(w1.totals)} runs)",
                     _ms(w1.median_total),
                     f"runs {', '.join(f'{t * 1e3:.0f}' for t in w1.totals)} ms"))  # fmt: skip
        rows.append(("W1 per task (total / 20)", _ms(w1.per_task),
                     f"{_verdict(per_task_ms <= target)} (<= {target:g} ms)"))  # fmt: skip
        if spawn:
            rows.append(("W1 per task / bare spawn", f"{w1.per_task / spawn:.1f}x",
                         f"target {target / ref.spawn_true_ms:.1f}x, Celery {ref.celery_chain_ms / ref.spawn_true_ms:.1f}x, "
                         f"Prefect {ref.prefect_chain_ms / ref.spawn_true_ms:.0f}x"))  # fmt: skip
        rows.append(("W1 per task vs Celery / Prefect", f"{per_task_ms / ref.celery_chain_ms:.2f}x / "
                     f"{per_task_ms / ref.prefect_chain_ms:.3f}x", f"of {ref.celery_chain_ms} / {ref.prefect_chain_ms} ms"))  # fmt: skip
        rows.append(("W1 cycle between task starts (p50/p99)",
                     f"{_ms(w1.cycles.p50)} / {_ms(w1.cycles.p99)}", "steady state, no submit/finish"))  # fmt: skip
        rows.append(("W1 created_at -> ended_at (median)", _ms(statistics.median(w1.db_totals)),
                     "database timestamps"))  # fmt: skip
    if figures.w2 is not None:
        w2 = figures.w2
        rows.append((f"W2 {W2_REQUESTS} one-task requests, {W2_ANTS} Ants", f"{w2.tasks_per_s:.0f} tasks/s",
                     f"{_verdict(w2.tasks_per_s >= ref.target_w2_tasks_per_s)} (>= {ref.target_w2_tasks_per_s:g}); "
                     f"Celery {ref.celery_w2_tasks_per_s:g}: {w2.tasks_per_s / ref.celery_w2_tasks_per_s:.2f}x"))  # fmt: skip
        rows.append(("W2 wall / submit phase", f"{_ms(w2.wall_seconds)} / {_ms(w2.submit_seconds)}",
                     f"dispatch rate {w2.dispatch_per_s:.0f}/s (task starts)"))  # fmt: skip
        if spawn:
            rows.append(("W2 time per task / bare spawn", f"{1 / w2.tasks_per_s / spawn:.2f}x",
                         f"target {1 / ref.target_w2_tasks_per_s / (ref.spawn_true_ms / 1e3):.2f}x, "
                         f"Celery {1 / ref.celery_w2_tasks_per_s / (ref.spawn_true_ms / 1e3):.2f}x"))  # fmt: skip
    if figures.echo is not None and figures.stream is not None:
        echo, stream = figures.echo, figures.stream
        rows.append(("raw grpc.aio echo round trip (p50/p99)",
                     f"{_us(echo.round_trip.p50)} / {_us(echo.round_trip.p99)}",
                     f"reference {ref.grpc_round_trip_us:g} µs"))  # fmt: skip
        rows.append(("raw grpc.aio echo pipelined", f"{echo.pipelined_per_s:,.0f} msg/s", "one stream, in process"))
        rows.append(("Ant stream dispatch -> accepted (p50/p99)",
                     f"{_us(stream.accept_round_trip.p50)} / {_us(stream.accept_round_trip.p99)}",
                     f"{stream.accept_round_trip.p50 / echo.round_trip.p50:.1f}x echo round trip"))  # fmt: skip
        rows.append(("Ant stream dispatch -> result, `true` (p50)", _ms(stream.result_round_trip.p50),
                     f"{stream.result_round_trip.p50 / spawn:.1f}x bare spawn" if spawn else "no DB, no supervisor"))  # fmt: skip
        rows.append((f"Ant stream, {STREAM_PIPELINED} in flight, no DB", f"{stream.pipelined_per_s:.0f} tasks/s",
                     f"{stream.pipelined_per_s / echo.pipelined_per_s * 100:.2f}% of echo msg/s"
                     + (f"; W2 is {figures.w2.tasks_per_s / stream.pipelined_per_s:.2f}x of it" if figures.w2 else "")))  # fmt: skip
    if figures.latency is not None:
        lat = figures.latency
        rows.append((f"submit -> first task EXECUTING (p50/p99, n={lat.to_first_task.count})",
                     f"{_ms(lat.to_first_task.p50)} / {_ms(lat.to_first_task.p99)}",
                     f"{lat.to_first_task.p50 / spawn:.1f}x bare spawn" if spawn else ""))  # fmt: skip
        for name, summary in lat.stages.items():
            rows.append((f"  {name}", f"{_ms(summary.p50)} / {_ms(summary.p99)}", "p50 / p99"))
    width = max(len(r[0]) for r in rows) if rows else 0
    value_width = max(len(r[1]) for r in rows) if rows else 0
    print(f"\n== {figures.database} ==")
    for name, value, note in rows:
        print(f"  {name:<{width}}  {value:>{value_width}}  {note}")


# ------------------------------------------------------------------------------------------ main


def parse_args(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="bench/dispatch.py",
        description="Per-task cost, throughput and latency of the embedded system (SHELL `true` tasks).",
    )
    parser.add_argument("--database", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument(
        "--postgres-url",
        help="SQLAlchemy URL of a PostgreSQL server to use (a scratch database is created on it and dropped); "
        "without it, a private cluster is started in a temporary directory and stopped at the end.",
    )
    parser.add_argument(
        "--postgres-fsync",
        choices=("on", "off"),
        default="on",
        help="private cluster only: `on` keeps PostgreSQL's durable defaults (each commit waits for its WAL "
        "flush), `off` sets fsync=off, synchronous_commit=off (the test suite's settings).",
    )
    parser.add_argument("--runs", type=int, default=5, help="W1 runs, the first being a warm-up (>= 2).")
    parser.add_argument(
        "--workload", default="w1,w2,echo,latency", help="comma-separated subset of w1,w2,echo,latency."
    )
    parser.add_argument("--capacity", type=int, default=8, help="capacity of each of the 2 Ants.")
    parser.add_argument(
        "--observer",
        choices=("hook", "notifier"),
        default="hook",
        help="how the bench waits for jobs: the Supervisors' on_finished hook (no reads while a job runs) "
        "or ChangeNotifier wake-ups with a re-read each (what a WatchJobRequest client costs).",
    )
    parser.add_argument(
        "--profile-w1",
        type=Path,
        help="cProfile the whole process during the measured W1 runs; writes FILE-<database>.pstats "
        "(figures taken with the profiler on are inflated).",
    )
    parser.add_argument("--queen-log-level", default="warning", help="structlog level of the in-process Queen.")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (Ant logs, SQLite).")
    args = parser.parse_args(argv)
    workloads = frozenset(w.strip() for w in args.workload.split(",") if w.strip())
    unknown = workloads - {"w1", "w2", "echo", "latency"}
    if unknown or not workloads:
        parser.error(f"unknown workloads: {', '.join(sorted(unknown)) or '(none given)'}")
    if args.runs < 2:
        parser.error("--runs must be at least 2 (the first run is a warm-up)")
    configure_logging(args.queen_log_level)
    databases = ("sqlite", "postgresql") if args.database == "both" else (args.database,)
    return Options(
        databases=databases,
        postgres_url=args.postgres_url,
        postgres_durable=args.postgres_fsync == "on",
        runs=args.runs,
        workloads=workloads,
        capacity=args.capacity,
        observer=args.observer,
        profile_w1=args.profile_w1,
        keep=args.keep,
    )


async def amain(options: Options) -> None:
    print(
        f"bench/dispatch.py {utc_now():%Y-%m-%d %H:%M} UTC, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, grpcio {grpc.__version__}, observer {options.observer}"
    )
    root = Path(tempfile.mkdtemp(prefix="formicary-bench-"))
    os.chmod(root, 0o755)  # the private cluster's postgres user must reach its subdirectory
    try:
        for database in options.databases:
            print(f"\n{database}: running {', '.join(sorted(options.workloads))}")
            figures = await run_pass(database, options, root)
            report(figures, options)
    finally:
        if options.keep:
            print(f"\nkept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    try:
        asyncio.run(amain(options))
    except KeyboardInterrupt:
        # asyncio.run cancelled the benchmark: the Ants, the Queen and the private cluster were stopped
        print("\ninterrupted; everything started was stopped", file=sys.stderr)
        return 130
    except BenchError as exc:
        print(f"\nbench failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

