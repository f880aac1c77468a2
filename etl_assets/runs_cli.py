"""``etl-assets runs list|show|retry`` and ``etl-assets checkpoint show``.

Exit codes, for scripts: 0 done; 1 the retried run failed, or the row has no checkpoint
(``checkpoint show``); 2 bad usage; 3 no such run; 4 conflict (the run succeeded already or
is still active); 5 Dagster could not launch the run; 6 the warehouse does not answer, or its
SQLite file does not exist; 7 a ``dw_etl_runs`` row holds values this project never writes.
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import sqlalchemy
import sqlalchemy.engine
import sqlalchemy.exc

from etl_assets.deployment import Deployment, InProcessLauncher
from etl_assets.errors import (
    CorruptRunError,
    LaunchError,
    RunConflictError,
    RunNotFoundError,
    SettingsError,
    SpecError,
)
from etl_assets.operations import run_detail, run_summary
from etl_assets.settings import Settings
from etl_assets.warehouse.engine import sqlite_file

EXIT_FAILED, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_CONFLICT, EXIT_LAUNCH, EXIT_WAREHOUSE, EXIT_CORRUPT = 1, 2, 3, 4, 5, 6, 7
MAX_RUN_ID = 2**31 - 1  # dw_etl_runs.run_id is a 32-bit integer on PostgreSQL


def _bounded(low: int, high: int) -> Any:
    """An argparse type for an integer in [low, high]: bad usage exits 2, never a traceback."""

    def parse(raw: str) -> int:
        if not raw.isascii() or not raw.lstrip("-").isdigit() or not low <= int(raw) <= high:
            raise argparse.ArgumentTypeError(f"must be an integer from {low} to {high}, got {raw[:40]!r}")
        return int(raw)

    return parse


RUN_ID = _bounded(1, MAX_RUN_ID)


def add_runs_arguments(parser: argparse.ArgumentParser) -> None:
    verbs = parser.add_subparsers(dest="verb", required=True)
    listing = verbs.add_parser("list", help="the latest dw_etl_runs rows")
    listing.add_argument("--extract", help="only this extract")
    listing.add_argument("--status", choices=["running", "success", "failed"])
    listing.add_argument("--limit", type=_bounded(1, 1000), default=20)
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    show = verbs.add_parser("show", help="one row: status, checkpoint, attempts, relaunches")
    show.add_argument("run_id", type=RUN_ID)
    show.add_argument("--json", action="store_true")
    retry = verbs.add_parser("retry", help="resume a run from its checkpoint")
    retry.add_argument("run_id", type=RUN_ID)
    retry.add_argument("--dry-run", action="store_true", help="say what would happen, launch nothing")
    retry.add_argument("--json", action="store_true")


def add_checkpoint_arguments(parser: argparse.ArgumentParser) -> None:
    verbs = parser.add_subparsers(dest="verb", required=True)
    show = verbs.add_parser("show", help="the checkpoint of one run")
    show.add_argument("run_id", type=RUN_ID)
    show.add_argument("--json", action="store_true")


def table(rows: list[list[Any]], header: list[str]) -> str:
    cells = [header] + [["" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _when(value: str | None) -> str:
    return value[:19].replace("T", " ") if value else ""


def run_runs(args: argparse.Namespace) -> int:
    return _guard(args, _runs)


def run_checkpoint(args: argparse.Namespace) -> int:
    return _guard(args, _checkpoint)


def _missing_sqlite_file(url: str) -> Path | None:
    """The file a SQLite warehouse URL names, when it does not exist.

    These commands only read rows (a retry writes to an existing row), so a warehouse file
    that is not there is a mistyped URL or a warehouse nothing has run against yet; opening
    it would create an empty database, and its folder, where the user did not mean one."""
    try:
        path = sqlite_file(sqlalchemy.engine.make_url(url))
    except sqlalchemy.exc.ArgumentError:
        return None  # reported as a bad URL when the engine is made
    return None if path is None or path.exists() else path


def _no_table(deployment: Deployment) -> str:
    """Why there are no runs, when it is that the table is not there (a mistyped schema)."""
    if deployment.store.exists():
        return ""
    schema = deployment.settings.warehouse_schema
    return f" (there is no dw_etl_runs table in {f'schema {schema!r}' if schema else 'this database'})"


def _guard(args: argparse.Namespace, handler: Any) -> int:
    try:
        settings = Settings.from_env()
        missing = _missing_sqlite_file(settings.database_url)
        deployment = None if missing else Deployment.from_env(background=False, settings=settings)
    except (SettingsError, SpecError) as exc:
        print(f"etl-assets: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if deployment is None:
        print(f"etl-assets: there is no warehouse at {settings.database_url}: the file {missing} does not exist "
              "(nothing has run against it yet, or ETL_DATABASE_URL is mistyped)", file=sys.stderr)
        return EXIT_WAREHOUSE
    try:
        return handler(args, deployment)
    except (SettingsError, SpecError) as exc:  # the extracts file, read on first use
        print(f"etl-assets: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except RunNotFoundError as exc:
        print(f"etl-assets: {exc}", file=sys.stderr)
        return EXIT_NOT_FOUND
    except RunConflictError as exc:
        print(f"etl-assets: cannot retry: {exc}", file=sys.stderr)
        return EXIT_CONFLICT
    except LaunchError as exc:
        print(f"etl-assets: {exc}", file=sys.stderr)
        return EXIT_LAUNCH
    except CorruptRunError as exc:
        print(f"etl-assets: {exc}", file=sys.stderr)
        return EXIT_CORRUPT
    except sqlalchemy.exc.DBAPIError as exc:
        # Not answering (OperationalError), or answering that it cannot be used this way: an
        # unknown connection option, a file that is not a SQLite database.
        url = sqlalchemy.engine.make_url(deployment.settings.database_url).render_as_string(hide_password=True)
        reason = str(exc.orig or exc).strip().splitlines()[0][:300] if str(exc.orig or exc).strip() else ""
        what = "does not answer" if isinstance(exc, sqlalchemy.exc.OperationalError) else "cannot be used"
        print(f"etl-assets: the warehouse at {url} {what}: {type(exc.orig or exc).__name__}: {reason}",
              file=sys.stderr)
        return EXIT_WAREHOUSE
    finally:
        deployment.close()


def _runs(args: argparse.Namespace, deployment: Deployment) -> int:
    operations = deployment.operations("cli")
    if args.verb == "list":
        rows = [run_summary(r) for r in operations.list(extract=args.extract, status=args.status, limit=args.limit)]
        if args.json:
            print(json.dumps(rows, indent=2))
            return 0
        print(
            table(
                [
                    [r["run_id"], r["extract"], r["status"], r["records_loaded"],
                     (r["checkpoint"] or {}).get("skip", ""), _when(r["started_at"]), _when(r["updated_at"]),
                     (r["error_message"] or "")[:60]]
                    for r in rows
                ],
                ["RUN", "EXTRACT", "STATUS", "RECORDS", "CHECKPOINT", "STARTED (UTC)", "UPDATED (UTC)", "ERROR"],
            )
            if rows
            else ("no runs match" if (args.extract or args.status) else "no runs yet" + _no_table(deployment))
        )
        return 0
    if args.verb == "show":
        detail = run_detail(operations.get(args.run_id))
        if args.json:
            print(json.dumps(detail, indent=2))
            return 0
        _print_detail(detail)
        return 0
    # retry
    if args.dry_run:
        plan = operations.plan_retry(args.run_id)
        if args.json:
            print(json.dumps({"dry_run": True, "would": plan.to_json()}, indent=2))
        else:
            if plan.action == "resume":
                where = f"resuming from skip={plan.resume_from_skip} ({plan.records_loaded} records kept)"
            elif plan.parameter_differences:
                where = "from the beginning, as a new run: its parameters changed: " + "; ".join(
                    plan.parameter_differences
                )
            else:
                where = "from the beginning (no checkpoint stored)"
            print(f"would run extract {plan.extract!r} for dw_etl_runs run {plan.run_id} {where}")
        return 0
    plan, dagster_run_id = operations.retry(args.run_id, deployment.launcher)
    launcher = deployment.launcher
    if isinstance(launcher, InProcessLauncher):
        result = launcher.results[dagster_run_id]
        row = operations.get(_worked_on(result, args.run_id))
        outcome = "succeeded" if result.success else "failed"
        text = f"Dagster run {dagster_run_id} {outcome}: dw_etl_runs run {row.run_id} is {row.status.value}, " \
               f"{row.records_loaded} records"
        if args.json:
            print(json.dumps({**run_summary(row), "dagster_run_id": dagster_run_id, "success": result.success}, indent=2))
        else:
            print(text)
            if row.error_message:
                print(f"error: {row.error_message}")
        return 0 if result.success else EXIT_FAILED
    if args.json:
        print(json.dumps({"dagster_run_id": dagster_run_id, **plan.to_json()}, indent=2))
    else:
        print(f"launched Dagster run {dagster_run_id}: extract {plan.extract!r} resumes dw_etl_runs run {plan.run_id}")
    return 0


def _worked_on(result: Any, asked: int) -> int:
    """The dw_etl_runs row the run ended on: a new one when the asked one could not resume."""
    for event in result.get_asset_materialization_events():
        value = event.materialization.metadata.get("dw_etl_runs_run_id")
        if value is not None:
            return int(value.value)
    return asked


def _checkpoint(args: argparse.Namespace, deployment: Deployment) -> int:
    row = deployment.operations("cli").get(args.run_id)
    checkpoint = row.run_context.get("checkpoint") or None
    if args.json:
        print(json.dumps({"run_id": row.run_id, "extract": row.job_name, "status": row.status.value,
                          "checkpoint": checkpoint}, indent=2))
    elif checkpoint:
        print(table([[row.run_id, row.job_name, row.status.value, checkpoint["skip"], checkpoint["page_index"],
                      checkpoint["total_records"], _when(checkpoint["last_checkpoint_time"])]],
                    ["RUN", "EXTRACT", "STATUS", "SKIP", "PAGE_INDEX", "TOTAL_RECORDS", "SAVED (UTC)"]))
    else:
        print(f"dw_etl_runs run {row.run_id} ({row.job_name}, {row.status.value}) has no checkpoint")
    return 0 if checkpoint else EXIT_FAILED


def _print_detail(detail: dict[str, Any]) -> None:
    checkpoint = detail["checkpoint"]
    lines = [
        f"run            {detail['run_id']}",
        f"extract        {detail['extract']}",
        f"status         {detail['status']}",
        f"records        {detail['records_loaded']}",
        f"started        {_when(detail['started_at'])} UTC",
        f"updated        {_when(detail['updated_at'])} UTC",
        f"finished       {_when(detail['finished_at'])}{' UTC' if detail['finished_at'] else ''}",
        f"dagster run    {detail['dagster_run_id'] or ''}",
        "checkpoint     " + (
            f"skip={checkpoint['skip']} page_index={checkpoint['page_index']} "
            f"total_records={checkpoint['total_records']} at {_when(checkpoint['last_checkpoint_time'])} UTC"
            if checkpoint else "none"
        ),
    ]
    if detail["error_message"]:
        lines.append(f"error          {detail['error_message']}")
    print("\n".join(lines))
    if detail["attempts"]:
        print("\nattempts:")
        print(table([[a.get("dagster_run_id"), a.get("outcome"), a.get("resumed_from_skip", ""),
                      a.get("records_fetched", ""), _when(a.get("started_at")), (a.get("error") or "")[:60]]
                     for a in detail["attempts"]],
                    ["DAGSTER RUN", "OUTCOME", "FROM SKIP", "FETCHED", "STARTED (UTC)", "ERROR"]))
    resume = detail["resume"]
    if resume:
        state = "given up" if resume.get("exhausted") else "active"
        print(f"\nautomatic relaunches: {resume.get('requested', 0)} requested, "
              f"{resume.get('without_progress', 0)} in a row without progress, {state}")
