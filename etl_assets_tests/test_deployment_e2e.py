"""A real deployment: ``dagster-daemon`` and ``dagster-webserver`` on PostgreSQL storage (the
project's ``dagster.yaml``), the demo source and the retry API, all as subprocesses.

Three ways a run is interrupted and comes back by itself or by an operator's hand:
a timeout that the resume sensor relaunches; a run worker killed with SIGKILL, detected by
run monitoring and relaunched; a row the sensor gave up on, retried through the HTTP API.
Each ends with every record exactly once and one ``success`` row.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from dagster_graphql import DagsterGraphQLClient

from etl_assets.checkpoints import RunStatus
from etl_assets_tests.support import free_port

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PATIENTS = 3000  # the packaged extracts page by 1000: 3, 9 and 15 pages
MAX_RESUME_ATTEMPTS = 2
pytestmark = pytest.mark.timeout(600)



def wait_for(what: str, check: Callable[[], object], timeout: float = 120, every: float = 0.25) -> object:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except (httpx.HTTPError, OSError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


class Processes:
    """Subprocesses in their own process groups, stopped by PID, also when a test fails."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.started: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "wb")
        process = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.started.append((name, process))
        return process

    def stop_all(self) -> None:
        for _, process in reversed(self.started):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for _, process in reversed(self.started):
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
            try:  # run workers the daemon started live in its process group
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def tail(self) -> str:
        return "\n".join(
            f"--- {name} ---\n" + (self.logs / f"{name}.log").read_text(errors="replace")[-3000:]
            for name, _ in self.started
        )


@pytest.fixture
def dagster_database(postgres_available) -> Iterator[str]:
    name = f"dagster_e2e_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(postgres_available, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield name
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def deployment(tmp_path, postgres_warehouse, dagster_database, postgres_available):
    url = sa.make_url(postgres_available)
    home = tmp_path / "dagster_home"
    home.mkdir()
    config = (ROOT / "dagster.yaml").read_text().replace("poll_interval_seconds: 30", "poll_interval_seconds: 2")
    (home / "dagster.yaml").write_text(config)
    source_port, web_port, api_port = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_HOST": url.host or "127.0.0.1",
        "DAGSTER_PG_PORT": str(url.port or 5432),
        "DAGSTER_PG_USERNAME": url.username or "postgres",
        "DAGSTER_PG_PASSWORD": url.password or "",
        "DAGSTER_PG_DB": dagster_database,
        "ETL_DATABASE_URL": postgres_warehouse.url,
        "ETL_WAREHOUSE_SCHEMA": postgres_warehouse.schema,
        "ETL_DEMO_SOURCE_URL": f"http://127.0.0.1:{source_port}",
        "ETL_RESUME_SENSOR_INTERVAL_SECONDS": "1",
        "ETL_RESUME_BACKOFF_SECONDS": "0",
        "ETL_MAX_RESUME_ATTEMPTS": str(MAX_RESUME_ATTEMPTS),
        "ETL_DAGSTER_WEBSERVER_URL": f"http://127.0.0.1:{web_port}",
        "ETL_API_TOKEN": "e2e-token-123",
    }
    env.pop("ETL_EXTRACTS_FILE", None)
    processes = Processes(tmp_path)
    try:
        processes.start("source", [str(BIN / "etl-assets"), "demo-source", "--port", str(source_port),
                                   "--patients", str(PATIENTS), "--latency-ms", "300"], env)
        processes.start("webserver", [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(web_port),
                                      "-w", str(ROOT / "workspace.yaml")], env)
        processes.start("daemon", [str(BIN / "dagster-daemon"), "run", "-w", str(ROOT / "workspace.yaml")], env)
        processes.start("api", [str(BIN / "etl-assets"), "api", "--port", str(api_port)], env)
        wait_for("the demo source", lambda: httpx.get(f"{env['ETL_DEMO_SOURCE_URL']}/_control/health").is_success)
        wait_for("the webserver", lambda: httpx.get(f"http://127.0.0.1:{web_port}/server_info").is_success)
        wait_for("the API", lambda: httpx.get(f"http://127.0.0.1:{api_port}/health").is_success)
        yield {
            "env": env,
            "warehouse": postgres_warehouse,
            "graphql": DagsterGraphQLClient("127.0.0.1", port_number=web_port),
            "api": httpx.Client(base_url=f"http://127.0.0.1:{api_port}",
                                headers={"Authorization": "Bearer e2e-token-123"}, timeout=30),
            "processes": processes,
            "dagster_db_url": url.set(database=dagster_database).render_as_string(hide_password=False),
        }
    except BaseException:
        print(processes.tail())
        raise
    finally:
        processes.stop_all()


def run_worker_pid(deployment, dagster_run_id: str) -> int:
    """The run worker's PID, as the run's first events in the instance's event log record it."""
    engine = sa.create_engine(deployment["dagster_db_url"])
    try:
        with engine.connect() as conn:
            events = conn.execute(
                sa.text("SELECT event FROM event_logs WHERE run_id = :run AND dagster_event_type IS NOT NULL ORDER BY id"),
                {"run": dagster_run_id},
            ).scalars()
            pids = [m.group(1) for e in events for m in [re.search(r'"pid": ?(\d+)', e)] if m]
    finally:
        engine.dispose()
    assert pids, f"no event of Dagster run {dagster_run_id} records a pid"
    return int(pids[0])


def submit(deployment, extract: str, **config) -> str:
    return deployment["graphql"].submit_job_execution(
        "all_extracts", run_config={"ops": {extract: {"config": config}}}, asset_selection=[extract]
    )


