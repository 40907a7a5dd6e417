"""ftlog.plots on frames built by hand, and ``ftlog plot`` selecting by ids and by filters
(on SQLite and Postgres)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from click.testing import CliRunner, Result
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine

from ftlog import plots
from ftlog.cli import main
from ftlog.parse import parse_job
from ftlog.store import Observation, ensure_source, save_observations
from tests.helpers import one_line_error

matplotlib = pytest.importorskip("matplotlib")

T0 = pd.Timestamp("2026-01-01T10:00:00Z")
SOURCE = "studio"
_8B, _32B = "meta-llama/Llama-3.1-8B-Instruct", "Qwen/Qwen2.5-32B-Instruct"


# --- frames by hand ---------------------------------------------------------------------------


def jobs_frame(
    n: int, models: Sequence[str] = (_8B,), statuses: Sequence[str] = ("succeeded",)
) -> pd.DataFrame:
    """``n`` jobs, models and statuses cycling through the given ones."""
    return pd.DataFrame(
        {
            "source": [SOURCE] * n,
            "job_id": [f"ftjob-{i:02d}" for i in range(n)],
            "model": [models[i % len(models)] for i in range(n)],
            "status": [statuses[i % len(statuses)] for i in range(n)],
        }
    )


def hyper_frame(jobs: pd.DataFrame) -> pd.DataFrame:
    n = len(jobs)
    return jobs[["source", "job_id"]].assign(
        learning_rate=[(1e-5, 3e-5, 1e-4)[i % 3] for i in range(n)],
        batch_size=[16] * n,
        n_epochs=[2] * n,
        lora=[i % 2 == 0 for i in range(n)],
    )


def progress_frames(
    jobs: pd.DataFrame, rates: Sequence[float], *, points: int = 6, every_s: float = 60.0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Snapshots and intervals of jobs that train at ``rates`` tokens/s from T0, one snapshot
    every ``every_s`` seconds."""
    snaps, intervals = [], []
    for (_, job), rate in zip(jobs.iterrows(), rates, strict=True):
        times = [T0 + pd.Timedelta(seconds=every_s * k) for k in range(points)]
        for k, at in enumerate(times):
            snaps.append((job["source"], job["job_id"], "running", rate * every_s * k, at))
        for start, end in pairwise(times):
            intervals.append((job["source"], job["job_id"], start, end, rate))
    snapshots = pd.DataFrame(
        snaps, columns=["source", "job_id", "status", "trained_tokens", "first_observed_at"]
    )
    columns = ["source", "job_id", "start", "end", "tokens_per_s"]
    return snapshots, pd.DataFrame(intervals, columns=columns)


def summary_frame(jobs: pd.DataFrame, rates: Sequence[float]) -> pd.DataFrame:
    return jobs.assign(mean_tokens_per_s=list(rates), running_s=[1500.0] * len(jobs))


def curves_frame(jobs: pd.DataFrame, steps: int = 10) -> pd.DataFrame:
    rows = []
    for _, job in jobs.iterrows():
        for step in range(1, steps + 1):
            rows.append((job["source"], job["job_id"], step, step * 1000.0, "train_loss", 2 / step))
            if step % 5 == 0:
                rows.append((job["source"], job["job_id"], step, step * 1000.0, "valid_loss", 1.0))
    columns = ["source", "job_id", "step", "trained_tokens", "metric", "value"]
    return pd.DataFrame(rows, columns=columns)


def curves(ax: Any) -> list[Any]:
    """The axes' data lines, without the end markers (lines with no line style)."""
    return [line for line in ax.lines if line.get_linestyle() != "None"]


def end_markers(ax: Any) -> list[str]:
    return [line.get_marker() for line in ax.lines if line.get_linestyle() == "None"]


def legend_texts(figure: Any) -> list[str]:
    return [text.get_text() for legend in figure.legends for text in legend.get_texts()]


