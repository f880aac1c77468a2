"""``etl-assets runs ...`` and ``etl-assets checkpoint show`` as a user runs them: a real
subprocess on a SQLite warehouse, against the demo source; outputs and exit codes."""

import json
import os
import subprocess
import sys

import pytest

from etl_assets.checkpoints import RunStatus
from etl_assets.demo import DemoSource, Fault, ListCollection, ServerThread
from etl_assets.errors import JobTimeoutError
from etl_assets.extract import ExtractOptions, run_extract
from etl_assets.sources.spec import load_extracts



@pytest.fixture
def setup(tmp_path, sqlite_warehouse):
    from etl_assets_tests.support import ITEMS_EXTRACTS_YAML, simple_records

    with ServerThread(DemoSource(collections={"items": ListCollection(simple_records(30))})) as server:
        extracts = tmp_path / "extracts.yaml"
        extracts.write_text(ITEMS_EXTRACTS_YAML.format(group="cli_test", url=server.url))
        env = {
            **os.environ,
            "ETL_DATABASE_URL": sqlite_warehouse.url,
            "ETL_EXTRACTS_FILE": str(extracts),
            "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        }
        env.pop("ETL_DAGSTER_WEBSERVER_URL", None)
        (tmp_path / "dagster_home").mkdir()
        (tmp_path / "dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        [spec] = load_extracts(extracts)
        # The page at skip=10 hangs, so the run always times out there; the budget is what the
        # first page may take, and on a busy machine that can be more than a few hundred ms.
        server.source.add_fault(Fault(path="/items", skip=10, action="hang", times=1))
        with pytest.raises(JobTimeoutError):
            run_extract(spec, sqlite_warehouse.store,
                        ExtractOptions(timeout_seconds=2, checkpoint_interval_seconds=0, dagster_run_id="gone-1"),
                        environ={})
        server.source.clear_requests()
        yield server, sqlite_warehouse, env


def cli(env, *args):
    done = subprocess.run(
        [sys.executable, "-m", "etl_assets.cli", *args], env=env, capture_output=True, text=True, timeout=120
    )
    return done.returncode, done.stdout, done.stderr


def test_list_show_and_checkpoint(setup):
    _, warehouse, env = setup
    [row] = warehouse.runs("items")
    code, out, _ = cli(env, "runs", "list")
    assert code == 0
    header, rule, line = out.splitlines()
    assert header.split() == ["RUN", "EXTRACT", "STATUS", "RECORDS", "CHECKPOINT", "STARTED", "(UTC)", "UPDATED", "(UTC)", "ERROR"]
    assert line.split()[:5] == [str(row.run_id), "items", "running", "10", "10"]

    code, out, _ = cli(env, "runs", "show", str(row.run_id), "--json")
    assert code == 0
    detail = json.loads(out)
    assert (detail["status"], detail["checkpoint"]["skip"], detail["attempts"][0]["outcome"]) == ("running", 10, "timeout")

    code, out, _ = cli(env, "checkpoint", "show", str(row.run_id), "--json")
    assert (code, json.loads(out)["checkpoint"]) == (0, row.run_context["checkpoint"])
    code, out, _ = cli(env, "checkpoint", "show", str(row.run_id))
    assert code == 0 and out.splitlines()[2].split()[:6] == [str(row.run_id), "items", "running", "10", "1", "10"]


def test_retry_dry_run_then_retry_then_conflict(setup):
    server, warehouse, env = setup
    [row] = warehouse.runs("items")
    code, out, _ = cli(env, "runs", "retry", str(row.run_id), "--dry-run")
    assert (code, out.strip()) == (
        0, f"would run extract 'items' for dw_etl_runs run {row.run_id} resuming from skip=10 (10 records kept)"
    )
    assert server.source.requests() == []

    code, out, err = cli(env, "runs", "retry", str(row.run_id))
    assert code == 0, err
    assert out.strip().endswith(f"succeeded: dw_etl_runs run {row.run_id} is success, 30 records")
    # Dagster's console shows warnings and errors only: none of its DEBUG or INFO events
    assert [line for line in err.splitlines() if " - DEBUG - " in line or " - INFO - " in line] == []
    assert [r.skip for r in server.source.requests("/items")] == [10, 20]
    done = warehouse.run(row.run_id)
    assert (done.status, done.records_loaded) == (RunStatus.SUCCESS, 30)
    assert sorted(int(k) for k in warehouse.records("items")) == list(range(1, 31))

    code, out, err = cli(env, "runs", "retry", str(row.run_id))
    assert (code, err.strip()) == (
        4, f"etl-assets: cannot retry: dw_etl_runs run {row.run_id} (items) already succeeded; there is nothing to retry"
    )
    code, out, _ = cli(env, "checkpoint", "show", str(row.run_id))
    assert (code, out.strip()) == (1, f"dw_etl_runs run {row.run_id} (items, success) has no checkpoint")


def test_unknown_run_and_bad_usage(setup):
    _, _, env = setup
    assert cli(env, "runs", "show", "999")[0::2] == (3, "etl-assets: there is no dw_etl_runs run 999\n")
    assert cli(env, "runs", "retry", "999", "--dry-run")[0] == 3
    assert cli(env, "runs", "show", "abc")[0] == 2
    code, _, err = cli(env, "runs", "show", "2147483648")
    assert (code, err.strip().splitlines()[-1]) == (
        2, "etl-assets runs show: error: argument run_id: must be an integer from 1 to 2147483647, got '2147483648'"
    )
    assert cli(env, "runs", "list", "--limit", "-5")[0] == 2


def test_a_retry_that_fails_exits_1_with_the_reason(setup):
    server, warehouse, env = setup
    [row] = warehouse.runs("items")
    server.source.add_fault(Fault(path="/items", skip=10, action="status", status=404, times=None))
    code, out, _ = cli(env, "runs", "retry", str(row.run_id))
    assert code == 1
    lines = out.strip().splitlines()
    assert lines[0].endswith(f"failed: dw_etl_runs run {row.run_id} is failed, 10 records")
    assert lines[1].startswith("error: extract 'items': ") and "answered HTTP 404 Not Found" in lines[1]


def test_a_retry_dagster_cannot_launch_exits_5(setup):
    """The webserver named by ETL_DAGSTER_WEBSERVER_URL does not answer: exit 5, the row untouched."""
    server, warehouse, env = setup
    [row] = warehouse.runs("items")
    code, _, err = cli({**env, "ETL_DAGSTER_WEBSERVER_URL": "http://127.0.0.1:9"}, "runs", "retry", str(row.run_id))
    assert code == 5
    assert err.startswith("etl-assets: the Dagster webserver at http://127.0.0.1:9 did not launch a run of 'items'")
    assert server.source.requests() == []
    after = warehouse.run(row.run_id)
    assert (after.status.value, after.checkpoint.skip, after.records_loaded) == ("running", 10, 10)


def test_a_warehouse_that_does_not_answer_exits_6_naming_it_without_its_password(setup):
    _server, _warehouse, env = setup
    bad = {**env, "ETL_DATABASE_URL": "postgresql+psycopg://etl:hunter2-secret@127.0.0.1:1/warehouse"}
    for args in (["runs", "list"], ["runs", "show", "1"], ["checkpoint", "show", "1"]):
        code, out, err = cli(bad, *args)
        assert (code, out) == (6, ""), (args, err)
        assert err.startswith(
            "etl-assets: the warehouse at postgresql+psycopg://etl:***@127.0.0.1:1/warehouse does not answer: "
            "OperationalError: connection failed: "
        ), err
        assert "hunter2" not in err and "Traceback" not in err


def test_a_broken_configuration_exits_2_with_the_reason_not_a_traceback(setup, tmp_path):
    _server, _warehouse, env = setup
    broken = tmp_path / "extracts.yaml"
    broken.write_text("name: x\nresources: [\n")
    cases = [
        ({"ETL_EXTRACTS_FILE": str(broken)}, ["runs", "retry", "1", "--dry-run"],
         f"etl-assets: {broken}: not valid YAML: while parsing a flow node\n"),
        ({"ETL_EXTRACTS_FILE": str(tmp_path / "missing.yaml")}, ["runs", "list"],
         f"etl-assets: {tmp_path / 'missing.yaml'}: cannot read the extracts file: No such file or directory\n"),
        ({"ETL_DATABASE_URL": "mysql://x"}, ["checkpoint", "show", "1"],
         "etl-assets: ETL_DATABASE_URL must be a sqlite:// or postgresql+psycopg:// URL, got a 'mysql' URL\n"),
    ]
    for change, args, start in cases:
        code, out, err = cli({**env, **change}, *args)
        assert (code, out) == (2, ""), (args, err)
        assert err.startswith(start), err
        assert "Traceback" not in err


def test_a_sqlite_warehouse_that_does_not_exist_exits_6_and_is_not_created(setup, tmp_path):
    """A mistyped SQLite URL: every command says the file is not there, and neither the file
    nor its folder is created (opening it would make an empty database)."""
    _server, _warehouse, env = setup
    missing = tmp_path / "typo" / "warehous.db"
    url = f"sqlite:///{missing}"
    for args in (["runs", "list"], ["runs", "show", "1"], ["runs", "retry", "1", "--dry-run"],
                 ["checkpoint", "show", "1"]):
        code, out, err = cli({**env, "ETL_DATABASE_URL": url}, *args)
        assert (code, out, err) == (
            6, "", f"etl-assets: there is no warehouse at {url}: the file {missing} does not exist "
            "(nothing has run against it yet, or ETL_DATABASE_URL is mistyped)\n"
        ), args
    assert not (tmp_path / "typo").exists()


def test_rows_edited_by_hand_get_the_reason_and_their_own_exit_codes(setup):
    """A checkpoint no run wrote cannot be retried (exit 4, the field named); a status no run
    writes stops the listing with exit 7 naming the row, never a traceback."""
    import sqlalchemy as sa

    _server, warehouse, env = setup
    [row] = warehouse.runs("items")
    with warehouse.engine.begin() as conn:
        conn.execute(sa.text("UPDATE dw_etl_runs SET run_context = :c WHERE run_id = :r"),
                     {"c": json.dumps({**row.run_context, "checkpoint": {**row.run_context["checkpoint"], "skip": -500}}),
                      "r": row.run_id})
    code, out, err = cli(env, "runs", "retry", str(row.run_id), "--dry-run")
    assert (code, out, err) == (4, "", (
        f"etl-assets: cannot retry: dw_etl_runs run {row.run_id}: its checkpoint cannot be read: skip is -500, "
        "not a whole number from 0 up; it cannot be resumed: fix the row, or start a new run of 'items', which "
        "closes it and starts from the beginning\n"
    ))
    with warehouse.engine.begin() as conn:
        conn.execute(sa.text("UPDATE dw_etl_runs SET status = 'paused' WHERE run_id = :r"), {"r": row.run_id})
    for args in (["runs", "list"], ["runs", "show", str(row.run_id)], ["checkpoint", "show", str(row.run_id)]):
        assert cli(env, *args) == (7, "", (
            f"etl-assets: dw_etl_runs run {row.run_id}: its status 'paused' is not one of running, success, failed\n"
        )), args


def test_reading_runs_creates_nothing_where_a_mistyped_setting_points(setup, tmp_path, postgres_warehouse):
    """A mistyped schema lists no runs and says there is no table there, leaving no schema
    behind; a SQLite URI naming no file is refused like a plain path (exit 6); a URL SQLite or
    the driver cannot use, or an extracts file that is not UTF-8, is a clear message."""
    import sqlalchemy as sa

    _server, _warehouse, env = setup
    url = postgres_warehouse.url
    typo = postgres_warehouse.schema + "_typo"
    assert cli({**env, "ETL_DATABASE_URL": url, "ETL_WAREHOUSE_SCHEMA": typo}, "runs", "list") == (
        0, f"no runs yet (there is no dw_etl_runs table in schema '{typo}')\n", ""
    )
    assert cli({**env, "ETL_DATABASE_URL": url, "ETL_WAREHOUSE_SCHEMA": typo}, "checkpoint", "show", "1")[0::2] == (
        3, "etl-assets: there is no dw_etl_runs run 1\n"
    )
    with postgres_warehouse.engine.connect() as conn:
        assert sa.inspect(conn).has_schema(typo) is False

    missing = tmp_path / "nowhere" / "typo.db"
    uri = f"sqlite:///file:{missing}?uri=true"
    assert cli({**env, "ETL_DATABASE_URL": uri}, "runs", "list") == (6, "", (
        f"etl-assets: there is no warehouse at {uri}: the file {missing} does not exist "
        "(nothing has run against it yet, or ETL_DATABASE_URL is mistyped)\n"
    ))
    assert not missing.parent.exists()

    not_a_db = tmp_path / "notes.txt"
    not_a_db.write_text("hello, this is not a database file at all\n" * 100)
    code, out, err = cli({**env, "ETL_DATABASE_URL": f"sqlite:///{not_a_db}"}, "runs", "list")
    assert (code, out, err) == (6, "", f"etl-assets: the warehouse at sqlite:///{not_a_db} cannot be used: "
                                      "DatabaseError: file is not a database\n")
    cases = [
        ({"ETL_DATABASE_URL": env["ETL_DATABASE_URL"] + "?timeout=abc"}, 2,
         "etl-assets: ETL_DATABASE_URL cannot be used: ValueError: could not convert string to float: 'abc'\n"),
        ({"ETL_DATABASE_URL": env["ETL_DATABASE_URL"].replace("sqlite:", "sqlite+aiosqlite:", 1)}, 2,
         "etl-assets: ETL_DATABASE_URL cannot be used: ModuleNotFoundError: No module named 'aiosqlite'\n"),
        ({"ETL_DATABASE_URL": "postgresql+psycopg://etl:hunter2@127.0.0.1:5432/test?foo=bar"}, 6,
         "etl-assets: the warehouse at postgresql+psycopg://etl:***@127.0.0.1:5432/test?foo=bar cannot be used: "
         "ProgrammingError: invalid connection option \"foo\"\n"),
    ]
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"\xffname: x\n")
    cases.append(({"ETL_EXTRACTS_FILE": str(latin)}, 2,
                  f"etl-assets: {latin}: the extracts file is not UTF-8: byte 0xff at offset 0\n"))
    for change, code, message in cases:
        assert cli({**env, **change}, "runs", "retry", "1", "--dry-run") == (code, "", message), change
