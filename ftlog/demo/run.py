"""Running the demo: the simulated jobs, the collector loop, the files it writes."""

from __future__ import annotations

import importlib.util
import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import Engine

from ftlog import analysis, export, plots, store
from ftlog.client import FineTuningClient
from ftlog.collector import SnapshotPlan, snapshot
from ftlog.db import open_store
from ftlog.errors import UsageProblem
from ftlog.models import TERMINAL_STATUSES
from ftlog.plot_looks import short_model
from ftlog.simulator import (
    Hyperparameters,
    JobSpec,
    Outcome,
    SimulatedAPI,
    serve_in_thread,
)

DB_NAME = "ftlog-demo.db"
MARKER = ".ftlog-demo"
"""Written first into the output folder: a later demo may replace the files listed below."""
EXPORTS = (
    "jobs", "hyperparameters", "snapshots", "status-history", "throughput",
    "throughput-summary", "runs", "comparison", "trends", "events", "checkpoints", "loss-curves",
)  # fmt: skip
"""The CSV files written, ``NAME.csv``: the tables of ``ftlog export NAME`` (all but ``cost``:
the simulated models have no price)."""
PLOTS = ("throughput", "compare", "loss")
"""The plots written, ``NAME.png``: the charts of ``ftlog plot NAME``."""
DEMO_FILES = (
    MARKER,
    DB_NAME,
    f"{DB_NAME}-wal",
    f"{DB_NAME}-shm",
    *(f"{name}.csv" for name in EXPORTS),
    *(f"{name}.png" for name in PLOTS),
)
"""Every file a demo may write, and so every file a later demo deletes before it starts."""
DEFAULT_SPEED = 90.0
"""Simulated seconds per real second: the jobs' half hour takes about 20 s."""
QUICK_SPEED = 480.0
"""``quick``: about 4 s."""
SOURCE = "simulator"
"""The source name the jobs are recorded under."""
TOKEN = "sk-demo-not-a-secret"  # noqa: S105 - the simulator's made-up token, not a credential
POLL_SIMULATED_SECONDS = 30.0
"""A snapshot every 30 simulated seconds (a third of a second at the default speed)..."""
MIN_POLL_SECONDS = 0.08
"""...but not more often than this."""
LEAD_SIMULATED_SECONDS = 45.0
"""How far simulated time may run past the end of the last snapshot (see :class:`PacedClock`);
every job stays at least twice as long in each status."""
MARGIN_SECONDS = 15.0
"""How much longer than planned the demo waits for its jobs before it stops anyway."""
EPOCH_TOKENS = 6_000_000
"""Tokens of the training file per epoch (an 8B model takes about seven minutes for one)."""

_8B = "meta-llama/Llama-3.1-8B-Instruct"
_32B = "Qwen/Qwen2.5-32B-Instruct"
_TRAINING_FILE = "file-5e1d3c0a9b8f4e72"
_VALIDATION_FILE = "file-0c7b2e94d1a6f538"
_OOM = (
    "out_of_memory",
    "CUDA out of memory: tried to allocate 12.00 GiB; reduce batch_size or context_length",
)

Echo = Callable[[str], None]


def _ignore(_text: str) -> None:
    """The default echo: say nothing."""


