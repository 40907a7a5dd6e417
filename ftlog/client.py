"""HTTP client for an OpenAI-compatible fine-tuning API (Nebius AI Studio first).

Only HTTP lives here: requests, retries, paging and a check of each response's *shape*.
Items come back as raw decoded JSON; turning them into records is the parser's job.

Lists (jobs, events, checkpoints) are newest first, and the ``after`` cursor pages towards
*older* items. So "what is new since the newest stored item" is not ``after=newest``: it is
paging from the newest and stopping at the first item already known, which is what
:meth:`FineTuningClient.new_items` does (:mod:`ftlog.paging` never trusts a cursor to advance;
:mod:`ftlog.backoff` decides how long to wait between attempts).

The API key is a secret. It is sent only in the ``Authorization`` header and never appears
in an exception message, a log record, or the client's ``repr``; text that comes back from
the API (error messages) is scrubbed of it too, in case the API echoes it.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import quote

import httpx

from ftlog import __version__, settings
from ftlog.backoff import Pause, RetryPolicy, duration, retry_after
from ftlog.errors import (
    APIError,
    AuthError,
    NotFound,
    PayloadError,
    UsageProblem,
    shown,
    shown_text,
)
from ftlog.paging import JobPage, Pager
from ftlog.parse import load_json
from ftlog.redact import REDACTED, scrub, secret_forms

logger = logging.getLogger("ftlog.client")

USER_AGENT = f"ftlog/{__version__}"
DEFAULT_TIMEOUT = httpx.Timeout(30.0)
"""Connect, read, write and pool timeouts, in seconds, for every request."""
BODY_DEADLINE_FACTOR = 4
"""A response's whole body must arrive within this many read timeouts: httpx's timeouts
bound each socket read, so a body dripped in byte by byte would hold a run forever."""
MAX_PAGE_LIMIT = 100
"""The largest page Nebius serves."""
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_KEY_HINT = "set FTLOG_API_KEY or NEBIUS_API_KEY, or pass --api-key"
_MESSAGE_CHARS = 200


@dataclass(frozen=True)
class NewItems:
    """A job's events or checkpoints newer than those stored (see
    :meth:`FineTuningClient.new_items`)."""

    items: list[Any]
    """Oldest first."""
    complete: bool = True
    problem: str | None = None


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
        """Requests actually sent, retries included (from every thread)."""
        self._count_lock = threading.Lock()
        self._sleep = sleep
        self._clock = clock
        self._pause = Pause(clock, sleep)
        read_timeout = timeout.read if isinstance(timeout, httpx.Timeout) else timeout
        self._body_deadline = None if read_timeout is None else read_timeout * BODY_DEADLINE_FACTOR
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
        body is not a JSON object or the id cannot be requested (see :func:`job_id_problem`).
        """
        path = _job_path(job_id)
        response = self._get(path, {}, not_found=f"job {shown(job_id)} not found")
        try:
            body = self._decode(response)
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
        return JobPage(jobs=page.items, has_more=page.has_more, last_id=page.last_id, after=after)

    def job_pages(self, limit: int = MAX_PAGE_LIMIT) -> Pager:
        """The job list page by page, newest first, following the ``after`` cursor.

        Lazy: the next page is requested only when the caller asks for it, so a caller that
        stops early (an incremental sync reaching stored jobs) costs no extra request. The
        pager never trusts the cursor (see :class:`Pager`): it ends at the first page that
        does not advance, and says why in ``problem``.
        """
        return Pager(lambda after: self.list_jobs(limit, after))

    # -- events and checkpoints -------------------------------------------------------------

    def iter_events(
        self, job_id: str, after: str | None = None, limit: int = MAX_PAGE_LIMIT
    ) -> Iterator[Any]:
        """The job's raw events, one at a time, newest first (older than ``after`` if given).

        Lazy, page by page, like :meth:`job_pages`.
        """
        for page in self._item_pages(job_id, "events", limit, after):
            yield from page.jobs

    def iter_checkpoints(
        self, job_id: str, after: str | None = None, limit: int = MAX_PAGE_LIMIT
    ) -> Iterator[Any]:
        """The job's raw checkpoints, one at a time, newest first; as :meth:`iter_events`."""
        for page in self._item_pages(job_id, "checkpoints", limit, after):
            yield from page.jobs

    def new_items(
        self,
        job_id: str,
        kind: Literal["events", "checkpoints"],
        newest_known_id: str | None,
        *,
        limit: int = MAX_PAGE_LIMIT,
    ) -> NewItems:
        """The job's events (or checkpoints) newer than the newest one already stored,
        **oldest first**.

        Pages from the newest and stops, without requesting another page, at the item whose
        id is ``newest_known_id``; it and everything older are left out. Times are not used:
        an emitter whose clock runs behind or ahead would hide new items. Without that id
        (or when it is gone from the API) every item is returned; the store keeps each id
        once.

        Oldest first means that a caller saving items as they come, and interrupted, never
        leaves a gap behind its newest stored item (which the next run would take as
        "everything before is known"). ``complete`` is False when the listing ended before
        reaching what is known because the paging went wrong (``problem`` says how).
        """
        pages = self._item_pages(job_id, kind, limit, None)
        new: list[Any] = []
        for page in pages:
            for item in page.jobs:
                if _has_id(item, newest_known_id):
                    return NewItems(new[::-1], complete=True)
                new.append(item)
        return NewItems(new[::-1], complete=pages.problem is None, problem=pages.problem)

    def _item_pages(self, job_id: str, kind: str, limit: int, after: str | None) -> Pager:
        path = f"{_job_path(job_id)}/{kind}"

        def fetch(cursor: str | None) -> JobPage:
            page = self._list(path, limit, cursor, job_id)
            return JobPage(page.items, page.has_more, page.last_id, cursor)

        return Pager(fetch, after=after, what=kind)

    # -- paging -----------------------------------------------------------------------------

    def _list(self, path: str, limit: int, after: str | None, job_id: str | None = None) -> _Page:
        if not 1 <= limit <= MAX_PAGE_LIMIT:
            raise UsageProblem(f"page limit must be between 1 and {MAX_PAGE_LIMIT}, not {limit}")
        params: dict[str, str | int] = {"limit": limit}
        if after is not None:
            params["after"] = after
        not_found = (
            f"job {shown(job_id)} not found, or the API has no {path.rsplit('/', 1)[-1]}"
            if job_id
            else None
        )
        response = self._get(path, params, not_found=not_found)
        try:
            body = self._decode(response)
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
            self._pause.wait()
            with self._count_lock:
                self.request_count += 1
            response: httpx.Response | None = None
            try:
                response = self._send(path, params)
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
                self._note_rate_limit(response)
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

            told = retry_after(response, self.retry.max_retry_after)
            delay = self.retry.backoff(attempt) if told is None else told
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
            if response is not None and (response.status_code == 429 or told is not None):
                # The API asked everyone to slow down: every thread waits, not just this one.
                self._pause.hold(delay)
            else:
                self._sleep(delay)

    def _send(self, path: str, params: dict[str, str | int]) -> httpx.Response:
        """GET ``path``, the body read within ``_body_deadline`` seconds (ReadTimeout if not)."""
        request = self._http.build_request("GET", path, params=params)
        response = self._http.send(request, stream=True)
        try:
            if self._body_deadline is None or response.is_stream_consumed:
                response.read()  # (consumed already: a transport that read it, as in tests)
                return response
            deadline = time.monotonic() + self._body_deadline
            raw = bytearray()
            for chunk in response.iter_raw():
                raw += chunk
                if time.monotonic() > deadline:
                    raise httpx.ReadTimeout(
                        f"the body took over {self._body_deadline:g} s to arrive", request=request
                    )
        finally:
            response.close()
        whole = httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=httpx.ByteStream(bytes(raw)),
            request=request,
            extensions=response.extensions,
        )
        whole.read()  # decodes as the headers say (gzip, say), as httpx would have
        return whole

    def _note_rate_limit(self, response: httpx.Response) -> None:
        """Pause every request until the window resets when the API says none are left
        (``x-ratelimit-remaining-requests: 0``, ``x-ratelimit-reset-requests: 1.5s``)."""
        remaining = response.headers.get("x-ratelimit-remaining-requests")
        if remaining is None or remaining.strip() not in ("0", "0.0"):
            return
        reset = duration(response.headers.get("x-ratelimit-reset-requests", ""))
        if reset is not None and reset > 0:
            self._pause.hold(min(reset, self.retry.max_retry_after))

    def _decode(self, response: httpx.Response) -> Any:
        """The JSON body, with the token scrubbed out of every text in it (an API may echo
        it back); ValueError with a short reason when it is not JSON."""
        body = _decode(response)
        token = self._token.reveal()
        content = response.content
        if b"\\" in content or any(f.encode() in content for f in secret_forms([token])):
            body = scrub(body, [token])
        return body

    def _raise_for_status(self, path: str, response: httpx.Response, not_found: str | None) -> None:
        status = response.status_code
        detail = self._api_message(response)
        said = f": {detail}" if detail else ""
        if status in (401, 403):
            raise AuthError(f"the API refused the token (HTTP {status}{said}); {_KEY_HINT}")
        if response.is_redirect:
            where = self._one_line(response.headers.get("location", "elsewhere"))
            raise APIError(
                f"GET {path}: HTTP {status}, a redirect to {where}; ftlog does not follow "
                "redirects (the token would go with them): check the base URL"
            )
        if status == 404:
            if not_found:
                raise NotFound(f"{not_found} (GET {path}: HTTP 404{said})")
            raise NotFound(f"GET {path}: HTTP 404 not found{said}")
        raise APIError(f"GET {path}: HTTP {status}{said}")

    def _api_message(self, response: httpx.Response) -> str:
        """The API's own error message, on one line, without the token."""
        try:
            body = load_json(response.content)
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
        text = shown_text(" ".join(text.replace(self._token.reveal(), REDACTED).split()))
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


