"""Adversarial review of issue 10's numbers: histories a real user meets, not the demo.

Each test states the history, the answer worked out by hand, and what ftlog printed when
the test was written (all failing then). On SQLite and Postgres.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest
from click.testing import CliRunner
from sqlalchemy import Engine

from ftlog import analysis
from ftlog.cli import main
from ftlog.parse import parse_job
from ftlog.store import Observation, ensure_source, save_observations
from tests.helpers import save_details

T0 = datetime(2025, 3, 1, tzinfo=UTC)
Poll = tuple[float, str, int | None, int | None]
"""(seconds after T0, status, trained_tokens, trained_steps) of one observation."""


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def job(
    job_id: str, status: str, tokens: int | None, steps: int | None, **more: Any
) -> dict[str, Any]:
    return {
        "id": job_id,
        "object": "fine_tuning.job",
        "model": "llama",
        "status": status,
        "created_at": int(T0.timestamp()),
        "trained_tokens": tokens,
        "trained_steps": steps,
        **more,
    }


def record(engine: Engine, job_id: str, polls: list[Poll], source: str = "alpha") -> None:
    source_id = ensure_source(engine, source, f"https://{source}.example/v1")
    observations = [
        Observation(parse_job(job(job_id, status, tokens, steps)), at(t))
        for t, status, tokens, steps in polls
    ]
    save_observations(engine, source_id, observations)


def summary_of(engine: Engine, job_id: str) -> pd.Series:
    frame = analysis.throughput_summary(engine, job_ids=[job_id])
    assert len(frame) == 1
    return frame.iloc[0]


# --- tokens_before_first_seen ---------------------------------------------------------------


def test_tokens_first_reported_at_the_end_were_not_trained_before_the_first_sighting(
    engine: Engine,
) -> None:
    """A job that reports steps while it runs and tokens only once it has ended (OpenAI
    reports neither while running; some providers report steps only). ftlog saw it from
    step 10 of 130, at 1 step/s, so at most the tokens of 10 steps predate the first
    sighting (1,000 tokens per step: 10,000), and ftlog cannot know even that from the
    objects alone. It printed tokens_before_first_seen = 130,000: every token of the job,
    "trained before ftlog saw any", on a job it watched from step 10 to the end."""
    record(
        engine,
        "job-steps-then-tokens",
        [
            (0, "running", None, 10),
            (60, "running", None, 70),
            (120, "running", None, 130),
            (180, "succeeded", 130_000, 130),
        ],
    )
    s = summary_of(engine, "job-steps-then-tokens")
    assert pd.isna(s.tokens_before_first_seen) or s.tokens_before_first_seen <= 10_000


def test_openai_job_seen_from_step_20_did_not_train_all_its_tokens_before(engine: Engine) -> None:
    """OpenAI shape: trained_tokens null while running, progress in metrics events. First
    seen running at step 20 of 100 (1,000 tokens/step), watched to the end. ftlog printed
    tokens_before_first_seen = 100,000 (all of them); at most 20,000 predate the sighting."""
    record(
        engine,
        "ftjob-oai-late",
        [
            (0, "running", None, None),
            (800, "running", None, None),
            (900, "succeeded", 100_000, None),
        ],
    )
    events = [
        {
            "id": f"ev-{step}",
            "created_at": int(T0.timestamp()) - 200 + 10 * step,
            "type": "metrics",
            "data": {"step": step, "total_steps": 100, "train_loss": 1.0},
        }
        for step in range(10, 101, 10)
    ]
    save_details(engine, "ftjob-oai-late", events, [])
    s = summary_of(engine, "ftjob-oai-late")
    assert s.mean_steps_per_s == pytest.approx(0.1)  # this part is right
    assert pd.isna(s.tokens_before_first_seen) or s.tokens_before_first_seen <= 20_000


# --- intervals that should not exist, and intervals lost --------------------------------------


def test_a_count_that_appears_at_the_end_adds_no_zero_speed_interval(engine: Engine) -> None:
    """Steps 10, 70, 130 a minute apart (1 step/s), then succeeded with the same 130 steps
    and, new, trained_tokens. The job made no progress after the last running poll, as a
    job whose final object adds nothing: the succeeded snapshot is no progress point. ftlog
    made it one (its tokens went from null to a number) and added an interval of 0 steps/s
    over 30 s: mean_steps_per_s 0.8 instead of 1.0, intervals 3 instead of 2. The same job
    without the final token count reads 1.0: one field appearing must not change a speed."""
    record(
        engine,
        "job-zero",
        [
            (0, "running", None, 10),
            (60, "running", None, 70),
            (120, "running", None, 130),
            (180, "succeeded", 130_000, 130),
        ],
    )
    speed = analysis.throughput(engine, job_ids=["job-zero"])
    assert speed["steps_per_s"].tolist() == [1.0, 1.0]
    s = summary_of(engine, "job-zero")
    assert (s.mean_steps_per_s, s.intervals) == (1.0, 2)


def test_a_count_missing_from_one_poll_does_not_drop_the_time_around_it(engine: Engine) -> None:
    """Tokens 0, (not reported), 120,000, 180,000 a minute apart while running, 1,000 tok/s
    throughout. A field missing from one answer is no reset and no break: the gain from 0 to
    120,000 over 120 s is known. ftlog left out both intervals around the gap:
    observed_tokens 60,000 over one interval instead of 180,000 over 180 s."""
    record(
        engine,
        "job-gap",
        [
            (0, "running", 0, None),
            (60, "running", None, None),
            (120, "running", 120_000, None),
            (180, "running", 180_000, None),
        ],
    )
    s = summary_of(engine, "job-gap")
    assert s.observed_tokens == 180_000
    assert s.mean_tokens_per_s == 1_000.0


# --- OpenAI progress from the event log --------------------------------------------------------


def metrics(job_id: str, logged: list[tuple[int, int]], total: int = 100) -> list[dict[str, Any]]:
    """Metrics events at (seconds after T0, step), as OpenAI logs them (whole seconds)."""
    return [
        {
            "id": f"{job_id}-ev-{index}",
            "created_at": int(T0.timestamp()) + second,
            "type": "metrics",
            "data": {"step": step, "total_steps": total, "train_loss": 1.0},
        }
        for index, (second, step) in enumerate(logged)
    ]


def test_steps_logged_within_one_second_are_not_dropped(engine: Engine) -> None:
    """OpenAI stamps events to the whole second. A job doing 3 steps a second logs steps
    1-3 at second 0, 4-6 at 1, 7-9 at 2, 10-12 at 3: 11 steps between the first and the
    last event, 3 s apart, so at least 11/4 steps/s whatever the sub-second times were.
    ftlog drops every pair stamped with the same second and keeps only the step across
    each second boundary: 3 intervals of 1 step/s, mean_steps_per_s 1.0 (a third of the
    truth), and an ETA three times too late."""
    record(engine, "ftjob-fast", [(0, "running", None, None), (5, "running", None, None)])
    logged = [(step // 3 if step % 3 else step // 3 - 1, step) for step in range(1, 13)]
    assert logged[:4] == [(0, 1), (0, 2), (0, 3), (1, 4)]
    save_details(engine, "ftjob-fast", metrics("ftjob-fast", logged, total=1200), [])
    s = summary_of(engine, "ftjob-fast")
    assert s.mean_steps_per_s >= 11 / 4


def test_time_the_job_was_seen_not_running_is_no_training_time(engine: Engine) -> None:
    """An OpenAI job runs (steps 10 and 20 logged at 0 and 100 s: 0.1 step/s), is seen
    queued again from 150 s to 3,750 s (polls at 140/160 and 3,740/3,760: an hour waiting
    for capacity), then runs again (steps 30, 40 at 3,800 and 3,900 s). ftlog's own
    running_s is 150 + 150 = 300 s, but the
    event-log interval 20 -> 30 spans the hour it saw the job queued: mean_steps_per_s
    30/3,900 = 0.0077 instead of 0.1, and the ETA is off by a factor of 13."""
    record(
        engine,
        "ftjob-requeued",
        [
            (0, "running", None, None),
            (140, "running", None, None),
            (160, "queued", None, None),
            (3_740, "queued", None, None),
            (3_760, "running", None, None),
            (3_900, "running", None, None),
        ],
    )
    logged = [(0, 10), (100, 20), (3_800, 30), (3_900, 40)]
    save_details(engine, "ftjob-requeued", metrics("ftjob-requeued", logged), [])
    s = summary_of(engine, "ftjob-requeued")
    assert s.running_s == 300  # ftlog knows it was not running for an hour
    assert s.mean_steps_per_s == pytest.approx(0.1, rel=0.5)
    speed = analysis.throughput(engine, job_ids=["ftjob-requeued"])
    assert (speed["seconds"] < 3_600).all(), speed


def test_a_step_that_is_not_a_number_counts_on_no_store(engine: Engine) -> None:
    """Metrics events whose ``step`` is JSON true, or a text, are not steps (the module says:
    "a step that is not a whole number >= 0 is left out"). Steps 0 and 10 at 0 and 100 s
    are; a ``"step": true`` event at 1 s is not. SQLite's json_extract reads true as 1, so on
    SQLite ftlog took step 1 at 1 s (an extra interval 1 -> 10 over 99 s); on Postgres it
    does not. The same history must give the same intervals on both stores."""
    record(engine, "ftjob-odd", [(0, "running", None, None), (50, "running", None, None)])
    events = metrics("ftjob-odd", [(0, 0), (100, 10)])
    odd = [(1, True), (2, "5"), (3, "abc"), (4, 10.5)]
    events += [
        {
            "id": f"odd-{index}",
            "created_at": int(T0.timestamp()) + second,
            "type": "metrics",
            "data": {"step": step, "total_steps": 100},
        }
        for index, (second, step) in enumerate(odd)
    ]
    save_details(engine, "ftjob-odd", events, [])
    speed = analysis.throughput(engine, job_ids=["ftjob-odd"])
    assert speed["start"].tolist() == [at(0)], speed
    assert speed["steps"].tolist() == [10]


# --- plots ------------------------------------------------------------------------------------


def throughput_figure_of(engine: Engine, job_ids: list[str]) -> Any:
    pytest.importorskip("matplotlib")
    from ftlog import plots

    return plots.throughput_figure(
        analysis.throughput(engine, job_ids=job_ids),
        analysis.load_snapshots(engine, job_ids=job_ids),
        analysis.select_jobs(engine, job_ids=job_ids),
    )


def test_a_job_seen_once_is_drawn_on_a_time_axis_of_its_own_scale(engine: Engine) -> None:
    """One job, first and last seen succeeded at one poll (50,000 tokens): the one point
    recorded. ftlog drew an empty tokens panel (a one-point line has no visible mark), said
    "nothing recorded yet" under it, and spread the time axis over four years (2024-2028)."""
    record(engine, "job-once", [(0, "succeeded", 50_000, 10)])
    figure = throughput_figure_of(engine, ["job-once"])
    tokens_ax = figure.axes[0]
    low, high = tokens_ax.get_xlim()  # matplotlib dates: days
    assert high - low < 1, (low, high)
    drawn = [line for line in tokens_ax.get_lines() if len(line.get_xdata()) >= 1]
    assert any(
        len(line.get_xdata()) > 1 or line.get_marker() not in ("", "None", None) for line in drawn
    ), "the one recorded point is invisible"


def test_an_openai_job_with_logged_steps_is_not_drawn_as_having_no_progress(
    engine: Engine,
) -> None:
    """OpenAI job running, steps 10 -> 50 logged over 400 s (0.1 step/s, which
    throughput_summary reports as mean_steps_per_s). The throughput chart draws tokens only:
    its legend said "(no progress recorded)" and its speed panel "nothing recorded yet",
    the opposite of what ftlog knows (issue 10, item 3: OpenAI progress)."""
    record(engine, "ftjob-oai-plot", [(0, "running", None, None), (400, "running", None, None)])
    logged = [(100 * i, 10 * (i + 1)) for i in range(5)]
    save_details(engine, "ftjob-oai-plot", metrics("ftjob-oai-plot", logged), [])
    assert summary_of(engine, "ftjob-oai-plot").mean_steps_per_s == pytest.approx(0.1)
    figure = throughput_figure_of(engine, ["ftjob-oai-plot"])
    texts = [t.get_text() for ax in figure.axes for t in ax.texts]
    texts += [t.get_text() for legend in figure.legends for t in legend.get_texts()]
    assert not any("nothing recorded" in t or "no progress" in t for t in texts), texts


# --- views ------------------------------------------------------------------------------------


def test_ftlog_throughput_shows_the_speed_and_eta_an_openai_job_has(
    engine: Engine, db_url: str
) -> None:
    """The running OpenAI job above (0.1 step/s, step 50 of 100 at 400 s: ETA at 900 s).
    ``ftlog throughput`` showed every speed column as "-" and an ``intervals`` count of 4,
    without mean_steps_per_s or eta, the two figures issue 10 added for these jobs."""
    record(engine, "ftjob-oai-cli", [(0, "running", None, None), (400, "running", None, None)])
    logged = [(100 * i, 10 * (i + 1)) for i in range(5)]
    save_details(engine, "ftjob-oai-cli", metrics("ftjob-oai-cli", logged), [])
    assert summary_of(engine, "ftjob-oai-cli").eta == at(900)
    result = CliRunner().invoke(main, ["throughput", "--db", db_url])
    assert result.exit_code == 0, result.output
    assert "mean_steps_per_s" in result.output and "eta" in result.output, result.output


def test_a_job_first_seen_running_has_no_exact_start(engine: Engine) -> None:
    """First seen running with 50,000 tokens already trained (the issue's first case): it
    started some time before ftlog's first poll. throughput_summary (and the started_at
    column of ``ftlog throughput``) gave the first poll as started_at, with
    start_uncertainty_s NA, which every other row uses to mean "no uncertainty"; a job
    first seen queued gets a real estimate with its ±. Expected: NaT (unknown), or at least
    not an exact time that is certainly too late."""
    record(
        engine,
        "job-late-start",
        [(0, "running", 50_000, None), (60, "running", 110_000, None)],
    )
    s = summary_of(engine, "job-late-start")
    assert pd.isna(s.started_at) or s.started_at < at(0), (s.started_at, s.start_uncertainty_s)


def test_the_partial_last_interval_does_not_invent_a_peak(engine: Engine) -> None:
    """A job trains at a constant 1,000 tok/s from 0 to about 180 s; polls every 60 s see
    0, 60,000, 120,000 running and 180,000 succeeded. Timing the last interval's end at the
    midpoint (150 s) makes it 60,000 tokens in 30 s: peak_tokens_per_s 2,000, a speed the
    job never had, and the mean 1,200. The gain itself says how long training lasted at the
    job's observed speed (60 s); the midpoint is a guess the data contradict. At the very
    least the partial interval should not set the peak (the issue offered leaving it out of
    median and peak). This is a rule choice, flagged for the lead."""
    record(
        engine,
        "job-steady",
        [
            (0, "running", 0, None),
            (60, "running", 60_000, None),
            (120, "running", 120_000, None),
            (180, "succeeded", 180_000, None),
        ],
    )
    s = summary_of(engine, "job-steady")
    assert s.peak_tokens_per_s == 1_000.0


def test_a_restart_that_replays_logged_steps_is_a_reset(engine: Engine) -> None:
    """A job restarted from an earlier checkpoint logs the same steps again: 10 at 0 s,
    20 at 100 s, then (restarted) 10 at 150 s, 20 at 250 s, 30 at 350 s, all at 0.1 step/s.
    Steps going down are a counter reset (a flagged break). ftlog keeps only the first
    time each step was logged, so the replayed 10 and 20 vanish before the reset check:
    resets 0, and an interval 20 -> 30 from 100 s to 350 s (0.04 step/s) spans the restart.
    Expected: one reset, every interval at 0.1 step/s."""
    record(engine, "ftjob-replay", [(0, "running", None, None), (350, "running", None, None)])
    logged = [(0, 10), (100, 20), (150, 10), (250, 20), (350, 30)]
    save_details(engine, "ftjob-replay", metrics("ftjob-replay", logged), [])
    speed = analysis.throughput(engine, job_ids=["ftjob-replay"])
    assert speed["steps_per_s"].tolist() == pytest.approx([0.1] * len(speed)), speed
    s = summary_of(engine, "ftjob-replay")
    assert (s.resets, s.mean_steps_per_s) == (1, pytest.approx(0.1))


def test_a_checkpoint_saved_after_later_steps_is_no_reset(engine: Engine) -> None:
    """Metrics events every 10 steps (10 at 100 s ... 50 at 500 s: 0.1 step/s); the
    checkpoint of step 33 is created at 405 s, after step 40 was logged (saving and
    uploading a checkpoint takes time). ftlog orders points by time, sees 40 then 33, and
    counts a counter reset: resets 1, the interval 40 -> 33 dropped, and 33 -> 50 over 95 s
    read as 0.18 step/s (mean 0.119). Expected: no reset, mean 0.1."""
    record(engine, "ftjob-ckpt", [(0, "running", None, None), (500, "running", None, None)])
    logged = [(100 * i, 10 * i) for i in range(1, 6)]
    checkpoint = {
        "id": "ckpt-33",
        "object": "fine_tuning.job.checkpoint",
        "created_at": int(T0.timestamp()) + 405,
        "step_number": 33,
        "fine_tuned_model_checkpoint": "ft:model:ckpt-step-33",
        "metrics": {"step": 33, "train_loss": 1.0},
    }
    save_details(engine, "ftjob-ckpt", metrics("ftjob-ckpt", logged), [checkpoint])
    s = summary_of(engine, "ftjob-ckpt")
    assert (s.resets, s.mean_steps_per_s) == (0, pytest.approx(0.1))


def test_an_empty_job_id_is_no_prefix_of_every_job(engine: Engine, db_url: str) -> None:
    record(engine, "job-one", [(0, "running", 0, None)])
    record(engine, "job-two", [(0, "running", 0, None)])
    result = CliRunner().invoke(main, ["show", "", "--db", db_url])
    assert result.exit_code == 2 and "empty job id" in result.output, result.output


def test_date_columns_as_text_say_utc_in_tables(engine: Engine, db_url: str) -> None:
    record(engine, "job-one", [(0, "queued", None, None), (60, "running", 0, None)])
    trends = CliRunner().invoke(main, ["trends", "--db", db_url])
    assert trends.exit_code == 0 and "period (UTC)" in trends.output, trends.output
    costs = CliRunner().invoke(main, ["cost", "--by", "day", "--db", db_url])
    assert costs.exit_code == 0 and "day (UTC)" in costs.output, costs.output