@dataclass(frozen=True)
class DemoJob:
    """One job of the demo; times in simulated minutes after the demo starts."""

    id: str
    suffix: str
    model: str
    hyperparameters: Hyperparameters
    tokens_per_s: float
    """How fast it trains: tokens per (simulated) second."""
    created: float
    validating: float
    queued: float
    outcome: Outcome = "succeeded"
    stop_fraction: float = 1.0
    error: tuple[str, str] = ("internal_error", "Training worker exited unexpectedly")
    estimate_skew: float = 0.05

    @property
    def label(self) -> str:
        """``Llama-3.1-8B  LoRA r=16  lr=1e-4 bs=16 ep=2``: what the job tries."""
        hp = self.hyperparameters
        tuning = f"LoRA r={hp.lora_r}" if hp.lora else "full"
        lr = learning_rate_text(hp.learning_rate)
        context = f" ctx={hp.context_length}" if hp.context_length != 4096 else ""
        return (
            f"{short_model(self.model)}  {tuning}  lr={lr} bs={hp.batch_size} "
            f"ep={hp.n_epochs}{context}"
        )

    def spec(self, start: int) -> JobSpec:
        """The simulator's job, its minutes counted from ``start`` (simulated epoch seconds)."""
        hp = self.hyperparameters
        steps_per_epoch = max(5, round(800 * 4096 / (hp.batch_size * hp.context_length)))
        tokens_per_step = max(1, round(EPOCH_TOKENS / steps_per_epoch))
        minute = 60
        return JobSpec(
            id=self.id,
            created_at=start + round(self.created * minute),
            model=self.model,
            hyperparameters=hp,
            total_steps=hp.n_epochs * steps_per_epoch,
            tokens_per_step=tokens_per_step,
            tokens_per_second=self.tokens_per_s,
            validating_seconds=round(self.validating * minute),
            queued_seconds=round(self.queued * minute),
            outcome=self.outcome,
            stop_fraction=self.stop_fraction,
            error_code=self.error[0],
            error_message=self.error[1],
            training_file=_TRAINING_FILE,
            validation_file=_VALIDATION_FILE,
            suffix=self.suffix,
            seed=42,
            estimate_skew=self.estimate_skew,
        )


def _hp(**values: Any) -> Hyperparameters:
    defaults: dict[str, Any] = {
        "batch_size": 16,
        "n_epochs": 2,
        "warmup_ratio": 0.03,
        "context_length": 4096,
    }
    lora_r = values.get("lora_r")
    if lora_r is not None:
        defaults.update(lora=True, lora_alpha=2 * lora_r, lora_dropout=0.05)
    return Hyperparameters(**{**defaults, **values})


def demo_jobs() -> list[DemoJob]:
    """The seven jobs, oldest first."""
    return [
        DemoJob("ftjob-4f1a9c2e", "baseline", _8B, _hp(learning_rate=1e-5), 14_000,
                created=0, validating=1.5, queued=1.5),
        DemoJob("ftjob-7b3d05a8", "lr-3e-5", _8B, _hp(learning_rate=3e-5), 14_300,
                created=0.5, validating=1.5, queued=1.5, estimate_skew=-0.04),
        DemoJob("ftjob-a2c8e61f", "lora-r16", _8B, _hp(learning_rate=1e-4, lora_r=16), 18_900,
                created=1.5, validating=2, queued=2, estimate_skew=0.08),
        DemoJob("ftjob-e07a3b5c", "lora-bs32", _8B,
                _hp(learning_rate=1e-4, lora_r=16, batch_size=32), 21_500,
                created=3, validating=2, queued=9, estimate_skew=0.02),
        DemoJob("ftjob-c95e0b37", "lora-r8-bs8", _8B,
                _hp(learning_rate=1e-4, lora_r=8, batch_size=8, n_epochs=3), 15_200,
                created=4, validating=1.5, queued=3, outcome="cancelled", stop_fraction=0.45),
        DemoJob("ftjob-1e6f4d90", "long-context", _8B,
                _hp(learning_rate=3e-5, batch_size=32, context_length=16384), 12_000,
                created=5, validating=2, queued=4, outcome="failed", stop_fraction=0.12,
                error=_OOM),
        DemoJob("ftjob-58d2f7a1", "qwen32b-lora", _32B,
                _hp(learning_rate=1e-4, lora_r=32, n_epochs=1, context_length=8192), 6_000,
                created=5, validating=2.5, queued=4, estimate_skew=0.1),
    ]  # fmt: skip