def job_id_problem(job_id: str) -> str | None:
    """Why ``job_id`` cannot be requested as a URL path segment, or None when it can.

    Ids are always percent-encoded, but ``.`` and ``..`` would still be taken as "this" and
    "the parent" directory (the HTTP client removes such segments), a ``/`` or ``\\`` as a
    separator by some servers, and control characters have no place in a URL.
    """
    if not job_id.strip():
        return "the job id is empty"
    if job_id in (".", ".."):
        return f"the job id {job_id!r} would name another URL"
    if "/" in job_id or "\\" in job_id:
        return "the job id holds a slash"
    if _CONTROL.search(job_id):
        return "the job id holds control characters"
    return None


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _job_path(job_id: str) -> str:
    problem = job_id_problem(job_id)
    if problem:
        raise PayloadError(job_id, f"{problem}; not requested")
    return f"/fine_tuning/jobs/{quote(job_id, safe='')}"


def _decode(response: httpx.Response) -> Any:
    """The JSON body; ValueError with a short reason when it is not JSON."""
    try:
        return load_json(response.content)
    except json.JSONDecodeError as err:
        kind = response.headers.get("content-type", "no content-type").split(";")[0]
        raise ValueError(
            f"{err.msg} at line {err.lineno} column {err.colno} "
            f"({kind}, {len(response.content)} bytes)"
        ) from None
    except UnicodeDecodeError:
        raise ValueError("the body is not UTF-8 text") from None
    except ValueError as err:  # nesting too deep, an integer of more digits than ftlog reads
        raise ValueError(str(err)) from None


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


def _has_id(item: Any, item_id: str | None) -> bool:
    return item_id is not None and isinstance(item, dict) and item.get("id") == item_id


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    return names.get(type(value), "a number")
