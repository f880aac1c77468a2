"""The run's time budget, on a monotonic clock so wall-clock jumps cannot stretch it."""

import time


class DeadlineExceeded(Exception):
    """Raised inside the library when the budget is spent; the extract turns it into a
    :class:`~etl_assets.errors.JobTimeoutError` that carries the checkpoint."""


class Deadline:
    """A point in monotonic time after which a run must stop."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._at = time.monotonic() + seconds

    def remaining(self) -> float:
        return self._at - time.monotonic()

    def expired(self) -> bool:
        return self.remaining() <= 0

    def check(self, what: str) -> None:
        """Raise :class:`DeadlineExceeded` when no time is left for ``what``."""
        if self.expired():
            raise DeadlineExceeded(f"time budget of {self.seconds:g} s spent before {what}")
