"""Entry point for ``workspace.yaml``, ``dagster ... -m etl_assets.definitions`` and ``dg``."""

import dagster as dg

from etl_assets.defs.assets import build_extract_assets
from etl_assets.defs.resources import CheckpointStoreResource
from etl_assets.defs.schedules import build_schedule
from etl_assets.defs.sensors import build_resume_sensor
from etl_assets.settings import Settings
from etl_assets.sources.spec import load_extracts


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    """Definitions for the extracts file named by the settings (the environment by default)."""
    settings = settings or Settings.from_env()
    specs = load_extracts(settings.extracts_file)
    assets = build_extract_assets(specs)
    all_extracts = dg.define_asset_job("all_extracts", selection=dg.AssetSelection.assets(*assets))
    return dg.Definitions(
        assets=assets,
        jobs=[all_extracts],
        schedules=[build_schedule(all_extracts, settings)],
        sensors=[build_resume_sensor([spec.name for spec in specs], all_extracts, settings)],
        resources={"checkpoints": CheckpointStoreResource()},
        executor=dg.in_process_executor,
    )


defs = build_definitions()
