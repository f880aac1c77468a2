"""Environment variables: defaults, overrides, and errors that name the variable."""

from pathlib import Path

import pytest

from etl_assets.errors import SettingsError
from etl_assets.settings import DEFAULT_EXTRACTS_FILE, Settings


def test_defaults_without_environment():
    assert Settings.from_env({}) == Settings(
        database_url="sqlite:///.etl_data/warehouse.db",
        warehouse_schema=None,
        extracts_file=DEFAULT_EXTRACTS_FILE,
        default_timeout_seconds=300.0,
        checkpoint_interval_seconds=60.0,
    )


def test_every_variable_is_read():
    settings = Settings.from_env(
        {
            "ETL_DATABASE_URL": "postgresql+psycopg://u@h/db",
            "ETL_WAREHOUSE_SCHEMA": "staging",
            "ETL_EXTRACTS_FILE": "/etc/etl/x.yaml",
            "ETL_DEFAULT_TIMEOUT_SECONDS": "3600",
            "ETL_CHECKPOINT_INTERVAL_SECONDS": "0",
        }
    )
    assert settings == Settings("postgresql+psycopg://u@h/db", "staging", Path("/etc/etl/x.yaml"), 3600.0, 0.0)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("ETL_DEFAULT_TIMEOUT_SECONDS", "abc", "ETL_DEFAULT_TIMEOUT_SECONDS must be a number of seconds, got 'abc'"),
        ("ETL_DEFAULT_TIMEOUT_SECONDS", "0", "ETL_DEFAULT_TIMEOUT_SECONDS must be more than zero seconds, got '0'"),
        ("ETL_DEFAULT_TIMEOUT_SECONDS", "nan", "ETL_DEFAULT_TIMEOUT_SECONDS must be a finite number of seconds, got 'nan'"),
        ("ETL_CHECKPOINT_INTERVAL_SECONDS", "-1", "ETL_CHECKPOINT_INTERVAL_SECONDS must be zero or more seconds, got '-1'"),
        ("ETL_WAREHOUSE_SCHEMA", "x; DROP SCHEMA public", "ETL_WAREHOUSE_SCHEMA must be a lower-case identifier"),
    ],
)
def test_bad_values_name_the_variable(name, value, message):
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({name: value})
    assert str(raised.value).startswith(message)


def test_every_resume_schedule_and_api_variable_is_read():
    settings = Settings.from_env(
        {
            "ETL_MAX_RESUME_ATTEMPTS": "7",
            "ETL_RESUME_BACKOFF_SECONDS": "12.5",
            "ETL_RESUME_SENSOR_INTERVAL_SECONDS": "5",
            "ETL_RUN_LEASE_SECONDS": "90",
            "ETL_SCHEDULE_ENABLED": "true",
            "ETL_SCHEDULE_CRON": "*/15 * * * *",
            "ETL_SCHEDULE_TIMEZONE": "Asia/Tokyo",
            "ETL_DAGSTER_WEBSERVER_URL": "http://127.0.0.1:3000/",
            "ETL_API_TOKEN": "s3cret",
        }
    )
    assert (
        settings.max_resume_attempts,
        settings.resume_backoff_seconds,
        settings.resume_sensor_interval_seconds,
        settings.run_lease_seconds,
    ) == (7, 12.5, 5.0, 90.0)
    assert (settings.schedule_enabled, settings.schedule_cron, settings.schedule_timezone) == (
        True, "*/15 * * * *", "Asia/Tokyo"
    )
    assert (settings.dagster_webserver_url, settings.api_token) == ("http://127.0.0.1:3000", "s3cret")
    assert "s3cret" not in repr(settings), "the token never shows in a repr or a log line"