def tick_texts(axis: Any) -> list[str]:
    return [label.get_text() for label in axis.get_ticklabels() if label.get_text()]


# --- looks and labels -------------------------------------------------------------------------


def test_twenty_jobs_have_twenty_distinct_looks() -> None:
    looks = plots.job_looks(jobs_frame(20))
    assert len({(look.colour, look.dash) for look in looks}) == 20
    assert len({(look.colour, look.marker) for look in looks}) == 20
    # the first ten differ by colour alone, all solid
    assert len({look.colour for look in looks[:10]}) == 10
    assert {look.dash for look in looks[:10]} == {"-"}


def test_twenty_jobs_drawn_in_twenty_distinct_styles() -> None:
    jobs = jobs_frame(20)
    snapshots, intervals = progress_frames(jobs, [1000.0 + i for i in range(20)])
    figure = plots.throughput_figure(intervals, snapshots, jobs)
    tokens_ax, rate_ax = figure.axes
    for ax in (tokens_ax, rate_ax):
        lines = curves(ax)
        assert len(lines) == 20
        assert len({(line.get_color(), line.get_linestyle()) for line in lines}) == 20
    loss = plots.loss_figure(curves_frame(jobs), jobs)
    train = [line for line in curves(loss.axes[0]) if line.get_linestyle() == "-"]
    assert len(train) == 20
    assert len({(line.get_color(), line.get_marker()) for line in train}) == 20


def test_labels_name_the_model_only_when_models_differ() -> None:
    same = plots.job_looks(jobs_frame(2), hyper_frame(jobs_frame(2)))
    assert [look.label for look in same] == [
        "ftjob-00  lr=1e-5 bs=16 ep=2 lora",
        "ftjob-01  lr=3e-5 bs=16 ep=2 no-lora",
    ]
    mixed = jobs_frame(2, models=(_8B, _32B))
    labels = [look.label for look in plots.job_looks(mixed, hyper_frame(mixed))]
    assert labels == [
        "ftjob-00  Llama-3.1-8B  lr=1e-5 bs=16 ep=2 lora",
        "ftjob-01  Qwen2.5-32B  lr=3e-5 bs=16 ep=2 no-lora",
    ]


def test_compare_labels_carry_the_model_when_it_differs() -> None:
    jobs = jobs_frame(3, models=(_8B, _8B, _32B))
    figure = plots.compare_figure(summary_frame(jobs, [14e3, 15e3, 6e3]))
    names = tick_texts(figure.axes[0].yaxis)
    assert names[2].startswith("ftjob-02\nQwen2.5-32B")
    assert "Llama-3.1-8B" in names[0]


def test_one_job_id_in_two_sources_is_named_with_its_source() -> None:
    jobs = pd.concat([jobs_frame(1), jobs_frame(1).assign(source="other")])
    assert [look.name for look in plots.job_looks(jobs)] == ["studio/ftjob-00", "other/ftjob-00"]


# --- numbers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0"),
        (0.5, "0.5"),
        (950, "950"),
        (1000, "1k"),
        (1234, "1.23k"),
        (12_500, "12.5k"),
        (250_000, "250k"),
        (999_999, "1M"),
        (1_000_000, "1M"),
        (1_250_000, "1.25M"),
        (1_800_000, "1.8M"),
        (3e9, "3B"),
        (-2_500, "-2.5k"),
        (None, "n/a"),
    ],
)
def test_compact_numbers(value: float | None, text: str) -> None:
    assert plots.compact(value) == text


@given(st.floats(min_value=0.001, max_value=1e12))
def test_compact_numbers_are_short_and_close(value: float) -> None:
    text = plots.compact(value)
    assert len(text) <= 5, text
    number, unit = re.fullmatch(r"([0-9.]+)([kMB]?)", text).groups()  # type: ignore[union-attr]
    back = float(number) * {"": 1, "k": 1e3, "M": 1e6, "B": 1e9}[unit]
    assert back == pytest.approx(value, rel=0.006, abs=0.0006)


