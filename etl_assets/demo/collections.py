"""The record sets the demo source serves, one per URL path.

The server only needs a length and a slice, so a collection is anything with ``__len__``
and ``page``: generated records (:class:`IndexedCollection`) cost nothing to hold however
many there are, and a fixed list (:class:`ListCollection`) lets a test serve exactly the
records it wants and swap them between two runs to simulate a source that changed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol, runtime_checkable

__all__ = ["Collection", "IndexedCollection", "ListCollection"]


@runtime_checkable
class Collection(Protocol):
    """A sized, sliceable record set served at one path."""

    def __len__(self) -> int:
        """Return the real number of records (what ``total`` reports unless overridden)."""
        ...

    def page(self, skip: int, limit: int) -> list[dict]:
        """Return records ``skip`` to ``skip + limit`` (fewer, or none, past the end)."""
        ...


class IndexedCollection:
    """Records ``make(0)`` to ``make(count - 1)``, generated on demand.

    Nothing is stored, so a collection of ten million records is as cheap to create as
    one of ten, and each page costs only its own records.

    Args:
        count: number of records, 0 or more.
        make: pure function from an index to its record.
    """

    def __init__(self, count: int, make: Callable[[int], dict]) -> None:
        if count < 0:
            raise ValueError(f"count must be 0 or more, got {count}")
        self.count = count
        self.make = make

    def __len__(self) -> int:
        return self.count

    def page(self, skip: int, limit: int) -> list[dict]:
        make = self.make
        return [make(i) for i in range(skip, min(skip + limit, self.count))]

    def __repr__(self) -> str:
        return f"IndexedCollection(count={self.count}, make={getattr(self.make, '__name__', self.make)!r})"


class ListCollection:
    """A fixed list of records that a test can replace between runs.

    :meth:`replace` swaps the list reference in one assignment, which is atomic under
    the GIL, so a page served concurrently comes wholly from the old list or wholly from
    the new one and never mixes them.

    Args:
        records: the records, in serving order; the list is copied.
    """

    def __init__(self, records: Iterable[dict]) -> None:
        self._records: list[dict] = list(records)

    def replace(self, records: Iterable[dict]) -> None:
        """Serve ``records`` from now on instead of the current list."""
        self._records = list(records)

    def __len__(self) -> int:
        return len(self._records)

    def page(self, skip: int, limit: int) -> list[dict]:
        return self._records[skip : skip + limit]

    def __repr__(self) -> str:
        return f"ListCollection(<{len(self._records)} records>)"
