"""The retry HTTP API under a real uvicorn on loopback: every status code, the token,
malformed input, and a retry that launches a real Dagster run which finishes the row."""

import dagster as dg
import httpx
import pytest

from etl_assets.checkpoints import RunStatus
from etl_assets.defs.assets import build_extract_assets
from etl_assets.defs.instance_runs import InstanceRuns
from etl_assets.defs.resources import CheckpointStoreResource
from etl_assets.demo import DemoSource, Fault, ListCollection, ServerThread
from etl_assets import deployment
from etl_assets.deployment import InProcessLauncher
from etl_assets.errors import JobTimeoutError
from etl_assets.extract import ExtractOptions, run_extract
from etl_assets.api import create_app
from etl_assets.operations import Operations
from etl_assets.resume import EXTRACT_TAG, RESUME_TAG
from etl_assets_tests.support import AppServer, items_spec, simple_records

TOKEN = "s3cret-api-token-0123"


@pytest.fixture
def source():
    with ServerThread(DemoSource(collections={"items": ListCollection(simple_records(30))})) as server:
        yield server


class Api:
    def __init__(self, source, warehouse, instance, token):
        self.spec = items_spec(source.url)
        assets = build_extract_assets([self.spec])
        defs = dg.Definitions(
            assets=assets,
            jobs=[dg.define_asset_job("all_extracts", selection=dg.AssetSelection.assets(*assets))],
            resources={
                "checkpoints": CheckpointStoreResource(database_url=warehouse.url, warehouse_schema=warehouse.schema)
            },
            executor=dg.in_process_executor,
        )
        self.instance = instance
        self.launcher = InProcessLauncher(defs, instance, background=True)
        self.operations = Operations(
            warehouse.store, {"items": self.spec}, InstanceRuns(instance), lease_seconds=600, launched_by="api"
        )
        self.app = create_app(self.operations, self.launcher, token=token)
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}


@pytest.fixture
def api(source, warehouse, request):
    token = getattr(request, "param", None)
    with dg.instance_for_test() as instance:
        api = Api(source, warehouse, instance, token)
        with AppServer(api.app) as server:
            api.client = httpx.Client(base_url=server.url, headers=api.headers, timeout=30)
            yield api
            api.client.close()
        api.launcher.join(30)


def timed_out_row(source, warehouse):
    # The page at skip=10 hangs, so the run always times out there; the budget is what the
    # first page may take, and on a busy machine that can be more than a few hundred ms.
    source.source.add_fault(Fault(path="/items", skip=10, action="hang", times=1))
    with pytest.raises(JobTimeoutError):
        run_extract(
            items_spec(source.url), warehouse.store,
            ExtractOptions(timeout_seconds=2, checkpoint_interval_seconds=0, dagster_run_id="elsewhere-1"),
            environ={},
        )
    source.source.clear_faults()
    source.source.clear_requests()
    [row] = warehouse.runs("items")
    return row


def error_of(response):
    assert response.headers["content-type"] == "application/json"
    return response.status_code, response.json()["error"]["code"]


def test_dry_run_answers_what_would_happen_and_launches_nothing(api, source, warehouse):
    row = timed_out_row(source, warehouse)
    response = api.client.post(f"/runs/{row.run_id}/retry", json={"dry_run": True})
    assert response.status_code == 200
    assert response.json() == {
        "dry_run": True,
        "would": {
            "run_id": row.run_id,
            "extract": "items",
            "asset": "items",
            "status": "running",
            "action": "resume",
            "resume_from_skip": 10,
            "page_index": 1,
            "records_loaded": 10,
            "parameters": row.parameters,
            "parameter_differences": [],
            "run_config": {"ops": {"items": {"config": {"resume_run_id": row.run_id}}}},
        },
    }
    assert api.instance.get_runs() == []
    assert source.source.requests() == []
    assert warehouse.run(row.run_id).run_context == row.run_context


