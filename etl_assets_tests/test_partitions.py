"""Time-window partitions: each partition is a logical run of its own, with its own dw_etl_runs row
and checkpoint; the resume sensor relaunches an interrupted partition in its own partition, so a
backfill resumes partition by partition. Against json-server 0.17.4's range filters and, for the
Dagster side, the demo source."""

import json
from datetime import datetime, timezone

import dagster as dg
import pytest

from etl_assets.checkpoints import RunStatus
from etl_assets.definitions import build_definitions
from etl_assets.defs.resources import CheckpointStoreResource
from etl_assets.demo import DemoSource, Fault, ListCollection, ServerThread
from etl_assets.errors import ExtractError, SpecError
from etl_assets.extract import ExtractOptions, run_extract
from etl_assets.settings import Settings
from etl_assets.sources.partitions import PartitionWindow
from etl_assets.sources.spec import parse_extracts
from etl_assets_tests.support import simple_records
from etl_assets_tests.test_json_server import start_json_server, stop

UTC = timezone.utc


def day(n: int) -> PartitionWindow:
    return PartitionWindow(f"2026-01-{n:02d}", datetime(2026, 1, n, tzinfo=UTC), datetime(2026, 1, n + 1, tzinfo=UTC))


def partitioned(url: str, path: str = "/items", selector: str = "$", paginator: dict | None = None) -> dict:
    return {
        "client": {"base_url": url, "paginator": paginator or {
            "type": "offset", "limit": 10, "offset_param": "_start", "limit_param": "_limit",
            "total_header": "X-Total-Count"}},
        "resources": [{"name": "items", "primary_key": "id", "endpoint": {
            "path": path, "data_selector": selector,
            "partitions": {"period": "daily", "start": "2026-01-01", "start_param": "updated_at_gte",
                           "end_param": "updated_at_lt"},
        }}],
    }


def test_each_partition_reads_its_own_window_into_its_own_row(tmp_path, warehouse):
    # 10, 12 and 8 records on three days; json-server 0.17 filters with _gte and _lte, so the
    # spec names the end parameter updated_at_lte here (no record sits on a midnight).
    counts = {1: 10, 2: 12, 3: 8}
    records = [{"id": d * 100 + i, "updated_at": f"2026-01-{d:02d}T{i:02d}:30:00Z"}
               for d, n in counts.items() for i in range(n)]
    db = tmp_path / "db.json"
    db.write_text(json.dumps({"items": records}))
    document = partitioned("http://placeholder")
    document["resources"][0]["endpoint"]["partitions"]["end_param"] = "updated_at_lte"
    process, url = start_json_server(db)
    try:
        document["client"]["base_url"] = url
        (spec,) = parse_extracts(document)
        results = {d: run_extract(spec, warehouse.store, ExtractOptions(timeout_seconds=60, partition=day(d)))
                   for d in counts}
    finally:
        stop(process)
    assert {d: r.records_fetched for d, r in results.items()} == counts
    rows = warehouse.runs("items")
    assert [r.parameters["partition"] for r in rows] == [
        {"key": f"2026-01-{d:02d}", "start": f"2026-01-{d:02d}T00:00:00Z", "end": f"2026-01-{d + 1:02d}T00:00:00Z"}
        for d in counts
    ]
    assert [r.status for r in rows] == [RunStatus.SUCCESS] * 3
    assert sorted(int(k) for k in warehouse.records("items")) == sorted(r["id"] for r in records)


def test_a_partitioned_extract_needs_a_partition(warehouse):
    (spec,) = parse_extracts(partitioned("http://127.0.0.1:9"))
    with pytest.raises(ExtractError) as raised:
        run_extract(spec, warehouse.store, ExtractOptions(timeout_seconds=5))
    assert str(raised.value) == (
        "extract 'items' is partitioned (daily from 2026-01-01): materialize one partition or a range of them "
        "(a backfill), e.g. `dagster asset materialize -m etl_assets.definitions --select items --partition "
        "2026-01-01`"
    )


@pytest.fixture
def deployment(tmp_path, warehouse, monkeypatch):
    demo = DemoSource(collections={"items": ListCollection(simple_records(30))})
    with ServerThread(demo) as server:
        document = partitioned(server.url, selector="items", paginator={
            "type": "offset", "limit": 10, "offset_param": "skip", "limit_param": "limit", "total_path": "total"})
        document["resources"].append({"name": "plain", "primary_key": "id",
                                      "endpoint": {"path": "/items", "data_selector": "items"}})
        extracts = tmp_path / "extracts.yaml"
        extracts.write_text(json.dumps(document))
        monkeypatch.setenv("ETL_EXTRACTS_FILE", str(extracts))
        monkeypatch.setenv("ETL_DATABASE_URL", warehouse.url)
        if warehouse.schema:
            monkeypatch.setenv("ETL_WAREHOUSE_SCHEMA", warehouse.schema)
        with dg.instance_for_test() as instance:
            yield build_definitions(Settings.from_env()), instance, demo


