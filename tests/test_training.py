"""Events, checkpoints and loss curves: the loaders against known data, on SQLite and
Postgres, and the commands that show them (``show``, ``plot loss``, ``export``).

Two stores:

- ``simulated``: two jobs recorded through the simulated API, whose events and checkpoints
  are known (:func:`job_events`, :func:`job_checkpoints`);
- ``handmade``: three jobs whose events and checkpoints are written through the collector's
  own parse and save, with the values below, chosen to exercise every rule of loss curves.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, event

from ftlog import analysis
from ftlog.cli import main
from ftlog.parse import parse_job
from ftlog.simulator import JobSpec, job_checkpoints, job_events
from ftlog.simulator.jobs import Hyperparameters
from ftlog.store import Observation, ensure_source, save_observations
from tests.helpers import T0, run, save_details

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SPECS = [
    JobSpec(id="ftjob-a", created_at=T0, total_steps=100, tokens_per_step=1000),
    JobSpec(
        id="ftjob-b",
        created_at=T0 + 10,
        hyperparameters=Hyperparameters(learning_rate=3e-5, n_epochs=2, lora=True),
        total_steps=60,
        tokens_per_step=2048,
        outcome="failed",
        stop_fraction=0.5,  # stops at step 30: one checkpoint (step 30), three metrics events
    ),
]
BASE = datetime(2026, 2, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return BASE + timedelta(seconds=seconds)


def assert_dtypes(frame: pd.DataFrame, kinds: dict[str, Any]) -> None:
    assert list(frame.columns) == list(kinds)
    assert {n: str(t) for n, t in frame.dtypes.items()} == {
        n: analysis.DTYPES[k] for n, k in kinds.items()
    }


def utc(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


@pytest.fixture
def simulated(engine: Engine, sim_factory: Any) -> Engine:
    sim = sim_factory(SPECS, now=T0 + 100_000)
    assert run(engine, sim).exit_code == 0
    return engine


# --- loaders on simulated jobs ------------------------------------------------------------------


def test_events_are_those_the_api_gave_in_time_order(simulated: Engine) -> None:
    frame = analysis.events(simulated)
    assert_dtypes(frame, analysis.EVENT_COLUMNS)
    assert frame["job_id"].unique().tolist() == ["ftjob-a", "ftjob-b"]
    for spec in SPECS:
        rows = frame[frame["job_id"] == spec.id]
        expected = job_events(spec)  # oldest first; the first two share a second
        assert rows["event_id"].tolist() == [e["id"] for e in expected]
        assert rows["created_at"].tolist() == [utc(e["created_at"]) for e in expected]
        assert rows["message"].tolist() == [e["message"] for e in expected]
        assert rows["type"].tolist() == [e["type"] for e in expected]
        assert rows["level"].tolist() == [e["level"] for e in expected]
        data = [None if pd.isna(d) else json.loads(d) for d in rows["data"]]
        assert data == [e["data"] for e in expected]
    assert frame["level"].iloc[-1] == "error"  # ftjob-b failed


def test_checkpoints_carry_their_metrics(simulated: Engine) -> None:
    frame = analysis.checkpoints(simulated)
    assert_dtypes(frame, analysis.CHECKPOINT_COLUMNS)
    for spec in SPECS:
        rows = frame[frame["job_id"] == spec.id].reset_index(drop=True)
        expected = job_checkpoints(spec)
        assert rows["checkpoint_id"].tolist() == [c["id"] for c in expected]
        assert rows["step_number"].tolist() == [c["step_number"] for c in expected]
        for metric in ("step", "train_loss", "valid_loss", "full_valid_mean_token_accuracy"):
            assert rows[metric].tolist() == [c["metrics"][metric] for c in expected], metric
    b = frame[frame["job_id"] == "ftjob-b"]
    assert b["step_number"].tolist() == [30]  # the second epoch's checkpoint never came


def expected_curve(spec: JobSpec) -> list[tuple[int, float, str, float]]:
    """The loss curve of a simulated job, by the documented rules: events' train loss, the
    checkpoints' losses winning at their steps, tokens = step × tokens per step."""
    values: dict[tuple[int, str], float] = {}
    for item in job_events(spec):
        if item["type"] == "metrics":
            values[item["data"]["step"], "train_loss"] = item["data"]["train_loss"]
    for checkpoint in job_checkpoints(spec):
        for metric in analysis.LOSS_METRICS:
            values[checkpoint["step_number"], metric] = checkpoint["metrics"][metric]
    order = {m: i for i, m in enumerate(analysis.LOSS_METRICS)}
    keys = sorted(values, key=lambda k: (k[0], order[k[1]]))
    return [(s, float(s * spec.tokens_per_step), m, values[s, m]) for s, m in keys]


