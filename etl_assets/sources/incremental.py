"""Incremental extracts: a watermark per extract, sent as a parameter, advanced only on success.

``endpoint.incremental: {cursor_path: updated_at, param: updated_since, initial_value: ...}``
makes each run ask only for records at or after the watermark: the largest ``cursor_path``
value of the last successful run (``initial_value`` before the first). The value a run starts
from is one of its parameters, so a resume never mixes two windows, and a run that fails or
times out leaves the watermark where it was. The comparison is inclusive (``>=``, whatever the
API does with it): records that share the watermark's instant are read again and counted
unchanged, rather than lost when two records share a timestamp.

Values compare as instants when both are ISO 8601 times with an offset (``Z`` included), as
numbers when both are numbers, and as text otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from etl_assets.sources.selectors import MISSING, Selector, parse_selector, select

Value = str | int | float


@dataclass(frozen=True)
class IncrementalSpec:
    cursor_path: str
    param: str
    initial_value: Value

    @property
    def selector(self) -> Selector:
        return parse_selector(self.cursor_path)


def _instant(value: Any) -> datetime | None:
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return when if when.tzinfo is not None else None


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def later(a: Value | None, b: Value | None) -> Value | None:
    """The later of two cursor values; ``None`` is earlier than anything."""
    if a is None:
        return b
    if b is None:
        return a
    ta, tb = _instant(a), _instant(b)
    if ta is not None and tb is not None:
        return b if tb > ta else a
    if _number(a) and _number(b):
        return b if b > a else a
    return b if str(b) > str(a) else a


def page_high_water(records: list[Any], selector: Selector) -> Value | None:
    """The largest cursor value among a page's records (records without one are skipped)."""
    high: Value | None = None
    for record in records:
        value = select(record, selector)
        if value is MISSING or value is None or isinstance(value, bool | dict | list):
            continue
        high = later(high, value)
    return high


def context_for(spec: IncrementalSpec, start_value: Value) -> dict[str, Any]:
    """The ``run_context["incremental"]`` of a new run."""
    return {"cursor_path": spec.cursor_path, "param": spec.param, "start_value": start_value, "high_water": None}


def next_watermark(state: dict[str, Any]) -> Value:
    """Where the run after a successful one starts: its high water, or its own start when it
    read no record with a cursor value."""
    high = state.get("high_water")
    return state["start_value"] if high is None else later(state["start_value"], high)


def start_value(spec: IncrementalSpec, last_success: dict[str, Any] | None) -> Value:
    """The watermark a new run of the extract starts from."""
    state = (last_success or {}).get("incremental")
    if not isinstance(state, dict) or state.get("cursor_path") != spec.cursor_path or state.get("param") != spec.param:
        return spec.initial_value
    watermark = state.get("watermark")
    return spec.initial_value if watermark is None else watermark