def succeeded(warehouse, extract):
    rows = warehouse.runs(extract)
    return rows if rows and rows[-1].status is RunStatus.SUCCESS else None


def check_exactly_once(warehouse, extract, count, prefix):
    stored = warehouse.records(extract)
    assert sorted(stored) == [f"{prefix}-{i:08d}" for i in range(count)]
    [row] = warehouse.runs(extract)
    assert (row.status, row.records_loaded, row.checkpoint) == (RunStatus.SUCCESS, count, None)
    return row


def test_interrupted_runs_come_back_by_themselves_and_by_api(deployment):
    warehouse = deployment["warehouse"]
    graphql = deployment["graphql"]
    try:
        # 1. A timeout: the run stops with a checkpoint, the sensor relaunches it.
        first = submit(deployment, "patients", timeout_seconds=0.5, checkpoint_interval_seconds=0)
        wait_for("patients to finish", lambda: succeeded(warehouse, "patients"), timeout=180)
        row = check_exactly_once(warehouse, "patients", PATIENTS, "pat")
        outcomes = [(a["dagster_run_id"], a["outcome"]) for a in row.run_context["attempts"]]
        assert outcomes[0] == (first, "timeout") and outcomes[-1][1] == "success"
        relaunch = outcomes[-1][0]
        # The row says success as soon as the extract commits it; the Dagster run reports
        # SUCCESS a moment later, once its process has written the run's last events.
        wait_for("the relaunch to succeed", lambda: graphql.get_run_status(relaunch).value == "SUCCESS", timeout=60)
        assert relaunch != first
        timed_out = row.run_context["attempts"][0]
        assert row.run_context["resume"]["history"][0]["from_skip"] == timed_out["records_fetched"]
        assert row.run_context["attempts"][1]["resumed_from_skip"] == timed_out["records_fetched"]

        # 2. SIGKILL of the run worker mid-run: monitoring fails the run, the sensor resumes it.
        #    The page at skip=3000 hangs once, so the run waits there until it is killed: with
        #    4 pages in flight the rest of the run takes well under a second, less than the
        #    polling below may need to see the checkpoint and find the worker on a busy machine.
        source = deployment["env"]["ETL_DEMO_SOURCE_URL"]
        hang = {"path": "/encounters", "skip": 3000, "times": 1, "action": "hang"}
        httpx.post(f"{source}/_control/faults", json=hang).raise_for_status()
        killed = submit(deployment, "encounters", checkpoint_interval_seconds=0)
        wait_for("a checkpoint past skip 2000", lambda: any(
            (r.checkpoint and r.checkpoint.skip >= 2000) for r in warehouse.runs("encounters")))
        os.kill(run_worker_pid(deployment, killed), signal.SIGKILL)
        wait_for("the killed run to be marked failed", lambda: graphql.get_run_status(killed).value == "FAILURE",
                 timeout=120)
        wait_for("encounters to finish", lambda: succeeded(warehouse, "encounters"), timeout=180)
        row = check_exactly_once(warehouse, "encounters", PATIENTS * 3, "enc")
        assert row.run_context["attempts"][0]["dagster_run_id"] == killed
        assert row.run_context["attempts"][-1]["outcome"] == "success"

        # 3. A source that refuses one page: the sensor relaunches twice without progress and
        #    gives up; once the source heals, an operator retries the row through the HTTP API.
        api = deployment["api"]
        refuse = {"path": "/observations", "skip": 2000, "times": None, "status": 400}
        httpx.post(f"{source}/_control/faults", json=refuse).raise_for_status()
        submit(deployment, "observations", checkpoint_interval_seconds=0)

        def given_up():
            rows = warehouse.runs("observations")
            return rows if rows and (rows[-1].run_context.get("resume") or {}).get("exhausted") else None

        [row] = wait_for("the sensor to give up on observations", given_up, timeout=180)
        assert row.status is RunStatus.FAILED and row.checkpoint.skip == 2000
        assert row.run_context["resume"]["requested"] == MAX_RESUME_ATTEMPTS
        assert "gave up after 2 relaunches in a row without progress" in row.error_message
        time.sleep(3)  # the sensor ticks every second; it must leave this row alone
        assert warehouse.run(row.run_id).run_context["resume"]["requested"] == MAX_RESUME_ATTEMPTS
        httpx.delete(f"{source}/_control/faults").raise_for_status()
        dry = api.post(f"/runs/{row.run_id}/retry", json={"dry_run": True})
        assert dry.status_code == 200 and dry.json()["would"]["action"] == "resume"
        skip = dry.json()["would"]["resume_from_skip"]
        assert skip == row.checkpoint.skip
        launched = api.post(f"/runs/{row.run_id}/retry", json={"dry_run": False})
        assert launched.status_code == 202, launched.text
        dagster_run_id = launched.json()["dagster_run_id"]
        wait_for("the retried run to succeed", lambda: graphql.get_run_status(dagster_run_id).value == "SUCCESS",
                 timeout=180)
        row = check_exactly_once(warehouse, "observations", PATIENTS * 5, "obs")
        assert row.run_context["attempts"][-1]["dagster_run_id"] == dagster_run_id
        assert row.run_context["attempts"][-1]["resumed_from_skip"] == skip
        assert api.post(f"/runs/{row.run_id}/retry", json={"dry_run": False}).status_code == 409
    except BaseException:
        print(deployment["processes"].tail())
        raise

