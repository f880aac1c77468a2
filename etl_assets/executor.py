"""The Python API of the behaviour document::

    from etl_assets.executor import JobExecutor, CheckpointData

    executor = JobExecutor()
    checkpoint = executor.get_checkpoint(run_id=1234)
    if checkpoint:
        print(f"Resume from skip={checkpoint.skip}, records={checkpoint.total_records}")
    result = executor.execute_job(job="patients", resume_from_checkpoint=True, timeout_seconds=600)

Each call materializes the asset through Dagster, on the instance in ``DAGSTER_HOME`` when it
is set (so the run shows in the UI next to scheduled and sensor runs), otherwise on an
ephemeral one. A run that fails raises the extract's own error (``JobTimeoutError`` with the
resume instructions, ``SourceHTTPError``...), exactly as the asset does.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import dagster as dg

from etl_assets.checkpoints import RunStatus
from etl_assets.deployment import TERMINAL_CONSOLE_LEVEL, Deployment, InProcessLauncher
from etl_assets.errors import SettingsError
from etl_assets.settings import Settings


@dataclass(frozen=True)
class CheckpointData:
    """The checkpoint of one ``dw_etl_runs`` row, as the document names its fields."""

    run_id: int
    job_name: str
    status: str
    skip: int
    page_index: int
    total_records: int
    last_checkpoint_time: datetime
    parameters: dict[str, Any]


@dataclass(frozen=True)
class JobResult:
    """What one materialization did (the numbers of the asset's metadata)."""

    job: str
    dagster_run_id: str
    run_id: int
    records_fetched: int
    records_loaded: int
    inserted: int
    updated: int
    unchanged: int
    pages: int
    resumed_from_skip: int | None
    seconds: float
    rows_per_second: float


class JobExecutor:
    """Runs extracts and reads checkpoints from Python."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.deployment = Deployment.from_env(background=False, settings=settings)
        launcher = self.deployment.launcher
        self._local = launcher if isinstance(launcher, InProcessLauncher) else InProcessLauncher(
            self.deployment.defs, self.deployment.instance, background=False, console_level=TERMINAL_CONSOLE_LEVEL
        )
        self.operations = self.deployment.operations("python")

    def execute_job(
        self,
        job: str,
        *,
        resume_from_checkpoint: bool = True,
        timeout_seconds: float | None = None,
        checkpoint_interval_seconds: float | None = None,
        run_id: int | None = None,
    ) -> JobResult:
        """Materialize extract ``job`` (its asset key) and return its counts.

        ``run_id`` resumes that exact ``dw_etl_runs`` row; otherwise, with
        ``resume_from_checkpoint``, the extract's latest interrupted row is resumed when its
        parameters match.
        """
        if job not in self.operations.extracts:
            known = ", ".join(sorted(self.operations.extracts))
            raise SettingsError(f"there is no extract {job!r}; the extracts file defines: {known}")
        config: dict[str, Any] = {"resume_from_checkpoint": resume_from_checkpoint}
        if timeout_seconds is not None:
            config["timeout_seconds"] = timeout_seconds
        if checkpoint_interval_seconds is not None:
            config["checkpoint_interval_seconds"] = checkpoint_interval_seconds
        if run_id is not None:
            config["resume_run_id"] = run_id
        result = self._local.execute(job, {"ops": {job: {"config": config}}}, {"etl_assets/launched_by": "python"})
        if not result.success:
            raise _original_error(result, job)
        [event] = result.get_asset_materialization_events()
        meta = {k: v.value for k, v in event.materialization.metadata.items()}
        return JobResult(
            job=job,
            dagster_run_id=result.run_id,
            run_id=meta["dw_etl_runs_run_id"],
            records_fetched=meta["records_fetched"],
            records_loaded=meta["records_loaded_total"],
            inserted=meta["inserted"],
            updated=meta["updated"],
            unchanged=meta["unchanged"],
            pages=meta["pages"],
            resumed_from_skip=meta["resumed_from_skip"],
            seconds=meta["seconds"],
            rows_per_second=meta["rows_per_second"],
        )

    def get_checkpoint(self, run_id: int) -> CheckpointData | None:
        """The row's checkpoint, or ``None`` when it has none (or does not exist)."""
        store = self.deployment.store
        row = store.get(run_id) if store.exists() else None
        if row is None or row.checkpoint is None or row.status is RunStatus.SUCCESS:
            return None
        checkpoint = row.checkpoint
        return CheckpointData(
            run_id=row.run_id,
            job_name=row.job_name,
            status=row.status.value,
            skip=checkpoint.skip,
            page_index=checkpoint.page_index,
            total_records=checkpoint.total_records,
            last_checkpoint_time=checkpoint.last_checkpoint_time,
            parameters=row.parameters,
        )

    def close(self) -> None:
        self.deployment.close()

    def __enter__(self) -> "JobExecutor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _original_error(result: dg.ExecuteInProcessResult, extract: str) -> BaseException:
    """The extract's own exception, re-created from the failed step (messages are kept)."""
    from etl_assets import errors

    for event in result.all_events:
        if event.event_type_value != "STEP_FAILURE":
            continue
        error = event.step_failure_data.error
        cause = error.cause or error
        cls = getattr(errors, cause.cls_name, None)
        message = cause.message.split(": ", 1)[1].strip() if ": " in cause.message else cause.message
        if isinstance(cls, type) and issubclass(cls, errors.ExtractError):
            if issubclass(cls, errors.SourceHTTPError):
                return cls(message, extract=extract, status_code=None)
            return cls(message, extract=extract)
        if isinstance(cls, type) and issubclass(cls, errors.EtlError):
            return cls(message)
        return RuntimeError(f"{cause.cls_name}: {message}")
    return RuntimeError(f"Dagster run {result.run_id} failed before its extract started")
