"""A first sync over a real network: 1,000 new jobs with their events and checkpoints, every
request answered after 50 ms, against a floor that fetches the same URLs with the same
concurrency and writes nothing.

Over a network each request waits; what decides the time is how many are in flight. The floor
(``floor_fetch.py --details --concurrency 8``) pages the job list, then every job's events,
then every job's checkpoints, 8 jobs at a time, as ``ftlog snapshot --full`` does with its
default ``--concurrency 8``. Both run in child processes against ``ftlog simulate --latency``,
alternated, three times each.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from benchmarks.harness import Figure, Sample, Settings, alternate, log, run_child
from benchmarks.sync import FLOOR_SCRIPT, fresh_store, ftlog_snapshot, simulator, summary

LATENCY_S = 0.05
CONCURRENCY = 8
TARGET = 1.3


def run(settings: Settings) -> list[Figure]:
    jobs = settings.pick(20, 200, 1000)
    figures = []
    with simulator(jobs, LATENCY_S) as url, tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for database in settings.databases:

            def floor() -> Sample:
                args = [FLOOR_SCRIPT.as_posix(), url, "--details"]
                return run_child([sys.executable, *args, "--concurrency", str(CONCURRENCY)])

            def ftlog(database: str = database) -> Sample:
                with fresh_store(settings, database, workdir, "network") as db:
                    return ftlog_snapshot(url, db, "--full", "--concurrency", str(CONCURRENCY))

            series = alternate({"floor": floor, "ftlog": ftlog}, settings.runs, warmup=False)
            s, fl = series["ftlog"], series["floor"]
            done = summary(s.samples[-1])
            log(f"network: {database}: floor {fl.wall:.2f} s, ftlog {s.wall:.2f} s")
            figures.append(
                Figure(
                    "6 first sync over a network",
                    f"{jobs:,} jobs with events and checkpoints ({done['requests']:,} requests), "
                    f"{LATENCY_S * 1000:.0f} ms per request, {CONCURRENCY} in flight, {database}",
                    s.wall,
                    "s",
                    fl.wall,
                    "httpx fetch, same concurrency",
                    TARGET,
                    f"≤ {TARGET}x",
                    note=f"CPU {s.cpu:.2f} s vs {fl.cpu:.2f} s",
                )
            )
    return figures
