"""The ``all_extracts`` schedule: cron, time zone, stopped unless enabled, and clear errors."""

import dagster as dg
import pytest

from etl_assets.defs.schedules import build_schedule
from etl_assets.errors import SettingsError
from etl_assets.settings import Settings

JOB = dg.define_asset_job("all_extracts")


def test_defaults_nightly_utc_and_stopped():
    schedule = build_schedule(JOB, Settings.from_env({}))
    assert (schedule.name, schedule.job_name) == ("all_extracts_schedule", "all_extracts")
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("0 2 * * *", "UTC")
    assert schedule.default_status is dg.DefaultScheduleStatus.STOPPED


def test_cron_time_zone_and_enabled_from_the_environment():
    settings = Settings.from_env(
        {"ETL_SCHEDULE_CRON": "30 6 * * 1-5", "ETL_SCHEDULE_TIMEZONE": "America/Los_Angeles", "ETL_SCHEDULE_ENABLED": "1"}
    )
    schedule = build_schedule(JOB, settings)
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("30 6 * * 1-5", "America/Los_Angeles")
    assert schedule.default_status is dg.DefaultScheduleStatus.RUNNING


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"ETL_SCHEDULE_TIMEZONE": "Mars/Olympus"}, "ETL_SCHEDULE_TIMEZONE must be an IANA time zone like"),
        ({"ETL_SCHEDULE_CRON": "every night"}, "ETL_SCHEDULE_CRON is not a valid cron expression: 'every night'"),
    ],
)
def test_bad_schedule_settings_name_the_variable(environ, message):
    with pytest.raises(SettingsError, match=message):
        build_schedule(JOB, Settings.from_env(environ))
