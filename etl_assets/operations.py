"""What an operator does with ``dw_etl_runs`` rows: look at them and retry them.

One implementation behind the HTTP API, the CLI and :class:`etl_assets.executor.JobExecutor`,
so the three agree on what a retry does and when it is refused. A retry asks Dagster for a
run of the row's asset with ``resume_run_id`` set to the row; the extract itself then claims
the row (or refuses, if another run got there first), exactly as for a sensor relaunch.
"""

import threading
from dataclasses import dataclass, field
from datetime import datetime
from collections.abc import Mapping
from typing import Any, Protocol

from etl_assets.checkpoints import CheckpointStore, RunRecord, RunStatus, utcnow
from etl_assets.errors import CorruptRunError, EtlError, RunConflictError, RunNotFoundError
from etl_assets.extract import current_parameters, parameter_differences
from etl_assets.sources.partitions import PARTITION_TAG, partition_key
from etl_assets.resume import EXTRACT_TAG, RESUME_TAG, RunLookup, holder, operator_reset, resume_state
from etl_assets.sources.spec import ExtractSpec


class Launcher(Protocol):
    """Starts a Dagster run of one extract asset and returns its run id."""

    def launch(self, extract: str, run_config: dict[str, Any], tags: dict[str, str]) -> str: ...


def retry_run_config(extract: str, run_id: int) -> dict[str, Any]:
    return {"ops": {extract: {"config": {"resume_run_id": run_id}}}}


@dataclass(frozen=True)
class RetryPlan:
    """What a retry of one row will do; the whole answer of a dry run."""

    run_id: int
    extract: str
    status: str
    action: str
    """``resume`` from the checkpoint; ``start_fresh`` when the row has none or the extract's
    parameters changed since (``parameter_differences`` says which)."""
    resume_from_skip: int | None
    page_index: int | None
    records_loaded: int
    parameters: dict[str, Any]
    run_config: dict[str, Any]
    parameter_differences: list[str] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "extract": self.extract,
            "asset": self.extract,
            "status": self.status,
            "action": self.action,
            "resume_from_skip": self.resume_from_skip,
            "page_index": self.page_index,
            "records_loaded": self.records_loaded,
            "parameters": self.parameters,
            "parameter_differences": self.parameter_differences,
            "run_config": self.run_config,
        }


