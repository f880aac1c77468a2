"""The resume sensor, ticked with ``evaluate_tick`` and its run requests executed for real
on a test instance against the demo source: field cases C10 and C11, and the rules."""

import os
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from dataclasses import replace

import dagster as dg
import pytest
import sqlalchemy as sa

from etl_assets.checkpoints import RunStatus
from etl_assets.defs.assets import build_extract_assets
from etl_assets.defs.resources import CheckpointStoreResource
from etl_assets.defs.sensors import build_resume_sensor, resume_run_request
from etl_assets.demo import DemoSource, Fault, ListCollection, ServerThread
from etl_assets.resume import RESUME_TAG
from etl_assets.settings import Settings
from etl_assets_tests.support import items_spec, simple_records


@pytest.fixture
def source():
    demo = DemoSource(
        collections={"items": ListCollection(simple_records(30)), "broken": ListCollection(simple_records(30))}
    )
    with ServerThread(demo) as server:
        yield server


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
        yield instance


class Deployment:
    """The extract assets, their job and the sensor, on one instance and warehouse."""

    def __init__(self, source, warehouse, instance, names=("items", "broken"), max_in_flight=4):
        specs = [replace(items_spec(source.url, name=n, path=f"/{n}"), max_in_flight=max_in_flight) for n in names]
        self.assets = build_extract_assets(specs)
        job = dg.define_asset_job("all_extracts", selection=dg.AssetSelection.assets(*self.assets))
        self.sensor = build_resume_sensor(list(names), job, Settings())
        self.resources = {
            "checkpoints": CheckpointStoreResource(database_url=warehouse.url, warehouse_schema=warehouse.schema)
        }
        self.instance = instance
        self.launched: list[dg.RunRequest] = []

    def tick(self):
        with dg.build_sensor_context(instance=self.instance, resources=self.resources) as context:
            return self.sensor.evaluate_tick(context)

    def execute(self, request: dg.RunRequest, *, config: dict | None = None) -> dg.ExecuteInProcessResult:
        return dg.materialize(
            self.assets,
            instance=self.instance,
            resources=self.resources,
            selection=request.asset_selection,
            run_config=request.run_config,
            tags=request.tags,
            raise_on_error=False,
        )

    def run(self, extract: str, timeout: float | None = None) -> dg.ExecuteInProcessResult:
        config = {"timeout_seconds": timeout} if timeout else {}
        return dg.materialize(
            self.assets,
            instance=self.instance,
            resources=self.resources,
            selection=[extract],
            run_config={"ops": {extract: {"config": config}}},
            raise_on_error=False,
        )

    def tick_and_execute(self) -> list[str]:
        result = self.tick()
        for request in result.run_requests:
            self.launched.append(request)
            self.execute(request)
        return [r.asset_selection[0].to_user_string() for r in result.run_requests]


@pytest.fixture
def policy(monkeypatch):
    monkeypatch.setenv("ETL_MAX_RESUME_ATTEMPTS", "3")
    monkeypatch.setenv("ETL_RESUME_BACKOFF_SECONDS", "0")


def timed_out_row(deployment, source, warehouse, extract="items"):
    """A ``running`` row with checkpoint skip=10 whose Dagster run ended (a timeout).

    The page at skip=10 hangs, so the run always times out there; the budget is what the
    first page may take, and on a busy machine that can be more than a few hundred ms."""
    source.source.add_fault(Fault(path=f"/{extract}", skip=10, action="hang", times=1))
    assert not deployment.run(extract, timeout=2).success
    source.source.clear_requests()
    [row] = warehouse.runs(extract)
    assert (row.status, row.checkpoint.skip) == (RunStatus.RUNNING, 10)
    return row


def ids(warehouse, extract):
    return sorted(int(k) for k in warehouse.records(extract))