def learning_rate_text(value: float) -> str:
    """``1e-4`` rather than ``0.0001``, ``3e-5`` rather than ``3e-05``."""
    mantissa, _, exponent = f"{value:.2g}".partition("e")
    if not exponent:
        mantissa, _, exponent = f"{value:.1e}".partition("e")
        mantissa = mantissa.removesuffix(".0")
    return f"{mantissa}e{int(exponent)}"


@dataclass
class DemoResult:
    """What :func:`run_demo` did and wrote."""

    output: Path
    db_path: Path
    jobs: list[DemoJob]
    speed: float
    seconds: float = 0.0
    """Wall time from the simulator's start to the last snapshot."""
    passes: int = 0
    """Snapshot runs."""
    transitions: int = 0
    snapshots: int = 0
    """Snapshot rows added (distinct observed states)."""
    details: dict[str, int] = field(default_factory=dict)
    """Events and checkpoints recorded."""
    unfinished: list[str] = field(default_factory=list)
    """Jobs still unfinished when the time limit stopped the demo (normally none)."""
    errors: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    plot_note: str | None = None
    """Why there are no plots (matplotlib missing), if there are none."""
    summary: pd.DataFrame | None = None
    comparison: pd.DataFrame | None = None
    job_table: pd.DataFrame | None = None


def run_demo(
    output: Path,
    *,
    quick: bool = False,
    speed: float | None = None,
    echo: Echo = _ignore,
    status: Echo | None = None,
) -> DemoResult:
    """Serve the demo jobs, record them until they finish, then write exports and plots.

    ``speed`` (simulated seconds per real second) defaults to 90, or 480 with ``quick``.
    ``echo`` gets the progress lines (a header, one line per status change, a closing line);
    ``status``, when given, a one-line state of all jobs after every snapshot (for a line
    redrawn in place). Stops after the planned time plus a margin even if jobs are left
    unfinished. Raises UsageProblem for an output folder it must not write into.
    """
    speed = speed or (QUICK_SPEED if quick else DEFAULT_SPEED)
    if not math.isfinite(speed) or speed <= 0:
        raise UsageProblem(f"speed must be a positive number, not {speed}")
    prepare_output(output)
    db_path = output / DB_NAME
    jobs = demo_jobs()
    result = DemoResult(output=output, db_path=db_path, jobs=jobs, speed=speed)
    span = _simulated_span(jobs)
    planned = span / speed
    interval = max(MIN_POLL_SECONDS, POLL_SIMULATED_SECONDS / speed)
    with open_store(f"sqlite:///{db_path.resolve()}", create=True) as engine:
        start = int(time.time() + planned - span)  # the last job ends about now + planned
        specs = [job.spec(start) for job in jobs]
        clock = PacedClock(start, speed, LEAD_SIMULATED_SECONDS)
        api = SimulatedAPI(specs, clock=clock, token=TOKEN)
        with serve_in_thread(api) as base_url, FineTuningClient(base_url, TOKEN) as client:
            echo(
                f"ftlog demo: {len(jobs)} fine-tuning jobs on a simulated API at {base_url}\n"
                f"  time runs {speed:g}x faster: {span / 60:.0f} simulated minutes in about "
                f"{planned:.0f} s\n"
                f"  a snapshot every {interval:.2g} s into {display_path(db_path)}; "
                "status changes as ftlog records them, in simulated time (UTC):\n"
            )
            _record(engine, client, clock, result, interval, planned + MARGIN_SECONDS, echo, status)
        _write_files(engine, result)
    return result


