"""The code location as users load it: ``-m etl_assets.definitions``, ``ETL_EXTRACTS_FILE``,
and the ``dagster asset materialize`` command line the README shows."""

import os
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from etl_assets.demo import ServerThread, default_source
from etl_assets.settings import Settings
from etl_assets.definitions import build_definitions

ROOT = Path(__file__).resolve().parents[2]
DAGSTER = Path(sys.executable).with_name("dagster")


def test_definitions_from_another_extracts_file(tmp_path):
    extracts = tmp_path / "extracts.yaml"
    extracts.write_text(
        "name: crm\n"
        "client:\n"
        "  base_url: https://api.example.test\n"
        "  headers: {Authorization: 'Bearer ${CRM_TOKEN}'}\n"
        "  paginator: {type: offset, limit: 200, offset_param: offset, limit_param: limit, total_header: X-Total-Count}\n"
        "resources:\n"
        "  - {name: contacts, primary_key: id, endpoint: {path: /contacts, data_selector: $}}\n"
        "  - {name: deals, primary_key: [id], endpoint: {path: /deals, params: {status: open}, data_selector: data}}\n"
    )
    defs = build_definitions(Settings(extracts_file=extracts))
    keys = sorted(k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys())
    assert keys == ["contacts", "deals"]
    assert defs.resolve_job_def("all_extracts").name == "all_extracts"


def test_bad_extracts_file_fails_at_load_naming_file_resource_and_key(tmp_path):
    extracts = tmp_path / "bad.yaml"
    extracts.write_text(
        "client: {base_url: 'http://127.0.0.1:1', paginator: {type: offset, limit: 10}}\n"
        "resources:\n"
        "  - {name: patients, primary_key: id, endpoint: {path: /p, paginator: {limit: -1}}}\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", "import etl_assets.definitions"],
        env={**os.environ, "ETL_EXTRACTS_FILE": str(extracts)},
        capture_output=True,
        text=True,
    )
    assert loaded.returncode == 1
    assert (
        f"etl_assets.errors.SpecError: {extracts}: resource 'patients': key 'endpoint.paginator.limit': "
        "must be a whole number from 1 to 100000, got -1"
    ) in loaded.stderr


def test_dagster_asset_materialize_command_with_config_json(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    database = tmp_path / "warehouse.db"
    with ServerThread(default_source(patients=1500)) as server:
        completed = subprocess.run(
            [
                str(DAGSTER), "asset", "materialize", "-m", "etl_assets.definitions", "--select", "patients",
                "--config-json", '{"ops": {"patients": {"config": {"timeout_seconds": 600}}}}',
            ],
            cwd=ROOT,
            env={
                **os.environ,
                "DAGSTER_HOME": str(home),
                "ETL_DEMO_SOURCE_URL": server.url,
                "ETL_DATABASE_URL": f"sqlite:///{database}",
            },
            capture_output=True,
            text=True,
            timeout=180,
        )
        requested = [r.skip for r in server.source.requests("/patients")]
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "RUN_SUCCESS" in completed.stderr
    assert requested == [0, 1000]
    engine = sa.create_engine(f"sqlite:///{database}")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM stg_patients")).scalar_one() == 1500
        row = conn.execute(sa.text("SELECT status, records_loaded, run_context FROM dw_etl_runs")).one()
    engine.dispose()
    assert (row.status, row.records_loaded) == ("success", 1500)
    assert '"timeout_seconds": 600.0' in row.run_context or '"timeout_seconds":600.0' in row.run_context
