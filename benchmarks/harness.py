"""What every benchmark shares: timing child processes, medians, Postgres schemas, the table.

Figures are *ratios to a floor* taken side by side in the same run: the measured side and its
floor are run alternately, a few times each, and the medians compared. Wall time is what the
targets are about; CPU time (user + system of the child) is kept beside it because it is less
disturbed by other work on the machine.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from benchmarks.peak import MARKER

ROOT = Path(__file__).resolve().parent.parent
"""The checkout: children that import ``benchmarks`` get it on PYTHONPATH."""
RESULTS_DIR = ROOT / "benchmarks" / "results"
"""Generated stores and the latest figures (git-ignored)."""
T = TypeVar("T")


Size = Literal["tiny", "quick", "full"]


@dataclass(frozen=True)
class Settings:
    size: Size = "full"
    """``full`` (``make bench``), ``quick`` (``make bench-quick``), ``tiny`` (the smoke test)."""
    postgres_url: str | None = None
    repeats: int = 3
    results_dir: Path = RESULTS_DIR
    """Where generated stores are cached and the latest figures written."""

    def pick(self, tiny: T, quick: T, full: T) -> T:
        """The value for this size."""
        return {"tiny": tiny, "quick": quick, "full": full}[self.size]

    @property
    def runs(self) -> int:
        """Repeats per figure: one at the small sizes."""
        return self.repeats if self.size == "full" else 1

    @property
    def databases(self) -> list[str]:
        """``sqlite`` and, when a Postgres URL is known, ``postgres``."""
        return ["sqlite", "postgres"] if self.postgres_url else ["sqlite"]


@dataclass
class Figure:
    """One line of the table: a measured value against its floor (or a plain count)."""

    benchmark: str
    case: str
    value: float
    unit: str
    floor: float | None = None
    floor_name: str = ""
    target: float | None = None
    """The largest acceptable ratio ``value / floor``; None when there is no target."""
    target_text: str = ""
    note: str = ""
    met_override: bool | None = None
    """For pass/fail figures that are not ratios (rows added, modules imported)."""

    @property
    def ratio(self) -> float | None:
        if self.floor is None or self.floor == 0:
            return None
        return self.value / self.floor

    @property
    def met(self) -> bool | None:
        if self.met_override is not None:
            return self.met_override
        if self.target is None or self.ratio is None:
            return None
        return self.ratio <= self.target

    def as_dict(self) -> dict[str, Any]:
        return {
            "benchmark": self.benchmark,
            "case": self.case,
            "value": self.value,
            "unit": self.unit,
            "floor": self.floor,
            "floor_name": self.floor_name,
            "ratio": self.ratio,
            "target": self.target_text,
            "met": self.met,
            "note": self.note,
        }


@dataclass
class Sample:
    """One run of a child process."""

    wall: float
    cpu: float
    max_rss_mb: float
    stdout: str
    stderr: str


@dataclass
class Series:
    """Repeated samples of one command."""

    samples: list[Sample] = field(default_factory=list)

    @property
    def wall(self) -> float:
        return statistics.median(s.wall for s in self.samples)

    @property
    def cpu(self) -> float:
        return statistics.median(s.cpu for s in self.samples)

    @property
    def max_rss_mb(self) -> float:
        return max(s.max_rss_mb for s in self.samples)


PEAK_SCRIPT = Path(__file__).with_name("peak.py")


def run_child(
    args: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    check: bool = True,
    peak: bool = False,
    cwd: Path | None = None,
) -> Sample:
    """Run a command to its end: its wall time, CPU time (``wait4``) and, with ``peak`` (for
    ``python -m MODULE ...`` or ``python FILE ...``), its own peak RSS; else NaN."""
    if peak:
        args = [args[0], str(PEAK_SCRIPT), *args[1:]]
    started = time.perf_counter()
    process = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**caching_environment(), **(env or {})},
        text=True,
        cwd=cwd,
    )
    stdout, stderr = _communicate(process)
    wall = time.perf_counter() - started
    assert process.returncode is not None
    if check and process.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {process.returncode}:\n{stderr[-2000:]}")
    usage = process.rusage  # type: ignore[attr-defined]
    peak_mb = math.nan
    if peak and MARKER in stderr:
        stderr, _, reported = stderr.rpartition(MARKER)
        peak_mb = int(reported.split()[0]) / 1024
    return Sample(
        wall=wall,
        cpu=usage.ru_utime + usage.ru_stime,
        max_rss_mb=peak_mb,
        stdout=stdout,
        stderr=stderr,
    )


def caching_environment() -> dict[str, str]:
    """This environment, but letting Python write its bytecode caches: with
    PYTHONDONTWRITEBYTECODE set, every child would compile each module it imports (about
    0.7 s for ftlog's, more for dlt's), a cost no installed tool pays after its first run.
    The warm-up run of each command writes the caches."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _communicate(process: subprocess.Popen[str]) -> tuple[str, str]:
    """Read both pipes to the end, then reap the child with ``wait4`` for its resource use."""
    import threading

    err_chunks: list[str] = []
    assert process.stdout is not None and process.stderr is not None
    stderr = process.stderr
    reader = threading.Thread(target=lambda: err_chunks.append(stderr.read()), daemon=True)
    reader.start()
    stdout = process.stdout.read()
    reader.join()
    _pid, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    process.rusage = usage  # type: ignore[attr-defined]
    process.stdout.close()
    stderr.close()
    return stdout, "".join(err_chunks)


