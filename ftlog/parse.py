"""Turning objects from the API into typed records. Pure functions, no I/O.

Accepts Nebius's documented shape and what other OpenAI-compatible providers send:
``"auto"`` hyperparameters, a ``method`` object holding them, extra fields, unknown statuses.

**Nothing is refused for an optional value.** Only what identifies a job is required: a
string ``id``, a string ``status`` and a plausible ``created_at``; a job object without them
raises :class:`PayloadError` naming the job. Every other value that a typed column cannot
hold the same way on SQLite and on Postgres (a wrong type, an integer beyond 64 bits, NaN or
Infinity, a NUL byte or a lone UTF-16 surrogate in a text) becomes None in the record and is
named in ``problems``; the object itself is always kept whole in ``body`` (canonical JSON),
which holds every such value exactly.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import sys
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from ftlog.errors import PayloadError, shown

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

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
"""What an integer column (BIGINT) holds on both databases."""
MAX_INDEXED_BYTES = 1024
"""The longest text kept in an indexed column (ids, statuses, models): Postgres cannot index
values much over 2 KB, and SQLite is held to the same limit so that both keep the same rows."""

# Timestamps outside this range are not epoch seconds (milliseconds, garbage).
_EARLIEST, _LATEST = 946_684_800, 4_102_444_800  # 2000-01-01, 2100-01-01
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True, slots=True)
class HyperparameterValues:
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
class JobFields:
    """The job object's other fields, typed (None when absent or not storable)."""

    object: str | None = None
    model: str | None = None
    finished_at: datetime | None = None
    training_file: str | None = None
    validation_file: str | None = None
    suffix: str | None = None
    seed: int | None = None
    organization_id: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    error_param: str | None = None
    fine_tuned_model: str | None = None
    method_type: str | None = None
    result_files: list[Any] | None = None
    integrations: list[Any] | None = None
    metadata: dict[str, Any] | None = None


JOB_FIELD_NAMES = tuple(f.name for f in fields(JobFields))


@dataclass(frozen=True, slots=True)
class JobRecord:
    """One job object, parsed. ``body`` is the object as canonical JSON; ``sha256`` its hash."""

    job_id: str
    status: str
    created_at: datetime
    fields: JobFields
    hyperparameters: HyperparameterValues
    state: JobState
    body: str = field(repr=False)
    sha256: str
    problems: tuple[str, ...] = ()
    """Values the typed fields could not hold (kept only in ``body``), one phrase each."""


MAX_INT_DIGITS = 100_000
"""The longest integer ftlog reads or writes as JSON. Python stops at 4,300 digits by default
(converting more costs time quadratic in the length); an API may send more in one value, and
that must cost neither the job (its raw payload keeps the value) nor, least of all, its page."""


def load_json(data: str | bytes) -> Any:
    """``json.loads`` for what the API or a user gives ftlog: integers up to
    ``MAX_INT_DIGITS`` digits, and ValueError (not RecursionError) for nesting deeper than
    Python can follow."""
    _allow_long_integers()
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("nested too deeply to read") from None


def _allow_long_integers() -> None:
    limit = sys.get_int_max_str_digits()
    if 0 < limit < MAX_INT_DIGITS:
        sys.set_int_max_str_digits(MAX_INT_DIGITS)


def canonical_json(obj: Any) -> str:
    """The object as compact JSON with sorted keys: the same content always hashes the same.

    Lossless for everything ``json.loads`` produces: a lone surrogate is written as its
    ``\\uXXXX`` escape (so the text is valid UTF-8), NaN and Infinity as Python writes them,
    integers of any size exactly, control characters (NUL included) escaped.
    """
    _allow_long_integers()
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    if not text.isascii() and _SURROGATE.search(text):
        text = _SURROGATE.sub(lambda m: f"\\u{ord(m[0]):04x}", text)
    return text


