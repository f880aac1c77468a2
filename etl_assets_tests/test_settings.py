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
