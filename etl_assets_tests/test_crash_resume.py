"""SIGKILL of a materialization at a random page, then a resume: every record exactly once.

The child is a real Dagster materialization in its own process; the parent watches the
demo source's request log and kills the child with SIGKILL once it has asked for the
chosen page, then resumes in-process and checks the warehouse and ``dw_etl_runs``.

The page after the chosen one hangs, so the child cannot write past it however fast it is
or however late the parent's kill lands: what it stored at the kill does not depend on the
machine's speed.
"""

import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import dagster as dg
import pytest

from etl_assets.checkpoints import RunStatus
from etl_assets.defs.assets import ExtractConfig, build_extract_asset
from etl_assets.defs.resources import CheckpointStoreResource
from etl_assets.demo import DemoSource, Fault, ListCollection, ServerThread
from etl_assets_tests.support import items_spec, simple_records

RECORDS = 200
LIMIT = 10
CHILD = textwrap.dedent(
    """
    import sys
    import dagster as dg
    from etl_assets.defs.assets import ExtractConfig, build_extract_asset
    from etl_assets.defs.resources import CheckpointStoreResource
    from etl_assets_tests.support import items_spec

    url, db_url, schema, interval = sys.argv[1], sys.argv[2], sys.argv[3] or None, float(sys.argv[4])
    dg.materialize(
        [build_extract_asset(items_spec(url, limit=10))],
        resources={"checkpoints": CheckpointStoreResource(database_url=db_url, warehouse_schema=schema)},
        instance=dg.DagsterInstance.ephemeral(),
        run_config=dg.RunConfig({"items": ExtractConfig(checkpoint_interval_seconds=interval)}),
    )
    """
)

KILL_POINTS = sorted(random.Random(20261203).sample(range(2, RECORDS // LIMIT - 1), 3))


@pytest.mark.parametrize("interval", [0, 60], ids=["checkpoint-every-page", "checkpoint-every-60s"])
@pytest.mark.parametrize("kill_at_page", KILL_POINTS)
def test_sigkill_at_a_random_page_then_resume(warehouse, kill_at_page, interval, monkeypatch):
    # The killed run is unknown to the resuming run's (ephemeral) instance, so it holds its
    # row until its lease ends; a short lease keeps the test quick.
    monkeypatch.setenv("ETL_RUN_LEASE_SECONDS", "1")
    source = DemoSource(collections={"items": ListCollection(simple_records(RECORDS))}, latency_seconds=0.02)
    # Pages are written in order, so with the next page hanging the child cannot get past the
    # chosen one before the kill, even when the parent notices the request late (a loaded
    # machine; pages with 4 in flight come every few ms, faster than the parent polls).
    source.add_fault(Fault(path="/items", skip=(kill_at_page + 1) * LIMIT, action="hang", times=1))
    with ServerThread(source) as server:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, server.url, warehouse.url, warehouse.schema or "", str(interval)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 60
            while len(source.requests("/items")) < kill_at_page + 1:
                assert child.poll() is None, child.stderr.read().decode()[-2000:]
                assert time.monotonic() < deadline, "the child never reached the page"
                time.sleep(0.005)
            os.kill(child.pid, signal.SIGKILL)
            child.wait(timeout=10)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
            child.stderr.close()
        assert child.returncode == -signal.SIGKILL

        (killed,) = warehouse.runs("items")
        assert killed.status is RunStatus.RUNNING
        checkpoint = killed.checkpoint
        stored_before = len(warehouse.records("items"))
        if interval == 0:
            assert checkpoint is not None and checkpoint.skip == stored_before
            assert checkpoint.page_index == checkpoint.skip // LIMIT
            assert checkpoint.total_records == checkpoint.skip
        else:
            # The first page saves a checkpoint, the next is due 60 s later: the kill comes first.
            assert (checkpoint.skip, checkpoint.page_index, checkpoint.total_records) == (LIMIT, 1, LIMIT)
        # Up to max_in_flight pages are asked for ahead of the last one written.
        in_flight = items_spec(server.url).max_in_flight
        assert (kill_at_page - in_flight) * LIMIT <= stored_before <= (kill_at_page + 1) * LIMIT

        lease_ends = killed.updated_at.timestamp() + 1.05
        time.sleep(max(0.2, lease_ends - time.time()))  # also lets the server log the in-flight request
        source.clear_faults()  # the child may have been killed before it asked for the hanging page
        source.clear_requests()
        result = dg.materialize(
            [build_extract_asset(items_spec(server.url, limit=LIMIT))],
            resources={
                "checkpoints": CheckpointStoreResource(database_url=warehouse.url, warehouse_schema=warehouse.schema)
            },
            instance=dg.DagsterInstance.ephemeral(),
        )
        assert result.success
        resumed_skips = sorted(r.skip for r in source.requests("/items"))

    stored = warehouse.records("items")
    assert sorted(int(k) for k in stored) == list(range(1, RECORDS + 1))
    assert all(stored[str(r["id"])] == r for r in simple_records(RECORDS))
    runs = warehouse.runs("items")
    final = runs[-1]
    assert final.status is RunStatus.SUCCESS and final.records_loaded == RECORDS and final.checkpoint is None
    assert len(runs) == 1 and final.run_id == killed.run_id
    assert resumed_skips == list(range(checkpoint.skip, RECORDS, LIMIT))
    if interval != 0:
        # Pages stored after the first checkpoint are read again, and found unchanged.
        (materialization,) = result.get_asset_materialization_events()
        assert materialization.materialization.metadata["unchanged"].value == stored_before - LIMIT
