"""Time windows as Dagster partitions, for APIs that take a range (``updated_since`` /
``updated_before``).

``endpoint.partitions: {period: daily, start: "2026-01-01", start_param: updated_since,
end_param: updated_before}`` makes the extract's asset partitioned by that period. Each
partition's run sends its window's bounds as ISO 8601 UTC times and is a logical run of its own:
its ``dw_etl_runs`` row carries the partition in its parameters, so an interrupted partition
resumes its own checkpoint and a backfill over many partitions resumes partition by partition.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

PERIODS = ("hourly", "daily", "weekly", "monthly")
PARTITION_TAG = "dagster/partition"


@dataclass(frozen=True)
class PartitionSpec:
    period: str
    start: str
    """The first partition's day, ``YYYY-MM-DD`` (UTC)."""
    start_param: str
    end_param: str


@dataclass(frozen=True)
class PartitionWindow:
    """One partition of a run: its key and its ``[start, end)`` window."""

    key: str
    start: datetime
    end: datetime

    def params(self, spec: PartitionSpec) -> dict[str, str]:
        return {spec.start_param: utc_text(self.start), spec.end_param: utc_text(self.end)}

    def parameters(self) -> dict[str, Any]:
        """What ``dw_etl_runs`` keeps of the partition, among the run's parameters."""
        return {"key": self.key, "start": utc_text(self.start), "end": utc_text(self.end)}


def utc_text(when: datetime) -> str:
    if when.tzinfo is None:
        raise ValueError(f"a partition bound must carry a time zone, got {when!r}")
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def partition_key(parameters: dict[str, Any]) -> str | None:
    """The partition a ``dw_etl_runs`` row belongs to, from its parameters; ``None`` if none."""
    partition = parameters.get("partition")
    return partition.get("key") if isinstance(partition, dict) else None


def check_start(text: Any) -> str | None:
    """Why ``text`` is not a ``YYYY-MM-DD`` day, or ``None``."""
    if not isinstance(text, str):
        return f"must be a day like 2026-01-01, got {text!r}"
    try:
        datetime.strptime(text, "%Y-%m-%d")
    except ValueError:
        return f"must be a day like 2026-01-01, got {text!r}"
    return None


def partition_job_name(extract: str) -> str:
    """The Dagster job of one partitioned extract (the job over all extracts holds the others)."""
    return f"{extract}_partitions"
