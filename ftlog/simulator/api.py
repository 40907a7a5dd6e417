"""The simulated API's state and answers, independent of the HTTP transport."""

from __future__ import annotations

import bisect
import hmac
import json
import math
import random
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from ftlog.simulator.faults import FaultRule, parse_faults, pick_fault
from ftlog.simulator.jobs import (
    TERMINAL_STATUSES,
    JobSpec,
    job_checkpoints,
    job_events,
    render_job,
)

BASE_PATH = "/v1"
JOBS_PATH = "/v1/fine_tuning/jobs"
JOB_ROUTE = JOBS_PATH + "/{job_id}"
EVENTS_ROUTE = JOB_ROUTE + "/events"
CHECKPOINTS_ROUTE = JOB_ROUTE + "/checkpoints"
STATS_PATH = "/_sim/stats"
TOUCH_PATH = "/_sim/touch"
DEFAULT_LIMIT = 20
MAX_LIMIT = 100

_ENCODER = json.JSONEncoder(separators=(",", ":"), check_circular=False)


def _encode(obj: Any) -> bytes:
    return _ENCODER.encode(obj).encode()


# --- Time -----------------------------------------------------------------------------------


class Clock(Protocol):
    def now(self) -> float:
        """Simulated time, in epoch seconds."""
        ...


class ScaledClock:
    """Simulated time = ``start + (real seconds elapsed) * speed``; ``start`` defaults to now."""

    def __init__(self, start: float | None = None, speed: float = 60.0) -> None:
        if speed <= 0:
            raise ValueError(f"speed must be positive, not {speed}")
        self.start = time.time() if start is None else start
        self.speed = speed
        self._real_start = time.monotonic()

    def now(self) -> float:
        return self.start + (time.monotonic() - self._real_start) * self.speed


class ManualClock:
    """A clock that moves only when told to, so tests can step a job through its life."""

    def __init__(self, now: float = 0.0) -> None:
        self._now = now

    def now(self) -> float:
        return self._now

    def set(self, now: float) -> None:
        self._now = now

    def advance(self, seconds: float) -> None:
        self._now += seconds


# --- The API --------------------------------------------------------------------------------


@dataclass
class Response:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drop_connection: bool = False


@dataclass
class Stats:
    """Requests answered (``/_sim/stats`` itself excluded), per route and per fault picked."""

    requests: int = 0
    by_path: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)


class _BadRequest(Exception):
    pass


def _error(
    status: int, message: str, code: str | None, kind: str = "invalid_request_error"
) -> Response:
    error = {"message": message, "type": kind, "param": None, "code": code}
    return Response(status, _encode({"error": error}))


def _list_body(items: Iterable[bytes], has_more: bool) -> bytes:
    data = b",".join(items)
    return b'{"object":"list","data":[' + data + b'],"has_more":' + _encode(has_more) + b"}"