def alternate(
    commands: dict[str, Callable[[], Sample]], repeats: int, warmup: bool = True
) -> dict[str, Series]:
    """Run each command ``repeats`` times, interleaved (A B A B ...), after one warm-up each."""
    if warmup:
        for command in commands.values():
            command()
    series = {name: Series() for name in commands}
    for _ in range(repeats):
        for name, command in commands.items():
            series[name].samples.append(command())
    return series


def timed(function: Callable[[], Any], repeats: int) -> tuple[float, list[float]]:
    """Median wall seconds of ``function`` over ``repeats`` calls, and every time."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times), times


# --- Postgres ---------------------------------------------------------------------------------


@contextmanager
def postgres_schema(base_url: str, label: str) -> Iterator[str]:
    """A URL whose ``search_path`` is a fresh, empty schema; the schema is dropped after."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    base = make_url(base_url)
    schema = f"ftlog_bench_{label}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = base.update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


# --- The machine ------------------------------------------------------------------------------


def machine_description(postgres_url: str | None) -> dict[str, str]:
    """Cores, memory, OS, Python, SQLite and Postgres versions, and the load when measured."""
    import sqlite3

    info = {
        "cpu": _cpu_model(),
        "cores": str(os.cpu_count()),
        "memory": _memory(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "postgres": _postgres_version(postgres_url) if postgres_url else "not measured",
        "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024**2:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _postgres_version(url: str) -> str:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return str(conn.execute(text("SHOW server_version")).scalar_one()).split()[0]
    except Exception as err:  # the table still prints; the figure just says why
        return f"unreachable ({type(err).__name__})"
    finally:
        engine.dispose()


# --- Output -----------------------------------------------------------------------------------


def format_table(figures: Sequence[Figure]) -> str:
    """The figures as a Markdown table."""
    header = "| benchmark | case | ftlog | floor | ratio | target | met |"
    lines = [header, "|---|---|---:|---:|---:|---|---|"]
    for f in figures:
        value = _number(f.value, f.unit)
        floor = f"{_number(f.floor, f.unit)} ({f.floor_name})" if f.floor is not None else ""
        ratio = f"{f.ratio:.2f}x" if f.ratio is not None else ""
        met = {True: "yes", False: "**no**", None: ""}[f.met]
        case = f"{f.case}; {f.note}" if f.note else f.case
        lines.append(
            f"| {f.benchmark} | {case} | {value} | {floor} | {ratio} | {f.target_text} | {met} |"
        )
    return "\n".join(lines)


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return ""
    if unit == "s":
        return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"
    if unit in ("rows", "modules", "requests"):
        return f"{value:.0f} {unit}"
    if unit == "MB":
        return f"{value:.0f} MB"
    if unit == "bytes":
        return f"{value / 1024:.1f} KiB" if value >= 1024 else f"{value:.0f} B"
    return f"{value:g} {unit}"


def log(message: str) -> None:
    """Progress on stderr, so stdout holds just the table."""
    print(message, file=sys.stderr, flush=True)
