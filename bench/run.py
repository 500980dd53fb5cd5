"""``make bench``: run every benchmark in MODULES in one go and write bench/RESULTS.md.

A benchmark is a module in this package with ``run(h: Harness) -> list[Result]`` and a docstring that says
what it measures (copied into the report). Add one by writing the module and naming it in MODULES.
``python -m bench.run NAME ...`` runs only those and writes bench/.work/RESULTS.md instead.
It reports, it does not judge: the exit status is 0 even when a target is missed.
"""

from __future__ import annotations

import importlib
import os
import platform
import signal
import subprocess
import sys
import time
import traceback
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from types import FrameType

from bench.harness import ROOT, WORK_DIR, Harness, Result

MODULES = ["overhead", "io_bound", "dag", "sse", "api", "agents_limits", "memory", "scaling", "experiments"]
RESULTS = ROOT / "bench" / "RESULTS.md"
PACKAGES = ["Django", "celery", "kombu", "redis", "psycopg", "httpx"]


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    return f"{value:.2f}{' ' + unit if unit and unit != 'x' else unit}"


def report(results: list[Result], docs: dict[str, str], machine: dict[str, str], seconds: float) -> str:
    lines = ["# Benchmark results", "",
             f"`make bench`, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {seconds:.0f} s in all.", "",
             "| benchmark | measured | target | ratio | |", "|---|---|---|---|---|"]
    for r in results:
        verdict = {True: "pass", False: "**miss**", None: "info"}[r.ok]
        ratio = f"{r.ratio:.2f}" if r.ratio is not None else "-"
        lines.append(f"| {r.name} | {_fmt(r.value, r.unit)} | {_fmt(r.target, r.unit)} | {ratio} | {verdict} |")
    notes = [f"* {r.name}: {r.note}" for r in results if r.note]
    lines += ["", "Ratio = measured / target (<= 1 passes).", "", *notes, "", "## How measured", ""]
    for name, doc in docs.items():
        lines += [f"**{name}**: {' '.join(doc.split())}", ""]
    lines += ["The machine is shared (other engineers run tests on it), so figures are noisy: runs are",
              "repeated and medians reported where the benchmark says so.", "", "## Machine", ""]
    lines += [f"* {key}: {value}" for key, value in machine.items()]
    return "\n".join(lines) + "\n"


def code_version() -> str:
    """The commit measured (BENCH_COMMIT when run from an export), and whether code outside bench/ differs."""
    if os.environ.get("BENCH_COMMIT"):
        return os.environ["BENCH_COMMIT"]
    git = ["git", "-C", str(ROOT)]
    try:
        head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no", "--", ".", ":!bench"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head}{' + uncommitted changes' if dirty else ''}"


def python_speed() -> str:
    """How fast this machine runs plain Python: the figures that are times rather than ratios (the I/O-bound
    makespan, the DAGs' overhead over their sleeps, the API's requests per second) scale with it. The slowest
    machine these benchmarks ran on took 1.0-1.4 s (2026-12-05, bench/RESULTS.md)."""
    started, total = time.process_time(), 0
    for i in range(10_000_000):
        total += i
    return f"{time.process_time() - started:.2f} s"


def machine_info(h: Harness) -> dict[str, str]:
    info = {"code": code_version(), "nproc": str(os.cpu_count()), "load average (1/5/15 min) at start": " ".join(
        f"{x:.2f}" for x in os.getloadavg()), "platform": platform.platform(),
        "python": platform.python_version(), "pure-Python speed (10 M additions, one thread)": python_speed()}
    info.update({name: version(name) for name in PACKAGES})
    try:
        info.update(h.server_info())
    except Exception as exc:  # noqa: BLE001 - the report still goes out
        info["servers"] = f"unknown ({exc})"
    return info


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # so that the finally below stops workers and servers


def main(argv: list[str]) -> int:
    names = argv or MODULES
    out = RESULTS if not argv else WORK_DIR / "RESULTS.md"
    signal.signal(signal.SIGTERM, _terminate)
    started = time.monotonic()
    h = Harness()
    results: list[Result] = []
    docs: dict[str, str] = {}
    try:
        h.setup()
        machine = machine_info(h)
        for name in names:
            module = importlib.import_module(f"bench.{name}")
            docs[name] = module.__doc__ or ""
            print(f"bench: {name} ...", flush=True)
            t0 = time.monotonic()
            try:
                found = module.run(h)
            except Exception as exc:  # noqa: BLE001 - one broken benchmark must not hide the others
                traceback.print_exc()
                found = [Result(name, float("nan"), "", None, False, f"error: {type(exc).__name__}: {exc}")]
            for r in found:
                print(f"  {r.name}: {_fmt(r.value, r.unit)} (target {_fmt(r.target, r.unit)}) {r.note}", flush=True)
            print(f"  ({time.monotonic() - t0:.0f} s)", flush=True)
            results += found
    finally:
        h.close()
    Path(out).write_text(report(results, docs, machine, time.monotonic() - started))
    print(f"bench: wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
