"""The sensor that relaunches interrupted extracts from their checkpoints.

Thin on purpose: it lists the candidate rows, asks :func:`etl_assets.resume.plan` about each,
writes the decision into the row (fenced on the row's owner, so a run that claimed the row
meanwhile wins) and only then requests the run. One row's failure is logged and the others
are still handled (field case C10).
"""

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from etl_assets.checkpoints import RunStatus, utcnow
from etl_assets.defs.instance_runs import InstanceRuns
from etl_assets.defs.resources import CheckpointStoreResource
from etl_assets.resume import EXTRACT_TAG, RESUME_KEY_TAG, RESUME_TAG, Action, ResumePolicy, plan
from etl_assets.settings import Settings
from etl_assets.sources.partitions import partition_job_name, partition_key

SENSOR_NAME = "resume_interrupted_extracts"
ASSET_JOB = "all_extracts"


def resume_policy(settings: Settings) -> ResumePolicy:
    return ResumePolicy(
        max_attempts=settings.max_resume_attempts,
        backoff_seconds=settings.resume_backoff_seconds,
        lease_seconds=settings.run_lease_seconds,
    )


def resume_run_request(
    extract: str, run_id: int, resume_key: str | None, partition: str | None = None, **tags: str
) -> dg.RunRequest:
    """A run of one extract asset that resumes exactly ``dw_etl_runs`` row ``run_id`` (in its
    partition's job, for a partitioned extract)."""
    all_tags = {RESUME_TAG: str(run_id), EXTRACT_TAG: extract, **tags}
    if resume_key:
        all_tags[RESUME_KEY_TAG] = resume_key
    return dg.RunRequest(
        run_key=resume_key,
        job_name=partition_job_name(extract) if partition is not None else ASSET_JOB,
        partition_key=partition,
        asset_selection=[dg.AssetKey(extract)],
        run_config={"ops": {extract: {"config": {"resume_run_id": run_id}}}},
        tags=all_tags,
    )


def build_resume_sensor(
    extracts: list[str],
    job: UnresolvedAssetJobDefinition,
    settings: Settings,
    partition_jobs: dict[str, UnresolvedAssetJobDefinition] | None = None,
) -> dg.SensorDefinition:
    defined = frozenset(extracts)

    @dg.sensor(
        name=SENSOR_NAME,
        jobs=[job, *(partition_jobs or {}).values()],
        minimum_interval_seconds=max(1, round(settings.resume_sensor_interval_seconds)),
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Relaunches extracts whose run timed out, failed or died with a checkpoint stored, "
            "so they finish from where they stopped. Gives up on a row after "
            "ETL_MAX_RESUME_ATTEMPTS relaunches in a row without progress."
        ),
    )
    def resume_interrupted_extracts(
        context: dg.SensorEvaluationContext, checkpoints: CheckpointStoreResource
    ) -> dg.SensorResult:
        policy = resume_policy(Settings.from_env())
        store = checkpoints.store
        store.ensure_schema()
        lookup = InstanceRuns(context.instance)
        requests: list[dg.RunRequest] = []
        notes: list[str] = []
        for row in store.latest_resumable():
            where = f"dw_etl_runs run {row.run_id} ({row.job_name})"
            try:
                if row.job_name not in defined:
                    notes.append(f"{where}: no such extract in this code location; left alone")
                    continue
                decision = plan(row, lookup, policy, utcnow())
                if decision.action in (Action.SKIP, Action.WAIT):
                    notes.append(f"{where}: {decision.reason}")
                    continue
                assert decision.run_context is not None
                give_up = decision.action is Action.GIVE_UP
                with store.transaction() as conn:
                    written = store.write_context(
                        conn,
                        row.run_id,
                        decision.run_context,
                        owner=row.dagster_run_id,
                        status=RunStatus.FAILED if give_up else None,
                        error_message=decision.reason if give_up else None,
                    )
                if not written:
                    notes.append(f"{where}: another run took it meanwhile")
                    continue
                if give_up:
                    context.log.warning(f"{where}: {decision.reason}")
                    notes.append(f"{where}: {decision.reason}")
                    continue
                context.log.info(f"{where}: {decision.reason}")
                requests.append(
                    resume_run_request(
                        row.job_name, row.run_id, decision.resume_key, partition_key(row.parameters),
                        **{"etl_assets/attempt": str(decision.attempt)},
                    )
                )
            except Exception as exc:  # one bad row must not stop the others
                context.log.exception(f"{where}: could not be handled: {type(exc).__name__}: {exc}")
                notes.append(f"{where}: error {type(exc).__name__}: {exc}")
        if requests:
            return dg.SensorResult(run_requests=requests)
        return dg.SensorResult(skip_reason="; ".join(notes) or "no interrupted extract to resume")

    return resume_interrupted_extracts