class PacedClock:
    """Simulated time that runs ``speed`` times faster than the wall clock, but waits for the
    recorder: it never gets more than ``lead`` seconds ahead of where it was when the last
    snapshot ended (:meth:`snapshot_done`). On a slow or busy machine the jobs then slow down
    instead of changing status unseen. A simulator :class:`~ftlog.simulator.Clock`."""

    def __init__(self, start: float, speed: float, lead: float) -> None:
        self.speed = speed
        self._lead = lead
        self._lock = threading.Lock()
        self._base, self._real = float(start), time.monotonic()
        self._limit = self._base + lead

    def now(self) -> float:
        with self._lock:
            return self._now()

    def snapshot_done(self) -> None:
        """Let time run on from here: up to ``lead`` seconds, and without catching up on
        any time it was held back."""
        with self._lock:
            self._base, self._real = self._now(), time.monotonic()
            self._limit = self._base + self._lead

    def utc(self) -> datetime:
        """:meth:`now` as an aware UTC datetime: the collector's clock, so that ftlog's
        observations and the API's timestamps are on one clock."""
        return datetime.fromtimestamp(self.now(), UTC)

    def _now(self) -> float:
        return min(self._base + (time.monotonic() - self._real) * self.speed, self._limit)


def _simulated_span(jobs: Iterable[DemoJob]) -> float:
    """Simulated seconds from the first job's creation to the last job's end."""
    specs = [job.spec(0) for job in jobs]
    return float(max(spec.finished_at for spec in specs))


def prepare_output(output: Path) -> None:
    """Create ``output``, or empty it of an earlier demo's files; refuse a foreign folder."""
    if output.exists() and not output.is_dir():
        raise UsageProblem(f"{output} is a file, not a folder; choose another --output")
    if output.is_dir():
        entries = {entry.name for entry in output.iterdir()}
        if entries and MARKER not in entries:
            raise UsageProblem(
                f"{output} is not empty and holds no earlier demo; choose another --output "
                "or empty it"
            )
        for name in DEMO_FILES:
            (output / name).unlink(missing_ok=True)
    try:
        output.mkdir(parents=True, exist_ok=True)
        (output / MARKER).write_text(
            "Written by `ftlog demo`; a later demo replaces its files in this folder.\n",
            encoding="utf-8",
        )
    except OSError as err:
        raise UsageProblem(f"cannot write into {output}: {err.strerror or err}") from None


def _record(
    engine: Engine,
    client: FineTuningClient,
    clock: PacedClock,
    result: DemoResult,
    interval: float,
    limit: float,
    echo: Echo,
    status: Echo | None,
) -> None:
    """Snapshot every ``interval`` seconds until every job has finished or ``limit`` passed."""
    source_id = store.ensure_source(engine, SOURCE, client.base_url)
    labels = {job.id: job.label for job in result.jobs}
    ids = list(labels)
    began = time.monotonic()
    details: dict[str, int] = {}
    while True:
        started = time.monotonic()
        run = snapshot(engine, client, source_id, SnapshotPlan(), command="demo", clock=clock.utc)
        clock.snapshot_done()
        result.passes += 1
        result.snapshots += run.result.snapshots_added
        result.errors.extend(run.errors)
        for kind, added in run.details_added.items():
            details[kind] = details.get(kind, 0) + added
        for change in sorted(run.result.status_changes, key=lambda t: t.observed_at):
            result.transitions += 1
            echo(_transition_line(change, labels.get(change.job_id, "")))
        for error in run.errors:
            echo(f"  error: {error}")
        stored = store.stored_jobs(engine, source_id, ids)
        statuses = {job_id: stored[job_id].status for job_id in ids if job_id in stored}
        elapsed = time.monotonic() - began
        if status is not None:
            status(_status_line(elapsed, statuses, len(ids), result.passes))
        unfinished = [i for i in ids if statuses.get(i) not in TERMINAL_STATUSES]
        if not unfinished or elapsed > limit:
            break
        time.sleep(max(0.0, interval - (time.monotonic() - started)))
    result.seconds = time.monotonic() - began
    result.details = details
    result.unfinished = unfinished
    echo("")
    echo(_closing_line(result, statuses))


def _transition_line(change: Any, label: str) -> str:
    stamp = change.observed_at.astimezone(UTC).strftime("%H:%M:%S")
    if change.from_status is None:
        return f"  {stamp}  {change.job_id}  new → {change.to_status:<16}  {label}"
    text = f"  {stamp}  {change.job_id}  {change.from_status} → {change.to_status}"
    if change.to_status == "failed" and change.error_message:
        message = change.error_message
        text += f"  ({message if len(message) <= 60 else message[:59] + '…'})"
    return text


