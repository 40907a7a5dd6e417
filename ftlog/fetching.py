"""Fetching many things from the API at once, within a bound, and telling how far it got.

Requests go out from a few threads sharing one :class:`~ftlog.client.FineTuningClient`
(httpx's client is thread-safe, and the client's back-off is shared by all its threads).
Results come back to the calling thread, which alone writes to the store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Protocol, TypeVar

from ftlog.errors import APIError, PayloadError

T = TypeVar("T")
R = TypeVar("R")


class Progress(Protocol):
    """Where a run reports how far it got (the CLI draws it on a terminal)."""

    def start(self, phase: str, total: int | None) -> None:
        """A phase begins: ``total`` items to do, None when not known in advance."""

    def advance(self, done: int = 1) -> None:
        """``done`` more items of the current phase are done."""


def _never() -> bool:
    return False


def fetch_all(
    items: Iterable[T],
    fetch: Callable[[T], R],
    concurrency: int,
    stop: Callable[[], bool] = _never,
) -> Iterator[tuple[T, R | APIError | PayloadError]]:
    """Each item with what ``fetch`` returned for it, or the :class:`APIError` or
    :class:`PayloadError` it raised (a failure of that item alone), as they complete, with at
    most ``concurrency`` calls in flight. Any other exception (a refused token, a bug) ends
    the iteration and is raised in the caller's thread. ``stop()`` is asked before each new
    call; once it says True no more are made.

    With ``concurrency`` 1 the items are fetched in order in the caller's thread, and an
    iterator passed as ``items`` keeps what ``stop()`` left unfetched.
    """
    pending = iter(items)
    if concurrency <= 1:
        while not stop():  # asked before taking an item: one not fetched stays in ``items``
            try:
                item = next(pending)
            except StopIteration:
                return
            yield item, _outcome(fetch, item)
        return
    pool = ThreadPoolExecutor(concurrency, thread_name_prefix="ftlog-fetch")
    running: dict[Future[R | APIError | PayloadError], T] = {}

    def fill() -> None:
        while len(running) < concurrency and not stop():
            try:
                item = next(pending)
            except StopIteration:
                return
            running[pool.submit(_outcome, fetch, item)] = item

    try:
        fill()
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                yield running.pop(future), future.result()
            fill()
    finally:
        # On an error or an interruption, start nothing new and do not wait for the calls
        # in flight (each ends within the client's timeout).
        pool.shutdown(wait=False, cancel_futures=True)


def _outcome(fetch: Callable[[T], R], item: T) -> R | APIError | PayloadError:
    try:
        return fetch(item)
    except (APIError, PayloadError) as err:
        return err


class Breaker:
    """Stops a phase of per-job requests when the API itself is failing: after ``limit``
    requests in a row failed for reasons that are not the job's own (a timeout, a 5xx after
    retries), asking about the remaining jobs would only wait out each one's retries."""

    def __init__(self, limit: int = 3) -> None:
        self.limit = limit
        self.in_a_row = 0

    def record(self, outcome: object) -> None:
        from ftlog.errors import NotFound

        failing = isinstance(outcome, APIError) and not isinstance(outcome, NotFound)
        self.in_a_row = self.in_a_row + 1 if failing else 0

    def tripped(self) -> bool:
        return self.in_a_row >= self.limit
