"""Turning a job object from the API into typed records. Pure functions, no I/O.

Accepts Nebius's documented shape and what other OpenAI-compatible providers send:
``"auto"`` hyperparameters, a ``method`` object holding them, extra fields, unknown statuses.
Anything required that is missing or of the wrong type raises :class:`PayloadError`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ftlog.errors import PayloadError

log = logging.getLogger(__name__)

KNOWN_STATUSES = frozenset(
    {"validating_files", "queued", "running", "succeeded", "failed", "cancelled"}
)

INTEGER_HYPERPARAMETERS = ("batch_size", "n_epochs", "lora_r", "lora_alpha", "context_length")
FLOAT_HYPERPARAMETERS = (
    "learning_rate",
    "warmup_ratio",
    "weight_decay",
    "lora_dropout",
    "max_grad_norm",
)
BOOLEAN_HYPERPARAMETERS = ("lora", "packing")
KNOWN_HYPERPARAMETERS = INTEGER_HYPERPARAMETERS + FLOAT_HYPERPARAMETERS + BOOLEAN_HYPERPARAMETERS

# Timestamps outside this range are not epoch seconds (milliseconds, garbage).
_EARLIEST, _LATEST = 946_684_800, 4_102_444_800  # 2000-01-01, 2100-01-01


@dataclass(frozen=True, slots=True)
class Hyperparameters:
    """Known hyperparameters that fit their type, and everything else verbatim in ``extra``."""

    typed: dict[str, int | float | bool | None]
    extra: dict[str, Any]


@dataclass(frozen=True, slots=True)
class JobState:
    """What a snapshot records: the part of a job object that changes while it trains."""

    status: str
    trained_tokens: int | None
    trained_steps: int | None
    total_steps: int | None
    estimated_finish: datetime | None


@dataclass(frozen=True, slots=True)
class JobRecord:
    """One job object, parsed. ``body`` is the object as canonical JSON; ``sha256`` its hash."""

    job_id: str
    status: str
    created_at: datetime
    fields: dict[str, Any]
    """The other columns of the ``jobs`` table, by column name."""
    hyperparameters: Hyperparameters
    state: JobState
    body: str = field(repr=False)
    sha256: str


def canonical_json(obj: Any) -> str:
    """The object as compact JSON with sorted keys: the same content always hashes the same."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def parse_job(obj: Any) -> JobRecord:
    """Parse one job object, raising PayloadError naming the job and what is wrong."""
    if not isinstance(obj, dict):
        raise PayloadError(None, f"expected a job object, got {_json_type(obj)}")
    job_id = obj.get("id")
    if not isinstance(job_id, str) or not job_id.strip():
        raise PayloadError(None, "'id' is missing or not a string")
    try:
        return _parse_fields(job_id, obj)
    except _FieldError as err:
        raise PayloadError(job_id, str(err)) from None


class _FieldError(ValueError):
    pass


