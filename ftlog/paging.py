"""Paging through a list of the API (jobs, a job's events or checkpoints) without trusting its
cursor to advance."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Self

from ftlog.errors import shown


@dataclass(frozen=True)
class JobPage:
    """One page of a list (``GET /fine_tuning/jobs``, or a job's events or checkpoints): raw
    items, newest first."""

    jobs: list[Any]
    has_more: bool
    last_id: str | None
    """The id of the last (oldest) item: the ``after`` cursor for the next page."""
    after: str | None = None
    """The cursor this page was asked for with (None for the first page)."""


class Pager:
    """Pages of a list, following the ``after`` cursor, never trusting it to advance.

    Iterating yields each page with only the items not yielded before in this listing (an
    item is known by its ``id``). The listing ends:

    - at a page that says ``has_more: false``: ``complete`` is then True;
    - at an empty page that says ``has_more: true``, a page with nothing new (the API
      ignored the cursor, or repeated a page), a cursor already used, or a page that says
      ``has_more`` without an id to continue from: ``problem`` then says which, in a phrase
      naming the cursor, and ``complete`` stays False.

    The caller may stop earlier (it has reached what it knows); ``complete`` is then False.
    """

    def __init__(
        self,
        fetch: Callable[[str | None], JobPage],
        *,
        after: str | None = None,
        what: str = "jobs",
    ) -> None:
        self._fetch = fetch
        self._after = after
        self._what = what
        self._cursors: set[str] = set() if after is None else {after}
        self._ids: set[str] = set()
        self._done = False
        self.complete = False
        self.problem: str | None = None

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> JobPage:
        if self._done:
            raise StopIteration
        page = self._fetch(self._after)
        at = f"after={shown(self._after)}" if self._after is not None else "the first page"
        # Items of earlier pages are dropped (a page repeated, or shifted by new jobs); two
        # items of this page with one id are both kept, for the store to decide.
        fresh = [item for item in page.jobs if item_id(item) not in self._ids]
        self._ids.update(i for i in map(item_id, page.jobs) if i is not None)
        if page.jobs and not fresh:
            return self._stop(
                f"the API sent a page of {self._what} already listed ({at}): it seems to "
                "ignore the cursor"
            )
        if not page.has_more:
            self.complete = self._done = True
        elif not page.jobs:
            return self._stop(f"the API sent an empty page that says has_more ({at})")
        elif page.last_id is None:
            return self._stop(f"the page says has_more but its last item has no id ({at})")
        elif page.last_id in self._cursors:
            # Keep what is new on this page; asking for the same cursor again would loop.
            self.problem = f"the API sent a page ending at {shown(page.last_id)} again ({at})"
            self._done = True
        else:
            self._cursors.add(page.last_id)
            self._after = page.last_id
        if len(fresh) == len(page.jobs):
            return page
        return JobPage(fresh, page.has_more, page.last_id, page.after)

    def _stop(self, problem: str) -> JobPage:
        self.problem, self._done = problem, True
        raise StopIteration


def item_id(item: Any) -> str | None:
    item_id = item.get("id") if isinstance(item, dict) else None
    return item_id if isinstance(item_id, str) else None
