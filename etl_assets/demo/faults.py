"""Faults the demo source can inject, to test how an extractor copes with a bad API.

A :class:`Fault` names the requests it applies to (a path, optionally one ``skip``) and
what the server does instead of serving the page. Faults are plain data that convert to
and from JSON objects, so a test can inject them into a server in another process
through ``POST /_control/faults`` or the ``--fault`` command line option.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, get_args

__all__ = ["DEFAULT_MALFORMED_BODY", "Fault", "FaultAction"]

FaultAction = Literal["status", "hang", "drip", "malformed", "drop"]

DEFAULT_MALFORMED_BODY = '{"total": 3, "items": [1, 2'
"""A page cut off mid-array: valid JSON up to the point where it stops."""

_ACTIONS: tuple[str, ...] = get_args(FaultAction)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass
class Fault:
    """One injected fault, matched against incoming data requests in the order added.

    Attributes:
        path: request path it applies to, matched exactly (``"/patients"``).
        skip: apply only to requests whose ``skip`` query parameter (0 when absent)
            equals this; ``None`` for any request to ``path``.
        times: how many matching requests it applies to before it is used up; ``None``
            for every matching request until removed.
        action: what the server does instead of serving the page:

            - ``status``: respond with ``status``, a ``Retry-After: retry_after`` header
              when ``retry_after`` is set, and a body ``{"error": "..."}``.
            - ``hang``: read the request and never respond, until the client goes away
              or the server stops.
            - ``drip``: send 200 headers at once, then one byte of a plausible JSON body
              every ``drip_interval`` seconds, never finishing.
            - ``malformed``: respond 200 with ``body`` as ``content_type``.
            - ``drop``: close the connection without sending any response. The server
              has read the whole request, so the client sees a clean close before the
              first response byte (httpx raises ``RemoteProtocolError: Server
              disconnected without sending a response.``). This needs uvicorn (as
              :mod:`etl_assets.demo.server` runs it); under another ASGI server the
              request fails with a 500 instead.
        status: the status code of a ``status`` fault.
        retry_after: the exact ``Retry-After`` header value of a ``status`` fault
            (seconds like ``"2"`` or an HTTP date); ``None`` sends no header.
        drip_interval: seconds between two bytes of a ``drip`` fault.
        body: the body of a ``malformed`` fault.
        content_type: the ``Content-Type`` of a ``malformed`` fault.
    """

    path: str
    skip: int | None = None
    times: int | None = 1
    action: FaultAction = "status"
    status: int = 503
    retry_after: str | None = None
    drip_interval: float = 4.0
    body: str = DEFAULT_MALFORMED_BODY
    content_type: str = "application/json"

    def __post_init__(self) -> None:
        if not isinstance(self.path, str) or not self.path.startswith("/"):
            raise ValueError(f"fault path must be a string starting with '/', got {self.path!r}")
        if self.skip is not None and not (_is_int(self.skip) and self.skip >= 0):
            raise ValueError(f"fault skip must be null or an integer 0 or more, got {self.skip!r}")
        if self.times is not None and not (_is_int(self.times) and self.times >= 1):
            raise ValueError(f"fault times must be null or an integer 1 or more, got {self.times!r}")
        if self.action not in _ACTIONS:
            raise ValueError(f"fault action must be one of {', '.join(_ACTIONS)}, got {self.action!r}")
        if not (_is_int(self.status) and 200 <= self.status <= 599):
            raise ValueError(f"fault status must be an integer from 200 to 599, got {self.status!r}")
        if self.retry_after is not None and not (
            isinstance(self.retry_after, str) and self.retry_after.isprintable() and self.retry_after.isascii()
        ):
            raise ValueError(f"fault retry_after must be null or printable ASCII text, got {self.retry_after!r}")
        if isinstance(self.drip_interval, bool) or not isinstance(self.drip_interval, (int, float)) or not (
            0 < self.drip_interval < float("inf")
        ):
            raise ValueError(f"fault drip_interval must be a positive number of seconds, got {self.drip_interval!r}")
        self.drip_interval = float(self.drip_interval)
        if not isinstance(self.body, str):
            raise ValueError(f"fault body must be a string, got {type(self.body).__name__}")
        if not (isinstance(self.content_type, str) and self.content_type.isascii() and self.content_type.isprintable()):
            raise ValueError(f"fault content_type must be printable ASCII text, got {self.content_type!r}")

    def matches(self, path: str, skip: int | None) -> bool:
        """Whether a request to ``path`` with query ``skip`` (``None`` if absent or invalid) is targeted."""
        return path == self.path and (self.skip is None or self.skip == skip)

    def to_dict(self) -> dict[str, Any]:
        """Return the fault as a JSON-ready dict with every field, defaults included."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fault:
        """Build a fault from a dict such as a parsed JSON object.

        Unknown keys are an error rather than ignored, so a typo such as ``"skp"`` fails
        loudly instead of silently widening the fault to every request.

        Raises:
            ValueError: ``data`` is not a dict, lacks ``path``, has an unknown key, or a
                value is out of range.
        """
        if not isinstance(data, dict):
            raise ValueError(f"a fault must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown fault field(s): {', '.join(map(str, unknown))}")
        if "path" not in data:
            raise ValueError("a fault needs a 'path'")
        return cls(**data)