def _overlapping(labels: list[Any]) -> list[tuple[str, str]]:
    boxes = [(label.get_text(), label.get_window_extent()) for label in labels if label.get_text()]
    return [
        (a, b)
        for i, (a, box_a) in enumerate(boxes)
        for b, box_b in boxes[i + 1 :]
        if box_a.overlaps(box_b)
    ]


def test_speed_ticks_above_a_million_are_compact_and_apart() -> None:
    jobs = jobs_frame(3)
    rates = [900_000.0, 1_400_000.0, 1_800_000.0]
    summary_figure = plots.compare_figure(summary_frame(jobs, rates))
    snapshots, intervals = progress_frames(jobs, rates)
    throughput = plots.throughput_figure(intervals, snapshots, jobs)
    for figure, axis in ((summary_figure, "xaxis"), (throughput, "yaxis")):
        figure.draw_without_rendering()
        ax = figure.axes[-1] if axis == "yaxis" else figure.axes[0]
        labels = getattr(ax, axis).get_ticklabels()
        texts = [label.get_text() for label in labels]
        assert "1M" in texts and all("," not in text and len(text) <= 5 for text in texts)
        assert _overlapping(labels) == []


def test_a_wide_spread_of_speeds_gets_a_log_axis_that_says_so() -> None:
    jobs = jobs_frame(2, models=(_8B, "Qwen/Qwen2.5-0.5B"))
    snapshots, intervals = progress_frames(jobs, [15_000.0, 1_500_000.0])
    rate_ax = plots.throughput_figure(intervals, snapshots, jobs).axes[1]
    assert rate_ax.get_yscale() == "log" and rate_ax.get_ylabel() == "tokens / s (log scale)"
    snapshots, intervals = progress_frames(jobs, [15_000.0, 30_000.0])
    rate_ax = plots.throughput_figure(intervals, snapshots, jobs).axes[1]
    assert rate_ax.get_yscale() == "linear" and rate_ax.get_ylabel() == "tokens / s"


# --- time axes --------------------------------------------------------------------------------


def test_clock_ticks_over_seconds_read_as_times() -> None:
    jobs = jobs_frame(1)
    snapshots, intervals = progress_frames(jobs, [1000.0], points=5, every_s=10.0)
    figure = plots.throughput_figure(intervals, snapshots, jobs)
    figure.draw_without_rendering()
    ax = figure.axes[1]
    texts = tick_texts(ax.xaxis)
    assert len(texts) >= 3
    assert all(re.fullmatch(r"10:00:\d\d", text) for text in texts), texts
    assert ax.get_xlabel() == "time (UTC)"


@pytest.mark.parametrize(
    ("every_s", "unit"), [(10.0, "seconds"), (6 * 60.0, "minutes"), (3600.0, "hours")]
)
def test_elapsed_axes_name_their_unit(every_s: float, unit: str) -> None:
    jobs = jobs_frame(1)
    snapshots, intervals = progress_frames(jobs, [1000.0], points=6, every_s=every_s)
    ax = plots.throughput_figure(intervals, snapshots, jobs, elapsed=True).axes[1]
    assert ax.get_xlabel() == f"{unit} since the job was first seen running"
    # the x data is in that unit: five steps of every_s seconds
    span = curves(ax)[0].get_xdata()
    assert max(span) * {"seconds": 1, "minutes": 60, "hours": 3600}[unit] == 5 * every_s


# --- failed and cancelled ---------------------------------------------------------------------