def test_retry_launches_a_dagster_run_that_finishes_the_row(api, source, warehouse):
    row = timed_out_row(source, warehouse)
    response = api.client.post(f"/runs/{row.run_id}/retry", json={"dry_run": False})
    assert response.status_code == 202
    body = response.json()
    assert (body["dry_run"], body["run_id"], body["action"], body["resume_from_skip"]) == (False, row.run_id, "resume", 10)
    api.launcher.join(30)
    run = api.instance.get_run_by_id(body["dagster_run_id"])
    assert run.status is dg.DagsterRunStatus.SUCCESS
    assert (run.tags[RESUME_TAG], run.tags[EXTRACT_TAG], run.tags["etl_assets/launched_by"]) == (
        str(row.run_id), "items", "api"
    )
    done = warehouse.run(row.run_id)
    assert (done.status, done.records_loaded, done.checkpoint, done.dagster_run_id) == (
        RunStatus.SUCCESS, 30, None, body["dagster_run_id"]
    )
    assert [r.skip for r in source.source.requests("/items")] == [10, 20]
    assert sorted(int(k) for k in warehouse.records("items")) == list(range(1, 31))

    again = api.client.post(f"/runs/{row.run_id}/retry", json={"dry_run": False})
    assert error_of(again) == (409, "conflict")
    assert again.json()["error"]["message"] == (
        f"dw_etl_runs run {row.run_id} (items) already succeeded; there is nothing to retry"
    )

    detail = api.client.get(f"/runs/{row.run_id}").json()
    assert (detail["status"], detail["checkpoint"], detail["records_loaded"]) == ("success", None, 30)
    assert [(a["dagster_run_id"], a["outcome"]) for a in detail["attempts"]] == [
        ("elsewhere-1", "timeout"), (body["dagster_run_id"], "success")
    ]


def test_a_row_held_by_an_active_run_is_a_conflict(api, source, warehouse):
    api.instance.add_run(dg.DagsterRun(job_name="all_extracts", run_id="live-0001", status=dg.DagsterRunStatus.STARTED))
    warehouse.store.ensure_schema()
    with warehouse.store.transaction() as conn:
        row = warehouse.store.create(conn, "items", {"checkpoint": {"skip": 10, "page_index": 1, "total_records": 10,
                                                                   "last_checkpoint_time": "2026-12-03T00:00:00+00:00"}},
                                     "live-0001")
    for dry_run in (True, False):
        response = api.client.post(f"/runs/{row.run_id}/retry", json={"dry_run": dry_run})
        assert error_of(response) == (409, "conflict")
        assert response.json()["error"]["message"] == (
            f"dw_etl_runs run {row.run_id} (items) is still active: held by Dagster run live-0001 (STARTED)"
        )
    assert len(api.instance.get_runs()) == 1


MALFORMED = [
    ("POST", "/runs/999/retry", {"dry_run": True}, (404, "not_found")),
    ("GET", "/runs/999", None, (404, "not_found")),
    ("POST", "/runs/abc/retry", {"dry_run": True}, (400, "invalid_run_id")),
    ("POST", "/runs/0/retry", {"dry_run": True}, (400, "invalid_run_id")),
    ("POST", "/runs/-3/retry", {"dry_run": True}, (400, "invalid_run_id")),
    ("POST", "/runs/1.5/retry", {"dry_run": True}, (400, "invalid_run_id")),
    ("GET", "/runs/99999999999999999999999", None, (400, "invalid_run_id")),
    ("GET", "/runs/%F0%9F%92%A5", None, (400, "invalid_run_id")),
    ("POST", "/runs/1/retry", b"{not json", (400, "invalid_json")),
    ("POST", "/runs/1/retry", b"\xff\xfe", (400, "invalid_json")),
    ("POST", "/runs/1/retry", [1, 2], (400, "invalid_body")),
    ("POST", "/runs/1/retry", {"dry_run": "yes"}, (400, "invalid_body")),
    ("POST", "/runs/1/retry", {"dry_run": None}, (400, "invalid_body")),
    ("POST", "/runs/1/retry", {"dryrun": True}, (400, "invalid_body")),
    ("GET", "/runs?limit=0", None, (400, "invalid_query")),
    ("GET", "/runs?limit=abc", None, (400, "invalid_query")),
    ("GET", "/runs?status=weird", None, (400, "invalid_query")),
    ("GET", "/runs/1/retry", None, (405, "http_error")),
    ("GET", "/nowhere", None, (404, "http_error")),
]


