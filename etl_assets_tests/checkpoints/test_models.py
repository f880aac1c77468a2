"""Checkpoints read back from ``dw_etl_runs``: what the project wrote, and what it refuses."""

from datetime import datetime, timezone

import pytest

from etl_assets.checkpoints import Checkpoint
from etl_assets.errors import CorruptRunError

WHEN = "2026-01-01T00:00:00+00:00"


def test_a_written_checkpoint_reads_back_the_same():
    written = Checkpoint(30, 3, 30, datetime(2026, 1, 1, tzinfo=timezone.utc), next_url="http://x/?page=4",
                         cursor="c4", exhausted=True)
    assert Checkpoint.from_json(written.to_json(), 7) == written


@pytest.mark.parametrize(("stored", "reason"), [
    ({"page_index": 1, "total_records": 10, "last_checkpoint_time": WHEN}, "skip is missing"),
    ({"skip": -500, "page_index": 1, "total_records": 10, "last_checkpoint_time": WHEN},
     "skip is -500, not a whole number from 0 up"),
    ({"skip": 10, "page_index": "abc", "total_records": 10, "last_checkpoint_time": WHEN},
     "page_index is 'abc', not a whole number from 0 up"),
    ({"skip": 10, "page_index": 1, "total_records": 10.5, "last_checkpoint_time": WHEN},
     "total_records is 10.5, not a whole number from 0 up"),
    ({"skip": True, "page_index": 1, "total_records": 10, "last_checkpoint_time": WHEN},
     "skip is True, not a whole number from 0 up"),
    ({"skip": 10, "page_index": 1, "total_records": 10, "last_checkpoint_time": "yesterday"},
     "last_checkpoint_time is 'yesterday', not an ISO 8601 time"),
    ({"skip": 10, "page_index": 1, "total_records": 10}, "last_checkpoint_time is '<missing>', not an ISO 8601 time"),
    ({"skip": 10, "page_index": 1, "total_records": 10, "last_checkpoint_time": WHEN, "cursor": 5},
     "cursor is 5, not a string"),
    ({"skip": 10, "page_index": 1, "total_records": 10, "last_checkpoint_time": WHEN, "exhausted": "yes"},
     "exhausted is 'yes', not true or false"),
    ([10, 1], "it is list, not an object"),
])
def test_a_checkpoint_this_project_never_writes_is_refused_naming_the_run_and_field(stored, reason):
    with pytest.raises(CorruptRunError) as refused:
        Checkpoint.from_json(stored, 7)
    assert str(refused.value) == f"dw_etl_runs run 7: its checkpoint cannot be read: {reason}"
