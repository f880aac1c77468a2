"""Entry point for ``workspace.yaml``, ``dagster ... -m etl_assets.definitions`` and ``dg``."""

import dagster as dg

from etl_assets.defs.assets import build_extract_assets
from etl_assets.defs.resources import CheckpointStoreResource
from etl_assets.defs.schedules import build_partition_schedule, build_schedule
from etl_assets.defs.sensors import ASSET_JOB, build_resume_sensor
from etl_assets.settings import Settings
from etl_assets.sources.partitions import partition_job_name
from etl_assets.sources.spec import load_extracts


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    """Definitions for the extracts file named by the settings (the environment by default)."""
    settings = settings or Settings.from_env()
    specs = load_extracts(settings.extracts_file)
    assets = build_extract_assets(specs)
    whole = [asset for asset, spec in zip(assets, specs) if spec.partitions is None]
    all_extracts = dg.define_asset_job(ASSET_JOB, selection=dg.AssetSelection.assets(*whole))
    # A partitioned extract gets a job and a schedule of its own: each scheduled run takes the
    # period that just ended, and a backfill is a run per partition.
    partition_jobs = {
        spec.name: dg.define_asset_job(partition_job_name(spec.name), selection=dg.AssetSelection.assets(asset))
        for asset, spec in zip(assets, specs)
        if spec.partitions is not None
    }
    schedules = [build_schedule(all_extracts, settings)] + [
        build_partition_schedule(job, settings) for job in partition_jobs.values()
    ]
    return dg.Definitions(
        assets=assets,
        jobs=[all_extracts, *partition_jobs.values()],
        schedules=schedules,
        sensors=[build_resume_sensor([spec.name for spec in specs], all_extracts, settings, partition_jobs)],
        resources={"checkpoints": CheckpointStoreResource()},
        executor=dg.in_process_executor,
    )


defs = build_definitions()