def _parse_fields(job_id: str, obj: dict[str, Any]) -> JobRecord:
    status = _required_str(obj, "status")
    if status not in KNOWN_STATUSES:
        log.warning("job %s: status %r is not a documented status; kept as is", job_id, status)
    created_at = _timestamp(obj, "created_at", required=True)
    assert created_at is not None
    error = obj.get("error")
    if error is not None and not isinstance(error, dict):
        raise _FieldError(f"'error' should be an object or null, got {_json_type(error)}")
    error = error or {}
    method = obj.get("method")
    if method is not None and not isinstance(method, dict):
        raise _FieldError(f"'method' should be an object or null, got {_json_type(method)}")
    state = JobState(
        status=status,
        trained_tokens=_optional_int(obj, "trained_tokens"),
        trained_steps=_optional_int(obj, "trained_steps"),
        total_steps=_optional_int(obj, "total_steps"),
        estimated_finish=_timestamp(obj, "estimated_finish"),
    )
    fields: dict[str, Any] = {
        "object": _optional_str(obj, "object"),
        "model": _optional_str(obj, "model"),
        "finished_at": _timestamp(obj, "finished_at"),
        "training_file": _optional_str(obj, "training_file"),
        "validation_file": _optional_str(obj, "validation_file"),
        "suffix": _optional_str(obj, "suffix") or _optional_str(obj, "user_provided_suffix"),
        "seed": _optional_int(obj, "seed"),
        "organization_id": _optional_str(obj, "organization_id"),
        "error_code": _optional_str(error, "code"),
        "error_message": _optional_str(error, "message"),
        "error_param": _optional_str(error, "param"),
        "trained_tokens": state.trained_tokens,
        "trained_steps": state.trained_steps,
        "total_steps": state.total_steps,
        "estimated_finish": state.estimated_finish,
        "fine_tuned_model": _optional_str(obj, "fine_tuned_model"),
        "method_type": _optional_str(method or {}, "type"),
        "result_files": _optional_list(obj, "result_files"),
        "integrations": _optional_list(obj, "integrations"),
        "metadata": _optional_dict(obj, "metadata"),
    }
    body = canonical_json(obj)
    return JobRecord(
        job_id=job_id,
        status=status,
        created_at=created_at,
        fields=fields,
        hyperparameters=parse_hyperparameters(obj.get("hyperparameters"), method),
        state=state,
        body=body,
        sha256=hashlib.sha256(body.encode()).hexdigest(),
    )


def parse_hyperparameters(top_level: Any, method: dict[str, Any] | None) -> Hyperparameters:
    """Merge the top-level hyperparameters with the method's (OpenAI puts them there);
    the method's win where both give a value."""
    merged: dict[str, Any] = dict(top_level) if isinstance(top_level, dict) else {}
    if method:
        variant = method.get(str(method.get("type")))
        nested = variant.get("hyperparameters") if isinstance(variant, dict) else None
        if isinstance(nested, dict):
            merged.update({k: v for k, v in nested.items() if v is not None})
    typed: dict[str, int | float | bool | None] = dict.fromkeys(KNOWN_HYPERPARAMETERS)
    extra: dict[str, Any] = {}
    for name, value in merged.items():
        fitted = _fit(name, value)
        if fitted is _NO_FIT:
            extra[name] = value
        else:
            typed[name] = fitted  # type: ignore[assignment]
    return Hyperparameters(typed=typed, extra=extra)


_NO_FIT = object()


def _fit(name: str, value: Any) -> object:
    """The value in its column's type, or _NO_FIT (unknown name, "auto", a wrong type)."""
    if value is None and name in KNOWN_HYPERPARAMETERS:
        return None
    if name in BOOLEAN_HYPERPARAMETERS:
        return value if isinstance(value, bool) else _NO_FIT
    if isinstance(value, bool) or not isinstance(value, int | float):
        return _NO_FIT
    if name in FLOAT_HYPERPARAMETERS:
        return float(value) if math.isfinite(value) else _NO_FIT
    if name in INTEGER_HYPERPARAMETERS:
        return int(value) if float(value).is_integer() else _NO_FIT
    return _NO_FIT


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "a number"
    return names.get(type(value), type(value).__name__)


