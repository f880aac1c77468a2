"""One Dagster asset per extract spec, all made by one factory.

No ``from __future__ import annotations`` here: Dagster reads the ``Config`` annotation
of the asset function at definition time and cannot resolve it from a string.
"""

from dataclasses import replace

import dagster as dg
from pydantic import Field

from etl_assets.checkpoints import utcnow
from etl_assets.extract import ExtractOptions, ExtractResult, RunLog, run_extract
from etl_assets.defs.instance_runs import InstanceRuns
from etl_assets.defs.resources import CheckpointStoreResource
from etl_assets.resume import holder
from etl_assets.settings import Settings, positive_seconds
from etl_assets.sources.partitions import PartitionSpec, PartitionWindow
from etl_assets.sources.spec import ExtractSpec

class ExtractConfig(dg.Config):
    """Run config of every extract asset."""

    timeout_seconds: float | None = Field(
        default=None, description="Time budget of this run in seconds (default ETL_DEFAULT_TIMEOUT_SECONDS, 300)."
    )
    resume_from_checkpoint: bool = Field(
        default=True, description="Continue this extract's latest interrupted run from its checkpoint."
    )
    checkpoint_interval_seconds: float | None = Field(
        default=None,
        description="Seconds between checkpoints (default ETL_CHECKPOINT_INTERVAL_SECONDS, 60; 0 = every page).",
    )
    resume_run_id: int | None = Field(
        default=None,
        description="Resume exactly this dw_etl_runs row (what the resume sensor, the retry API and the CLI set).",
    )


def extract_options(config: ExtractConfig, settings: Settings, dagster_run_id: str | None) -> ExtractOptions:
    """Merge run config over the environment's defaults, validating both."""
    timeout = settings.default_timeout_seconds
    if config.timeout_seconds is not None:
        timeout = positive_seconds(config.timeout_seconds, "timeout_seconds", timeout)
    interval = settings.checkpoint_interval_seconds
    if config.checkpoint_interval_seconds is not None:
        interval = positive_seconds(
            config.checkpoint_interval_seconds, "checkpoint_interval_seconds", interval, allow_zero=True
        )
    return ExtractOptions(
        timeout_seconds=timeout,
        checkpoint_interval_seconds=interval,
        resume_from_checkpoint=config.resume_from_checkpoint,
        dagster_run_id=dagster_run_id,
        resume_run_id=config.resume_run_id,
    )


def result_metadata(result: ExtractResult) -> dict[str, dg.MetadataValue]:
    return {
        "records_fetched": dg.MetadataValue.int(result.records_fetched),
        "records_loaded_total": dg.MetadataValue.int(result.records_loaded),
        "inserted": dg.MetadataValue.int(result.inserted),
        "updated": dg.MetadataValue.int(result.updated),
        "unchanged": dg.MetadataValue.int(result.unchanged),
        "duplicates": dg.MetadataValue.int(result.duplicates),
        "pages": dg.MetadataValue.int(result.pages),
        "requests": dg.MetadataValue.int(result.requests),
        "resumed_from_skip": (
            dg.MetadataValue.int(result.resumed_from_skip)
            if result.resumed_from_skip is not None
            else dg.MetadataValue.null()
        ),
        "dw_etl_runs_run_id": dg.MetadataValue.int(result.run_id),
        "seconds": dg.MetadataValue.float(round(result.seconds, 3)),
        "rows_per_second": dg.MetadataValue.float(round(result.rows_per_second, 1)),
        "source_total": (
            dg.MetadataValue.int(result.source_total) if result.source_total is not None else dg.MetadataValue.null()
        ),
        "warnings": dg.MetadataValue.json(result.warnings),
        **({"watermark": dg.MetadataValue.text(str(result.watermark))} if result.watermark is not None else {}),
        **({"drift": dg.MetadataValue.json(result.drift)} if result.drift else {}),
    }


def partitions_definition(spec: PartitionSpec) -> dg.TimeWindowPartitionsDefinition:
    """The Dagster partitions of a partitioned extract: one per period from ``start``, in UTC."""
    if spec.period == "hourly":
        return dg.HourlyPartitionsDefinition(start_date=f"{spec.start}-00:00")
    kinds = {"daily": dg.DailyPartitionsDefinition, "weekly": dg.WeeklyPartitionsDefinition,
             "monthly": dg.MonthlyPartitionsDefinition}
    return kinds[spec.period](start_date=spec.start)


def build_extract_asset(spec: ExtractSpec) -> dg.AssetsDefinition:
    """The asset of one extract; its key is exactly the resource name."""

    @dg.asset(
        name=spec.name,
        group_name=spec.group,
        description=spec.description or f"Records of {spec.path} upserted into {spec.table_name}.",
        kinds={"api", "sql"},
        metadata={"endpoint": spec.path, "table": spec.table_name, "primary_key": list(spec.primary_key)},
        partitions_def=partitions_definition(spec.partitions) if spec.partitions else None,
    )
    def _extract(
        context: dg.AssetExecutionContext, config: ExtractConfig, checkpoints: CheckpointStoreResource
    ) -> dg.MaterializeResult:
        settings = Settings.from_env()
        runs = InstanceRuns(context.instance)
        options = extract_options(config, settings, context.run.run_id)
        if spec.partitions is not None:
            window = context.partition_time_window
            options = replace(options, partition=PartitionWindow(context.partition_key, window.start, window.end))
        result = run_extract(
            spec,
            checkpoints.store,
            options,
            log=RunLog(context.log),
            holder=lambda row: holder(row, runs, settings.run_lease_seconds, utcnow()),
        )
        return dg.MaterializeResult(metadata=result_metadata(result))

    return _extract


def build_extract_assets(specs: list[ExtractSpec]) -> list[dg.AssetsDefinition]:
    return [build_extract_asset(spec) for spec in specs]
