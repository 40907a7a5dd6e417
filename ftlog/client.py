"""HTTP client for an OpenAI-compatible fine-tuning API (Nebius AI Studio first).

Only HTTP lives here: requests, retries, paging and a check of each response's *shape*.
Items come back as raw decoded JSON; turning them into records is the parser's job.

Lists (jobs, events, checkpoints) are newest first, and the ``after`` cursor pages towards
*older* items. So "what is new since the newest stored item" is not ``after=newest``: it is
paging from the newest and stopping at the first item already known, which is what
:meth:`FineTuningClient.iter_new_events` and :meth:`FineTuningClient.iter_new_checkpoints` do.

The API key is a secret. It is sent only in the ``Authorization`` header and never appears
in an exception message, a log record, or the client's ``repr``; text that comes back from
the API (error messages) is scrubbed of it too, in case the API echoes it.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import random
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import httpx

from ftlog import __version__, settings
from ftlog.errors import APIError, AuthError, NotFound, PayloadError, UsageProblem

logger = logging.getLogger("ftlog.client")

USER_AGENT = f"ftlog/{__version__}"
DEFAULT_TIMEOUT = httpx.Timeout(30.0)
"""Connect, read, write and pool timeouts, in seconds, for every request."""
MAX_PAGE_LIMIT = 100
"""The largest page Nebius serves."""
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_KEY_HINT = "set FTLOG_API_KEY or NEBIUS_API_KEY, or pass --api-key"
_MESSAGE_CHARS = 200


@dataclass(frozen=True)
class RetryPolicy:
    """When to try a request again, and for how long.

    Retried: HTTP 429, 500, 502, 503, 504, and transport failures (connection refused or
    reset, timeouts, a peer that breaks the protocol). Attempt ``n`` (from 1) is followed by a
    wait drawn uniformly from ``[0, min(max_delay, base_delay * 2**(n-1))]`` ("full jitter"),
    unless the response has a ``Retry-After`` header (seconds or an HTTP date), which is used
    as it is, capped at ``max_retry_after``. The defaults give up after 6 attempts, or sooner
    when the next wait would take the time since the first attempt past ``max_total_wait``
    (so a cron run never hangs for long behind a struggling API).
    """

    max_attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_retry_after: float = 60.0
    max_total_wait: float = 120.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if min(self.base_delay, self.max_delay, self.max_retry_after, self.max_total_wait) < 0:
            raise ValueError("delays must not be negative")

    def backoff(self, attempt: int) -> float:
        """The jittered wait after failed attempt number ``attempt`` (from 1)."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return random.uniform(0.0, ceiling)  # noqa: S311 - jitter, not cryptography


@dataclass(frozen=True)
class JobPage:
    """One page of ``GET /fine_tuning/jobs``: raw job items, newest first."""

    jobs: list[Any]
    has_more: bool
    last_id: str | None
    """The id of the last (oldest) item: the ``after`` cursor for the next page."""


@dataclass(frozen=True)
class _Page:
    items: list[Any]
    has_more: bool
    last_id: str | None


