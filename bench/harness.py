"""What every benchmark needs: embedded services of its own, Celery workers started and stopped on demand,
agents layered over agents.yaml, and a Result to report.

The embedded Postgres and Redis live in ``.run/bench`` (``ORCH_RUN_DIR``), apart from the test suite's and
``make up``'s, and are stopped by :meth:`Harness.close`. Import this module before anything imports Django
settings: it sets the environment that settings read.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RUN_DIR = ROOT / ".run" / "bench"
WORK_DIR = ROOT / "bench" / ".work"  # generated agent files and worker logs (git-ignored)

os.environ["ORCH_RUN_DIR"] = str(RUN_DIR)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DJANGO_DEBUG", "0")  # as deployed: DEBUG would also record every SQL query
os.environ.setdefault("XDG_RUNTIME_DIR", f"/tmp/runtime-{os.getuid()}")
for _name in ("DATABASE_URL", "REDIS_URL", "ORCH_EMBEDDED"):  # never someone else's servers
    os.environ.pop(_name, None)


@dataclass(frozen=True)
class Result:
    """One figure. ``target`` is an upper bound (smaller is better); None for a figure shown for context."""

    name: str
    value: float
    unit: str
    target: float | None
    ok: bool | None
    note: str = ""
    higher_is_better: bool = False  # a target that is a floor (requests per second)

    @classmethod
    def at_most(cls, name: str, value: float, unit: str, target: float, note: str = "") -> Result:
        return cls(name, value, unit, target, value <= target, note)

    @classmethod
    def at_least(cls, name: str, value: float, unit: str, target: float, note: str = "") -> Result:
        return cls(name, value, unit, target, value >= target, note, higher_is_better=True)

    @classmethod
    def info(cls, name: str, value: float, unit: str, note: str = "") -> Result:
        return cls(name, value, unit, None, None, note)

    @property
    def ratio(self) -> float | None:
        """<= 1 passes, whichever way the target points."""
        if self.higher_is_better:
            return self.target / self.value if self.target and self.value else None
        return self.value / self.target if self.target else None


@dataclass
class Worker:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    profiler: subprocess.Popen[bytes] | None = None


class Harness:
    """Set up once per ``make bench``; benchmarks call its methods. Always :meth:`close` it."""

    def __init__(self) -> None:
        WORK_DIR.mkdir(parents=True, exist_ok=True)
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        Path(os.environ["XDG_RUNTIME_DIR"]).mkdir(parents=True, exist_ok=True)
        self.workers: list[Worker] = []
        self.user: Any = None

    # --- services, database, user -------------------------------------------------------------------

    def setup(self) -> None:
        """Start the embedded servers (settings do it on import), migrate, create the bench user."""
        import django
        from django.core.management import call_command

        django.setup()
        for name in ("orchestrator", "agents"):  # this process's own INFO lines; workers keep theirs
            logging.getLogger(name).setLevel(logging.WARNING)
        call_command("migrate", verbosity=0)
        from django.contrib.auth import get_user_model

        self.user, _ = get_user_model().objects.get_or_create(username="bench")

    def close(self) -> None:
        """Stop every worker this harness started, then the embedded servers."""
        for worker in list(self.workers):
            self.stop_worker(worker)
        if self.user is not None:  # Django was set up
            from django.db import connections

            connections.close_all()
        subprocess.run([sys.executable, "-m", "config.services", "stop"], cwd=ROOT, check=False,
                       env={**os.environ, "ORCH_RUN_DIR": str(RUN_DIR)},
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def server_info(self) -> dict[str, str]:
        """Versions and limits of the embedded servers, for the report."""
        import redis
        from django.conf import settings
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            pg = cursor.fetchone()[0]
            cursor.execute("SHOW max_connections")
            max_conn = cursor.fetchone()[0]
        redis_version = redis.Redis.from_url(settings.REDIS_URL).info("server")["redis_version"]
        return {"postgres": pg, "postgres max_connections": max_conn, "redis server": redis_version}

    # --- agents ---------------------------------------------------------------------------------------

    def use_agents(self, name: str, yaml_text: str) -> str:
        """Layer ``yaml_text`` (an ``agents:`` mapping) over agents.yaml, here and in workers started after.

        Returns the AGENTS_FILE value (also exported in os.environ, which workers inherit).
        """
        from django.conf import settings

        from agents import registry

        path = WORK_DIR / f"agents.{name}.yaml"
        path.write_text(yaml_text)
        files = os.pathsep.join([str(ROOT / "agents.yaml"), str(path)])
        os.environ["AGENTS_FILE"] = files
        settings.AGENTS_FILE = files
        registry.reload()
        return files

    # --- workers --------------------------------------------------------------------------------------

    def start_worker(self, label: str, *, concurrency: int, queues: str = "agents", pool: str = "threads",
                     env: dict[str, str] | None = None, extra_args: tuple[str, ...] = ()) -> Worker:
        """Start ``celery -A config worker`` (plus bench.tasks) and wait until it answers a ping."""
        from config.celery import app

        name = f"bench-{label}-{uuid.uuid4().hex[:6]}@localhost"
        log_path = WORK_DIR / f"worker-{label}.log"
        profile = bool(os.environ.get("BENCH_PROFILE"))
        env = {**os.environ, **(env or {}), "BENCH_TIMINGS": str(WORK_DIR / f"timings-{label}.txt")}
        command = [sys.executable, "-m", "celery", "-A", "config", "worker",
                   "-I", "bench.tasks,bench.instrument" if profile else "bench.tasks",
                   "-Q", queues, "-P", pool, "-c", str(concurrency), "-n", name, "--loglevel", "WARNING",
                   "--without-mingle", "--without-gossip", "--without-heartbeat", *extra_args]
        with open(log_path, "wb") as log:
            process = subprocess.Popen(command, cwd=ROOT, env=env,
                                       stdout=log, stderr=subprocess.STDOUT)
        worker = Worker(name, process, log_path)
        self.workers.append(worker)
        deadline = time.monotonic() + 60
        while not app.control.ping(destination=[name], timeout=0.5):
            if process.poll() is not None or time.monotonic() > deadline:
                self.stop_worker(worker)
                raise RuntimeError(f"worker {label} did not start; see {log_path}")
        spy = Path(sys.executable).parent / "py-spy"
        if profile and not spy.exists():
            print(f"bench: no {spy} (pip install py-spy): timers only, no sampling profile", flush=True)
        elif profile:  # py-spy samples the worker until it exits; see bench/instrument.py for the timers
            worker.profiler = subprocess.Popen(
                [str(spy), "record", "-p", str(process.pid), *os.environ.get("SPYARGS", "--gil").split(), "-f",
                 "raw", "-r", "200", "--nonblocking", "-o", str(WORK_DIR / f"profile-{label}.txt")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return worker

    def stop_worker(self, worker: Worker) -> None:
        """Warm shutdown (SIGTERM), then SIGKILL after 20 s. Only ever the process this harness started."""
        if worker.process.poll() is None:
            worker.process.send_signal(signal.SIGTERM)
            try:
                worker.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()
        if worker.profiler is not None:
            worker.profiler.wait(timeout=30)
        if worker in self.workers:
            self.workers.remove(worker)

    @contextmanager
    def worker(self, label: str, **kwargs: Any) -> Iterator[Worker]:
        """:meth:`start_worker` as a context manager that always stops it."""
        worker = self.start_worker(label, **kwargs)
        try:
            yield worker
        finally:
            self.stop_worker(worker)

    def cpu_seconds(self, worker: Worker | None = None) -> dict[str, float]:
        """CPU seconds used so far (user + system, all threads) by a worker, Postgres (all its processes)
        and Redis."""
        tick = os.sysconf("SC_CLK_TCK")

        def cpu(pid: int, children: bool = False) -> float:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                return 0.0
            return sum(int(f) for f in fields[11:15 if children else 13]) / tick

        postmaster = int((RUN_DIR / "pgdata" / "postmaster.pid").read_text().split()[0])
        postgres = [postmaster]
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == postmaster:
                    postgres.append(int(stat.parent.name))
            except (OSError, ValueError):
                continue
        found = {"postgres": cpu(postmaster, children=True) + sum(cpu(pid) for pid in postgres[1:]),
                 "redis": cpu(int((RUN_DIR / "redis" / "redis.pid").read_text()))}
        if worker is not None:
            found["worker"] = cpu(worker.process.pid)
        return found

    def context_switches(self, worker: Worker) -> int:
        """Context switches so far, voluntary and not, of a worker's live threads: each time a thread blocks
        (on I/O, on a lock, waiting for the GIL) or is preempted. A thread that has exited is not counted."""
        total = 0
        for status in Path(f"/proc/{worker.process.pid}/task").glob("*/status"):
            try:
                total += sum(int(line.split()[1]) for line in status.read_text().splitlines()
                             if "ctxt_switches:" in line)
            except (OSError, ValueError, IndexError):
                continue
        return total

    def settle(self, queue: str = "agents", *, timeout: float = 120) -> None:
        """Wait until the worker has taken and acknowledged every message of ``queue`` (the list is empty and
        kombu's unacked set too), then 0.2 s more. A plan can end before its worker is done with its
        messages: a step run by a thread that pulled it from the database still has a message on its way,
        which costs a no-op claim. Measuring CPU after this charges those messages to the plan that sent them,
        and the next run starts on an idle worker."""
        import redis
        from django.conf import settings

        client = redis.Redis.from_url(settings.REDIS_URL)
        deadline = time.monotonic() + timeout
        while (client.llen(queue) or client.hlen("unacked")) and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)

    # --- plans ----------------------------------------------------------------------------------------

    def wait_plan(self, plan_id: uuid.UUID, *, timeout: float = 60, poll: float = 0.02) -> Any:
        """Poll until the plan has ended; raise if it did not succeed or did not end within ``timeout``."""
        from orchestrator.models import Plan
        from orchestrator.states import PLAN_TERMINAL, PlanStatus

        deadline = time.monotonic() + timeout
        while True:
            plan = Plan.objects.get(id=plan_id)
            if plan.status in PLAN_TERMINAL:
                if plan.status != PlanStatus.SUCCEEDED:
                    raise RuntimeError(f"plan {plan_id} {plan.status}: {plan.error_code} {plan.error_message}")
                return plan
            if time.monotonic() > deadline:
                raise TimeoutError(f"plan {plan_id} still {plan.status} after {timeout} s")
            time.sleep(poll)
