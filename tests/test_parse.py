"""The parser on its own: job objects, events and checkpoints to typed records."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ftlog.errors import PayloadError, shown
from ftlog.parse import (
    INT64_MAX,
    MAX_INDEXED_BYTES,
    canonical_json,
    content_hash,
    json_problem,
    parse_checkpoint,
    parse_event,
    parse_job,
)

T0 = 1_767_225_600


def job(**fields: Any) -> dict[str, Any]:
    return {"id": "ftjob-1", "status": "running", "created_at": T0, **fields}


# --- identity: what a job cannot do without ----------------------------------------------


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ([], "expected a job object, got an array"),
        ({"status": "running", "created_at": T0}, "'id' is missing"),
        (job(id=7), "'id' is missing or not a string"),
        (job(id="  "), "'id' is missing"),
        (job(id="a\x00b"), "the id holds a NUL byte"),
        (job(id="x" * (MAX_INDEXED_BYTES + 1)), f"longer than {MAX_INDEXED_BYTES} bytes"),
        (job(status=None), "'status' is missing"),
        (job(status="run\udc00"), "'status' is not valid Unicode"),
        (job(created_at=None), "'created_at' is missing"),
        (job(created_at="yesterday"), "'created_at' should be epoch seconds"),
        (job(created_at=T0 * 1000), "not a plausible time"),
    ],
)
def test_a_job_without_a_usable_identity_is_refused_naming_it(obj: Any, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        parse_job(obj)


def test_a_refused_id_is_shown_escaped_and_cut() -> None:
    with pytest.raises(PayloadError) as info:
        parse_job(job(id="\x1b[31m" + "x" * 2000))
    text = str(info.value)
    assert "\x1b" not in text and "\\x1b[31m" in text and len(text) < 200


@pytest.mark.parametrize("char", ["\u2028", "\u2029", "\u202e", "\u2066", "\n"])
def test_ids_shown_in_messages_never_break_a_line_or_turn_text_around(char: str) -> None:
    text = shown(f"ftjob-a{char}b")
    assert char not in text and text.startswith("ftjob-a\\") and text.endswith("b")


# --- optional values: None and a problem, never a refusal ----------------------------------


@pytest.mark.parametrize(
    ("fields", "column", "problem"),
    [
        ({"trained_tokens": 2**63}, "trained_tokens", "does not fit in 64 bits"),
        ({"trained_tokens": -(2**63) - 1}, "trained_tokens", "does not fit in 64 bits"),
        ({"trained_tokens": 1.5}, "trained_tokens", "should be a whole number"),
        ({"trained_tokens": "12"}, "trained_tokens", "should be a whole number, got a string"),
        ({"trained_steps": True}, "trained_steps", "should be a whole number, got a boolean"),
        ({"total_steps": math.inf}, "total_steps", "should be a whole number"),
        ({"estimated_finish": 10**12}, "estimated_finish", "not a plausible time"),
        ({"estimated_finish": "soon"}, "estimated_finish", "should be epoch seconds"),
    ],
)
def test_a_state_value_that_does_not_fit_is_none_and_named(
    fields: dict[str, Any], column: str, problem: str
) -> None:
    record = parse_job(job(**fields))
    assert getattr(record.state, column) is None
    assert any(column in p and problem in p for p in record.problems), record.problems


@pytest.mark.parametrize(
    ("fields", "attribute", "problem"),
    [
        ({"model": "m\x00"}, "model", "'model' holds a NUL byte"),
        ({"model": "m" * (MAX_INDEXED_BYTES + 1)}, "model", "longer than"),
        ({"suffix": "\ud83d"}, "suffix", "not valid Unicode"),
        ({"seed": 2**64}, "seed", "does not fit in 64 bits"),
        ({"finished_at": -5}, "finished_at", "not a plausible time"),
        ({"error": {"message": 42}}, "error_message", "'error.message' should be a string"),
        ({"error": "boom"}, "error_message", "'error' should be an object"),
        ({"result_files": "f"}, "result_files", "should be an array"),
        ({"integrations": [{"x": math.nan}]}, "integrations", "nan"),
        ({"metadata": {"k": "v\x00"}}, "metadata", "NUL"),
        ({"method": ["supervised"]}, "method_type", "'method' should be an object"),
    ],
)
def test_a_field_that_does_not_fit_is_none_and_named(
    fields: dict[str, Any], attribute: str, problem: str
) -> None:
    record = parse_job(job(**fields))
    assert getattr(record.fields, attribute) is None
    assert any(problem in p for p in record.problems), record.problems


def test_a_well_formed_job_has_no_problems_and_typed_fields() -> None:
    record = parse_job(
        job(
            model="meta-llama/Llama-3.1-8B-Instruct",
            trained_tokens=1_000,
            trained_steps=10.0,
            finished_at=0,
            seed=INT64_MAX,
            error={"code": "oom", "message": "CUDA out of memory", "param": None},
            user_provided_suffix="exp",
            metadata={"team": "search"},
        )
    )
    assert record.problems == ()
    assert record.state.trained_tokens == 1_000 and record.state.trained_steps == 10
    assert record.fields.finished_at is None  # 0 means unknown
    assert record.fields.seed == INT64_MAX and record.fields.suffix == "exp"
    assert record.fields.error_code == "oom" and record.fields.metadata == {"team": "search"}
    assert record.created_at == datetime.fromtimestamp(T0, UTC)


# --- hyperparameters ---------------------------------------------------------------------


def test_hyperparameters_typed_or_kept_in_extra() -> None:
    record = parse_job(
        job(
            hyperparameters={
                "learning_rate": 1e-5,
                "batch_size": "auto",
                "n_epochs": 3.0,
                "lora": 1,
                "packing": False,
                "context_length": 2**64,
                "custom": {"a": [1, 2]},
            }
        )
    )
    typed = record.hyperparameters.typed
    assert typed["learning_rate"] == 1e-5 and typed["n_epochs"] == 3 and typed["packing"] is False
    assert typed["batch_size"] is None and typed["lora"] is None and typed["context_length"] is None
    assert record.hyperparameters.extra == {
        "batch_size": "auto",
        "lora": 1,
        "context_length": 2**64,  # a JSON column holds any integer
        "custom": {"a": [1, 2]},
    }
    assert record.problems == ()


def test_non_finite_hyperparameters_are_named_not_stored() -> None:
    record = parse_job(job(hyperparameters={"learning_rate": math.nan, "x": -math.inf, "b": 8}))
    assert record.hyperparameters.typed["learning_rate"] is None
    assert record.hyperparameters.extra == {"b": 8}
    assert len(record.problems) == 2 and all("cannot" in p for p in record.problems)


def test_openai_method_hyperparameters_win_over_the_top_level() -> None:
    record = parse_job(
        job(
            hyperparameters={"n_epochs": "auto", "batch_size": 4},
            method={
                "type": "supervised",
                "supervised": {"hyperparameters": {"n_epochs": 3, "batch_size": None}},
            },
        )
    )
    assert record.hyperparameters.typed["n_epochs"] == 3
    assert record.hyperparameters.typed["batch_size"] == 4
    assert record.fields.method_type == "supervised"


# --- the raw body: lossless, hashable ------------------------------------------------------


def test_the_body_keeps_every_value_exactly() -> None:
    sent = job(
        suffix="cut \ud83d emoji",
        error={"message": "a\x00b"},
        trained_tokens=2**100,
        hyperparameters={"learning_rate": math.nan, "warmup_ratio": math.inf},
        note="日本語 and ✓",
    )
    record = parse_job(sent)
    record.body.encode("utf-8")  # valid UTF-8, whatever the object held
    back = json.loads(record.body)
    assert canonical_json(back) == record.body
    assert back["suffix"] == "cut \ud83d emoji" and back["error"]["message"] == "a\x00b"
    assert back["trained_tokens"] == 2**100 and math.isnan(back["hyperparameters"]["learning_rate"])
    assert "日本語" in record.body  # non-ASCII text stays as it is
    assert record.sha256 == content_hash(record.body)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF, categories=None))
    | st.sampled_from(["\ud800", "lone \udfff", "a\x00b", "\ud83d\ude00"]),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300)
@given(json_values)
def test_canonical_json_round_trips_any_decoded_value(value: Any) -> None:
    value = json.loads(json.dumps(value))  # as an API's answer decodes (surrogate pairs joined)
    text = canonical_json(value)
    text.encode("utf-8")
    assert canonical_json(json.loads(text)) == text


@settings(max_examples=200)
@given(st.dictionaries(st.text(max_size=10), json_values, max_size=8))
def test_any_object_with_an_identity_parses(extra: dict[str, Any]) -> None:
    record = parse_job({**extra, "id": "ftjob-x", "status": "queued", "created_at": T0})
    assert record.job_id == "ftjob-x"
    for value in (record.fields.result_files, record.fields.integrations, record.fields.metadata):
        assert value is None or json_problem(value) is None
    for value in record.hyperparameters.extra.values():
        assert json_problem(value) is None


# --- events and checkpoints ----------------------------------------------------------------


def test_an_event_with_values_that_do_not_fit() -> None:
    record = parse_event(
        {"id": "ev-1", "created_at": T0, "level": 5, "message": "x\x00", "data": {"v": math.nan}},
        "ftjob-1",
    )
    assert record.level is None and record.message is None and record.data is None
    assert len(record.problems) == 3
    assert json.loads(record.body)["message"] == "x\x00"


def test_an_event_whose_data_is_not_an_object_is_wrapped() -> None:
    assert parse_event({"id": "e", "created_at": T0, "data": [1]}, "j").data == {"value": [1]}


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ("x", "expected a event object"),
        ({"created_at": T0}, "has no 'id'"),
        ({"id": "e\x00", "created_at": T0}, "NUL"),
        ({"id": "e"}, "'created_at' is missing"),
    ],
)
def test_an_event_without_identity_is_refused(obj: Any, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        parse_event(obj, "ftjob-1")


def test_checkpoint_metrics_that_do_not_fit_are_none() -> None:
    record = parse_checkpoint(
        {
            "id": "ck",
            "created_at": T0,
            "step_number": 10,
            "metrics": {"step": 10.0, "train_loss": math.nan, "valid_loss": "0.5", "x": 1},
        },
        "ftjob-1",
    )
    assert record.metrics["step"] == 10 and record.metrics["train_loss"] is None
    assert record.metrics["valid_loss"] is None and len(record.problems) == 2
