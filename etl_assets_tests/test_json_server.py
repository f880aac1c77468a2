"""Extracting from a third-party server: json-server 0.17.4 (npm, pinned), serving
FHIR patients as a bare JSON array with ``_start``/``_limit`` paging and ``X-Total-Count``.

``start_json_server`` also runs json-server 1.0.0-beta.15 (installed beside it under the npm
alias ``json-server-v1``), for the paging styles of ``test_paging_styles.py``.
"""

import json
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from etl_assets.checkpoints import RunStatus
from etl_assets.demo.records import patient
from etl_assets.errors import JobTimeoutError
from etl_assets.sources.spec import parse_extracts
from etl_assets_tests.conftest import IN_CI
from etl_assets_tests.support import extract, free_port

ROOT = Path(__file__).resolve().parent.parent
BINARIES = {
    "0.17.4": ROOT / "node_modules" / "json-server" / "lib" / "cli" / "bin.js",
    "1.0.0-beta.15": ROOT / "node_modules" / "json-server-v1" / "lib" / "bin.js",
}
PATIENTS = 257


@pytest.fixture(scope="module")
def patients_db(tmp_path_factory) -> tuple[Path, list[dict]]:
    records = [patient(i) for i in range(PATIENTS)]
    db = tmp_path_factory.mktemp("json_server") / "db.json"
    db.write_text(json.dumps({"Patient": records}, ensure_ascii=False))
    return db, records


def start_json_server(
    db: Path, delay_ms: int = 0, version: str = "0.17.4", writable: bool = False, port: int | None = None
):
    binary = BINARIES[version]
    if not binary.exists() or shutil.which("node") is None:
        message = f"json-server {version} is not installed at {binary} (run `make node`)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    port = port or free_port()
    args = ["node", str(binary), "--host", "127.0.0.1", "--port", str(port)]
    if version == "0.17.4":
        args += ["--quiet"] if writable else ["--read-only", "--quiet"]
    if delay_ms:
        args += ["--delay", str(delay_ms)]
    process = subprocess.Popen([*args, str(db)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            httpx.get(f"{url}/", timeout=1)
            return process, url
        except httpx.TransportError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"json-server did not start: {process.stderr.read().decode()[-1000:]}")
            time.sleep(0.1)


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if process.stderr:
        process.stderr.close()


def spec_for(url: str, limit: int):
    (spec,) = parse_extracts(
        {
            "client": {
                "base_url": url,
                "paginator": {
                    "type": "offset",
                    "limit": limit,
                    "offset_param": "_start",
                    "limit_param": "_limit",
                    "total_header": "X-Total-Count",
                },
            },
            "resources": [{"name": "patients", "primary_key": "id", "endpoint": {"path": "/Patient", "data_selector": "$"}}],
        },
        source_file="json-server.yaml",
    )
    return spec


def test_extract_fhir_patients_from_json_server(patients_db, warehouse):
    db, records = patients_db
    process, url = start_json_server(db)
    try:
        result = extract(spec_for(url, limit=50), warehouse)
    finally:
        stop(process)
    assert (result.records_fetched, result.inserted, result.pages, result.source_total) == (PATIENTS, PATIENTS, 6, PATIENTS)
    stored = warehouse.records("patients")
    assert stored == {r["id"]: r for r in records}
    run = warehouse.run(result.run_id)
    assert run.status is RunStatus.SUCCESS and run.records_loaded == PATIENTS


def test_json_server_timeout_and_resume(patients_db, warehouse):
    db, records = patients_db
    # Each answer takes at least 0.5 s and at most 4 pages are in flight (the first alone, until
    # the total is known), so the 26 pages need at least 0.5 + 7 * 0.5 = 4 s: the 2.5 s budget
    # ends mid-way on any machine, and leaves 2 s for the first page even on a busy one.
    process, url = start_json_server(db, delay_ms=500)
    try:
        spec = spec_for(url, limit=10)
        with pytest.raises(JobTimeoutError):
            extract(spec, warehouse, timeout=2.5, interval=60)
        (run,) = warehouse.runs("patients")
        stopped = run.checkpoint.skip
        assert run.status is RunStatus.RUNNING and 0 < stopped < PATIENTS and stopped % 10 == 0
        assert len(warehouse.records("patients")) == stopped
        result = extract(spec, warehouse, timeout=60, interval=60)
    finally:
        stop(process)
    assert (result.run_id, result.resumed_from_skip, result.records_fetched) == (run.run_id, stopped, PATIENTS - stopped)
    assert (result.inserted, result.updated) == (PATIENTS - stopped, 0)
    assert warehouse.records("patients") == {r["id"]: r for r in records}
    assert warehouse.run(run.run_id).records_loaded == PATIENTS