@pytest.mark.parametrize("warehouse", ["sqlite"], indirect=True)
def test_out_of_range_ids_odd_queries_and_deep_bodies_are_400s(api):
    deep = b'{"dry_run": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    answers = [
        api.client.get("/runs/2147483648"),
        api.client.post("/runs/2147483648/retry", json={"dry_run": True}),
        api.client.get("/runs", params={"extract": "\x00"}),
        api.client.get("/runs", params={"limit": "\u00b2"}),
        api.client.post("/runs/1/retry", content=deep),
    ]
    assert [(a.status_code, a.json()["error"]["code"]) for a in answers] == [
        (400, "invalid_run_id"), (400, "invalid_run_id"), (400, "invalid_query"), (400, "invalid_query"),
        (400, "invalid_json"),
    ]


def test_malformed_and_unknown_requests_get_json_errors(api):
    answers = []
    for method, path, body, _ in MALFORMED:
        kwargs = {"content": body} if isinstance(body, bytes) else {"json": body} if body is not None else {}
        answers.append(error_of(api.client.request(method, path, **kwargs)))
    assert answers == [expected for *_, expected in MALFORMED]


@pytest.mark.parametrize("warehouse", ["sqlite"], indirect=True)
def test_list_and_show_runs(api, source, warehouse):
    row = timed_out_row(source, warehouse)
    listing = api.client.get("/runs").json()["runs"]
    assert [(r["run_id"], r["extract"], r["status"], r["records_loaded"], r["checkpoint"]["skip"]) for r in listing] == [
        (row.run_id, "items", "running", 10, 10)
    ]
    assert api.client.get("/runs", params={"status": "success"}).json() == {"runs": []}
    assert api.client.get("/runs", params={"extract": "other"}).json() == {"runs": []}
    detail = api.client.get(f"/runs/{row.run_id}").json()
    assert detail["checkpoint"] == row.run_context["checkpoint"]
    assert detail["parameters"] == row.parameters
    assert [a["outcome"] for a in detail["attempts"]] == ["timeout"]
    assert detail["resume"] is None


@pytest.mark.parametrize("warehouse", ["sqlite"], indirect=True)
@pytest.mark.parametrize("api", [TOKEN], indirect=True)
def test_with_a_token_every_route_but_health_needs_it(api, source, warehouse):
    row = timed_out_row(source, warehouse)
    bare = httpx.Client(base_url=str(api.client.base_url), timeout=10)
    assert bare.get("/health").json() == {"status": "ok", "extracts": ["items"]}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}, {"Authorization": f"Basic {TOKEN}"}):
        for method, path in (("GET", "/runs"), ("GET", f"/runs/{row.run_id}"), ("POST", f"/runs/{row.run_id}/retry")):
            response = bare.request(method, path, headers=headers, json={"dry_run": True})
            assert error_of(response) == (401, "unauthorized")
            assert response.headers["www-authenticate"] == "Bearer"
            assert TOKEN not in response.text
    bare.close()
    assert api.client.get("/runs").status_code == 200
    assert api.client.post(f"/runs/{row.run_id}/retry", json={"dry_run": True}).status_code == 200
    assert api.instance.get_runs() == []