def test_an_interrupted_partition_is_resumed_in_its_own_partition_by_the_sensor(deployment, warehouse):
    defs, instance, demo = deployment
    job = defs.resolve_job_def("items_partitions")
    assert defs.resolve_job_def("all_extracts").asset_layer.executable_asset_keys == {dg.AssetKey("plain")}
    assert {s.name for s in defs.schedules} == {"all_extracts_schedule", "items_partitions_schedule"}

    demo.add_fault(Fault(path="/items", skip=10, status=404))
    assert not job.execute_in_process(partition_key="2026-01-02", instance=instance, raise_on_error=False).success
    assert job.execute_in_process(partition_key="2026-01-03", instance=instance).success
    day2, day3 = warehouse.runs("items")
    assert (day2.parameters["partition"]["key"], day2.status, day2.checkpoint.skip) == ("2026-01-02", RunStatus.FAILED, 10)
    assert (day3.parameters["partition"]["key"], day3.status) == ("2026-01-03", RunStatus.SUCCESS)

    sensor = defs.get_sensor_def("resume_interrupted_extracts")
    resources = {"checkpoints": CheckpointStoreResource(database_url=warehouse.url, warehouse_schema=warehouse.schema)}
    with dg.build_sensor_context(instance=instance, resources=resources, definitions=defs) as context:
        (request,) = sensor.evaluate_tick(context).run_requests
    assert (request.job_name, request.partition_key) == ("items_partitions", "2026-01-02")
    assert request.run_config == {"ops": {"items": {"config": {"resume_run_id": day2.run_id}}}}

    demo.clear_requests()
    result = job.execute_in_process(partition_key=request.partition_key, run_config=request.run_config,
                                    tags=request.tags, instance=instance)
    assert result.success
    assert [r.skip for r in demo.requests("/items")] == [10, 20]
    day2 = warehouse.run(day2.run_id)
    assert (day2.status, day2.records_loaded, day2.checkpoint) == (RunStatus.SUCCESS, 30, None)
    assert len(warehouse.runs("items")) == 2


@pytest.mark.parametrize(
    ("partitions", "message"),
    [
        ({"start": "2026-01-01", "start_param": "a"}, "key 'endpoint.partitions.end_param': is required"),
        ({"start": "01/02/2026", "start_param": "a", "end_param": "b"},
         "key 'endpoint.partitions.start': must be a day like 2026-01-01"),
        ({"period": "yearly", "start": "2026-01-01", "start_param": "a", "end_param": "b"},
         "key 'endpoint.partitions.period': must be one of hourly, daily, weekly, monthly"),
        ({"start": "2026-01-01", "start_param": "a", "end_param": "a"},
         "key 'endpoint.partitions.end_param': must differ from start_param"),
        ({"start": "2026-01-01", "start_param": "skip", "end_param": "b"},
         "key 'endpoint.partitions.start_param': 'skip' is already sent as offset_param"),
    ],
)
def test_partition_mistakes_are_named(partitions, message):
    document = {
        "client": {"base_url": "http://127.0.0.1:9",
                   "paginator": {"type": "offset", "offset_param": "skip", "limit_param": "limit"}},
        "resources": [{"name": "items", "primary_key": "id",
                       "endpoint": {"path": "/items", "partitions": partitions}}],
    }
    with pytest.raises(SpecError) as raised:
        parse_extracts(document, source_file="x.yaml")
    assert str(raised.value).startswith("x.yaml: resource 'items': " + message)


def test_an_operator_retry_of_a_partition_runs_in_that_partition(deployment, warehouse, monkeypatch):
    from etl_assets.deployment import Deployment

    _defs, _instance, demo = deployment
    demo.add_fault(Fault(path="/items", skip=20, status=404))
    ops_deployment = Deployment.from_env(background=False)
    try:
        job = ops_deployment.defs.resolve_job_def("items_partitions")
        assert not job.execute_in_process(partition_key="2026-01-05", instance=ops_deployment.instance,
                                          raise_on_error=False).success
        (row,) = warehouse.runs("items")
        plan, dagster_run_id = ops_deployment.operations("test").retry(row.run_id, ops_deployment.launcher)
        assert (plan.action, plan.resume_from_skip, plan.tags["dagster/partition"]) == ("resume", 20, "2026-01-05")
        run = ops_deployment.instance.get_run_by_id(dagster_run_id)
        assert run.tags["dagster/partition"] == "2026-01-05" and run.job_name == "items_partitions"
    finally:
        ops_deployment.close()
    (row,) = warehouse.runs("items")
    assert (row.status, row.records_loaded, row.parameters["partition"]["key"]) == (RunStatus.SUCCESS, 30, "2026-01-05")