def content_hash(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()


def parse_job(obj: Any) -> JobRecord:
    """Parse one job object; PayloadError naming the job when it has no usable identity."""
    if not isinstance(obj, dict):
        raise PayloadError(None, f"expected a job object, got {_json_type(obj)}")
    job_id = obj.get("id")
    if not isinstance(job_id, str) or not job_id.strip():
        raise PayloadError(None, "'id' is missing or not a string")
    try:
        body = canonical_json(obj)
    except RecursionError:
        raise PayloadError(job_id, "nested too deeply to keep") from None
    reader = _Reader(clean=_is_clean(body))
    try:
        problem = reader.unstorable(job_id, indexed=True)
        if problem:
            raise _FieldError(f"the id {problem}")
        return _parse_job(job_id, obj, reader, body)
    except _FieldError as err:
        raise PayloadError(job_id, str(err)) from None


def _is_clean(body: str) -> bool:
    """Whether canonical JSON holds nothing a column cannot: no NUL, no lone surrogate (both
    appear escaped), no NaN or Infinity. A text that merely mentions them reads as unclean,
    which only costs the closer look."""
    return (
        "\\u0000" not in body
        and "\\ud" not in body
        and "NaN" not in body
        and ("Infinity" not in body)
    )


class _FieldError(ValueError):
    pass


class _Reader:
    """Reads optional values as their column's type; what does not fit is noted in
    ``problems`` and read as None.

    ``clean`` says that the object's canonical JSON holds no NUL, no lone surrogate and no
    NaN or Infinity (the common case, decided once from the text): its texts and JSON values
    then need no looking into, only their types checked."""

    def __init__(self, clean: bool = False) -> None:
        self.problems: list[str] = []
        self.clean = clean

    def note(self, problem: str) -> None:
        self.problems.append(problem)

    @staticmethod
    def unstorable(text: str, *, indexed: bool = False) -> str | None:
        """Why a text cannot go in a text column on both databases, or None."""
        if "\x00" in text:
            return "holds a NUL byte"
        if not text.isascii() and _SURROGATE.search(text):
            return "is not valid Unicode (a lone surrogate)"
        if (
            indexed
            and len(text) > MAX_INDEXED_BYTES // 4
            and len(text.encode()) > MAX_INDEXED_BYTES
        ):
            return f"is longer than {MAX_INDEXED_BYTES} bytes"
        return None

    def text(
        self, obj: dict[str, Any], key: str, where: str = "", *, indexed: bool = False
    ) -> str | None:
        value = obj.get(key)
        if value is None:
            return None
        if type(value) is not str:
            self.note(f"'{where}{key}' should be a string, got {_json_type(value)}")
            return None
        if self.clean and not indexed:
            return value
        problem = self.unstorable(value, indexed=indexed)
        if problem:
            self.note(f"'{where}{key}' {problem}")
            return None
        return value

    def integer(self, obj: dict[str, Any], key: str, where: str = "") -> int | None:
        value = obj.get(key)
        if value is None:
            return None
        if type(value) is int and INT64_MIN <= value <= INT64_MAX:
            return value
        whole = _whole(value)
        if whole is None:
            self.note(f"'{where}{key}' should be a whole number, got {_describe(value)}")
        elif not INT64_MIN <= whole <= INT64_MAX:
            self.note(f"'{where}{key}' = {_describe(value)} does not fit in 64 bits")
            return None
        return whole

    def number(self, obj: dict[str, Any], key: str, where: str = "") -> float | None:
        value = obj.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.note(f"'{where}{key}' should be a number, got {_json_type(value)}")
            return None
        number = float(value) if abs(value) < 1e308 else math.inf
        if not math.isfinite(number):
            self.note(f"'{where}{key}' = {_describe(value)} is not a finite number")
            return None
        return number

    def timestamp(self, obj: dict[str, Any], key: str) -> datetime | None:
        """Epoch seconds as an aware UTC datetime; 0 and null mean unknown."""
        try:
            return _timestamp(obj, key)
        except _FieldError as err:
            self.note(str(err))
            return None

    def json(self, obj: dict[str, Any], key: str, kind: type, where: str = "") -> Any:
        value = obj.get(key)
        if value is None:
            return None
        if not isinstance(value, kind):
            expected = "an array" if kind is list else "an object"
            self.note(f"'{where}{key}' should be {expected}, got {_json_type(value)}")
            return None
        if self.clean:
            return value
        problem = json_problem(value)
        if problem:
            self.note(f"'{where}{key}' {problem}")
            return None
        return value

    def object(self, obj: dict[str, Any], key: str) -> dict[str, Any]:
        value = obj.get(key)
        if value is None or isinstance(value, dict):
            return value or {}
        self.note(f"'{key}' should be an object, got {_json_type(value)}")
        return {}


def json_problem(value: Any) -> str | None:
    """Why a JSON value cannot go in a JSON column alike on SQLite and Postgres, or None:
    Postgres refuses NaN and Infinity, and fails on NUL and lone surrogates when it reads
    them back."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            problem = _Reader.unstorable(item)
            if problem:
                return f"has a text that {problem}"
        elif isinstance(item, float):
            if not math.isfinite(item):
                return f"holds {item!r}, which JSON columns cannot"
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


def _parse_job(job_id: str, obj: dict[str, Any], read: _Reader, body: str) -> JobRecord:
    status = obj.get("status")
    if not isinstance(status, str) or not status:
        raise _FieldError("'status' is missing or not a string")
    problem = read.unstorable(status, indexed=True)
    if problem:
        raise _FieldError(f"'status' {problem}")
    if status not in KNOWN_STATUSES:
        log.warning(
            "job %s: status %s is not a documented status; kept as is",
            shown(job_id),
            shown(repr(status)),
        )
    created_at = _timestamp(obj, "created_at", required=True)
    assert created_at is not None
    error = read.object(obj, "error")
    method = read.object(obj, "method")
    state = JobState(
        status=status,
        trained_tokens=read.integer(obj, "trained_tokens"),
        trained_steps=read.integer(obj, "trained_steps"),
        total_steps=read.integer(obj, "total_steps"),
        estimated_finish=read.timestamp(obj, "estimated_finish"),
    )
    job_fields = JobFields(
        object=read.text(obj, "object"),
        model=read.text(obj, "model", indexed=True),
        finished_at=read.timestamp(obj, "finished_at"),
        training_file=read.text(obj, "training_file"),
        validation_file=read.text(obj, "validation_file"),
        suffix=read.text(obj, "suffix") or read.text(obj, "user_provided_suffix"),
        seed=read.integer(obj, "seed"),
        organization_id=read.text(obj, "organization_id"),
        error_code=read.text(error, "code", "error."),
        error_message=read.text(error, "message", "error."),
        error_param=read.text(error, "param", "error."),
        fine_tuned_model=read.text(obj, "fine_tuned_model"),
        method_type=read.text(method, "type", "method."),
        result_files=read.json(obj, "result_files", list),
        integrations=read.json(obj, "integrations", list),
        metadata=read.json(obj, "metadata", dict),
    )
    hyperparameters = _hyperparameters(obj.get("hyperparameters"), method, read)
    return JobRecord(
        job_id=job_id,
        status=status,
        created_at=created_at,
        fields=job_fields,
        hyperparameters=hyperparameters,
        state=state,
        body=body,
        sha256=content_hash(body),
        problems=tuple(read.problems),
    )


def parse_hyperparameters(top_level: Any, method: dict[str, Any] | None) -> HyperparameterValues:
    """Merge the top-level hyperparameters with the method's (OpenAI puts them there);
    the method's win where both give a value."""
    return _hyperparameters(top_level, method or {}, _Reader())


def _hyperparameters(top_level: Any, method: dict[str, Any], read: _Reader) -> HyperparameterValues:
    merged: dict[str, Any] = dict(top_level) if isinstance(top_level, dict) else {}
    if top_level is not None and not isinstance(top_level, dict):
        read.note(f"'hyperparameters' should be an object, got {_json_type(top_level)}")
    variant = method.get(str(method.get("type"))) if method else None
    nested = variant.get("hyperparameters") if isinstance(variant, dict) else None
    if isinstance(nested, dict):
        merged.update({k: v for k, v in nested.items() if v is not None})
    typed: dict[str, int | float | bool | None] = dict.fromkeys(KNOWN_HYPERPARAMETERS)
    extra: dict[str, Any] = {}
    for name, value in merged.items():
        fitted = _fit(_KINDS.get(name), value)
        if fitted is not _NO_FIT:
            typed[name] = fitted  # type: ignore[assignment]
            continue
        problem = None if read.clean else _Reader.unstorable(name) or json_problem(value)
        if problem:
            read.note(f"hyperparameter {_printable(name)} {problem}")
        else:
            extra[name] = value
    return HyperparameterValues(typed=typed, extra=extra)


_NO_FIT = object()
_KINDS: dict[str, type] = {
    **dict.fromkeys(INTEGER_HYPERPARAMETERS, int),
    **dict.fromkeys(FLOAT_HYPERPARAMETERS, float),
    **dict.fromkeys(BOOLEAN_HYPERPARAMETERS, bool),
}


def _fit(kind: type | None, value: Any) -> object:
    """The value in its column's ``kind``, or _NO_FIT (an unknown name: ``kind`` None;
    "auto"; a wrong type)."""
    if kind is None:
        return _NO_FIT
    if value is None:
        return None
    given = type(value)
    if kind is bool or given is bool:
        return value if kind is given else _NO_FIT
    if given is not int and given is not float:
        return _NO_FIT
    if kind is float:
        return float(value) if abs(value) < 1e308 and math.isfinite(value) else _NO_FIT
    whole = _whole(value)
    return whole if whole is not None and INT64_MIN <= whole <= INT64_MAX else _NO_FIT


def _whole(value: Any) -> int | None:
    """An integer, or a float with a whole value, as int; None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return None


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "a number"
    return names.get(type(value), type(value).__name__)


def _describe(value: Any) -> str:
    """A value for a one-line message: numbers as written (long ones cut), else the type."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        text = repr(value)
        return text if len(text) <= 24 else f"{text[:10]}…({len(text)} digits)"
    return _json_type(value)


def _printable(text: str) -> str:
    return json.dumps(text)[:60]


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
        raise _FieldError(f"'{key}' = {_describe(value)} is not a plausible time in epoch seconds")
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
    problems: tuple[str, ...] = ()


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
    problems: tuple[str, ...] = ()


def parse_event(obj: Any, job_id: str) -> EventRecord:
    """One event object; raises PayloadError naming the job when it has no usable id or
    time. Other values that do not fit are None and named in ``problems``."""
    item = _item(obj, job_id, "event")
    read = _Reader()
    try:
        created_at = _required_time(item)
    except _FieldError as err:
        raise PayloadError(job_id, f"event {item['id']}: {err}") from None
    data = item.get("data")
    if data is not None and not isinstance(data, dict):
        data = {"value": data}
    return EventRecord(
        event_id=item["id"],
        created_at=created_at,
        level=read.text(item, "level"),
        message=read.text(item, "message"),
        type=read.text(item, "type"),
        data=read.json({"data": data}, "data", dict),
        body=canonical_json(item),
        problems=tuple(read.problems),
    )


def parse_checkpoint(obj: Any, job_id: str) -> CheckpointRecord:
    """One checkpoint object; as :func:`parse_event`."""
    item = _item(obj, job_id, "checkpoint")
    read = _Reader()
    try:
        created_at = _required_time(item)
    except _FieldError as err:
        raise PayloadError(job_id, f"checkpoint {item['id']}: {err}") from None
    metrics = read.object(item, "metrics")
    return CheckpointRecord(
        checkpoint_id=item["id"],
        created_at=created_at,
        step_number=read.integer(item, "step_number"),
        fine_tuned_model_checkpoint=read.text(item, "fine_tuned_model_checkpoint"),
        result_files=read.json(item, "result_files", list),
        metrics={
            name: read.integer(metrics, name, "metrics.")
            if name == "step"
            else read.number(metrics, name, "metrics.")
            for name in CHECKPOINT_METRICS
        },
        body=canonical_json(item),
        problems=tuple(read.problems),
    )


def _item(obj: Any, job_id: str, kind: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise PayloadError(job_id, f"expected a {kind} object, got {_json_type(obj)}")
    item_id = obj.get("id")
    if not isinstance(item_id, str) or not item_id:
        raise PayloadError(job_id, f"a {kind} has no 'id'")
    problem = _Reader.unstorable(item_id, indexed=True)
    if problem:
        raise PayloadError(job_id, f"a {kind} id {problem}")
    return obj


def _required_time(item: dict[str, Any]) -> datetime:
    value = _timestamp(item, "created_at", required=True)
    assert value is not None
    return value