class _Secret:
    """Holds the token so that no repr, vars() dump or debugger view shows it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "<secret>"


def resolve_api_key(explicit: str | None) -> str | None:
    """The token: ``explicit`` (e.g. ``--api-key``) if given, else FTLOG_API_KEY, NEBIUS_API_KEY."""
    if explicit is not None and explicit.strip():
        return explicit.strip()
    return settings.api_key_from_env()


class FineTuningClient:
    """A keep-alive HTTP session with the fine-tuning API. Use it as a context manager.

    ``base_url`` defaults to :data:`ftlog.settings.DEFAULT_BASE_URL` (a trailing ``/`` is
    optional). ``project_id``, when given, is sent as ``ai_project_id`` on every request.
    ``transport``, ``sleep`` and ``clock`` exist for tests. ``request_count`` counts the
    requests actually sent, retries included.

    Raises, from any request: :class:`AuthError` on 401/403 (never retried);
    :class:`NotFound` on 404; :class:`APIError` on any other failure, once retries are
    exhausted, or when a list response is malformed. The constructor raises
    :class:`AuthError` for a missing or malformed key and :class:`UsageProblem` for a base
    URL that is not http(s).
    """

    def __init__(
        self,
        base_url: str | None,
        api_key: str | None,
        project_id: str | None = None,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        user_agent: str = USER_AGENT,
    ) -> None:
        token = (api_key or "").strip()
        if not token:
            raise AuthError(f"no API key: {_KEY_HINT}")
        if not re.fullmatch(r"[\x21-\x7e]+", token):
            # Caught here because h11 would quote the whole header value in its error.
            raise AuthError(
                "the API key contains spaces or characters that cannot be sent in an HTTP "
                f"header; check it ({_KEY_HINT})"
            )
        self._token = _Secret(token)
        self.base_url = _check_base_url(base_url or settings.DEFAULT_BASE_URL)
        self.project_id = (project_id or "").strip() or None
        self.retry = retry or RetryPolicy()
        self.request_count = 0
        self._sleep = sleep
        self._clock = clock
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/json",
                "User-Agent": user_agent,
            },
            timeout=timeout,
            transport=transport,
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return (
            f"FineTuningClient(base_url={self.base_url!r}, project_id={self.project_id!r}, "
            "api_key=<secret>)"
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- jobs -------------------------------------------------------------------------------

    def get_job(self, job_id: str) -> dict[str, Any]:
        """The raw job object.

        Raises :class:`NotFound` naming the job on 404, and :class:`PayloadError` when the
        body is not a JSON object.
        """
        path = _job_path(job_id)
        response = self._get(path, {}, not_found=f"job {job_id} not found")
        try:
            body = _decode(response)
        except ValueError as err:
            raise PayloadError(job_id, f"response is not JSON: {err}") from None
        if not isinstance(body, dict):
            raise PayloadError(
                job_id, f"response is not JSON: expected an object, got {_kind(body)}"
            )
        return body

    def list_jobs(self, limit: int = MAX_PAGE_LIMIT, after: str | None = None) -> JobPage:
        """One page of jobs, newest first, older than job ``after`` when given."""
        page = self._list("/fine_tuning/jobs", limit, after)
        return JobPage(jobs=page.items, has_more=page.has_more, last_id=page.last_id)

    def iter_job_pages(
        self, limit: int = MAX_PAGE_LIMIT, after: str | None = None
    ) -> Iterator[JobPage]:
        """Pages of jobs, newest first, until ``has_more`` is false or a page is empty.

        Lazy: the next page is requested only when the caller asks for it, so stopping early
        (an incremental sync reaching stored jobs) costs no extra request.
        """
        for page in self._iter_pages("/fine_tuning/jobs", limit, after):
            yield JobPage(jobs=page.items, has_more=page.has_more, last_id=page.last_id)

    # -- events and checkpoints -------------------------------------------------------------

    def iter_events(
        self, job_id: str, after: str | None = None, limit: int = MAX_PAGE_LIMIT
    ) -> Iterator[Any]:
        """The job's raw events, one at a time, newest first (older than ``after`` if given).

        Lazy, page by page, like :meth:`iter_job_pages`.
        """
        for page in self._iter_pages(f"{_job_path(job_id)}/events", limit, after, job_id):
            yield from page.items

    def iter_checkpoints(
        self, job_id: str, after: str | None = None, limit: int = MAX_PAGE_LIMIT
    ) -> Iterator[Any]:
        """The job's raw checkpoints, one at a time, newest first; as :meth:`iter_events`."""
        for page in self._iter_pages(f"{_job_path(job_id)}/checkpoints", limit, after, job_id):
            yield from page.items

    def iter_new_events(
        self,
        job_id: str,
        newest_known_id: str | None,
        newest_known_created_at: float | None = None,
        *,
        limit: int = MAX_PAGE_LIMIT,
    ) -> Iterator[Any]:
        """The events newer than the newest one already stored, **oldest first**.

        Pages from the newest and stops, without requesting another page, at the first item
        whose id is ``newest_known_id`` or whose ``created_at`` is older than
        ``newest_known_created_at``; that item and everything older are not yielded. Items
        with the same ``created_at`` but another id are yielded (the store deduplicates by id).
        With neither bound, every event is yielded.

        All the pages needed are fetched before the first item is yielded. Oldest first means
        that a caller saving items as they come, and interrupted, never leaves a gap behind its
        newest stored item (which the next run would take as "everything before is known").
        """
        path = f"{_job_path(job_id)}/events"
        return self._iter_new(path, job_id, newest_known_id, newest_known_created_at, limit)

    def iter_new_checkpoints(
        self,
        job_id: str,
        newest_known_id: str | None,
        newest_known_created_at: float | None = None,
        *,
        limit: int = MAX_PAGE_LIMIT,
    ) -> Iterator[Any]:
        """The checkpoints newer than the newest one stored, oldest first; as
        :meth:`iter_new_events`."""
        path = f"{_job_path(job_id)}/checkpoints"
        return self._iter_new(path, job_id, newest_known_id, newest_known_created_at, limit)

    # -- paging -----------------------------------------------------------------------------

    def _iter_new(
        self,
        path: str,
        job_id: str,
        known_id: str | None,
        known_created_at: float | None,
        limit: int,
    ) -> Iterator[Any]:
        new: list[Any] = []
        for page in self._iter_pages(path, limit, None, job_id):
            for item in page.items:
                if _is_known(item, known_id, known_created_at):
                    yield from reversed(new)
                    return
                new.append(item)
        yield from reversed(new)

    def _iter_pages(
        self, path: str, limit: int, after: str | None, job_id: str | None = None
    ) -> Iterator[_Page]:
        seen: set[str] = set() if after is None else {after}
        while True:
            page = self._list(path, limit, after, job_id)
            yield page
            if not page.has_more or not page.items:
                return
            if page.last_id is None:
                raise APIError(
                    f"GET {path}: the page says has_more but its last item has no id, "
                    "so there is no cursor for the next page"
                )
            if page.last_id in seen:
                raise APIError(
                    f"GET {path}: the API sent a page ending at {page.last_id} again; "
                    "stopped to avoid paging in a loop"
                )
            seen.add(page.last_id)
            after = page.last_id

    def _list(self, path: str, limit: int, after: str | None, job_id: str | None = None) -> _Page:
        if not 1 <= limit <= MAX_PAGE_LIMIT:
            raise UsageProblem(f"page limit must be between 1 and {MAX_PAGE_LIMIT}, not {limit}")
        params: dict[str, str | int] = {"limit": limit}
        if after is not None:
            params["after"] = after
        not_found = f"job {job_id} not found, or the API has no {path.rsplit('/', 1)[-1]}"
        response = self._get(path, params, not_found=not_found if job_id else None)
        try:
            body = _decode(response)
        except ValueError as err:
            raise APIError(f"GET {path}: response is not JSON: {err}") from None
        return _parse_page(path, body)

    # -- requests ---------------------------------------------------------------------------

    def _get(
        self, path: str, params: dict[str, str | int], *, not_found: str | None
    ) -> httpx.Response:
        """A 2xx response to GET ``path``, after retries; raises a domain error otherwise."""
        if self.project_id is not None:
            params = {**params, "ai_project_id": self.project_id}
        start = self._clock()
        attempt = 0
        while True:
            attempt += 1
            self.request_count += 1
            response: httpx.Response | None = None
            try:
                response = self._http.get(path, params=params)
            except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as err:
                failure = f"{type(err).__name__}: {self._one_line(str(err)) or 'no detail'}"
                advice = "could not reach the API; check the network and the base URL"
            except httpx.HTTPError as err:
                raise APIError(
                    f"GET {path}: {type(err).__name__}: {self._one_line(str(err))}"
                ) from None
            else:
                status = response.status_code
                logger.debug("GET %s: HTTP %d", path, status)
                if response.is_success:
                    return response
                if status not in RETRY_STATUSES:
                    self._raise_for_status(path, response, not_found)
                failure = f"HTTP {status}"
                advice = (
                    "the API is rate-limiting requests"
                    if status == 429
                    else "the API is unavailable"
                )

            delay = _retry_after(response, self.retry.max_retry_after)
            if delay is None:
                delay = self.retry.backoff(attempt)
            elapsed = self._clock() - start
            if attempt >= self.retry.max_attempts or elapsed + delay > self.retry.max_total_wait:
                raise APIError(
                    f"GET {path}: {failure} after {attempt} attempt{'s' * (attempt > 1)} "
                    f"over {elapsed:.1f} s; {advice}, try again later"
                )
            logger.info(
                "GET %s: %s; retrying in %.1f s (attempt %d of %d)",
                path,
                failure,
                delay,
                attempt + 1,
                self.retry.max_attempts,
            )
            self._sleep(delay)

    def _raise_for_status(self, path: str, response: httpx.Response, not_found: str | None) -> None:
        status = response.status_code
        detail = self._api_message(response)
        said = f": {detail}" if detail else ""
        if status in (401, 403):
            raise AuthError(f"the API refused the token (HTTP {status}{said}); {_KEY_HINT}")
        if status == 404:
            if not_found:
                raise NotFound(f"{not_found} (GET {path}: HTTP 404{said})")
            raise NotFound(f"GET {path}: HTTP 404 not found{said}")
        raise APIError(f"GET {path}: HTTP {status}{said}")

    def _api_message(self, response: httpx.Response) -> str:
        """The API's own error message, on one line, without the token."""
        try:
            body = json.loads(response.content)
        except ValueError:
            return ""
        message: Any = None
        if isinstance(body, dict):
            error = body.get("error")
            if isinstance(error, dict):
                message = error.get("message")
            elif isinstance(error, str):
                message = error
            if message is None:
                message = body.get("detail", body.get("message"))
        if isinstance(message, str | int | float) and not isinstance(message, bool):
            return self._one_line(str(message))
        return ""

    def _one_line(self, text: str) -> str:
        text = " ".join(text.replace(self._token.reveal(), "<secret>").split())
        if len(text) > _MESSAGE_CHARS:
            text = text[: _MESSAGE_CHARS - 1] + "…"
        return text