def test_loss_curves_join_events_and_checkpoints(simulated: Engine) -> None:
    curves = analysis.loss_curves(simulated)
    assert_dtypes(curves, analysis.LOSS_CURVE_COLUMNS)
    assert curves["job_id"].unique().tolist() == ["ftjob-a", "ftjob-b"]
    for spec in SPECS:
        rows = curves[curves["job_id"] == spec.id]
        got = list(
            zip(rows["step"], rows["trained_tokens"], rows["metric"], rows["value"], strict=True)
        )
        assert got == expected_curve(spec)
    a = curves[curves["job_id"] == "ftjob-a"]
    # ftjob-a: metrics events every 10 steps, checkpoints at 33, 66 and 100.
    assert a[a["metric"] == "train_loss"]["step"].tolist() == [
        10, 20, 30, 33, 40, 50, 60, 66, 70, 80, 90, 100,
    ]  # fmt: skip
    assert a[a["metric"] == "valid_loss"]["step"].tolist() == [33, 66, 100]
    last = job_checkpoints(SPECS[0])[-1]["metrics"]
    at_100 = a[a["step"] == 100].set_index("metric")["value"]
    assert at_100.to_dict() == {m: last[m] for m in analysis.LOSS_METRICS}
    b = curves[curves["job_id"] == "ftjob-b"]
    assert b["step"].max() == 30 and b["trained_tokens"].max() == 30 * 2048


# --- loaders on hand-made data: the rules ---------------------------------------------------


def job_object(job_id: str, status: str, created: float, **fields: Any) -> dict[str, Any]:
    return {
        "id": job_id,
        "object": "fine_tuning.job",
        "model": "meta-llama/Llama-3.1-8B-Instruct",
        "status": status,
        "created_at": int(at(created).timestamp()),
        "hyperparameters": {"learning_rate": 1e-5, "batch_size": 8},
        **fields,
    }


def metrics_event(event_id: str, seconds: float, **data: Any) -> dict[str, Any]:
    return {
        "id": event_id,
        "object": "fine_tuning.job.event",
        "created_at": int(at(seconds).timestamp()),
        "level": "info",
        "message": f"metrics {event_id}",
        "type": "metrics",
        "data": data,
    }


def checkpoint(checkpoint_id: str, seconds: float, step: int, **metrics: Any) -> dict[str, Any]:
    return {
        "id": checkpoint_id,
        "object": "fine_tuning.job.checkpoint",
        "created_at": int(at(seconds).timestamp()),
        "step_number": step,
        "fine_tuned_model_checkpoint": f"ft:model:ckpt-{step}",
        "metrics": {"step": step, **metrics},
    }


