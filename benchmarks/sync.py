"""Full and incremental sync: ``ftlog snapshot`` against ``ftlog simulate``, each in its own
process, beside a plain httpx script that fetches the same pages and writes nothing.

The simulator serves ``jobs`` jobs with its clock stopped after every one has finished
(``--at-end``), so every full sync sees the same answers. Per repeat and database:

1. the floor script;
2. ``ftlog snapshot --full`` into an empty store (schema creation included);
3. ``POST /_sim/touch?n=1%`` changes the 1% newest jobs, then ``ftlog snapshot``: the
   incremental sync (new activity is at the head of the newest-first list; a finished job
   never changes, so the collector stops at the first page of finished, unchanged jobs);
4. ``ftlog snapshot`` again with nothing changed: the every-minute cron case.

The job-list figures run with ``--no-events --no-checkpoints`` (the issue's sync: job pages
only). A separate, smaller case runs the default ``ftlog snapshot --full``, which also pages
through every new job's events and checkpoints, against a floor that fetches those pages too.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from benchmarks.harness import (
    Figure,
    Sample,
    Series,
    Settings,
    alternate,
    log,
    postgres_schema,
    run_child,
)

FLOOR_SCRIPT = Path(__file__).with_name("floor_fetch.py")
API_KEY = "bench-token"
TARGET_FULL = 1.3
TARGET_INCREMENTAL = 0.10
LIST_ONLY = ("--no-events", "--no-checkpoints")


@contextmanager
def simulator(jobs: int, latency: float = 0.0) -> Iterator[str]:
    """``ftlog simulate`` in a child process, answering after ``latency`` seconds; yields its
    base URL."""
    with tempfile.TemporaryFile("w+") as banner:
        args = ["simulate", "--port", "0", "--jobs", str(jobs), "--at-end", "--seed", "0"]
        args += ["--latency", str(latency)]
        process = subprocess.Popen([sys.executable, "-m", "ftlog", *args], stderr=banner)
        try:
            url = _wait_for_url(banner, process)
            yield url
        finally:
            process.terminate()
            process.wait(10)


def _wait_for_url(banner: Any, process: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        banner.seek(0)
        text = banner.read()
        if " at http" in text:
            return str(text.split(" at ", 1)[1].split()[0])
        if process.poll() is not None:
            raise RuntimeError(f"ftlog simulate exited {process.returncode}: {text}")
        time.sleep(0.05)
    raise RuntimeError("ftlog simulate did not print its URL within 60 s")


def touch(url: str, n: int) -> None:
    response = httpx.post(f"{url.removesuffix('/v1')}/_sim/touch", params={"n": n})
    response.raise_for_status()


def floor(url: str, *extra: str) -> Sample:
    return run_child([sys.executable, str(FLOOR_SCRIPT), url, *extra], peak=True)


def ftlog_snapshot(url: str, db: str, *extra: str) -> Sample:
    args = [sys.executable, "-m", "ftlog", "snapshot", "--json", "--db", db, "--base-url", url]
    return run_child([*args, *extra], env={"FTLOG_API_KEY": API_KEY}, peak=True)


def summary(sample: Sample) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(sample.stdout)
    return result


@contextmanager
def fresh_store(settings: Settings, database: str, workdir: Path, label: str) -> Iterator[str]:
    if database == "sqlite":
        path = workdir / f"{label}-{time.monotonic_ns()}.db"
        yield f"sqlite:///{path}"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    assert settings.postgres_url is not None
    with postgres_schema(settings.postgres_url, label) as db:
        yield db


def run(settings: Settings) -> list[Figure]:
    jobs = settings.pick(200, 500, 10_000)
    changed = max(1, jobs // 100)
    repeats = settings.runs
    figures: list[Figure] = []
    with simulator(jobs) as url, tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        log(f"sync: {jobs} jobs at {url}")
        floor(url)  # warm the simulator's caches
        floors = Series()
        full: dict[str, Series] = {db: Series() for db in settings.databases}
        incremental: dict[str, Series] = {db: Series() for db in settings.databases}
        unchanged: dict[str, Series] = {db: Series() for db in settings.databases}
        for repeat in range(repeats):
            for database in settings.databases:
                floors.samples.append(floor(url))
                _expect(int(floors.samples[-1].stdout), jobs, "floor jobs fetched")
                with fresh_store(settings, database, workdir, "sync") as db:
                    sample = ftlog_snapshot(url, db, "--full", *LIST_ONLY)
                    _expect(summary(sample)["jobs_seen"], jobs, "full sync jobs seen")
                    full[database].samples.append(sample)
                    touch(url, changed)
                    sample = ftlog_snapshot(url, db, *LIST_ONLY)
                    _expect(summary(sample)["jobs_changed"], changed, "incremental jobs changed")
                    incremental[database].samples.append(sample)
                    sample = ftlog_snapshot(url, db, *LIST_ONLY)
                    _expect(summary(sample)["jobs_changed"], 0, "unchanged run jobs changed")
                    unchanged[database].samples.append(sample)
                log(
                    f"sync: repeat {repeat + 1}/{repeats} {database}: floor "
                    f"{floors.samples[-1].wall:.2f} s, full {full[database].samples[-1].wall:.2f}"
                    f" s, incremental {incremental[database].samples[-1].wall:.2f} s"
                )
        for database in settings.databases:
            figures += _sync_figures(database, jobs, changed, floors, full, incremental, unchanged)
    figures += _details(settings)
    return figures


def _sync_figures(
    database: str,
    jobs: int,
    changed: int,
    floors: Series,
    full: dict[str, Series],
    incremental: dict[str, Series],
    unchanged: dict[str, Series],
) -> list[Figure]:
    f, i, u = full[database], incremental[database], unchanged[database]
    return [
        Figure(
            "1 full sync",
            f"{jobs:,} jobs, 100 per page, {database}",
            f.wall,
            "s",
            floors.wall,
            "httpx fetch",
            TARGET_FULL,
            f"≤ {TARGET_FULL}x",
            note=f"CPU {f.cpu:.2f} s vs {floors.cpu:.2f} s",
        ),
        Figure(
            "1 full sync",
            f"peak memory, {database}",
            f.max_rss_mb,
            "MB",
            floors.max_rss_mb,
            "httpx fetch",
            target_text="report",
        ),
        Figure(
            "2 incremental sync",
            f"{changed} of {jobs:,} jobs changed, {database}",
            i.wall,
            "s",
            f.wall,
            "full sync",
            TARGET_INCREMENTAL,
            f"< {TARGET_INCREMENTAL:.0%} of full",
        ),
        Figure(
            "2 incremental sync",
            f"nothing changed (cron every minute), {database}",
            u.wall,
            "s",
            f.wall,
            "full sync",
            target_text="report",
        ),
    ]


def _details(settings: Settings) -> list[Figure]:
    """The default full sync, events and checkpoints included, on a smaller list."""
    jobs = settings.pick(10, 50, 100)
    repeats = settings.runs
    figures = []
    with simulator(jobs) as url, tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for database in settings.databases:

            def full_sync(database: str = database) -> Sample:
                with fresh_store(settings, database, workdir, "details") as db:
                    return ftlog_snapshot(url, db, "--full")

            series = alternate(
                {"floor": lambda: floor(url, "--details"), "ftlog": full_sync},
                repeats,
                warmup=database == "sqlite",
            )
            s, fl = series["ftlog"], series["floor"]
            requests = summary(s.samples[-1])["requests"]
            log(f"sync: details {database}: floor {fl.wall:.2f} s, ftlog {s.wall:.2f} s")
            figures.append(
                Figure(
                    "1 full sync",
                    f"{jobs:,} jobs with events and checkpoints ({requests:,} requests), "
                    f"{database}",
                    s.wall,
                    "s",
                    fl.wall,
                    "httpx fetch",
                    TARGET_FULL,
                    f"≤ {TARGET_FULL}x",
                    note=f"peak {s.max_rss_mb:.0f} MB vs {fl.max_rss_mb:.0f} MB",
                )
            )
    return figures


def _expect(actual: object, expected: object, what: str) -> None:
    if actual != expected:
        raise RuntimeError(f"{what}: expected {expected}, got {actual}")
