"""The one reader of environment variables.

Everything configurable from the environment is read here, validated, and handed on as a
frozen :class:`Settings`; no other module calls ``os.environ`` for configuration. Reading
happens when asked (``Settings.from_env()``), not at import, so a test or a Dagster run
sees the environment of the moment.
"""

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from etl_assets.errors import SettingsError

DEFAULT_TIMEOUT_SECONDS = 300.0
DEFAULT_CHECKPOINT_INTERVAL_SECONDS = 60.0
DEFAULT_DATABASE_URL = "sqlite:///.etl_data/warehouse.db"
DEFAULT_EXTRACTS_FILE = Path(__file__).parent / "extracts.yaml"
DEFAULT_MAX_RESUME_ATTEMPTS = 5
DEFAULT_RESUME_BACKOFF_SECONDS = 30.0
DEFAULT_RESUME_SENSOR_INTERVAL_SECONDS = 30.0
DEFAULT_RUN_LEASE_SECONDS = 120.0
DEFAULT_SCHEDULE_CRON = "0 2 * * *"
DEFAULT_SCHEDULE_TIMEZONE = "UTC"
IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}\Z")
"""A plain lower-case SQL identifier, for ``match``. It ends in ``\\Z``: ``$`` would also accept
a trailing line break, and ``"patients\\n"`` would become a table name."""
RESERVED_SCHEMA_PREFIXES = ("pg_", "information_schema")
"""PostgreSQL keeps these for itself: ``pg_temp`` would silently put the tables in a schema
that vanishes with the session, ``pg_catalog`` among the system tables."""

ENVIRONMENT_VARIABLES: dict[str, str] = {
    "ETL_DATABASE_URL": f"SQLAlchemy URL of the warehouse (default {DEFAULT_DATABASE_URL})",
    "ETL_WAREHOUSE_SCHEMA": "PostgreSQL schema for staging tables and dw_etl_runs (default: none)",
    "ETL_EXTRACTS_FILE": "YAML file with the extract specs (default: the packaged demo extracts)",
    "ETL_DEFAULT_TIMEOUT_SECONDS": "time budget of one run in seconds (default 300)",
    "ETL_CHECKPOINT_INTERVAL_SECONDS": "seconds between checkpoints (default 60)",
    "ETL_DEMO_SOURCE_URL": "base URL of the demo source used by the packaged extracts",
    "ETL_MAX_RESUME_ATTEMPTS": "relaunches in a row without progress before the sensor gives up on a run (default 5)",
    "ETL_RESUME_BACKOFF_SECONDS": "delay before the 2nd relaunch without progress, doubling after (default 30)",
    "ETL_RESUME_SENSOR_INTERVAL_SECONDS": "seconds between two ticks of the resume sensor (default 30)",
    "ETL_RUN_LEASE_SECONDS": "a row held by a run this instance does not know stays held this long "
    "after its last write (default 120)",
    "ETL_SCHEDULE_ENABLED": "true to start the all_extracts schedule running (default: stopped)",
    "ETL_SCHEDULE_CRON": f"cron of the all_extracts schedule (default {DEFAULT_SCHEDULE_CRON!r})",
    "ETL_SCHEDULE_TIMEZONE": f"time zone of that cron (default {DEFAULT_SCHEDULE_TIMEZONE})",
    "ETL_DAGSTER_WEBSERVER_URL": "webserver the retry API and CLI launch runs through "
    "(default: run in their own process on the DAGSTER_HOME instance)",
    "ETL_API_TOKEN": "when set, the retry API requires `Authorization: Bearer <token>`",
}