def _required_str(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise _FieldError(f"'{key}' is missing or not a string")
    return value


def _optional_str(obj: dict[str, Any], key: str) -> str | None:
    value = obj.get(key)
    if value is None or isinstance(value, str):
        return value
    raise _FieldError(f"'{key}' should be a string or null, got {_json_type(value)}")


def _optional_int(obj: dict[str, Any], key: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _FieldError(f"'{key}' should be an integer or null, got {_json_type(value)}")
    if not float(value).is_integer():
        raise _FieldError(f"'{key}' should be an integer, got {value}")
    return int(value)


def _optional_list(obj: dict[str, Any], key: str) -> list[Any] | None:
    value = obj.get(key)
    if value is None or isinstance(value, list):
        return value
    raise _FieldError(f"'{key}' should be an array or null, got {_json_type(value)}")


def _optional_dict(obj: dict[str, Any], key: str) -> dict[str, Any] | None:
    value = obj.get(key)
    if value is None or isinstance(value, dict):
        return value
    raise _FieldError(f"'{key}' should be an object or null, got {_json_type(value)}")


def _timestamp(obj: dict[str, Any], key: str, *, required: bool = False) -> datetime | None:
    """Epoch seconds (Nebius, OpenAI) as an aware UTC datetime; 0 and null mean unknown."""
    value = obj.get(key)
    if value is None or (value == 0 and not required and not isinstance(value, bool)):
        if required:
            raise _FieldError(f"'{key}' is missing")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _FieldError(f"'{key}' should be epoch seconds, got {_json_type(value)}")
    if not _EARLIEST <= value <= _LATEST:
        raise _FieldError(f"'{key}' = {value} is not a plausible time in epoch seconds")
    return datetime.fromtimestamp(value, tz=UTC)


# --- events and checkpoints ---------------------------------------------------------------

CHECKPOINT_METRICS = (
    "step",
    "train_loss",
    "train_mean_token_accuracy",
    "valid_loss",
    "valid_mean_token_accuracy",
    "full_valid_loss",
    "full_valid_mean_token_accuracy",
)


@dataclass(frozen=True, slots=True)
class EventRecord:
    event_id: str
    created_at: datetime
    level: str | None
    message: str | None
    type: str | None
    data: dict[str, Any] | None
    body: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class CheckpointRecord:
    checkpoint_id: str
    created_at: datetime
    step_number: int | None
    fine_tuned_model_checkpoint: str | None
    result_files: list[Any] | None
    metrics: dict[str, float | int | None]
    """The known metrics (CHECKPOINT_METRICS); others stay in ``body``."""
    body: str = field(repr=False)


def parse_event(obj: Any, job_id: str) -> EventRecord:
    """One event object; raises PayloadError naming the job when it cannot be recorded."""
    item = _item(obj, job_id, "event")
    try:
        data = item.get("data")
        return EventRecord(
            event_id=item["id"],
            created_at=_required_time(item),
            level=_optional_str(item, "level"),
            message=_optional_str(item, "message"),
            type=_optional_str(item, "type"),
            data=data if isinstance(data, dict) else None if data is None else {"value": data},
            body=canonical_json(item),
        )
    except _FieldError as err:
        raise PayloadError(job_id, f"event {item['id']}: {err}") from None


def parse_checkpoint(obj: Any, job_id: str) -> CheckpointRecord:
    """One checkpoint object; raises PayloadError naming the job when it cannot be recorded."""
    item = _item(obj, job_id, "checkpoint")
    try:
        metrics = item.get("metrics") or {}
        if not isinstance(metrics, dict):
            raise _FieldError(f"'metrics' should be an object, got {_json_type(metrics)}")
        return CheckpointRecord(
            checkpoint_id=item["id"],
            created_at=_required_time(item),
            step_number=_optional_int(item, "step_number"),
            fine_tuned_model_checkpoint=_optional_str(item, "fine_tuned_model_checkpoint"),
            result_files=_optional_list(item, "result_files"),
            metrics={name: _metric(metrics, name) for name in CHECKPOINT_METRICS},
            body=canonical_json(item),
        )
    except _FieldError as err:
        raise PayloadError(job_id, f"checkpoint {item['id']}: {err}") from None


def _item(obj: Any, job_id: str, kind: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise PayloadError(job_id, f"expected a {kind} object, got {_json_type(obj)}")
    if not isinstance(obj.get("id"), str) or not obj["id"]:
        raise PayloadError(job_id, f"a {kind} has no 'id'")
    return obj


def _required_time(item: dict[str, Any]) -> datetime:
    value = _timestamp(item, "created_at", required=True)
    assert value is not None
    return value


def _metric(metrics: dict[str, Any], name: str) -> float | int | None:
    value = metrics.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _FieldError(f"metric '{name}' should be a number, got {value!r}")
    return int(value) if name == "step" else float(value)
