"""The Python API of the behaviour document: ``JobExecutor.execute_job`` and
``get_checkpoint`` on a ``DAGSTER_HOME`` instance, against the demo source, on both backends."""

import dagster as dg
import pytest

from etl_assets.demo import DemoSource, Fault, ListCollection, ServerThread
from etl_assets.errors import JobTimeoutError, SettingsError
from etl_assets.executor import CheckpointData, JobExecutor
from etl_assets_tests.support import ITEMS_EXTRACTS_YAML, simple_records



@pytest.fixture
def environment(tmp_path, warehouse, monkeypatch):
    with ServerThread(DemoSource(collections={"items": ListCollection(simple_records(60))})) as server:
        extracts = tmp_path / "extracts.yaml"
        extracts.write_text(ITEMS_EXTRACTS_YAML.format(group="python_api", url=server.url))
        home = tmp_path / "dagster_home"
        home.mkdir()
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        monkeypatch.setenv("ETL_DATABASE_URL", warehouse.url)
        monkeypatch.setenv("ETL_EXTRACTS_FILE", str(extracts))
        monkeypatch.setenv("DAGSTER_HOME", str(home))
        monkeypatch.delenv("ETL_DAGSTER_WEBSERVER_URL", raising=False)
        if warehouse.schema:
            monkeypatch.setenv("ETL_WAREHOUSE_SCHEMA", warehouse.schema)
        else:
            monkeypatch.delenv("ETL_WAREHOUSE_SCHEMA", raising=False)
        yield server, warehouse


def test_timeout_then_resume_from_python(environment):
    server, warehouse = environment
    # The page at skip=30 hangs, so the run always times out there; the budget is what the
    # first three pages may take, and on a busy machine that can be more than a few hundred ms.
    server.source.add_fault(Fault(path="/items", skip=30, action="hang", times=1))
    with JobExecutor() as executor:
        with pytest.raises(JobTimeoutError, match=r"skip=30, page_index=3, records=30\. To resume"):
            executor.execute_job("items", timeout_seconds=2, checkpoint_interval_seconds=0)
        [row] = warehouse.runs("items")
        checkpoint = executor.get_checkpoint(row.run_id)
        assert isinstance(checkpoint, CheckpointData)
        assert (checkpoint.run_id, checkpoint.job_name, checkpoint.status) == (row.run_id, "items", "running")
        assert (checkpoint.skip, checkpoint.page_index, checkpoint.total_records) == (30, 3, 30)
        assert checkpoint.last_checkpoint_time.tzinfo is not None
        assert (checkpoint.parameters["extract"], checkpoint.parameters["path"]) == ("items", "/items")

        result = executor.execute_job("items", resume_from_checkpoint=True, timeout_seconds=600)
        assert (result.job, result.run_id, result.resumed_from_skip) == ("items", row.run_id, 30)
        assert (result.records_fetched, result.records_loaded) == (30, 60)
        assert (result.inserted, result.updated, result.unchanged, result.pages) == (30, 0, 0, 3)
        assert executor.get_checkpoint(row.run_id) is None, "success clears the checkpoint"
        assert executor.get_checkpoint(999_999) is None

    assert sorted(int(k) for k in warehouse.records("items")) == list(range(1, 61))
    with dg.DagsterInstance.get() as instance:  # both runs are on the DAGSTER_HOME instance, for the UI
        records = instance.get_run_records()
        assert sorted(r.dagster_run.status.value for r in records) == ["FAILURE", "SUCCESS"]
        assert {r.dagster_run.tags.get("etl_assets/launched_by") for r in records} == {"python"}
        assert result.dagster_run_id in {r.dagster_run.run_id for r in records}


def test_unknown_extract_is_named_with_the_known_ones(environment):
    with JobExecutor() as executor, pytest.raises(SettingsError, match="there is no extract 'nope'.*: items"):
        executor.execute_job("nope")
