"""ftlog beside a general loader: a full sync of the job list into a new SQLite store, by
``ftlog snapshot --full --no-events --no-checkpoints`` and by dlt's ``rest_api`` source with
an scd2 merge (``dlt_peer.py``), against the same simulator, alternated, three times each.

dlt is the ``bench`` extra (``pip install -e '.[bench]'``); without it the figure is skipped
with a note. The target is ftlog at least twice as fast (a ratio of 0.5 or less).
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.harness import Figure, Sample, Settings, alternate, log, run_child
from benchmarks.sync import LIST_ONLY, ftlog_snapshot, simulator, summary

PEER_SCRIPT = Path(__file__).with_name("dlt_peer.py")
TARGET = 0.5


def run(settings: Settings) -> list[Figure]:
    if importlib.util.find_spec("dlt") is None:
        log("peer: dlt is not installed (pip install -e '.[bench]'): skipped")
        return [Figure("7 ftlog vs dlt", "dlt not installed: skipped", 0, "s", target_text="")]
    jobs = settings.pick(200, 1000, 10_000)
    with simulator(jobs) as url, tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)

        def fresh(name: str) -> Path:
            return workdir / f"{name}-{time.monotonic_ns()}.db"

        def dlt() -> Sample:
            sample = run_child([sys.executable, PEER_SCRIPT.as_posix(), url, str(fresh("dlt"))])
            if int(sample.stdout.split()[-1]) != jobs:
                raise RuntimeError(f"dlt loaded {sample.stdout.strip()} jobs, not {jobs}")
            return sample

        def ftlog() -> Sample:
            sample = ftlog_snapshot(url, f"sqlite:///{fresh('ftlog')}", "--full", *LIST_ONLY)
            if summary(sample)["jobs_seen"] != jobs:
                raise RuntimeError(f"ftlog saw {summary(sample)['jobs_seen']} jobs, not {jobs}")
            return sample

        series = alternate({"dlt": dlt, "ftlog": ftlog}, settings.runs)
    s, peer = series["ftlog"], series["dlt"]
    log(f"peer: dlt {peer.wall:.2f} s, ftlog {s.wall:.2f} s")
    return [
        Figure(
            "7 ftlog vs dlt",
            f"full sync, {jobs:,} jobs, 100 per page, new SQLite store",
            s.wall,
            "s",
            peer.wall,
            "dlt rest_api + scd2",
            TARGET,
            f"≤ {TARGET}x (2x faster)",
            note=f"CPU {s.cpu:.2f} s vs {peer.cpu:.2f} s",
        )
    ]