def test_c10_a_row_that_always_fails_is_given_up_the_healthy_one_finishes(source, warehouse, instance, policy):
    deployment = Deployment(source, warehouse, instance)
    healthy = timed_out_row(deployment, source, warehouse, "items")
    source.source.add_fault(Fault(path="/broken", skip=10, action="status", status=400, times=None))
    assert not deployment.run("broken").success
    [broken] = warehouse.runs("broken")
    assert (broken.status, broken.checkpoint.skip) == (RunStatus.FAILED, 10)

    launched = Counter()
    for _ in range(10):
        launched.update(deployment.tick_and_execute())
    assert launched == {"broken": 3, "items": 1}
    assert [r.run_key for r in deployment.launched if r.asset_selection == [dg.AssetKey("broken")]] == [
        f"resume-{broken.run_id}-1",
        f"resume-{broken.run_id}-2",
        f"resume-{broken.run_id}-3",
    ]

    done = warehouse.run(healthy.run_id)
    assert (done.status, done.records_loaded, done.checkpoint) == (RunStatus.SUCCESS, 30, None)
    assert ids(warehouse, "items") == list(range(1, 31))

    given_up = warehouse.run(broken.run_id)
    assert given_up.status is RunStatus.FAILED
    assert given_up.checkpoint.skip == 10 and given_up.records_loaded == 10
    assert given_up.error_message.startswith(
        "gave up after 3 relaunches in a row without progress (ETL_MAX_RESUME_ATTEMPTS=3); last one: Dagster run "
    )
    assert "HTTP 400" in given_up.error_message
    assert given_up.error_message.endswith(
        f"the checkpoint stays at skip=10; retry by hand with `etl-assets runs retry {broken.run_id}` "
        "once the cause is fixed"
    )
    state = given_up.run_context["resume"]
    assert state["exhausted"] is True and state["requested"] == 3 and state["without_progress"] == 3
    dagster_ids = [r.run_id for r in instance.get_runs(filters=dg.RunsFilter(tags={RESUME_TAG: str(broken.run_id)}))]
    assert sorted(h["dagster_run_id"] for h in state["history"]) == sorted(dagster_ids)
    assert [(h["attempt"], h["from_skip"], h["reached_skip"]) for h in state["history"]] == [(1, 10, 10), (2, 10, 10), (3, 10, 10)]
    for entry in state["history"]:
        assert entry["ended"].startswith(f"Dagster run {entry['dagster_run_id']} FAILURE: failed: extract 'broken': ")
        assert "/broken?skip=10&limit=10 answered HTTP 400 Bad Request" in entry["ended"]
    assert ids(warehouse, "broken") == list(range(1, 11))

    assert deployment.tick().run_requests == []
    assert warehouse.run(broken.run_id).updated_at == given_up.updated_at


def test_a_corrupt_row_is_reported_and_the_others_still_resume(source, warehouse, instance, policy):
    deployment = Deployment(source, warehouse, instance)
    healthy = timed_out_row(deployment, source, warehouse, "items")
    with warehouse.store.transaction() as conn:
        bad = warehouse.store.create(conn, "broken", {"checkpoint": {"skip": "ten"}}, None)
    result = deployment.tick()
    assert [(r.run_key, r.run_config) for r in result.run_requests] == [
        (f"resume-{healthy.run_id}-1", {"ops": {"items": {"config": {"resume_run_id": healthy.run_id}}}})
    ]
    assert result.run_requests[0].tags[RESUME_TAG] == str(healthy.run_id)
    with dg.build_sensor_context(instance=instance, resources=deployment.resources) as context:
        for request in deployment.sensor.evaluate_tick(context).run_requests:
            raise AssertionError(f"the same attempt was requested twice: {request.run_key}")
    assert warehouse.run(bad.run_id).run_context == {"checkpoint": {"skip": "ten"}}