@pytest.fixture
def handmade(engine: Engine) -> Engine:
    """job-x (30,000 tokens in 30 steps), job-y (OpenAI-like: succeeded with 50,000 tokens and
    no step counts), job-z (running, no tokens reported), in source alpha; job-w in beta."""
    alpha = ensure_source(engine, "alpha", "https://alpha.example/v1")
    beta = ensure_source(engine, "beta", "https://beta.example/v1")
    x = job_object("job-x", "succeeded", 0, trained_tokens=30_000, trained_steps=30)
    y = job_object("job-y", "succeeded", 10, trained_tokens=50_000)
    z = job_object("job-z", "running", 20)
    w = job_object("job-w", "running", 30, trained_tokens=400, trained_steps=4)
    save_observations(engine, alpha, [Observation(parse_job(o), at(1000)) for o in (x, y, z)])
    save_observations(engine, beta, [Observation(parse_job(w), at(1000))])
    message = {
        **metrics_event("x-msg", 5),
        "type": "message",
        "data": {"step": 5, "train_loss": 9.0},
    }
    save_details(
        engine,
        "job-x",
        [
            message,  # not a metrics event: no point, though its data has a step
            metrics_event("x-10", 100, step=10, train_loss=2.0),
            metrics_event("x-20", 200, step=20, train_loss=1.5),
            metrics_event("x-20-again", 250, step=20, train_loss=1.4),  # later: wins
            metrics_event("x-30", 300, step=30, train_loss=1.2, valid_loss=1.3),
            metrics_event("x-bad-step", 310, step="x", train_loss=9.0),
            metrics_event("x-half-step", 320, step=12.5, train_loss=9.0),
            metrics_event("x-not-a-number", 330, step=25, train_loss="n/a"),
        ],
        [checkpoint("x-ckpt-30", 300, 30, train_loss=1.25, valid_loss=1.35, full_valid_loss=1.33)],
    )
    save_details(
        engine,
        "job-y",
        [metrics_event("y-5", 50, step=5, train_loss=3.0)],
        [],
    )
    save_details(
        engine,
        "job-y",
        [metrics_event("y-10", 60, step=10, train_loss=2.5, valid_loss=2.75)],
        [],
    )
    save_details(engine, "job-z", [metrics_event("z-1", 70, step=1, train_loss=4.0)], [])
    save_details(engine, "job-w", [metrics_event("w-2", 80, step=2, train_loss=5.0)], [])
    return engine


NA = pd.NA


def test_loss_curve_rules(handmade: Engine) -> None:
    curves = analysis.loss_curves(handmade)
    assert_dtypes(curves, analysis.LOSS_CURVE_COLUMNS)
    got = [tuple(row) for row in curves.astype(object).itertuples(index=False)]
    assert got == [
        ("alpha", "job-x", 10, 10_000.0, "train_loss", 2.0),
        ("alpha", "job-x", 20, 20_000.0, "train_loss", 1.4),  # the later event
        ("alpha", "job-x", 30, 30_000.0, "train_loss", 1.25),  # the checkpoint, not 1.2
        ("alpha", "job-x", 30, 30_000.0, "valid_loss", 1.35),  # the checkpoint, not 1.3
        ("alpha", "job-x", 30, 30_000.0, "full_valid_loss", 1.33),
        # No step counts: 50,000 tokens over its last step, 10.
        ("alpha", "job-y", 5, 25_000.0, "train_loss", 3.0),
        ("alpha", "job-y", 10, 50_000.0, "train_loss", 2.5),
        ("alpha", "job-y", 10, 50_000.0, "valid_loss", 2.75),
        ("alpha", "job-z", 1, NA, "train_loss", 4.0),  # no tokens reported yet
        ("beta", "job-w", 2, 200.0, "train_loss", 5.0),
    ]


def test_training_loaders_filter_in_sql(handmade: Engine) -> None:
    seen: list[str] = []

    def capture(*args: Any) -> None:
        seen.append(args[2])

    event.listen(handmade, "before_cursor_execute", capture)
    try:
        curves = analysis.loss_curves(handmade, source="beta")
        events = analysis.load_events(handmade, job_ids=["job-y"])
        ckpts = analysis.load_checkpoints(handmade, source="beta")
    finally:
        event.remove(handmade, "before_cursor_execute", capture)
    assert curves["job_id"].unique().tolist() == ["job-w"]
    assert events["event_id"].tolist() == ["y-5", "y-10"]
    assert ckpts.empty and list(ckpts.columns) == list(analysis.CHECKPOINT_COLUMNS)
    for query in (q for q in seen if "FROM events" in q or "FROM checkpoints" in q):
        assert "WHERE" in query and "jobs" in query, query
    metrics_query = next(q for q in seen if "FROM events" in q and "sources.name" in q)
    assert "events.type" in metrics_query