class Operations:
    """Reads and retries rows of one warehouse for one set of extract definitions."""

    def __init__(
        self,
        store: CheckpointStore,
        specs: Mapping[str, ExtractSpec],
        lookup: RunLookup,
        *,
        lease_seconds: float,
        launched_by: str,
    ) -> None:
        self.store = store
        self.specs = dict(specs)
        self.extracts = frozenset(specs)
        self.lookup = lookup
        self.lease_seconds = lease_seconds
        self.launched_by = launched_by
        self._retrying = threading.Lock()
        """Check and launch as one step, so two retries of a row arriving together in this
        process (the API serves requests side by side) launch one run, not two."""

    def get(self, run_id: int) -> RunRecord:
        row = self.store.get(run_id) if self.store.exists() else None
        if row is None:
            raise RunNotFoundError(f"there is no dw_etl_runs run {run_id}")
        return row

    def list(self, *, extract: str | None = None, status: str | None = None, limit: int = 50) -> list[RunRecord]:
        if not self.store.exists():
            return []
        rows = self.store.list_runs(extract, limit=limit if status is None else 10_000)
        if status is not None:
            rows = [r for r in rows if r.status.value == status][:limit]
        return rows

    def plan_retry(self, run_id: int) -> RetryPlan:
        """What a retry would do, or :class:`RunConflictError` saying why it cannot."""
        row = self.get(run_id)
        where = f"dw_etl_runs run {run_id} ({row.job_name})"
        if row.status is RunStatus.SUCCESS:
            raise RunConflictError(f"{where} already succeeded; there is nothing to retry")
        held = holder(row, self.lookup, self.lease_seconds, utcnow())
        if held:
            raise RunConflictError(f"{where} is still active: held by {held}")
        if (queued := self.lookup.active_relaunch(row.run_id, row.job_name)) is not None:
            # Launched (by the sensor or an earlier retry) but not started: it holds nothing yet.
            raise RunConflictError(
                f"{where} is still active: Dagster run {queued.run_id} ({queued.status}) was launched to resume it"
            )
        if row.job_name not in self.extracts:
            raise RunConflictError(f"{where}: extract {row.job_name!r} is not defined in the extracts file")
        try:
            checkpoint = row.checkpoint
        except CorruptRunError as exc:
            raise RunConflictError(
                f"{exc}; it cannot be resumed: fix the row, or start a new run of {row.job_name!r}, "
                "which closes it and starts from the beginning"
            ) from None
        try:
            current = current_parameters(self.specs[row.job_name], store=self.store)
            if "partition" in row.parameters:
                # A retry runs in the row's own partition, so its window is the row's.
                current["partition"] = row.parameters["partition"]
            differences = parameter_differences(row.parameters, current)
        except EtlError as exc:
            raise RunConflictError(f"{where}: the extract cannot start: {exc}") from None
        if differences:
            checkpoint = None
        return RetryPlan(
            run_id=row.run_id,
            extract=row.job_name,
            status=row.status.value,
            action="resume" if checkpoint else "start_fresh",
            parameter_differences=differences,
            resume_from_skip=checkpoint.skip if checkpoint else None,
            page_index=checkpoint.page_index if checkpoint else None,
            records_loaded=checkpoint.total_records if checkpoint else 0,
            parameters=row.parameters,
            run_config=retry_run_config(row.job_name, row.run_id),
            tags={
                RESUME_TAG: str(row.run_id),
                EXTRACT_TAG: row.job_name,
                "etl_assets/launched_by": self.launched_by,
                **({PARTITION_TAG: partition} if (partition := partition_key(row.parameters)) else {}),
            },
        )

    def retry(self, run_id: int, launcher: Launcher) -> tuple[RetryPlan, str]:
        """Launch a run that resumes ``run_id``; returns the plan and the Dagster run id.

        The row's automatic-relaunch budget is reset first (an operator looked at it), with
        a write fenced on its owner so a run that claimed it meanwhile is not disturbed.
        """
        with self._retrying:
            plan = self.plan_retry(run_id)
            # A run launched in the background exists in Dagster only once its thread starts
            # it; until then the instance cannot show it, but the launcher knows.
            pending = getattr(launcher, "pending_with", None)
            if pending is not None and (launched := pending(RESUME_TAG, str(run_id))) is not None:
                raise RunConflictError(
                    f"dw_etl_runs run {run_id} ({plan.extract}) is still active: Dagster run "
                    f"{launched.run_id} ({launched.status}) was launched to resume it"
                )
            row = self.get(run_id)
            if resume_state(row.run_context):
                with self.store.transaction() as conn:
                    if not self.store.write_context(
                        conn, run_id, operator_reset(row.run_context), owner=row.dagster_run_id
                    ):
                        raise RunConflictError(f"dw_etl_runs run {run_id} was taken by another run just now")
            return plan, launcher.launch(plan.extract, plan.run_config, plan.tags)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def run_summary(row: RunRecord) -> dict[str, Any]:
    checkpoint = row.run_context.get("checkpoint") or None
    return {
        "run_id": row.run_id,
        "extract": row.job_name,
        "status": row.status.value,
        "started_at": _iso(row.started_at),
        "updated_at": _iso(row.updated_at),
        "finished_at": _iso(row.finished_at),
        "records_loaded": row.records_loaded,
        "dagster_run_id": row.dagster_run_id,
        "checkpoint": checkpoint,
        "error_message": row.error_message,
    }


def run_detail(row: RunRecord) -> dict[str, Any]:
    detail = run_summary(row)
    detail.update(
        parameters=row.parameters,
        attempts=row.run_context.get("attempts") or [],
        resume=row.run_context.get("resume") or None,
        source_total=row.run_context.get("source_total"),
    )
    return detail