def _check_base_url(base_url: str) -> str:
    try:
        url = httpx.URL(base_url.strip())
    except httpx.InvalidURL:
        url = httpx.URL()
    if url.scheme not in ("http", "https") or not url.host:
        raise UsageProblem(f"the base URL must be an http(s) URL, not {base_url!r}")
    return str(url)


def _job_path(job_id: str) -> str:
    if not job_id or not job_id.strip():
        raise UsageProblem("the job id must not be empty")
    return f"/fine_tuning/jobs/{quote(job_id, safe='')}"


def _decode(response: httpx.Response) -> Any:
    """The JSON body; ValueError with a short reason when it is not JSON."""
    try:
        return json.loads(response.content)
    except json.JSONDecodeError as err:
        kind = response.headers.get("content-type", "no content-type").split(";")[0]
        raise ValueError(
            f"{err.msg} at line {err.lineno} column {err.colno} "
            f"({kind}, {len(response.content)} bytes)"
        ) from None
    except UnicodeDecodeError:
        raise ValueError("the body is not UTF-8 text") from None


def _parse_page(path: str, body: Any) -> _Page:
    """Check the ``{"object": "list", "data": [...], "has_more": bool}`` shape."""
    if not isinstance(body, dict):
        raise APIError(f"GET {path}: expected a list object, got {_kind(body)}")
    data = body.get("data")
    if not isinstance(data, list):
        raise APIError(f"GET {path}: the list response has no 'data' array")
    has_more = body.get("has_more")
    if has_more is None:
        # Not every OpenAI-compatible API sends it: go on until an empty page (as openai-python).
        has_more = bool(data)
    elif not isinstance(has_more, bool):
        raise APIError(f"GET {path}: 'has_more' is {_kind(has_more)}, not true or false")
    last = data[-1] if data else None
    last_id = last.get("id") if isinstance(last, dict) else None
    return _Page(
        items=data, has_more=has_more, last_id=last_id if isinstance(last_id, str) else None
    )


def _is_known(item: Any, known_id: str | None, known_created_at: float | None) -> bool:
    if not isinstance(item, dict):
        return False
    if known_id is not None and item.get("id") == known_id:
        return True
    created_at = item.get("created_at")
    return (
        known_created_at is not None
        and isinstance(created_at, int | float)
        and not isinstance(created_at, bool)
        and created_at < known_created_at
    )


def _retry_after(response: httpx.Response | None, cap: float) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), capped."""
    value = response.headers.get("retry-after") if response is not None else None
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), cap)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    return names.get(type(value), "a number")