def test_event_data_is_canonical_json_or_na(handmade: Engine) -> None:
    events = analysis.events(handmade, job_ids="job-x")
    data = dict(zip(events["event_id"], events["data"], strict=True))
    assert data["x-30"] == '{"step":30,"train_loss":1.2,"valid_loss":1.3}'
    assert data["x-msg"] == '{"step":5,"train_loss":9.0}'
    assert events["message"].iloc[0] == "metrics x-msg" and events["type"].iloc[0] == "message"


def test_compare_shows_final_and_best_checkpoint_losses(handmade: Engine) -> None:
    save_details(
        handmade,
        "job-x",
        [],
        [checkpoint("x-ckpt-40", 400, 40, train_loss=1.1, valid_loss=1.4)],  # overfitting
    )
    table = analysis.compare_hyperparameters(["job-x", "job-y"], handmade)
    assert table.index[-6:].tolist() == [*analysis.LOSS_OUTCOMES, "estimated_cost", "currency"]
    assert list(table.loc["final_train_loss"]) == [1.1, NA]  # job-y has no checkpoints
    assert list(table.loc["best_train_loss"]) == [1.1, NA]
    assert table.loc["final_valid_loss", "job-x"] == 1.4
    assert table.loc["best_valid_loss", "job-x"] == 1.35


def test_empty_store_gives_empty_typed_frames(engine: Engine, db_url: str) -> None:
    for load, kinds in [
        (analysis.load_events, analysis.EVENT_COLUMNS),
        (analysis.load_checkpoints, analysis.CHECKPOINT_COLUMNS),
        (analysis.loss_curves, analysis.LOSS_CURVE_COLUMNS),
    ]:
        frame = load(db_url)
        assert frame.empty, load.__name__
        assert_dtypes(frame, kinds)


# --- commands ----------------------------------------------------------------------------------


@pytest.fixture
def store_url(simulated: Engine, db_url: str) -> str:
    return db_url


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_show_lists_recent_events_and_checkpoint_losses(store_url: str) -> None:
    result = cli("show", "ftjob-a", "--db", store_url)
    assert result.exit_code == 0, result.output
    text = result.output
    events_part = text.split("\nRecent events (the last 10)\n")[1].split("\nCheckpoints\n")[0]
    expected = job_events(SPECS[0])
    for item in expected[-10:]:
        assert item["message"] in events_part
    for item in expected[:-10]:  # older ones are left out
        assert item["message"] not in events_part
    checkpoints_part = text.split("\nCheckpoints\n")[1]
    header = checkpoints_part.strip().splitlines()[0].split()
    assert header[:6] == [
        "step", "created_at", "(UTC)", "train_loss", "valid_loss", "full_valid_loss",
    ]  # fmt: skip
    lines = checkpoints_part.strip().splitlines()[2:]
    for line, item in zip(lines, job_checkpoints(SPECS[0]), strict=True):
        cells = line.split()
        assert cells[0] == str(item["step_number"])
        assert cells[3:6] == [
            f"{item['metrics'][m]:.4f}" for m in ("train_loss", "valid_loss", "full_valid_loss")
        ]


def test_show_json_has_events_and_checkpoints(store_url: str) -> None:
    result = cli("show", "ftjob-b", "--db", store_url, "--format", "json")
    report = json.loads(result.output)
    expected = job_events(SPECS[1])
    assert [e["event_id"] for e in report["events"]] == [e["id"] for e in expected[-10:]]
    assert report["events"][-1]["level"] == "error"
    assert [(c["step"], c["train_loss"]) for c in report["checkpoints"]] == [
        (30, job_checkpoints(SPECS[1])[0]["metrics"]["train_loss"])
    ]


