"""Speed figures on real histories, on SQLite and Postgres: known answers worked out by hand
(issue 10's first-sighting case, the last partial interval, counter resets, an OpenAI job
over a loopback simulator), and invariants over generated histories written through the
store: no negative or infinite speed, min <= mean <= peak, status durations that add up to
the observed lifetime, transition estimates inside their interval."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from ftlog import analysis
from ftlog import settings as ftlog_settings
from ftlog.cli import main
from ftlog.models import TERMINAL_STATUSES
from ftlog.parse import parse_job
from ftlog.simulator import JobSpec
from ftlog.store import Observation, ensure_source, save_observations
from tests.conftest import SimFactory
from tests.helpers import TOKEN, save_details

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def job(job_id: str, status: str, tokens: int | None, steps: int | None = None) -> dict[str, Any]:
    return {
        "id": job_id,
        "object": "fine_tuning.job",
        "model": "llama",
        "status": status,
        "created_at": int(T0.timestamp()),
        "trained_tokens": tokens,
        "trained_steps": steps,
    }


def record(engine: Engine, job_id: str, history: list[tuple[float, str, int | None]]) -> None:
    source = ensure_source(engine, "alpha", "https://alpha.example/v1")
    observations = [Observation(parse_job(job(job_id, s, n)), at(t)) for t, s, n in history]
    save_observations(engine, source, observations)


def summary_of(engine: Engine, job_id: str) -> pd.Series:
    frame = analysis.throughput_summary(engine, job_ids=[job_id])
    assert len(frame) == 1
    return frame.iloc[0]


# --- known answers --------------------------------------------------------------------------


def test_tokens_trained_before_the_first_sighting_are_not_divided_by_time(engine: Engine) -> None:
    """Issue 10: first seen running at 50,000 tokens, +60,000 a minute for two minutes, then
    succeeded (seen 10 s later, unchanged). ftlog used to say 170,000 / 125 s = 1,360 tok/s."""
    record(
        engine,
        "job-late",
        [
            (0, "running", 50_000),
            (60, "running", 110_000),
            (120, "running", 170_000),
            (130, "succeeded", 170_000),
        ],
    )
    s = summary_of(engine, "job-late")
    assert (s.tokens_before_first_seen, s.observed_tokens) == (50_000, 120_000)
    assert s.mean_tokens_per_s == 120_000 / 120  # 1,000 tok/s, the truth
    assert s.median_tokens_per_s == s.peak_tokens_per_s == 1_000.0
    assert s.running_s == 125.0  # the running stay is unchanged: 0 to the estimate 125 ± 5
    assert s.intervals == 2 and s.resets == 0


def test_the_last_partial_interval_is_left_out(engine: Engine) -> None:
    """Training at 1,000 tok/s ends somewhere between the polls at 60 and 120: the succeeded
    snapshot shows 20,000 more tokens. Timed to 120 that would read 333 tok/s, timed to the
    estimate 90 it would read 667: a slowdown that never happened either way. The last gain
    has no known time, so it is no interval and no part of the mean."""
    record(
        engine,
        "job-end",
        [(0, "running", 0), (60, "running", 60_000), (120, "succeeded", 80_000)],
    )
    speed = analysis.throughput(engine, job_ids=["job-end"])
    assert speed["end"].tolist() == [at(60)]
    assert speed["tokens_per_s"].tolist() == [1_000.0]
    s = summary_of(engine, "job-end")
    assert (s.tokens_before_first_seen, s.observed_tokens, s.trained_tokens) == (0, 60_000, 80_000)
    assert s.mean_tokens_per_s == 60_000 / 60
    assert s.ended_at == at(90) and s.end_uncertainty_s == 30.0  # the running stay's end


def test_a_counter_reset_is_a_flagged_break(engine: Engine) -> None:
    """Tokens 0, 1000, then 300 (a reset), 1300, 2300, 10 s apart: the interval into the reset
    is no interval; the one after it is flagged; the mean is (1000 + 2000) / 30 s."""
    record(
        engine,
        "job-reset",
        [(t, "running", n) for t, n in [(0, 0), (10, 1000), (20, 300), (30, 1300), (40, 2300)]],
    )
    speed = analysis.throughput(engine, job_ids=["job-reset"])
    assert speed["start"].tolist() == [at(0), at(20), at(30)]
    assert speed["tokens_per_s"].tolist() == [100.0, 100.0, 100.0]
    assert speed["after_reset"].tolist() == [False, True, False]
    s = summary_of(engine, "job-reset")
    assert (s.resets, s.observed_tokens, s.mean_tokens_per_s) == (1, 3000, 3000 / 30)


def test_steps_going_down_are_a_reset_too(engine: Engine) -> None:
    source = ensure_source(engine, "alpha", "https://alpha.example/v1")
    for t, tokens, steps in [(0, 0, 0), (10, 1000, 10), (20, 2000, 5)]:
        obj = job("job-steps", "running", tokens, steps)
        save_observations(engine, source, [Observation(parse_job(obj), at(t))])
    speed = analysis.throughput(engine, job_ids=["job-steps"])
    assert speed["steps"].tolist() == [10]  # not 10→20 s, where steps fell from 10 to 5
    assert summary_of(engine, "job-steps").resets == 1


def test_an_openai_job_gets_its_progress_from_its_metrics_events(
    db_url: str, sim_factory: SimFactory
) -> None:
    """An OpenAI-flavoured simulated job: trained_tokens null while it runs, no step counts.
    100 steps of 1,000 tokens at 100 tok/s: a step every 10 s from 180 s after creation; a
    metrics event every 10 steps (every 100 s), checkpoints at steps 33, 66 and 100."""
    created = int(T0.timestamp())
    started = created + 60 + 120
    spec = JobSpec(
        id="ftjob-oai",
        created_at=created,
        total_steps=100,
        tokens_per_step=1000,
        tokens_per_second=100,
        flavor="openai",
    )
    sim = sim_factory([spec], now=started + 250)  # steps 10 and 20 logged so far

    def snapshot() -> None:
        args = ["snapshot", "--base-url", sim.base_url, "--db", db_url]
        result = CliRunner().invoke(main, args, env={ftlog_settings.API_KEY: TOKEN})
        assert result.exit_code == 0, result.output

    snapshot()
    speed = analysis.throughput(db_url)
    assert speed["steps_per_s"].tolist() == [10 / 100]
    assert speed["tokens"].isna().all()
    s = summary_of_url(db_url)
    assert (s.status, s.total_steps, s.mean_steps_per_s) == ("running", 100, 0.1)
    assert pd.isna(s.trained_tokens) and pd.isna(s.tokens_per_step)
    # From step 20 at started + 200 s, 80 steps to go at 0.1 step/s: 800 s more.
    assert s.eta == datetime.fromtimestamp(started + 200 + 800, UTC)

    sim.clock.set(started + 1000 + 30)  # it ended at started + 1000
    snapshot()
    speed = analysis.throughput(db_url)
    steps = list(range(10, 101, 10))  # metrics events (checkpoints only without them)
    assert speed["steps"].tolist() == [b - a for a, b in itertools.pairwise(steps)]
    assert speed["steps_per_s"].tolist() == pytest.approx([0.1] * (len(steps) - 1))
    s = summary_of_url(db_url)
    assert (s.status, s.trained_tokens, s.tokens_per_step) == ("succeeded", 100_000, 1000.0)
    assert s.mean_steps_per_s == pytest.approx(90 / 900) and pd.isna(s.eta)
    # first seen running with no count: what it trained before is unknown, not all of it
    assert pd.isna(s.mean_tokens_per_s) and pd.isna(s.tokens_before_first_seen)


def summary_of_url(db_url: str) -> pd.Series:
    frame = analysis.throughput_summary(db_url)
    assert len(frame) == 1
    return frame.iloc[0]


# --- invariants over generated histories ----------------------------------------------------

STATUSES = ["queued", "running", "running", "running", "succeeded", "failed", "cancelled"]
deltas = st.none() | st.sampled_from([0, 0, 1, 500, 60_000, -300, -(10**6)])
"""How a counter moves at an observation; None: not reported this time."""
observations = st.lists(
    st.tuples(
        st.sampled_from([1, 999_999, 30_000_000]) | st.integers(1, 3_600_000_000),  # µs gap
        st.sampled_from(STATUSES),
        deltas,
        deltas,
    ),
    min_size=1,
    max_size=12,
)
logged_steps = st.lists(
    st.tuples(st.integers(0, 600), st.integers(-20, 50)), max_size=8
)  # (seconds after the previous event, steps since it)
_ids = itertools.count()


def generated(
    first_tokens: int, plan: list[tuple[int, str, int | None, int | None]], hidden: bool
) -> tuple[str, list[tuple[int, dict[str, Any]]]]:
    """(µs after T0, job object) per observation; counters start at ``first_tokens`` (a job
    first seen mid-training); ``hidden``: no counts while running (OpenAI-like)."""
    job_id = f"gen-{next(_ids)}"
    tokens, steps, micros = first_tokens, first_tokens // 1000, 0
    out = []
    for gap, status, token_delta, step_delta in plan:
        micros += gap
        shown: list[int | None] = []
        for delta, value in ((token_delta, tokens), (step_delta, steps)):
            shown.append(None if delta is None else max(0, value + delta))
        tokens = tokens if shown[0] is None else shown[0]
        steps = steps if shown[1] is None else shown[1]
        if hidden and status == "running":
            shown = [None, None]
        out.append((micros, job(job_id, status, *shown)))
    return job_id, out


def expected_resets(objects: list[dict[str, Any]]) -> int:
    """Observations whose tokens or steps are below the last value reported before."""
    found = 0
    last: dict[str, int] = {}
    for obj in objects:
        lower = False
        for name in ("trained_tokens", "trained_steps"):
            if obj[name] is not None:
                lower |= name in last and obj[name] < last[name]
                last[name] = obj[name]
        found += lower
    return found


def within(low: float, value: float, high: float) -> bool:
    slack = 1e-9 * max(abs(low), abs(high))
    return low - slack <= value <= high + slack


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.integers(0, 10**7), observations, st.booleans(), logged_steps, st.integers(0, 12))
def test_speed_and_durations_hold_on_any_history(
    engine: Engine,
    first_tokens: int,
    plan: list[tuple[int, str, int | None, int | None]],
    hidden: bool,
    steps_logged: list[tuple[int, int]],
    split: int,
) -> None:
    job_id, history = generated(first_tokens, plan, hidden)
    source = ensure_source(engine, "gen", "https://gen.example/v1")
    base = T0 + timedelta(days=1)
    batch = [Observation(parse_job(obj), base + timedelta(microseconds=us)) for us, obj in history]
    save_observations(engine, source, batch[:split])  # two batches: both ways of extending
    save_observations(engine, source, batch[split:])
    events, second, step = [], 0, 0
    for index, (gap, moved) in enumerate(steps_logged):
        second, step = second + gap, max(0, step + moved)
        event = {"id": f"{job_id}-{index}", "created_at": int(base.timestamp()) + second}
        events.append({**event, "type": "metrics", "data": {"step": step, "total_steps": 500}})
    save_details(engine, job_id, events, [])

    speed = analysis.throughput(engine, job_ids=[job_id])
    for rate in ("tokens_per_s", "steps_per_s"):
        values = speed[rate].dropna()
        assert ((values >= 0) & values.map(math.isfinite)).all(), speed
    assert (speed["seconds"] > 0).all() and (speed["start"] < speed["end"]).all()

    s = summary_of(engine, job_id)
    for rate, mean in (("tokens_per_s", "mean_tokens_per_s"), ("steps_per_s", "mean_steps_per_s")):
        values = speed[rate].dropna()
        if len(values):
            assert within(values.min(), s[mean], values.max()), (values.tolist(), s[mean])
        else:
            assert pd.isna(s[mean])
    if speed["tokens"].notna().any():
        assert s.observed_tokens == speed["tokens"].sum()
        low = speed["tokens_per_s"].min()
        assert within(low, s.median_tokens_per_s, s.peak_tokens_per_s)
        assert s.peak_tokens_per_s == speed["tokens_per_s"].max()
    if not events:
        assert s.resets == expected_resets([obj for _, obj in history])
    assert speed["after_reset"].sum() <= s.resets

    stays = analysis.status_durations(engine, job_ids=[job_id])
    observed = (history[-1][0] - history[0][0]) / 1e6
    current = stays.iloc[-1]
    if current["status"] in TERMINAL_STATUSES:
        observed -= (base + timedelta(microseconds=history[-1][0]) - current["entered_at"]) / (
            timedelta(seconds=1)
        )
    assert stays["seconds"].sum() == pytest.approx(observed, abs=1e-5)
    assert (stays["seconds"].iloc[:-1] > 0).all()
    assert pd.isna(current["seconds"]) or current["seconds"] >= 0

    changes = analysis.load_status_history(engine, job_ids=[job_id])
    first, later = changes.iloc[0], changes.iloc[1:]
    assert first["estimated_at"] == first["observed_at"]
    assert (later["previous_observed_at"] < later["estimated_at"]).all()
    assert (later["estimated_at"] <= later["observed_at"]).all()