def test_progress_resets_the_count_and_success_rows_are_never_touched(source, warehouse, instance, policy):
    """Each relaunch times out further on: it is relaunched every time, beyond the limit of 3.

    One request at a time, so that each relaunch gets exactly one page before its hang."""
    deployment = Deployment(source, warehouse, instance, names=("items",), max_in_flight=1)
    source.source.collections["items"].replace(simple_records(60))
    row = timed_out_row(deployment, source, warehouse, "items")
    for skip in (20, 30, 40, 50):  # every relaunch gets one page, then hangs into its timeout
        source.source.add_fault(Fault(path="/items", skip=skip, action="hang", times=1))
    original = deployment.execute
    deployment.execute = lambda request: original(
        dg.RunRequest(
            run_key=request.run_key,
            asset_selection=request.asset_selection,
            run_config={"ops": {"items": {"config": {"resume_run_id": row.run_id, "timeout_seconds": 2}}}},
            tags=request.tags,
        )
    )
    for _ in range(6):
        deployment.tick_and_execute()
    assert [r.run_key for r in deployment.launched] == [f"resume-{row.run_id}-{n}" for n in range(1, 6)]
    done = warehouse.run(row.run_id)
    assert (done.status, done.records_loaded) == (RunStatus.SUCCESS, 60)
    assert [h["from_skip"] for h in done.run_context["resume"]["history"]] == [10, 20, 30, 40, 50]
    assert ids(warehouse, "items") == list(range(1, 61))
    assert deployment.tick().skip_message == "no interrupted extract to resume"
    assert warehouse.run(row.run_id).updated_at == done.updated_at


def test_backoff_grows_between_relaunches_without_progress(source, warehouse, instance, monkeypatch):
    monkeypatch.setenv("ETL_MAX_RESUME_ATTEMPTS", "5")
    monkeypatch.setenv("ETL_RESUME_BACKOFF_SECONDS", "3600")
    deployment = Deployment(source, warehouse, instance, names=("broken",))
    source.source.add_fault(Fault(path="/broken", skip=10, action="status", status=400, times=None))
    assert not deployment.run("broken").success
    assert deployment.tick_and_execute() == ["broken"]  # the first relaunch is immediate
    result = deployment.tick()
    assert result.run_requests == []
    assert "backing off after 1 relaunches without progress, next at " in result.skip_message


CHILD_RUN = textwrap.dedent(
    """
    import os, sys, time
    import dagster as dg
    from etl_assets.defs.assets import ExtractConfig, build_extract_asset
    from etl_assets.defs.resources import CheckpointStoreResource
    from etl_assets_tests.support import items_spec

    url, db_url, schema, run_id, go, tag = sys.argv[1:7]
    while not os.path.exists(go):
        time.sleep(0.001)
    with dg.DagsterInstance.get() as instance:
        result = dg.materialize(
            [build_extract_asset(items_spec(url))],
            instance=instance,
            resources={"checkpoints": CheckpointStoreResource(database_url=db_url, warehouse_schema=schema or None)},
            run_config=dg.RunConfig({"items": ExtractConfig(resume_run_id=int(run_id), checkpoint_interval_seconds=0)}),
            tags={"launched_by": tag},
            raise_on_error=False,
        )
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    print(failures[0].step_failure_data.error.cause.message if failures else "success")
    """
)


