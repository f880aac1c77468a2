"""The time-sensitive tests in three time zones, each in a pytest of its own.

``TZ`` sets the process's local time (what a naive ``datetime.now()``, ``time.localtime()`` or
``datetime.timestamp()`` of a naive value would silently use) and ``PGTZ`` the PostgreSQL session
zone (what a ``timestamptz`` is shown in and a naive ``timestamp`` is read in). Under UTC a
wall-clock time and a UTC time are the same, so only the other two zones, eight hours behind and
nine ahead, can show one stored where the other belongs. The chosen tests cover checkpoint and
row timestamps read raw, leases and the resume sensor's backoff, ``Retry-After`` dates, the
API's view of a run, schedules and time budgets (a run stopped by its deadline, a
``Retry-After`` past it).
"""

import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

ROOT = Path(__file__).resolve().parent.parent
ZONES = ["UTC", "America/Los_Angeles", "Asia/Tokyo"]
TIME_SENSITIVE = [
    "etl_assets_tests/test_utc_timestamps.py",
    "etl_assets_tests/test_resume.py",
    "etl_assets_tests/checkpoints/test_models.py",
    "etl_assets_tests/test_extract_errors.py::test_checkpoints_are_logged_and_timestamps_are_utc",
    "etl_assets_tests/test_extract_ownership.py::test_a_live_run_waiting_past_its_lease_keeps_the_row[postgres]",
    "etl_assets_tests/defs/test_sensors.py::test_backoff_grows_between_relaunches_without_progress",
    "etl_assets_tests/test_api.py::test_list_and_show_runs",
    "etl_assets_tests/test_extract_field_cases.py::test_c3_retry_after_http_date[postgres]",
    "etl_assets_tests/test_extract_field_cases.py::test_c3_absurd_retry_after_never_sleeps_past_the_deadline",
    "etl_assets_tests/defs/test_schedules.py",
]
EXPECTED_PASSED = 36

PROBE = """
import sys, time
import sqlalchemy as sa
engine = sa.create_engine(sys.argv[1])
with engine.connect() as conn:
    print(time.localtime().tm_gmtoff, conn.exec_driver_sql("SHOW TimeZone").scalar())
"""


def zone_env(zone: str) -> dict[str, str]:
    return {**os.environ, "TZ": zone, "PGTZ": zone}


@pytest.mark.parametrize("zone", ZONES)
def test_time_sensitive_tests_pass_in_every_zone(zone, postgres_available):
    # First show the zone really is in effect, in Python and in the PostgreSQL session.
    probe = subprocess.run([sys.executable, "-c", PROBE, postgres_available], env=zone_env(zone),
                           capture_output=True, text=True, timeout=60, check=True)
    offset = datetime.now(timezone.utc).astimezone(ZoneInfo(zone)).utcoffset()
    assert probe.stdout.split() == [str(int(offset.total_seconds())), zone]

    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *TIME_SENSITIVE],
        cwd=ROOT, env=zone_env(zone), capture_output=True, text=True, timeout=300,
    )
    summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else ""
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert summary.startswith(f"{EXPECTED_PASSED} passed in "), summary
