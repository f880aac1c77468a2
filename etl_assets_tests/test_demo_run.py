"""``etl-assets demo`` (what ``make demo`` runs), small enough for the suite."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from etl_assets_tests.support import free_port


def test_demo_stops_part_way_resumes_and_summarizes(tmp_path):
    env = {**os.environ, "ETL_DATABASE_URL": f"sqlite:///{tmp_path / 'warehouse.db'}"}
    env.pop("ETL_EXTRACTS_FILE", None)
    completed = subprocess.run(
        [
            sys.executable, "-m", "etl_assets.cli", "demo", "--patients", "8000", "--port", str(free_port()),
            "--timeout", "1", "--dagster-home", str(tmp_path / "home"),
        ],
        env={**env, "ETL_CHECKPOINT_INTERVAL_SECONDS": "0"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = completed.stdout
    assert completed.returncode == 0, completed.stderr[-3000:] + out[-3000:]
    stopped = re.search(r"stopped: JobTimeoutError: extract 'patients' stopped at its time budget .* checkpoint skip=(\d+)", out)
    assert stopped, out
    skip = int(stopped.group(1))
    assert 0 < skip < 8000  # the first round of pages arrives by 0.6 s, the second after the budget
    assert f"resuming dw_etl_runs run 1 from checkpoint skip={skip}" in out
    assert re.search(r"stg_patients\s+8,000 rows", out)
    assert re.search(r"stg_encounters\s+24,000 rows", out)
    assert re.search(r"stg_observations\s+40,000 rows", out)
    assert re.search(r"1  patients\s+success\s+8,000\s+2  -", out)
    engine = sa.create_engine(env["ETL_DATABASE_URL"])
    with engine.connect() as conn:
        statuses = conn.execute(sa.text("SELECT job_name, status, records_loaded FROM dw_etl_runs ORDER BY run_id")).all()
    engine.dispose()
    assert [tuple(s) for s in statuses] == [
        ("patients", "success", 8000),
        ("encounters", "success", 24000),
        ("observations", "success", 40000),
    ]
    assert (Path(tmp_path / "home") / "dagster.yaml").exists()


def test_demo_refuses_a_port_another_server_already_answers_on(tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        completed = subprocess.run(
            [sys.executable, "-m", "etl_assets.cli", "demo", "--port", str(port),
             "--dagster-home", str(tmp_path / "home")],
            env={**os.environ, "ETL_DATABASE_URL": f"sqlite:///{tmp_path / 'warehouse.db'}"},
            capture_output=True, text=True, timeout=120,
        )
    assert completed.returncode == 1
    assert completed.stderr.strip().endswith(
        f"port {port} is taken (another demo source, or `make dev`?); stop it or pass --port"
    )
    assert not (tmp_path / "warehouse.db").exists()


@pytest.mark.parametrize("timeout", ["-1", "0", "nan", "31", "soon"])
def test_demo_refuses_a_timeout_it_could_not_stop_a_run_with(tmp_path, timeout):
    # Past 30 s the per-page delay that outlasts the timeout would exceed what the demo
    # source accepts (60 s), and the "interrupted" run would finish.
    completed = subprocess.run(
        [sys.executable, "-m", "etl_assets.cli", "demo", "--timeout", timeout, "--port", str(free_port()),
         "--dagster-home", str(tmp_path / "home")],
        env={**os.environ, "ETL_DATABASE_URL": f"sqlite:///{tmp_path / 'warehouse.db'}"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    reason = f"not a number: {timeout!r}" if timeout == "soon" else f"must be more than 0 and at most 30 seconds, got {timeout}"
    assert completed.returncode == 2
    assert completed.stderr.rstrip().endswith(f"etl-assets demo: error: argument --timeout: {reason}")
    assert not (tmp_path / "warehouse.db").exists()


def test_too_few_patients_to_stop_part_way_is_refused(tmp_path):
    """Pages of 1,000: with 1,000 patients the source is one page, and no timeout could stop
    the run with part of it written."""
    completed = subprocess.run(
        [sys.executable, "-m", "etl_assets.cli", "demo", "--patients", "1000", "--port", str(free_port()),
         "--dagster-home", str(tmp_path / "home")],
        env={**{k: v for k, v in os.environ.items() if k != "ETL_EXTRACTS_FILE"},
             "ETL_DATABASE_URL": f"sqlite:///{tmp_path / 'warehouse.db'}"},
        capture_output=True, text=True, timeout=120,
    )
    assert (completed.returncode, completed.stdout, completed.stderr) == (2, "", (
        "etl-assets demo: --patients must be at least 1,001: with 1,000, the source is one page of 1,000, "
        "so no timeout can stop the run part way\n"
    ))
