"""Pagination strategies: what to ask for next, when to stop, and what to checkpoint.

A paginator is a small state machine in the style of dlt's ``BasePaginator``:
``request_params()`` gives the query for the next page, ``advance()`` takes what the page
brought, ``has_next`` says whether to go on, and ``state()`` / the constructor's
``start`` let a run resume exactly where an earlier one stopped.
"""

from dataclasses import dataclass
from typing import Any

from etl_assets.sources.spec import PaginatorSpec


@dataclass
class OffsetState:
    """Where an offset-paginated run stands: the next ``skip`` and pages done."""

    skip: int = 0
    page_index: int = 0


class OffsetPaginator:
    """``?offset=S&limit=L`` paging that advances by the rows actually returned.

    Stopping rules, in order:

    * an empty page ends the run;
    * while the source's total is believable, the run goes on until ``skip`` reaches it,
      even over short pages (an API that caps the page size loses nothing);
    * a ``skip`` that lands exactly on the total ends the run without an extra request;
    * once more records arrived than the total promised, the total is only an estimate
      and a short page (fewer than ``limit`` rows) ends the run instead;
    * without a total, a short page ends the run.
    """

    def __init__(self, spec: PaginatorSpec, start: OffsetState | None = None) -> None:
        self.spec = spec
        state = start or OffsetState()
        self.skip = state.skip
        self.page_index = state.page_index
        self.has_next = True
        self.total_exceeded = False
        self.last_total: int | None = None

    def request_params(self, skip: int | None = None) -> dict[str, Any]:
        """The query for the page at ``skip`` (the next one by default)."""
        return {self.spec.offset_param: self.skip if skip is None else skip, self.spec.limit_param: self.spec.limit}

    def known_needed(self, skip: int) -> bool:
        """Whether a page at ``skip`` is sure to be needed, so it may be fetched ahead.

        Only a believable total says so; without one, or once the source sent more than its
        total promised, pages are asked for one at a time past the next.
        """
        return self.last_total is not None and not self.total_exceeded and skip < self.last_total

    def advance(self, count: int, total: int | None) -> None:
        """Account for a page of ``count`` rows whose body or headers said ``total``."""
        self.skip += count
        self.page_index += 1
        self.last_total = total
        if count == 0:
            self.has_next = False
            return
        if total is not None and not self.total_exceeded:
            if self.skip < total:
                return
            if self.skip == total:
                self.has_next = False
                return
            self.total_exceeded = True
        if count < self.spec.limit:
            self.has_next = False

    def state(self) -> OffsetState:
        return OffsetState(skip=self.skip, page_index=self.page_index)