def test_failed_and_cancelled_bars_are_hatched_labelled_and_keyed() -> None:
    jobs = jobs_frame(4, statuses=("succeeded", "failed", "cancelled", "running"))
    figure = plots.compare_figure(summary_frame(jobs, [1e4, 2e4, 3e4, 4e4]))
    rate_ax = figure.axes[0]
    bars = rate_ax.patches
    assert len(bars) == 4 and len(figure.axes[1].patches) == 4
    assert [bar.get_hatch() or "" for bar in bars] == ["", "xxx", "///", ""]
    notes = [text.get_text() for text in rate_ax.texts]
    assert notes == ["10k", "20k  failed", "30k  cancelled", "40k  still running"]
    assert legend_texts(figure) == ["failed", "cancelled", "still running (so far)"]


def test_failed_and_cancelled_curves_end_with_a_marker_the_key_explains() -> None:
    jobs = jobs_frame(3, statuses=("succeeded", "failed", "cancelled"))
    snapshots, intervals = progress_frames(jobs, [1e3, 2e3, 3e3])
    figure = plots.throughput_figure(intervals, snapshots, jobs)
    for ax in figure.axes:
        assert sorted(end_markers(ax)) == ["8", "X"]
    texts = legend_texts(figure)
    assert "failed: where the job ended" in texts
    assert "cancelled: where the job ended" in texts
    loss = plots.loss_figure(curves_frame(jobs), jobs, x="step")
    assert sorted(end_markers(loss.axes[0])) == ["8", "8", "X", "X"]  # train and valid


def test_the_key_explains_only_the_markers_drawn() -> None:
    jobs = jobs_frame(2, statuses=("succeeded", "failed"))
    recorded = curves_frame(jobs.iloc[:1])  # the failed job recorded no loss
    texts = legend_texts(plots.loss_figure(recorded, jobs))
    assert "ftjob-01  (no loss recorded)" in texts
    assert not any(text.startswith("failed") for text in texts)


def test_loss_markers_are_all_explained() -> None:
    jobs = jobs_frame(2)
    figure = plots.loss_figure(curves_frame(jobs), jobs, hyperparameters=hyper_frame(jobs))
    assert len(figure.axes) == 2
    assert len(curves(figure.axes[0])) == 4  # two jobs, train and valid
    texts = legend_texts(figure)
    assert texts[:2] == [
        "ftjob-00  lr=1e-5 bs=16 ep=2 lora",
        "ftjob-01  lr=3e-5 bs=16 ep=2 no-lora",
    ]
    assert "train loss" in texts and "valid loss (a marker per evaluation)" in texts
    job_legend, key = figure.legends
    assert [markers(job_legend), markers(key)] == [["o", "o"], ["None", "o"]]


def markers(legend: Any) -> list[str]:
    return [handle.get_marker() for handle in legend.legend_handles]


def test_legends_sit_outside_the_data() -> None:
    jobs = jobs_frame(12, statuses=("running", "failed"))
    snapshots, intervals = progress_frames(jobs, [1e3 * (i + 1) for i in range(12)])
    figure = plots.throughput_figure(intervals, snapshots, jobs)
    figure.draw_without_rendering()
    assert len(figure.legends) == 2  # the jobs beside, the key below
    for legend in figure.legends:
        box = legend.get_window_extent()
        for ax in figure.axes:
            assert not box.overlaps(ax.get_window_extent())


def test_an_unsupported_suffix_is_refused(tmp_path: Path) -> None:
    jobs = jobs_frame(1)
    from ftlog.errors import UsageProblem

    with pytest.raises(UsageProblem, match=r"\.doc"):
        plots.plot_compare(summary_frame(jobs, [1.0]), tmp_path / "x.doc")


# --- the CLI, on SQLite and Postgres ----------------------------------------------------------

BASE = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _job(job_id: str, model: str, status: str, tokens: int | None, lr: float) -> dict[str, Any]:
    return {
        "id": job_id,
        "object": "fine_tuning.job",
        "model": model,
        "status": status,
        "created_at": int(BASE.timestamp()),
        "trained_tokens": tokens,
        "trained_steps": None if tokens is None else tokens // 100,
        "total_steps": 100,
        "hyperparameters": {"learning_rate": lr, "batch_size": 8, "n_epochs": 1},
    }


