"""Plain values read from and written to ``dw_etl_runs``."""

from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import StrEnum
from typing import Any


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
    def from_json(cls, data: dict[str, Any]) -> "Checkpoint":
        when = datetime.fromisoformat(data["last_checkpoint_time"])
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        return cls(
            skip=int(data["skip"]),
            page_index=int(data["page_index"]),
            total_records=int(data["total_records"]),
            last_checkpoint_time=when,
            next_url=data.get("next_url"),
            cursor=data.get("cursor"),
            exhausted=bool(data.get("exhausted", False)),
        )


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
        return Checkpoint.from_json(data) if data else None

    @property
    def parameters(self) -> dict[str, Any]:
        return self.run_context.get("parameters") or {}
