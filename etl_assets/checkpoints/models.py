"""Plain values read from and written to ``dw_etl_runs``."""

from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import StrEnum
from typing import Any

from etl_assets.errors import CorruptRunError


class RunStatus(StrEnum):
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Checkpoint:
    """How far a logical run got: the document's ``{skip, page_index, total_records, ...}``."""

    skip: int
    page_index: int
    total_records: int
    last_checkpoint_time: datetime
    next_url: str | None = None
    """Link paging: the next page's URL (the spec's own query parameters, credentials among
    them, are left out and added again to every request)."""
    cursor: str | None = None
    """Cursor paging: the token that asks for the next page."""
    exhausted: bool = False
    """The source had no page after this one: a resume only records the run's end."""

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "skip": self.skip,
            "page_index": self.page_index,
            "total_records": self.total_records,
            "last_checkpoint_time": self.last_checkpoint_time.isoformat(),
        }
        if self.next_url is not None:
            data["next_url"] = self.next_url
        if self.cursor is not None:
            data["cursor"] = self.cursor
        if self.exhausted:
            data["exhausted"] = True
        return data

    @classmethod
    def from_json(cls, data: Any, run_id: int | None = None) -> "Checkpoint":
        """Read a stored checkpoint; :class:`CorruptRunError` names the run and the field when
        it is not one this project wrote (a hand edit), rather than a ``KeyError`` or a
        negative offset sent to the source."""
        where = f"dw_etl_runs run {run_id}" if run_id is not None else "a dw_etl_runs row"

        def corrupt(reason: str) -> CorruptRunError:
            return CorruptRunError(f"{where}: its checkpoint cannot be read: {reason}")

        if not isinstance(data, dict):
            raise corrupt(f"it is {type(data).__name__}, not an object")
        counts = {}
        for name in ("skip", "page_index", "total_records"):
            value = data.get(name)
            if type(value) is not int or value < 0:
                shown = "missing" if name not in data else f"{_shown(value)}, not a whole number from 0 up"
                raise corrupt(f"{name} is {shown}")
            counts[name] = value
        try:
            when = datetime.fromisoformat(data["last_checkpoint_time"])
        except (KeyError, TypeError, ValueError):
            raise corrupt(f"last_checkpoint_time is {_shown(data.get('last_checkpoint_time', '<missing>'))}, "
                          "not an ISO 8601 time") from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        for name in ("next_url", "cursor"):
            if data.get(name) is not None and not isinstance(data[name], str):
                raise corrupt(f"{name} is {_shown(data[name])}, not a string")
        if not isinstance(data.get("exhausted", False), bool):
            raise corrupt(f"exhausted is {_shown(data['exhausted'])}, not true or false")
        return cls(
            last_checkpoint_time=when,
            next_url=data.get("next_url"),
            cursor=data.get("cursor"),
            exhausted=data.get("exhausted", False),
            **counts,
        )


def _shown(value: Any) -> str:
    return repr(value)[:80]


@dataclass
class RunRecord:
    """One ``dw_etl_runs`` row."""

    run_id: int
    job_name: str
    status: RunStatus
    started_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    records_loaded: int
    error_message: str | None
    dagster_run_id: str | None
    run_context: dict[str, Any] = field(default_factory=dict)

    @property
    def checkpoint(self) -> Checkpoint | None:
        data = self.run_context.get("checkpoint")
        return Checkpoint.from_json(data, self.run_id) if data is not None else None

    @property
    def parameters(self) -> dict[str, Any]:
        return self.run_context.get("parameters") or {}