@pytest.fixture
def three_jobs(engine: Engine, db_url: str) -> str:
    """Three jobs on two models, one failed; returns the store's URL."""
    lives = [
        ("ftjob-small", _8B, "succeeded", 1e-5),
        ("ftjob-other", _8B, "failed", 3e-5),
        ("ftjob-large", _32B, "succeeded", 1e-4),
    ]
    observations = []
    for job_id, model, outcome, lr in lives:
        for minute, status, tokens in (
            (0, "running", 0),
            (5, "running", 3000),
            (10, outcome, 6000),
        ):
            obj = _job(job_id, model, status, tokens, lr)
            observations.append(Observation(parse_job(obj), BASE + timedelta(minutes=minute)))
    save_observations(engine, ensure_source(engine, SOURCE, "https://api.test/v1"), observations)
    return db_url


def _svg(*args: str, db: str, tmp_path: Path) -> str:
    target = tmp_path / "chart.svg"
    result = cli("plot", *args, "-o", str(target), "--db", db)
    assert result.exit_code == 0, result.output
    return target.read_text(encoding="utf-8")


@pytest.mark.parametrize("kind", ["throughput", "compare", "loss"])
def test_plot_by_ids(three_jobs: str, tmp_path: Path, kind: str) -> None:
    svg = _svg(kind, "ftjob-small", "ftjob-large", db=three_jobs, tmp_path=tmp_path)
    assert "ftjob-small" in svg and "ftjob-large" in svg and "ftjob-other" not in svg
    assert "Qwen2.5-32B" in svg  # the models differ


@pytest.mark.parametrize("kind", ["throughput", "compare", "loss"])
def test_plot_by_filters(three_jobs: str, tmp_path: Path, kind: str) -> None:
    svg = _svg(kind, "--model", "meta-llama/*", db=three_jobs, tmp_path=tmp_path)
    assert "ftjob-small" in svg and "ftjob-other" in svg and "ftjob-large" not in svg
    assert "Llama-3.1-8B" not in svg  # one model: the labels need not say it
    svg = _svg(kind, "--status", "failed", db=three_jobs, tmp_path=tmp_path)
    assert "ftjob-other" in svg and "ftjob-small" not in svg


def test_plot_every_job_marks_the_failed_one(three_jobs: str, tmp_path: Path) -> None:
    svg = _svg("compare", db=three_jobs, tmp_path=tmp_path)
    assert all(job in svg for job in ("ftjob-small", "ftjob-other", "ftjob-large"))
    assert "failed" in svg


def test_plot_selection_errors(three_jobs: str, tmp_path: Path) -> None:
    target = str(tmp_path / "x.png")
    one_line_error(cli("plot", "compare", "ftjob-nope", "-o", target, "--db", three_jobs),
                   "unknown job id", "ftjob-nope")  # fmt: skip
    one_line_error(cli("plot", "loss", "ftjob-large", "--model", "meta-llama/*", "-o", target,
                       "--db", three_jobs), "the filters select", "ftjob-large")  # fmt: skip
    one_line_error(cli("plot", "throughput", "--since", "2030-01-01", "-o", target,
                       "--db", three_jobs), "no recorded job matches")  # fmt: skip
    assert not Path(target).exists()


def test_plot_refuses_more_jobs_than_it_tells_apart(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    source_id = ensure_source(engine, SOURCE, "https://api.test/v1")
    jobs = [_job(f"ftjob-{i:02d}", _8B, "succeeded", 100, 1e-5) for i in range(plots.MAX_JOBS + 1)]
    save_observations(engine, source_id, [Observation(parse_job(j), BASE) for j in jobs])
    result = cli("plot", "compare", "-o", str(tmp_path / "x.png"), "--db", db_url)
    one_line_error(result, f"{plots.MAX_JOBS + 1} jobs match", f"at most {plots.MAX_JOBS}")
