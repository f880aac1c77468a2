"""The short torture run: eight seeds of faults over whole runs, zero invariant violations.

``make torture`` runs the full suite (40 seeds of 3,000 records); this keeps it honest on
every test run. See :mod:`etl_assets_tests.torture` for the faults and the invariants.
"""

import pytest

from etl_assets_tests.conftest import IN_CI
from etl_assets_tests.pgcluster import find_bindir
from etl_assets_tests.torture import FAULT_KINDS, run, table

SEEDS = list(range(1, 9))
RECORDS = 1500


def test_every_fault_kind_over_eight_seeds_keeps_every_record_exactly_once(tmp_path):
    if find_bindir() is None:
        message = "no PostgreSQL server binaries to start a throwaway cluster with (set ETL_PG_BINDIR)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    reports = run(SEEDS, RECORDS, tmp_path)
    summary = table(reports)
    print(summary)

    assert [r.seed for r in reports] == SEEDS
    assert [r.violations for r in reports] == [[] for _ in SEEDS], summary
    assert all(r.records == RECORDS and r.outcomes["success"] == 1 for r in reports), summary
    # The deck deals every kind before any repeats, and every seed's first attempt draws one.
    assert set().union(*(r.drawn for r in reports)) == set(FAULT_KINDS), summary
    assert sum(sum(r.faults.values()) for r in reports) >= len(SEEDS), summary