def test_a_warehouse_that_does_not_answer_is_a_503_on_every_route(source):
    """A PostgreSQL URL on a port where nothing listens: every route answers 503 with JSON,
    never a 500, and never the database URL (it may hold a password)."""
    from etl_assets.checkpoints import CheckpointStore
    from etl_assets.warehouse.engine import create_warehouse_engine

    url = "postgresql+psycopg://etl:pa55word@127.0.0.1:9/warehouse?connect_timeout=2"
    store = CheckpointStore(create_warehouse_engine(url), None)
    spec = items_spec(source.url)
    with dg.instance_for_test() as instance:
        operations = Operations(store, {"items": spec}, InstanceRuns(instance), lease_seconds=600, launched_by="api")
        app = create_app(operations, launcher=None, token=None)
        with AppServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as client:
            answers = [
                client.get("/health"),
                client.get("/runs"),
                client.get("/runs/1"),
                client.post("/runs/1/retry", json={"dry_run": True}),
                client.post("/runs/1/retry", json={"dry_run": False}),
            ]
    assert [a.status_code for a in answers] == [503] * 5
    for answer in answers:
        assert answer.json()["error"]["code"] == "warehouse_unavailable"
        assert "pa55word" not in answer.text and "127.0.0.1:9" not in answer.text
    store.engine.dispose()


def test_a_retry_while_a_relaunch_is_queued_is_a_conflict_not_a_second_run(api, source, warehouse):
    row = timed_out_row(source, warehouse)
    # Row ids count per warehouse: a run resuming row N of another extract (or another
    # warehouse's extract) on the same instance is not this row's.
    api.instance.add_run(dg.DagsterRun(job_name="all_extracts", run_id="0a0b0c0d-other", status=dg.DagsterRunStatus.STARTED,
                                       tags={RESUME_TAG: str(row.run_id), EXTRACT_TAG: "encounters"}))
    assert api.client.post(f"/runs/{row.run_id}/retry", json={"dry_run": True}).status_code == 200
    # What the resume sensor (or an earlier retry) leaves behind before the daemon starts it.
    queued = dg.DagsterRun(job_name="all_extracts", run_id="0f0e0d0c-queued", status=dg.DagsterRunStatus.NOT_STARTED,
                           tags={RESUME_TAG: str(row.run_id), EXTRACT_TAG: "items"})
    api.instance.add_run(queued)
    response = api.client.post(f"/runs/{row.run_id}/retry", json={"dry_run": False})
    assert error_of(response) == (409, "conflict")
    assert response.json()["error"]["message"] == (
        f"dw_etl_runs run {row.run_id} (items) is still active: Dagster run 0f0e0d0c-queued (NOT_STARTED) "
        "was launched to resume it"
    )
    assert sorted(r.run_id for r in api.instance.get_runs()) == ["0a0b0c0d-other", "0f0e0d0c-queued"]


def test_a_second_retry_before_the_first_run_exists_in_dagster_is_a_conflict(api, source, warehouse):
    """A background launch creates its Dagster run only when its thread gets the in-process
    lock (another run may hold it): until then the instance cannot show it, and a second
    retry must still not launch a second run."""
    row = timed_out_row(source, warehouse)
    with deployment._IN_PROCESS_RUNS:  # as a run already executing in this process would
        first = api.client.post(f"/runs/{row.run_id}/retry", json={"dry_run": False})
        second = api.client.post(f"/runs/{row.run_id}/retry", json={"dry_run": False})
        assert api.instance.get_runs() == []
    assert first.status_code == 202
    launched = first.json()["dagster_run_id"]
    assert error_of(second) == (409, "conflict")
    assert second.json()["error"]["message"] == (
        f"dw_etl_runs run {row.run_id} (items) is still active: Dagster run {launched} (LAUNCHING) "
        "was launched to resume it"
    )
    api.launcher.join(30)
    assert [r.run_id for r in api.instance.get_runs()] == [launched]
    assert warehouse.run(row.run_id).status is RunStatus.SUCCESS
    assert api.launcher.pending_with(RESUME_TAG, str(row.run_id)) is None
