"""``dw_etl_runs``: one row per logical run, its status and its checkpoint."""

from etl_assets.checkpoints.models import Checkpoint, RunRecord, RunStatus, utcnow
from etl_assets.checkpoints.store import CheckpointStore

__all__ = ["Checkpoint", "CheckpointStore", "RunRecord", "RunStatus", "utcnow"]
