"""The schedule of the job over all extracts (stopped unless ``ETL_SCHEDULE_ENABLED``)."""

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from etl_assets.errors import SettingsError
from etl_assets.settings import Settings


def build_schedule(job: UnresolvedAssetJobDefinition, settings: Settings) -> dg.ScheduleDefinition:
    try:
        ZoneInfo(settings.schedule_timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise SettingsError(
            f"ETL_SCHEDULE_TIMEZONE must be an IANA time zone like 'Europe/Berlin', got {settings.schedule_timezone!r}"
        ) from None
    try:
        return _schedule(job, settings)
    except dg.DagsterInvalidDefinitionError as exc:
        raise SettingsError(f"ETL_SCHEDULE_CRON is not a valid cron expression: {settings.schedule_cron!r} ({exc})") from None


def _schedule(job: UnresolvedAssetJobDefinition, settings: Settings) -> dg.ScheduleDefinition:
    return dg.ScheduleDefinition(
        name="all_extracts_schedule",
        job=job,
        cron_schedule=settings.schedule_cron,
        execution_timezone=settings.schedule_timezone,
        default_status=(
            dg.DefaultScheduleStatus.RUNNING if settings.schedule_enabled else dg.DefaultScheduleStatus.STOPPED
        ),
        description=(
            "Materializes every extract (each resumes its own interrupted run first). "
            "Cron and time zone from ETL_SCHEDULE_CRON / ETL_SCHEDULE_TIMEZONE."
        ),
    )


def build_partition_schedule(job: UnresolvedAssetJobDefinition, settings: Settings) -> dg.ScheduleDefinition:
    """Runs a partitioned extract's newest complete partition once per period (stopped unless
    ``ETL_SCHEDULE_ENABLED``, like the schedule of the other extracts)."""
    return dg.build_schedule_from_partitioned_job(
        job,
        name=f"{job.name}_schedule",
        default_status=(
            dg.DefaultScheduleStatus.RUNNING if settings.schedule_enabled else dg.DefaultScheduleStatus.STOPPED
        ),
    )