def _status_line(elapsed: float, statuses: dict[str, str], total: int, passes: int) -> str:
    counts: dict[str, int] = {}
    for value in statuses.values():
        key = "finished" if value in TERMINAL_STATUSES else value.replace("_files", "")
        counts[key] = counts.get(key, 0) + 1
    parts = [f"{counts[k]} {k}" for k in ("validating", "queued", "running") if counts.get(k)]
    finished = f"{counts.get('finished', 0)}/{total} finished"
    return f"  {elapsed:5.1f} s   {' · '.join([*parts, finished])}   ({passes} snapshot runs)"


def _closing_line(result: DemoResult, statuses: dict[str, str]) -> str:
    outcomes: dict[str, int] = {}
    for value in statuses.values():
        if value in TERMINAL_STATUSES:
            outcomes[value] = outcomes.get(value, 0) + 1
    told = ", ".join(f"{n} {s}" for s, n in sorted(outcomes.items(), key=lambda kv: -kv[1]))
    recorded = (
        f"{result.passes} snapshot runs recorded {result.snapshots} snapshots, "
        f"{result.transitions} status changes, {result.details.get('events', 0)} events and "
        f"{result.details.get('checkpoints', 0)} checkpoints in {result.seconds:.0f} s"
    )
    if result.unfinished:
        return (
            f"  stopped after {result.seconds:.0f} s with {len(result.unfinished)} of "
            f"{len(result.jobs)} jobs unfinished ({told or 'none finished'}); {recorded}"
        )
    return f"  all {len(result.jobs)} jobs finished: {told}.\n  {recorded}."


def _write_files(engine: Engine, result: DemoResult) -> None:
    """The CSV exports and the plots; the frames the report shows."""
    ids = [job.id for job in result.jobs]
    frames: dict[str, pd.DataFrame] = {
        "jobs": analysis.load_jobs(engine),
        "hyperparameters": analysis.load_hyperparameters(engine),
        "snapshots": analysis.load_snapshots(engine),
        "status-history": analysis.load_status_history(engine),
        "throughput": analysis.throughput(engine),
        "throughput-summary": analysis.throughput_summary(engine),
        "runs": analysis.runs(engine),
        "comparison": analysis.compare_jobs(engine, only_different=False),
        "trends": analysis.trends(engine),
        "events": analysis.load_events(engine),
        "checkpoints": analysis.load_checkpoints(engine),
        "loss-curves": analysis.loss_curves(engine),
    }
    for name in EXPORTS:
        path = result.output / f"{name}.csv"
        export.write_frame(frames[name], path)
        result.files.append(path)
    result.job_table = frames["jobs"]
    result.summary = frames["throughput-summary"]
    result.comparison = analysis.compare_hyperparameters(ids, engine)
    if importlib.util.find_spec("matplotlib") is None:
        result.plot_note = "no plots: they need matplotlib (pip install 'ftlog[plot]')"
        return
    hyper = frames["hyperparameters"]
    out = result.output
    result.files += [
        plots.plot_throughput(
            frames["throughput"],
            frames["snapshots"],
            frames["jobs"],
            out / "throughput.png",
            hyperparameters=hyper,
        ),
        plots.plot_compare(
            frames["throughput-summary"], out / "compare.png", hyperparameters=hyper
        ),
        plots.plot_loss(
            frames["loss-curves"], frames["jobs"], out / "loss.png", hyperparameters=hyper
        ),
    ]


def display_path(path: Path) -> str:
    """``path`` relative to the working directory when it is inside it, else absolute."""
    absolute = path.resolve()
    try:
        return str(absolute.relative_to(Path.cwd()))
    except ValueError:
        return str(absolute)
