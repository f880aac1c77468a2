"""The extract assets through Dagster: keys, config, metadata, timeout and resume."""

import dagster as dg
import pytest
import sqlalchemy as sa

from etl_assets.checkpoints import RunStatus
from etl_assets.defs.assets import ExtractConfig, build_extract_asset, build_extract_assets
from etl_assets.defs.resources import CheckpointStoreResource
from etl_assets.demo import ServerThread, default_source
from etl_assets.sources.spec import load_extracts
from etl_assets.settings import DEFAULT_EXTRACTS_FILE
from etl_assets_tests.support import items_spec, simple_records


@pytest.fixture
def demo():
    with ServerThread(default_source(patients=40)) as server:
        yield server


def demo_assets(url, limit=None):
    specs = load_extracts(DEFAULT_EXTRACTS_FILE)
    out = []
    for spec in specs:
        from dataclasses import replace

        paginator = spec.paginator if limit is None else replace(spec.paginator, limit=limit)
        out.append(build_extract_asset(replace(spec, base_url=url, paginator=paginator)))
    return out


def resources(warehouse):
    return {"checkpoints": CheckpointStoreResource(database_url=warehouse.url, warehouse_schema=warehouse.schema)}


def metadata(result, key):
    (materialization,) = [
        m for m in result.get_asset_materialization_events() if m.asset_key == dg.AssetKey(key)
    ]
    return {k: v.value for k, v in materialization.materialization.metadata.items()}


def test_asset_keys_are_resource_names_in_one_group():
    assets = build_extract_assets(load_extracts(DEFAULT_EXTRACTS_FILE))
    keys = {key.to_user_string() for a in assets for key in a.keys}
    assert keys == {"patients", "encounters", "observations"}
    assert {a.group_names_by_key[k] for a in assets for k in a.keys} == {"demo_source"}


def test_materialize_all_demo_extracts_with_metadata(demo, warehouse):
    result = dg.materialize(
        demo_assets(demo.url, limit=16),
        resources=resources(warehouse),
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    patients = metadata(result, "patients")
    assert {k: patients[k] for k in ("records_fetched", "inserted", "updated", "unchanged", "pages", "requests")} == {
        "records_fetched": 40,
        "inserted": 40,
        "updated": 0,
        "unchanged": 0,
        "pages": 3,
        "requests": 3,
    }
    assert patients["resumed_from_skip"] is None
    assert patients["records_loaded_total"] == 40 and patients["source_total"] == 40
    assert patients["seconds"] > 0 and patients["rows_per_second"] > 0
    assert metadata(result, "encounters")["records_fetched"] == 120
    assert metadata(result, "observations")["records_fetched"] == 200
    assert len(warehouse.records("patients")) == 40
    assert len(warehouse.records("encounters")) == 120
    assert len(warehouse.records("observations")) == 200
    runs = warehouse.runs()
    assert sorted(r.job_name for r in runs) == ["encounters", "observations", "patients"]
    assert all(r.status is RunStatus.SUCCESS and r.dagster_run_id == result.run_id for r in runs)
    stored = warehouse.records("patients")["pat-00000007"]
    from etl_assets.demo.records import patient

    assert stored == patient(7)


def test_timeout_from_run_config_then_resume(warehouse):
    # 24 pages of 5, each answered after at least 0.4 s, at most 4 in flight (the first alone,
    # until the total is known): the run needs at least 0.4 + 6 * 0.4 = 2.8 s, so the 2 s budget
    # ends mid-way on any machine, and leaves 1.6 s for the first page even on a busy one.
    demo = default_source(patients=120, latency_seconds=0.4)
    with ServerThread(demo) as server:
        assets = demo_assets(server.url, limit=5)[:1]
        instance = dg.DagsterInstance.ephemeral()
        first = dg.materialize(
            assets,
            resources=resources(warehouse),
            instance=instance,
            run_config=dg.RunConfig({"patients": ExtractConfig(timeout_seconds=2, checkpoint_interval_seconds=60)}),
            raise_on_error=False,
        )
        assert not first.success
        (failure,) = [e for e in first.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
        error = failure.step_failure_data.error.cause
        assert error.cls_name == "JobTimeoutError"
        assert "To resume, materialize 'patients' again" in error.message
        (run,) = warehouse.runs("patients")
        assert run.status is RunStatus.RUNNING and run.dagster_run_id == first.run_id
        stopped_at = run.checkpoint.skip
        assert 0 < stopped_at < 120 and stopped_at % 5 == 0
        assert len(warehouse.records("patients")) == stopped_at

        second = dg.materialize(assets, resources=resources(warehouse), instance=instance)
    assert second.success
    meta = metadata(second, "patients")
    assert meta["resumed_from_skip"] == stopped_at
    assert meta["records_fetched"] == 120 - stopped_at
    assert meta["records_loaded_total"] == 120
    assert meta["dw_etl_runs_run_id"] == run.run_id
    (final,) = warehouse.runs("patients")
    assert final.status is RunStatus.SUCCESS and final.records_loaded == 120 and final.checkpoint is None
    assert [a["dagster_run_id"] for a in final.run_context["attempts"]] == [first.run_id, second.run_id]
    assert len(warehouse.records("patients")) == 120


def test_bad_run_config_value_is_named(sqlite_warehouse):
    with ServerThread(default_source(patients=3)) as server:
        result = dg.materialize(
            demo_assets(server.url)[:1],
            resources=resources(sqlite_warehouse),
            instance=dg.DagsterInstance.ephemeral(),
            run_config=dg.RunConfig({"patients": ExtractConfig(timeout_seconds=-5)}),
            raise_on_error=False,
        )
    (failure,) = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert failure.step_failure_data.error.cause.cls_name == "SettingsError"
    assert failure.step_failure_data.error.cause.message == (
        "etl_assets.errors.SettingsError: timeout_seconds must be more than zero seconds, got -5.0\n"
    )
    with sqlite_warehouse.engine.connect() as conn:
        assert not sa.inspect(conn).has_table("dw_etl_runs")


def test_extract_runs_only_once_when_its_row_is_claimed_by_a_live_run(sqlite_warehouse):
    from etl_assets.demo import DemoSource, ListCollection

    source = DemoSource(collections={"items": ListCollection(simple_records(30))})
    with ServerThread(source) as server:
        spec = items_spec(server.url, limit=10)
        instance = dg.DagsterInstance.ephemeral()
        asset = build_extract_asset(spec)
        # a row left 'running' by a Dagster run the instance still shows as in progress
        live = instance.add_run(
            dg.DagsterRun(job_name="other", run_id="live-run-0001", status=dg.DagsterRunStatus.STARTED)
        )
        sqlite_warehouse.store.ensure_schema()
        with sqlite_warehouse.store.transaction() as conn:
            sqlite_warehouse.store.create(conn, "items", {"parameters": {}, "checkpoint": None}, live.run_id)
        source.clear_requests()
        result = dg.materialize(
            [asset], resources=resources(sqlite_warehouse), instance=instance, raise_on_error=False
        )
    (failure,) = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert failure.step_failure_data.error.cause.cls_name == "ExtractAlreadyRunningError"
    assert f"is held by Dagster run {live.run_id} (STARTED); this run made no request" in (
        failure.step_failure_data.error.cause.message
    )
    assert source.requests() == []
    (row,) = sqlite_warehouse.runs("items")
    assert row.status is RunStatus.RUNNING and row.dagster_run_id == live.run_id
