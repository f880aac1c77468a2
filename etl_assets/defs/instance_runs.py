"""Dagster run states read from the instance, in the shape :mod:`etl_assets.resume` wants."""

import dagster as dg

from etl_assets.resume import EXTRACT_TAG, RESUME_KEY_TAG, RESUME_TAG, DagsterRunInfo

IN_PROGRESS = frozenset(
    {
        dg.DagsterRunStatus.QUEUED,
        dg.DagsterRunStatus.NOT_STARTED,
        dg.DagsterRunStatus.STARTING,
        dg.DagsterRunStatus.STARTED,
        dg.DagsterRunStatus.CANCELING,
    }
)


def run_info(run: dg.DagsterRun) -> DagsterRunInfo:
    return DagsterRunInfo(run_id=run.run_id, status=run.status.value, active=run.status in IN_PROGRESS)


class InstanceRuns:
    """:class:`etl_assets.resume.RunLookup` over a :class:`dagster.DagsterInstance`."""

    def __init__(self, instance: dg.DagsterInstance) -> None:
        self.instance = instance

    def by_id(self, dagster_run_id: str) -> DagsterRunInfo | None:
        run = self.instance.get_run_by_id(dagster_run_id)
        return run_info(run) if run is not None else None

    def by_resume_key(self, resume_key: str) -> DagsterRunInfo | None:
        runs = self.instance.get_runs(filters=dg.RunsFilter(tags={RESUME_KEY_TAG: resume_key}), limit=1)
        return run_info(runs[0]) if runs else None

    def active_relaunch(self, run_id: int, extract: str) -> DagsterRunInfo | None:
        runs = self.instance.get_runs(
            filters=dg.RunsFilter(tags={RESUME_TAG: str(run_id), EXTRACT_TAG: extract}, statuses=list(IN_PROGRESS)),
            limit=1,
        )
        return run_info(runs[0]) if runs else None