class SimulatedAPI:
    """The simulated API's state and answers; :func:`serve_in_thread` puts it on a socket.

    ``clock`` defaults to a :class:`ScaledClock` starting now at ``speed``; ``seed`` drives the
    random faults; ``token``, when given, is the only bearer token accepted (otherwise any
    non-empty one is); ``latency`` delays every answer by that many seconds, as a real
    network and API would. Counters are in ``stats``.
    """

    def __init__(
        self,
        jobs: Iterable[JobSpec],
        *,
        clock: Clock | None = None,
        speed: float = 60.0,
        seed: int = 0,
        faults: str | Sequence[FaultRule] = (),
        token: str | None = None,
        latency: float = 0.0,
    ) -> None:
        self.clock: Clock = clock or ScaledClock(speed=speed)
        self.faults = parse_faults(faults) if isinstance(faults, str) else tuple(faults)
        self.stats = Stats()
        self._token = token
        if latency < 0:
            raise ValueError(f"latency must not be negative, not {latency}")
        self.latency = latency
        self._specs = {spec.id: spec for spec in jobs}
        newest_first = sorted(self._specs.values(), key=lambda s: (s.created_at, s.id))[::-1]
        self._order = [spec.id for spec in newest_first]
        self._neg_created = [-spec.created_at for spec in newest_first]
        self._position = {job_id: index for index, job_id in enumerate(self._order)}
        self._encoded: dict[str, tuple[JobSpec, bytes]] = {}
        self._timelines: dict[tuple[str, str], tuple[JobSpec, list[dict[str, Any]]]] = {}
        self._lock = threading.Lock()
        self._rng = random.Random(seed)  # noqa: S311 - reproducible faults, not security
        self._counted = 0

    @property
    def job_ids(self) -> list[str]:
        """All job ids, newest first, including jobs not created yet at the clock's time."""
        return list(self._order)

    def touch(self, job_ids: Iterable[str], **changes: Any) -> None:
        """Make these jobs' next responses differ: bump ``revision`` (it shows in the suffix)
        and apply ``changes`` to their :class:`JobSpec` fields."""
        if {"id", "created_at"} & changes.keys():
            raise ValueError("touch cannot change id or created_at: they fix the list order")
        for job_id in job_ids:
            spec = self._specs[job_id]
            self._specs[job_id] = replace(spec, **{"revision": spec.revision + 1, **changes})

    def control(self, target: str) -> Response:
        """Answer ``POST target`` on a control path; the server serves it to loopback only.

        ``/_sim/touch?n=N`` touches (see :meth:`touch`) the ``N`` newest jobs created by the
        clock's time and answers ``{"touched": [ids]}``: a way for a benchmark or test in
        another process to make 1% of the jobs change.
        """
        url = urlsplit(target)
        if url.path.rstrip("/") != TOUCH_PATH:
            return _error(404, "Unknown control URL", "not_found")
        raw = _first(parse_qs(url.query), "n") or "1"
        if not raw.isdigit():
            return _error(400, f"n must be a whole number, not {raw!r}", "invalid_request")
        start = bisect.bisect_left(self._neg_created, -int(self.clock.now()))
        touched = self._order[start : start + int(raw)]
        self.touch(touched)
        return Response(200, _encode({"touched": touched}))

    def stats_snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": self.stats.requests,
                "by_path": dict(self.stats.by_path),
                "faults": dict(self.stats.faults),
            }

    def handle(self, target: str, authorization: str | None) -> Response:
        """Answer ``GET target`` (path and query) carrying this Authorization header."""
        url = urlsplit(target)
        path = url.path.rstrip("/")
        if path == STATS_PATH:
            return Response(200, _encode(self.stats_snapshot()))
        route, job_id = _route(path)
        with self._lock:
            self.stats.requests += 1
            self.stats.by_path[route] += 1
        response = self._respond(route, job_id, url.query, authorization)
        response.delay = max(response.delay, self.latency)
        return response

    def _respond(self, route: str, job_id: str, query: str, authorization: str | None) -> Response:
        problem = self._auth_problem(authorization)
        if problem:
            return _error(401, problem, "invalid_api_key")
        fault = self._pick_fault()
        if fault is not None and fault.kind in ("429", "500", "502", "503", "reset"):
            return _fault_response(fault)
        try:
            response = self._answer(route, job_id, parse_qs(query), int(self.clock.now()))
        except _BadRequest as err:
            return _error(400, str(err), "invalid_request")
        return response if fault is None else _spoil(response, fault, route)

    def _auth_problem(self, header: str | None) -> str | None:
        scheme, _, token = (header or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return "Missing API key: send an 'Authorization: Bearer <key>' header"
        if self._token is not None and not hmac.compare_digest(
            token.strip().encode(), self._token.encode()
        ):
            return "Invalid API key"
        return None

    def _pick_fault(self) -> FaultRule | None:
        if not self.faults:
            return None
        with self._lock:
            self._counted += 1
            fault = pick_fault(self.faults, self._counted, self._rng.random())
            if fault is not None:
                self.stats.faults[fault.kind] += 1
        return fault

    def _answer(self, route: str, job_id: str, query: dict[str, list[str]], t: int) -> Response:
        if route == "other":
            return _error(404, "Unknown URL", "not_found")
        if route == JOBS_PATH:
            return self._list_jobs(t, _limit(query), _first(query, "after"))
        spec = self._specs.get(job_id)
        if spec is None or spec.created_at > t:
            return _error(404, f"Fine-tuning job {job_id} not found", "not_found")
        if route == JOB_ROUTE:
            return Response(200, self._job_bytes(spec, t))
        items = self._timeline(spec, route)
        return self._list_timeline(items, t, _limit(query), _first(query, "after"))

    def _list_jobs(self, t: int, limit: int, after: str | None) -> Response:
        start = bisect.bisect_left(self._neg_created, -t)  # the newest job created by t
        if after is not None:
            if after not in self._position:
                raise _BadRequest(f"Unknown cursor: no job {after}")
            start = max(start, self._position[after] + 1)
        page = self._order[start : start + limit]
        body = _list_body(
            (self._job_bytes(self._specs[i], t) for i in page), start + limit < len(self._order)
        )
        return Response(200, body)

    def _job_bytes(self, spec: JobSpec, t: int) -> bytes:
        """The encoded job; a finished job's answer no longer changes, so it is cached."""
        if spec.status_at(t) not in TERMINAL_STATUSES:
            return _encode(render_job(spec, t))
        cached = self._encoded.get(spec.id)
        if cached is not None and cached[0] is spec:
            return cached[1]
        body = _encode(render_job(spec, t))
        self._encoded[spec.id] = (spec, body)
        return body

    def _timeline(self, spec: JobSpec, route: str) -> list[dict[str, Any]]:
        cached = self._timelines.get((spec.id, route))
        if cached is not None and cached[0] is spec:
            return cached[1]
        items = job_events(spec) if route == EVENTS_ROUTE else job_checkpoints(spec)
        items.sort(key=lambda item: item["created_at"])  # stable: same-second order is kept
        self._timelines[spec.id, route] = (spec, items)
        return items

    def _list_timeline(
        self, items: list[dict[str, Any]], t: int, limit: int, after: str | None
    ) -> Response:
        end = bisect.bisect_right([item["created_at"] for item in items], t)
        if after is not None:
            positions = [index for index, item in enumerate(items) if item["id"] == after]
            if not positions:
                raise _BadRequest(f"Unknown cursor: {after}")
            end = min(end, positions[0])
        page = items[max(0, end - limit) : end][::-1]
        return Response(200, _list_body(map(_encode, page), end > limit))


def _route(path: str) -> tuple[str, str]:
    """The route template for ``path`` (or "other") and the job id in it."""
    if path == JOBS_PATH:
        return JOBS_PATH, ""
    prefix = JOBS_PATH + "/"
    parts = path.removeprefix(prefix).split("/") if path.startswith(prefix) else []
    if len(parts) == 1:
        return JOB_ROUTE, unquote(parts[0])
    if len(parts) == 2 and parts[1] in ("events", "checkpoints"):
        return f"{JOB_ROUTE}/{parts[1]}", unquote(parts[0])
    return "other", ""


def _first(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None


def _limit(query: dict[str, list[str]]) -> int:
    raw = _first(query, "limit")
    if raw is None:
        return DEFAULT_LIMIT
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise _BadRequest(f"limit must be an integer from 1 to {MAX_LIMIT}, not {raw!r}")
    return int(raw)


def _fault_response(fault: FaultRule) -> Response:
    if fault.kind == "reset":
        return Response(0, b"", drop_connection=True)
    if fault.kind == "429":
        response = _error(429, "Rate limit reached (simulated)", "rate_limit_exceeded", "requests")
        response.headers["Retry-After"] = str(math.ceil(fault.arg))
        return response
    return _error(int(fault.kind), "Simulated server error", None, "server_error")


def _spoil(response: Response, fault: FaultRule, route: str) -> Response:
    """Apply a fault that alters a computed answer: slow, malformed or missing."""
    if fault.kind == "slow":
        response.delay = fault.arg
    elif fault.kind == "malformed" and response.status == 200:
        response.body = response.body[: len(response.body) // 2]
    elif fault.kind == "missing" and response.status == 200 and route in (JOBS_PATH, JOB_ROUTE):
        payload = json.loads(response.body)
        for job in payload["data"][:1] if route == JOBS_PATH else [payload]:
            del job["status"]
        response.body = _encode(payload)
    return response


def control_refused() -> Response:
    """The answer to a control request from an address that is not loopback."""
    return _error(403, "Control requests are accepted from loopback only", "forbidden")