def test_show_says_when_nothing_was_recorded(handmade: Engine, db_url: str) -> None:
    text = cli("show", "job-y", "--db", db_url).output
    assert text.split("\nCheckpoints\n")[1].strip() == "(none recorded)"


def test_plot_loss_writes_a_png(store_url: str, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    target = tmp_path / "loss.png"
    result = cli("plot", "loss", "ftjob-a", "ftjob-b", "-o", str(target), "--db", store_url)
    assert result.exit_code == 0, result.output
    data = target.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert len(data) > 40_000  # two panels of curves, not an empty canvas


@pytest.mark.parametrize(
    ("x", "titles"),
    [
        ("step", ["Loss by step"]),
        ("tokens", ["Loss by trained tokens"]),
        ("both", ["step", "tokens"]),
    ],
)
def test_plot_loss_axes_and_legend(
    store_url: str, tmp_path: Path, x: str, titles: list[str]
) -> None:
    pytest.importorskip("matplotlib")
    target = tmp_path / "loss.svg"
    assert cli("plot", "loss", "ftjob-a", "ftjob-b", "--x", x, "-o", str(target),
               "--db", store_url).exit_code == 0  # fmt: skip
    svg = target.read_text(encoding="utf-8")
    for title in titles:
        assert title in svg
    assert ("Loss by step" in svg) == (x != "tokens")
    assert ("Loss by trained tokens" in svg) == (x != "step")
    assert "ftjob-a  lr=1e-5" in svg and "ftjob-b  lr=3e-5" in svg and "lora" in svg
    for style in ("train", "valid", "full valid"):
        assert style in svg


def test_plot_loss_unknown_job(store_url: str, tmp_path: Path) -> None:
    result = cli("plot", "loss", "ftjob-nope", "-o", str(tmp_path / "x.png"), "--db", store_url)
    assert result.exit_code == 2 and "ftjob-nope" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("name", "kinds", "rows"),
    [
        ("events", analysis.EVENT_COLUMNS, sum(len(job_events(s)) for s in SPECS)),
        ("checkpoints", analysis.CHECKPOINT_COLUMNS, sum(len(job_checkpoints(s)) for s in SPECS)),
        ("loss-curves", analysis.LOSS_CURVE_COLUMNS, sum(len(expected_curve(s)) for s in SPECS)),
    ],
)
def test_exports_of_training_data(
    store_url: str, tmp_path: Path, name: str, kinds: dict[str, Any], rows: int
) -> None:
    target = tmp_path / f"{name}.csv"
    result = cli("export", name, "-o", str(target), "--db", store_url)
    assert result.exit_code == 0, result.output
    table = list(csv.reader(io.StringIO(target.read_text(encoding="utf-8"), newline="")))
    assert table[0] == list(kinds)
    assert len(table) - 1 == rows
    only_b = cli("export", name, "ftjob-b", "-o", "-", "--db", store_url).output
    assert {r["job_id"] for r in csv.DictReader(io.StringIO(only_b))} == {"ftjob-b"}


def test_export_events_as_json_lines_nests_data(store_url: str) -> None:
    out = cli("export", "events", "ftjob-a", "-o", "-", "--format", "jsonl", "--db", store_url)
    records = [json.loads(line) for line in out.output.splitlines()]
    metrics = [r for r in records if r["type"] == "metrics"]
    assert metrics[0]["data"]["step"] == 10
    assert records[0]["data"] is None


@pytest.fixture
def no_matplotlib(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    yield


def test_plot_loss_without_matplotlib(store_url: str, tmp_path: Path, no_matplotlib: None) -> None:
    result = cli("plot", "loss", "ftjob-a", "-o", str(tmp_path / "x.png"), "--db", store_url)
    assert result.exit_code == 1 and "ftlog[plot]" in result.output