def start_child_run(source, warehouse, instance, row, go, tag):
    """A materialization resuming ``row`` in a process of its own (as the daemon's run worker
    or an operator's CLI would be), on the same instance; it starts when ``go`` exists.

    In-process runs in one process are serialized (Dagster's log setup deadlocks two that start
    together), so runs that must overlap get processes of their own, as in production."""
    env = {**os.environ, "DAGSTER_HOME": instance.root_directory}
    return subprocess.Popen(
        [sys.executable, "-c", CHILD_RUN, source.url, warehouse.url, warehouse.schema or "", str(row.run_id),
         str(go), tag],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def watch_page_index(warehouse, run_id, stop, seen):
    while not stop.is_set():
        checkpoint = warehouse.run(run_id).checkpoint
        if checkpoint is not None and (not seen or seen[-1] != checkpoint.page_index):
            seen.append(checkpoint.page_index)
        time.sleep(0.005)


@pytest.mark.parametrize("operator_waits_for_claim", [False, True], ids=["launched-together", "operator-after-claim"])
def test_c11_sensor_and_operator_relaunch_the_same_row(
    source, warehouse, instance, policy, tmp_path, operator_waits_for_claim
):
    """The sensor's relaunch and an operator's retry of one row, each in its own process,
    checkpointing every page: one extracts, the other stops at once with no request and no
    write, and the checkpoint's page_index never goes down between writes."""
    deployment = Deployment(source, warehouse, instance, names=("items",))
    row = timed_out_row(deployment, source, warehouse, "items")
    assert deployment.tick().run_requests[0].run_config["ops"]["items"]["config"]["resume_run_id"] == row.run_id
    # The winner needs two answers in a row (skip=10, then 20), so it holds the row for at least
    # 6 s after its claim: the other run reaches its claim well within that (about 0.5 s from
    # its signal on an idle machine, a few times that on a busy one).
    source.source.latency_seconds = 3.0
    seen: list[int] = []
    stop = threading.Event()
    watcher = threading.Thread(target=watch_page_index, args=(warehouse, row.run_id, stop, seen))
    watcher.start()
    go_sensor, go_operator = tmp_path / "go-sensor", tmp_path / "go-operator"
    children = {
        "sensor": start_child_run(source, warehouse, instance, row, go_sensor, "sensor"),
        "operator": start_child_run(source, warehouse, instance, row, go_operator, "operator"),
    }
    outputs = {}
    try:
        time.sleep(3)  # both children have imported Dagster and wait for their signal
        go_sensor.touch()
        if operator_waits_for_claim:
            deadline = time.monotonic() + 20
            while warehouse.run(row.run_id).dagster_run_id == row.dagster_run_id:
                assert time.monotonic() < deadline, "the sensor's run never claimed the row"
                time.sleep(0.01)
        go_operator.touch()
        for name, child in children.items():
            out, err = child.communicate(timeout=90)
            assert child.returncode == 0, err[-2000:]
            outputs[name] = out.strip().splitlines()[-1]
    finally:
        stop.set()
        watcher.join()
        for child in children.values():
            if child.poll() is None:
                child.kill()
                child.wait()

    assert list(outputs.values()).count("success") == 1, outputs
    if operator_waits_for_claim:
        assert outputs["sensor"] == "success"
    [refused] = [message for message in outputs.values() if message != "success"]
    assert refused.startswith("etl_assets.errors.ExtractAlreadyRunningError: extract 'items' is already running: ")
    assert f"dw_etl_runs run {row.run_id}" in refused
    assert sorted(r.skip for r in source.source.requests("/items")) == [10, 20], "the refused run made no request"
    assert seen == sorted(seen) and seen[0] == 1, f"page_index went down: {seen}"
    done = warehouse.run(row.run_id)
    assert (done.status, done.records_loaded, done.checkpoint) == (RunStatus.SUCCESS, 30, None)
    assert [a["outcome"] for a in done.run_context["attempts"]] == ["timeout", "success"]
    assert ids(warehouse, "items") == list(range(1, 31))
    tick = deployment.tick()
    assert (tick.run_requests, tick.skip_message) == ([], "no interrupted extract to resume")


def test_rows_of_extracts_no_longer_defined_are_left_alone(source, warehouse, instance, policy):
    deployment = Deployment(source, warehouse, instance)
    timed_out_row(deployment, source, warehouse, "items")
    smaller = Deployment(source, warehouse, instance, names=("broken",))
    result = smaller.tick()
    assert result.run_requests == []
    assert "(items): no such extract in this code location; left alone" in result.skip_message
