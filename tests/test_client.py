"""The HTTP client, against httpx.MockTransport (and a local server for the transport logs)."""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from ftlog import __version__
from ftlog.backoff import RetryPolicy
from ftlog.client import FineTuningClient
from ftlog.errors import APIError, AuthError, NotFound, PayloadError, UsageProblem
from ftlog.paging import JobPage

TOKEN = "sk-test-SECRET-7f3a9c1e"
BASE = "https://api.example.test/v1"

Handler = Callable[[httpx.Request], httpx.Response]
MakeClient = Callable[..., FineTuningClient]


class FakeTime:
    """A monotonic clock that only moves when the client sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def make_client(fake_time: FakeTime) -> Iterator[Callable[..., FineTuningClient]]:
    clients: list[FineTuningClient] = []

    def make(handler: Handler, **kwargs: Any) -> FineTuningClient:
        kwargs.setdefault("base_url", BASE)
        kwargs.setdefault("api_key", TOKEN)
        client = FineTuningClient(
            transport=httpx.MockTransport(handler),
            sleep=fake_time.sleep,
            clock=fake_time.monotonic,
            **kwargs,
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def job(job_id: str, created_at: int = 1700000000) -> dict[str, Any]:
    return {
        "object": "fine_tuning.job",
        "id": job_id,
        "status": "running",
        "created_at": created_at,
    }


def listing(items: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    return {"object": "list", "data": items, "has_more": has_more}


def paged(items: list[dict[str, Any]], requests: list[httpx.Request]) -> Handler:
    """Serves ``items`` (newest first) as the API does: ``limit`` per page, ``after`` cursor."""

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        limit = int(request.url.params["limit"])
        after = request.url.params.get("after")
        start = 0 if after is None else [i["id"] for i in items].index(after) + 1
        page = items[start : start + limit]
        return httpx.Response(200, json=listing(page, start + limit < len(items)))

    return handler


def sequence(*responses: httpx.Response | Exception) -> tuple[Handler, list[httpx.Request]]:
    """A handler answering each request with the next response (or raising the exception)."""
    seen: list[httpx.Request] = []
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    return handler, seen


# -- success paths -----------------------------------------------------------------------------


def test_get_job_sends_token_user_agent_and_returns_the_object(make_client: MakeClient) -> None:
    handler, seen = sequence(httpx.Response(200, json=job("ftjob-1")))
    client = make_client(handler)

    assert client.get_job("ftjob-1") == job("ftjob-1")

    (request,) = seen
    assert request.method == "GET"
    assert str(request.url) == f"{BASE}/fine_tuning/jobs/ftjob-1"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["user-agent"] == f"ftlog/{__version__}"
    assert "ai_project_id" not in request.url.params
    assert client.request_count == 1


@pytest.mark.parametrize("base", [BASE, BASE + "/"])
def test_base_url_with_or_without_trailing_slash(make_client: MakeClient, base: str) -> None:
    handler, seen = sequence(httpx.Response(200, json=job("a")))
    make_client(handler, base_url=base).get_job("a")
    assert seen[0].url.path == "/v1/fine_tuning/jobs/a"


def test_default_base_url_is_nebius(make_client: MakeClient) -> None:
    handler, seen = sequence(httpx.Response(200, json=job("a")))
    make_client(handler, base_url=None).get_job("a")
    assert str(seen[0].url) == "https://api.studio.nebius.com/v1/fine_tuning/jobs/a"


def test_job_id_is_quoted_into_one_path_segment(make_client: MakeClient) -> None:
    handler, seen = sequence(httpx.Response(200, json=job("a")))
    make_client(handler).get_job("..x?y#z %")
    assert seen[0].url.raw_path == b"/v1/fine_tuning/jobs/..x%3Fy%23z%20%25"


@pytest.mark.parametrize("job_id", [".", "..", "a/b", "../x", "a\\b", "a\x00b", "a\nb", " "])
def test_an_id_that_is_not_a_safe_path_segment_is_never_requested(
    make_client: MakeClient, job_id: str
) -> None:
    handler, seen = sequence(httpx.Response(200, json=job("a")))
    client = make_client(handler)
    with pytest.raises(PayloadError, match="not requested"):
        client.get_job(job_id)
    with pytest.raises(PayloadError, match="not requested"):
        client.new_items(job_id, "events", None)
    assert seen == []


def test_project_id_sent_on_every_request(make_client: MakeClient) -> None:
    seen: list[httpx.Request] = []
    items = [job(f"ftjob-{n}") for n in range(3)]
    client = make_client(paged(items, seen), project_id="project-42")
    list(client.job_pages(limit=2))
    list(client.iter_events("ftjob-1"))
    list(client.iter_checkpoints("ftjob-1"))
    handler, single = sequence(httpx.Response(200, json=job("a")))
    make_client(handler, project_id="project-42").get_job("a")
    seen += single
    assert len(seen) == 5
    assert all(r.url.params["ai_project_id"] == "project-42" for r in seen)


def test_timeout_is_set_on_every_request(make_client: MakeClient) -> None:
    handler, seen = sequence(httpx.Response(200, json=listing([], False)))
    client = make_client(handler, timeout=httpx.Timeout(7.0, connect=3.0))
    client.list_jobs()
    list(client.iter_events("j"))
    assert len(seen) == 2
    for request in seen:
        assert request.extensions["timeout"] == {
            "connect": 3.0,
            "read": 7.0,
            "write": 7.0,
            "pool": 7.0,
        }


def test_default_timeout_is_30_seconds(make_client: MakeClient) -> None:
    handler, seen = sequence(httpx.Response(200, json=job("a")))
    make_client(handler).get_job("a")
    assert seen[0].extensions["timeout"]["connect"] == 30.0
    assert seen[0].extensions["timeout"]["read"] == 30.0


# -- paging ------------------------------------------------------------------------------------


def test_list_jobs_page(make_client: MakeClient) -> None:
    seen: list[httpx.Request] = []
    items = [job(f"ftjob-{n}") for n in range(5)]
    page = make_client(paged(items, seen)).list_jobs(limit=2, after="ftjob-0")
    assert page == JobPage(jobs=items[1:3], has_more=True, last_id="ftjob-2", after="ftjob-0")
    assert seen[0].url.params["limit"] == "2"
    assert seen[0].url.params["after"] == "ftjob-0"


def test_job_pages_follow_the_cursor_until_has_more_is_false(make_client: MakeClient) -> None:
    seen: list[httpx.Request] = []
    items = [job(f"ftjob-{n}") for n in range(5)]
    client = make_client(paged(items, seen))

    pager = client.job_pages(limit=2)
    pages = list(pager)

    assert [[j["id"] for j in p.jobs] for p in pages] == [
        ["ftjob-0", "ftjob-1"],
        ["ftjob-2", "ftjob-3"],
        ["ftjob-4"],
    ]
    assert [r.url.params.get("after") for r in seen] == [None, "ftjob-1", "ftjob-3"]
    assert [p.has_more for p in pages] == [True, True, False]
    assert client.request_count == 3
    assert pager.complete and pager.problem is None


def test_job_pages_send_no_request_beyond_the_page_consumed(make_client: MakeClient) -> None:
    seen: list[httpx.Request] = []
    client = make_client(paged([job(f"ftjob-{n}") for n in range(10)], seen))

    pages = client.job_pages(limit=2)
    assert client.request_count == 0
    first = next(pages)
    assert first.last_id == "ftjob-1"
    assert client.request_count == 1
    for page in pages:
        if page.last_id == "ftjob-3":
            break  # the caller stops: it reached jobs already stored
    assert client.request_count == 2
    assert not pages.complete  # the caller stopped: the listing did not reach its end


def test_an_empty_page_that_says_has_more_ends_the_listing_incomplete(
    make_client: MakeClient,
) -> None:
    handler, seen = sequence(
        httpx.Response(200, json=listing([job("a")], True)),
        httpx.Response(200, json=listing([], True)),
    )
    pager = make_client(handler).job_pages()
    assert [[j["id"] for j in p.jobs] for p in pager] == [["a"]]
    assert len(seen) == 2
    assert not pager.complete
    assert (
        pager.problem is not None and "empty page" in pager.problem and "after=a" in pager.problem
    )


def test_missing_has_more_pages_until_empty(make_client: MakeClient) -> None:
    handler, seen = sequence(
        httpx.Response(200, json={"object": "list", "data": [job("a")]}),
        httpx.Response(200, json={"object": "list", "data": []}),
    )
    pager = make_client(handler).job_pages()
    pages = list(pager)
    assert [p.has_more for p in pages] == [True, False]
    assert seen[1].url.params["after"] == "a"
    assert pager.complete


def test_an_api_that_ignores_the_cursor_is_caught_after_one_repeat(make_client: MakeClient) -> None:
    handler, seen = sequence(httpx.Response(200, json=listing([job("a"), job("b")], True)))
    pager = make_client(handler).job_pages()
    pages = list(pager)
    assert [[j["id"] for j in p.jobs] for p in pages] == [["a", "b"]]  # counted once
    assert len(seen) == 2
    assert not pager.complete
    assert pager.problem is not None and "ignore the cursor" in pager.problem
    assert "after=b" in pager.problem


def test_a_repeated_cursor_keeps_what_is_new_then_stops(make_client: MakeClient) -> None:
    handler, seen = sequence(
        httpx.Response(200, json=listing([job("a"), job("b")], True)),
        httpx.Response(200, json=listing([job("c"), job("b")], True)),
    )
    pager = make_client(handler).job_pages()
    pages = list(pager)
    assert [[j["id"] for j in p.jobs] for p in pages] == [["a", "b"], ["c"]]
    assert len(seen) == 2
    assert pager.problem is not None and "ending at b again" in pager.problem


def test_has_more_without_a_last_id_ends_the_listing(make_client: MakeClient) -> None:
    handler, seen = sequence(httpx.Response(200, json=listing([{"no": "id"}], True)))
    pager = make_client(handler).job_pages()
    assert list(pager) == []
    assert len(seen) == 1
    assert pager.problem is not None and "no id" in pager.problem


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"object": "list"},
        {"object": "list", "data": {"id": "a"}},
        {"object": "list", "data": [], "has_more": "yes"},
    ],
)
def test_a_malformed_list_is_an_api_error(make_client: MakeClient, body: Any) -> None:
    handler, _ = sequence(httpx.Response(200, json=body))
    with pytest.raises(APIError, match=r"GET /fine_tuning/jobs: ") as info:
        make_client(handler).list_jobs()
    assert type(info.value) is APIError


def test_a_list_that_is_not_json_is_an_api_error(make_client: MakeClient) -> None:
    handler, _ = sequence(httpx.Response(200, text="<html>oops</html>"))
    with pytest.raises(APIError, match="response is not JSON: Expecting value"):
        make_client(handler).list_jobs()


@pytest.mark.parametrize("limit", [0, 101])
def test_limit_out_of_range(make_client: MakeClient, limit: int) -> None:
    handler, seen = sequence(httpx.Response(200, json=listing([], False)))
    with pytest.raises(UsageProblem):
        make_client(handler).list_jobs(limit=limit)
    assert seen == []


def test_iter_events_and_checkpoints_page_through_items(make_client: MakeClient) -> None:
    seen: list[httpx.Request] = []
    items = [{"id": f"ev-{n}", "created_at": 100 - n} for n in range(5)]
    client = make_client(paged(items, seen))

    assert list(client.iter_events("ftjob-1", limit=2)) == items
    assert {r.url.path for r in seen} == {"/v1/fine_tuning/jobs/ftjob-1/events"}
    assert [r.url.params.get("after") for r in seen] == [None, "ev-1", "ev-3"]

    seen.clear()
    assert list(client.iter_checkpoints("ftjob-1", after="ev-2", limit=2)) == items[3:]
    assert {r.url.path for r in seen} == {"/v1/fine_tuning/jobs/ftjob-1/checkpoints"}


# -- new items since the newest stored ---------------------------------------------------------


def test_new_events_stop_at_the_known_id_oldest_first(make_client: MakeClient) -> None:
    seen: list[httpx.Request] = []
    items = [{"id": f"ev-{n}", "created_at": 100 - n} for n in range(10)]  # newest first
    client = make_client(paged(items, seen))

    new = client.new_items("ftjob-1", "events", newest_known_id="ev-3", limit=2)

    assert [e["id"] for e in new.items] == ["ev-2", "ev-1", "ev-0"] and new.complete
    assert client.request_count == 2  # ev-3 is on the second page: no third request
    assert "after" not in seen[0].url.params


def test_new_events_when_nothing_is_new(make_client: MakeClient) -> None:
    seen: list[httpx.Request] = []
    items = [{"id": f"ev-{n}", "created_at": 100 - n} for n in range(10)]
    client = make_client(paged(items, seen))
    assert client.new_items("ftjob-1", "events", "ev-0").items == []
    assert client.request_count == 1


def test_new_events_without_a_known_id_return_everything(make_client: MakeClient) -> None:
    seen: list[httpx.Request] = []
    items = [{"id": f"ev-{n}", "created_at": 100 - n} for n in range(5)]
    new = make_client(paged(items, seen)).new_items("ftjob-1", "events", None, limit=2)
    assert new.items == items[::-1] and new.complete
    assert len(seen) == 3


def test_new_events_of_a_listing_that_breaks_are_kept_and_flagged(make_client: MakeClient) -> None:
    page = listing([{"id": "ev-9", "created_at": 9}, {"id": "ev-8", "created_at": 8}], True)
    handler, seen = sequence(httpx.Response(200, json=page))  # the API ignores `after`
    new = make_client(handler).new_items("ftjob-1", "events", "ev-1")
    assert [e["id"] for e in new.items] == ["ev-8", "ev-9"]
    assert not new.complete and new.problem is not None and "ignore" in new.problem
    assert len(seen) == 2


def test_new_items_never_stop_on_a_time_only_on_the_known_id(make_client: MakeClient) -> None:
    # The stored newest checkpoint is gone from the API: every item is new to this fetch (the
    # store keeps each id once); times bound nothing, a skewed clock would hide new items.
    seen: list[httpx.Request] = []
    items = [{"id": f"ck-{n}", "created_at": 100 - n} for n in range(5)]
    client = make_client(paged(items, seen))

    new = client.new_items("ftjob-1", "checkpoints", "ck-gone", limit=2).items

    assert [c["id"] for c in new] == ["ck-4", "ck-3", "ck-2", "ck-1", "ck-0"]
    assert client.request_count == 3
    assert {r.url.path for r in seen} == {"/v1/fine_tuning/jobs/ftjob-1/checkpoints"}


# -- retries -----------------------------------------------------------------------------------


def test_429_retry_after_seconds_is_honoured(make_client: MakeClient, fake_time: FakeTime) -> None:
    handler, seen = sequence(
        httpx.Response(429, headers={"Retry-After": "7"}),
        httpx.Response(200, json=job("a")),
    )
    client = make_client(handler)
    assert client.get_job("a")["id"] == "a"
    assert fake_time.sleeps == [7.0]
    assert client.request_count == 2 == len(seen)


def test_retry_after_http_date_is_honoured(make_client: MakeClient, fake_time: FakeTime) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=20), usegmt=True)
    handler, _ = sequence(
        httpx.Response(503, headers={"Retry-After": when}),
        httpx.Response(200, json=job("a")),
    )
    make_client(handler).get_job("a")
    (delay,) = fake_time.sleeps
    assert 17.0 <= delay <= 20.0


def test_retry_after_is_capped(make_client: MakeClient, fake_time: FakeTime) -> None:
    handler, _ = sequence(
        httpx.Response(429, headers={"Retry-After": "86400"}),
        httpx.Response(200, json=job("a")),
    )
    make_client(handler, retry=RetryPolicy(max_retry_after=45)).get_job("a")
    assert fake_time.sleeps == [45.0]


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_is_retried_with_jittered_backoff(
    make_client: MakeClient, fake_time: FakeTime, status: int
) -> None:
    handler, seen = sequence(
        httpx.Response(status),
        httpx.Response(status),
        httpx.Response(status),
        httpx.Response(200, json=job("a")),
    )
    policy = RetryPolicy(base_delay=1.0, max_delay=3.0)
    client = make_client(handler, retry=policy)
    assert client.get_job("a")["id"] == "a"
    assert len(seen) == client.request_count == 4
    assert len(fake_time.sleeps) == 3
    for ceiling, delay in zip([1.0, 2.0, 3.0], fake_time.sleeps, strict=True):
        assert 0.0 <= delay <= ceiling


def test_exhausted_retries_raise_api_error_naming_attempts(
    make_client: MakeClient, fake_time: FakeTime
) -> None:
    handler, seen = sequence(httpx.Response(503))
    client = make_client(handler, retry=RetryPolicy(max_attempts=4))
    with pytest.raises(APIError) as info:
        client.get_job("ftjob-1")
    message = str(info.value)
    assert message.startswith("GET /fine_tuning/jobs/ftjob-1: HTTP 503 after 4 attempts over ")
    assert message.endswith("s; the API is unavailable, try again later")
    assert "\n" not in message
    assert len(seen) == client.request_count == 4
    assert len(fake_time.sleeps) == 3


def test_total_wait_is_bounded(make_client: MakeClient, fake_time: FakeTime) -> None:
    handler, seen = sequence(httpx.Response(429, headers={"Retry-After": "25"}))
    client = make_client(handler, retry=RetryPolicy(max_attempts=100, max_total_wait=60))
    with pytest.raises(APIError, match=r"HTTP 429 after 3 attempts over 50\.0 s; .*rate-limit"):
        client.list_jobs()
    assert fake_time.sleeps == [25.0, 25.0]  # a third wait would pass 60 s
    assert len(seen) == 3


def test_backoff_never_exceeds_the_total_wait(make_client: MakeClient, fake_time: FakeTime) -> None:
    handler, _ = sequence(httpx.Response(502))
    policy = RetryPolicy(max_attempts=50, base_delay=2, max_delay=10, max_total_wait=30)
    with pytest.raises(APIError, match="HTTP 502 after"):
        make_client(handler, retry=policy).get_job("a")
    assert sum(fake_time.sleeps) <= 30


@pytest.mark.parametrize(
    "error",
    [
        httpx.ConnectError("[Errno 111] Connection refused"),
        httpx.ReadTimeout("timed out"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        httpx.ReadError("[Errno 104] Connection reset by peer"),
    ],
)
def test_transport_errors_are_retried(
    make_client: MakeClient, fake_time: FakeTime, error: Exception
) -> None:
    handler, seen = sequence(error, httpx.Response(200, json=job("a")))
    client = make_client(handler)
    assert client.get_job("a")["id"] == "a"
    assert len(seen) == client.request_count == 2
    assert len(fake_time.sleeps) == 1


def test_transport_errors_exhausted(make_client: MakeClient) -> None:
    handler, _ = sequence(httpx.ConnectError("[Errno 111] Connection refused"))
    client = make_client(handler, retry=RetryPolicy(max_attempts=3))
    with pytest.raises(APIError) as info:
        client.get_job("ftjob-1")
    assert str(info.value).startswith(
        "GET /fine_tuning/jobs/ftjob-1: ConnectError: [Errno 111] Connection refused "
        "after 3 attempts over "
    )
    assert info.value.__cause__ is None
    assert client.request_count == 3


def test_retries_are_logged_with_path_and_status(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="ftlog.client")
    handler, _ = sequence(httpx.Response(503), httpx.Response(200, json=job("a")))
    make_client(handler).get_job("a")
    retries = [r for r in caplog.records if r.levelno == logging.INFO]
    assert len(retries) == 1
    assert retries[0].name == "ftlog.client"
    assert retries[0].getMessage().startswith("GET /fine_tuning/jobs/a: HTTP 503; retrying in ")


# -- errors that are not retried ---------------------------------------------------------------


@pytest.mark.parametrize("status", [401, 403])
def test_auth_errors_are_immediate(
    make_client: MakeClient, fake_time: FakeTime, status: int
) -> None:
    handler, seen = sequence(httpx.Response(status, json={"error": {"message": "bad key"}}))
    client = make_client(handler)
    with pytest.raises(AuthError) as info:
        client.get_job("a")
    assert str(info.value) == (
        f"the API refused the token (HTTP {status}: bad key); "
        "set FTLOG_API_KEY or NEBIUS_API_KEY, or pass --api-key"
    )
    assert len(seen) == client.request_count == 1
    assert fake_time.sleeps == []


def test_404_on_a_job_is_not_found_naming_it(make_client: MakeClient) -> None:
    handler, seen = sequence(httpx.Response(404, json={"detail": "Job not found"}))
    client = make_client(handler)
    with pytest.raises(NotFound, match=r"^job ftjob-9 not found \(GET .*: HTTP 404: Job not found"):
        client.get_job("ftjob-9")
    with pytest.raises(NotFound, match="job ftjob-9 not found, or the API has no checkpoints"):
        list(client.iter_checkpoints("ftjob-9"))
    assert len(seen) == 2


def test_other_4xx_names_status_and_api_message_on_one_line(make_client: MakeClient) -> None:
    long = "invalid\nparameter " + "x" * 500
    handler, seen = sequence(httpx.Response(422, json={"error": {"message": long}}))
    with pytest.raises(APIError) as info:
        make_client(handler).list_jobs()
    message = str(info.value)
    assert message.startswith("GET /fine_tuning/jobs: HTTP 422: invalid parameter xxx")
    assert "\n" not in message
    assert len(message) < 260
    assert len(seen) == 1


def test_redirects_are_not_followed(make_client: MakeClient) -> None:
    handler, seen = sequence(httpx.Response(302, headers={"Location": "https://elsewhere/"}))
    with pytest.raises(APIError, match="HTTP 302"):
        make_client(handler).get_job("a")
    assert len(seen) == 1


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"<html>502 Bad Gateway</html>", "response is not JSON: Expecting value at line 1"),
        (b'{"id": "a"', "response is not JSON: Expecting"),
        (b"\xff\xfe", "response is not JSON: "),
        (b'["a"]', "response is not JSON: expected an object, got an array"),
    ],
)
def test_a_job_body_that_is_not_a_json_object_is_a_payload_error(
    make_client: MakeClient, body: bytes, problem: str
) -> None:
    handler, _ = sequence(httpx.Response(200, content=body))
    with pytest.raises(PayloadError) as info:
        make_client(handler).get_job("ftjob-1")
    assert info.value.job_id == "ftjob-1"
    assert info.value.problem.startswith(problem)
    assert "\n" not in str(info.value)


# -- construction ------------------------------------------------------------------------------


@pytest.mark.parametrize("key", [None, "", "   "])
def test_missing_key(key: str | None) -> None:
    with pytest.raises(AuthError, match="no API key: set FTLOG_API_KEY"):
        FineTuningClient(BASE, key)


def test_a_key_that_cannot_be_a_header_is_refused_without_echoing_it() -> None:
    with pytest.raises(AuthError) as info:
        FineTuningClient(BASE, "sk-abc def")
    assert "sk-abc" not in str(info.value)


@pytest.mark.parametrize("base", ["api.example.test/v1", "ftp://x/v1", "https://"])
def test_a_bad_base_url(base: str) -> None:
    with pytest.raises(UsageProblem, match="base URL"):
        FineTuningClient(base, TOKEN)


def test_context_manager_closes_the_session(make_client: MakeClient) -> None:
    handler, _ = sequence(httpx.Response(200, json=job("a")))
    with make_client(handler) as client:
        client.get_job("a")
    with pytest.raises(RuntimeError):
        client.get_job("a")


# -- the token never leaks ---------------------------------------------------------------------


def _all_debug_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("ftlog", "ftlog.client", "httpx", "httpcore", "h11"):
        caplog.set_level(logging.DEBUG, logger=name)


def _leaks(caplog: pytest.LogCaptureFixture, errors: list[BaseException]) -> list[str]:
    texts = [r.getMessage() for r in caplog.records] + [caplog.text]
    for err in errors:
        texts += [str(err), repr(err), repr(err.args)]
    return [t for t in texts if TOKEN in t]


def test_token_absent_from_logs_errors_and_repr(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    _all_debug_logs(caplog)
    echo = {"error": {"message": f"Incorrect API key provided: {TOKEN}"}}
    errors: list[BaseException] = []
    scenarios: list[tuple[Handler, type[Exception] | None]] = [
        (sequence(httpx.Response(200, json=job("a")))[0], None),
        (sequence(httpx.Response(503), httpx.Response(200, json=job("a")))[0], None),
        (sequence(httpx.Response(401, json=echo))[0], AuthError),
        (sequence(httpx.Response(403, json=echo))[0], AuthError),
        (sequence(httpx.Response(404, json=echo))[0], NotFound),
        (sequence(httpx.Response(400, json=echo))[0], APIError),
        (sequence(httpx.Response(503, json=echo))[0], APIError),
        (sequence(httpx.ConnectError(f"refused {TOKEN}"))[0], APIError),
        (sequence(httpx.Response(200, content=TOKEN.encode()))[0], PayloadError),
    ]
    for handler, expected in scenarios:
        client = make_client(handler, retry=RetryPolicy(max_attempts=2))
        assert TOKEN not in repr(client) and TOKEN not in str(client)
        assert TOKEN not in repr(vars(client))
        if expected is None:
            client.get_job("a")
        else:
            with pytest.raises(expected) as info:
                client.get_job("a")
            errors.append(info.value)
    assert len(errors) == 7
    assert caplog.records, "nothing was logged: the capture is not working"
    assert _leaks(caplog, errors) == []


class _LocalAPI(BaseHTTPRequestHandler):
    """A tiny real server, so that httpx's and httpcore's own transport logs run."""

    failures_left = 1

    def do_GET(self) -> None:
        if self.path.startswith("/v1/fine_tuning/jobs/flaky") and _LocalAPI.failures_left:
            _LocalAPI.failures_left -= 1
            self._send(503, {"error": {"message": "busy"}}, {"Retry-After": "0"})
        elif self.path.startswith("/v1/fine_tuning/jobs/denied"):
            self._send(401, {"error": {"message": "bad token"}})
        elif self.path.startswith("/v1/fine_tuning/jobs/missing"):
            self._send(404, {"detail": "Not Found"})
        else:
            self._send(200, job("ok"))

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def local_api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _LocalAPI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _LocalAPI.failures_left = 1
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


def test_token_absent_from_real_transport_debug_logs(
    local_api: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    _all_debug_logs(caplog)
    errors: list[BaseException] = []
    with FineTuningClient(local_api, TOKEN, "proj-1", retry=RetryPolicy(base_delay=0)) as client:
        client.get_job("ok")
        client.get_job("flaky")
        for job_id, expected in [("denied", AuthError), ("missing", NotFound)]:
            with pytest.raises(expected) as info:
                client.get_job(job_id)
            errors.append(info.value)
        assert client.request_count == 5
    # A port with nothing listening: a real connection error, retried, then given up.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    with (
        FineTuningClient(
            f"http://127.0.0.1:{closed_port}/v1",
            TOKEN,
            retry=RetryPolicy(max_attempts=2, base_delay=0),
        ) as client,
        pytest.raises(APIError) as info,
    ):
        client.get_job("a")
    errors.append(info.value)
    assert client.request_count == 2

    names = {r.name.split(".")[0] for r in caplog.records}
    assert {"httpx", "httpcore", "ftlog"} <= names  # the transport logs really ran
    assert any("send_request_headers" in r.getMessage() for r in caplog.records)
    assert _leaks(caplog, errors) == []