@dataclass(frozen=True)
class Settings:
    """Validated configuration from the environment."""

    database_url: str = DEFAULT_DATABASE_URL
    warehouse_schema: str | None = None
    extracts_file: Path = DEFAULT_EXTRACTS_FILE
    default_timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    checkpoint_interval_seconds: float = DEFAULT_CHECKPOINT_INTERVAL_SECONDS
    max_resume_attempts: int = DEFAULT_MAX_RESUME_ATTEMPTS
    resume_backoff_seconds: float = DEFAULT_RESUME_BACKOFF_SECONDS
    resume_sensor_interval_seconds: float = DEFAULT_RESUME_SENSOR_INTERVAL_SECONDS
    run_lease_seconds: float = DEFAULT_RUN_LEASE_SECONDS
    schedule_enabled: bool = False
    schedule_cron: str = DEFAULT_SCHEDULE_CRON
    schedule_timezone: str = DEFAULT_SCHEDULE_TIMEZONE
    dagster_webserver_url: str | None = None
    api_token: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if environ is None else environ
        schema = env.get("ETL_WAREHOUSE_SCHEMA") or None
        if schema is not None:
            validate_schema(schema, what="ETL_WAREHOUSE_SCHEMA")
        return cls(
            database_url=env.get("ETL_DATABASE_URL") or DEFAULT_DATABASE_URL,
            warehouse_schema=schema,
            extracts_file=Path(env.get("ETL_EXTRACTS_FILE") or DEFAULT_EXTRACTS_FILE),
            default_timeout_seconds=positive_seconds(
                env.get("ETL_DEFAULT_TIMEOUT_SECONDS"),
                "ETL_DEFAULT_TIMEOUT_SECONDS",
                DEFAULT_TIMEOUT_SECONDS,
            ),
            checkpoint_interval_seconds=positive_seconds(
                env.get("ETL_CHECKPOINT_INTERVAL_SECONDS"),
                "ETL_CHECKPOINT_INTERVAL_SECONDS",
                DEFAULT_CHECKPOINT_INTERVAL_SECONDS,
                allow_zero=True,
            ),
            max_resume_attempts=count(
                env.get("ETL_MAX_RESUME_ATTEMPTS"), "ETL_MAX_RESUME_ATTEMPTS", DEFAULT_MAX_RESUME_ATTEMPTS
            ),
            resume_backoff_seconds=positive_seconds(
                env.get("ETL_RESUME_BACKOFF_SECONDS"),
                "ETL_RESUME_BACKOFF_SECONDS",
                DEFAULT_RESUME_BACKOFF_SECONDS,
                allow_zero=True,
            ),
            resume_sensor_interval_seconds=positive_seconds(
                env.get("ETL_RESUME_SENSOR_INTERVAL_SECONDS"),
                "ETL_RESUME_SENSOR_INTERVAL_SECONDS",
                DEFAULT_RESUME_SENSOR_INTERVAL_SECONDS,
            ),
            run_lease_seconds=positive_seconds(
                env.get("ETL_RUN_LEASE_SECONDS"), "ETL_RUN_LEASE_SECONDS", DEFAULT_RUN_LEASE_SECONDS
            ),
            schedule_enabled=flag(env.get("ETL_SCHEDULE_ENABLED"), "ETL_SCHEDULE_ENABLED"),
            schedule_cron=env.get("ETL_SCHEDULE_CRON") or DEFAULT_SCHEDULE_CRON,
            schedule_timezone=env.get("ETL_SCHEDULE_TIMEZONE") or DEFAULT_SCHEDULE_TIMEZONE,
            dagster_webserver_url=(env.get("ETL_DAGSTER_WEBSERVER_URL") or "").rstrip("/") or None,
            api_token=env.get("ETL_API_TOKEN") or None,
        )


def positive_seconds(
    raw: str | float | None, name: str, default: float, *, allow_zero: bool = False
) -> float:
    """Parse a number of seconds, naming the setting in the error when it is not one."""
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise SettingsError(f"{name} must be a number of seconds, got {raw!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise SettingsError(f"{name} must be a finite number of seconds, got {raw!r}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = "zero or more" if allow_zero else "more than zero"
        raise SettingsError(f"{name} must be {bound} seconds, got {raw!r}")
    return value


def count(raw: str | None, name: str, default: int) -> int:
    """Parse a whole number of zero or more, naming the setting in the error."""
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None
    if value < 0:
        raise SettingsError(f"{name} must be zero or more, got {raw!r}")
    return value


def flag(raw: str | None, name: str) -> bool:
    if raw is None or raw == "":
        return False
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


def validate_identifier(name: str, *, what: str) -> str:
    """Accept only plain lower-case SQL identifiers, so names from config never carry SQL."""
    if not isinstance(name, str) or not IDENTIFIER.match(name):
        raise SettingsError(
            f"{what} must be a lower-case identifier (letters, digits, underscore, "
            f"at most 63 characters, not starting with a digit), got {name!r}"
        )
    return name


def validate_schema(name: str, *, what: str) -> str:
    """A warehouse schema: a plain identifier that is not one of PostgreSQL's own."""
    validate_identifier(name, what=what)
    if name.startswith(RESERVED_SCHEMA_PREFIXES):
        raise SettingsError(
            f"{what} must not be a PostgreSQL system schema (names starting with pg_ or "
            f"information_schema are reserved), got {name!r}"
        )
    return name
