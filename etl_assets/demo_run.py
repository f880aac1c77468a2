"""``etl-assets demo``: the whole product in about a minute, on the embedded defaults.

It starts the demo source in its own process, materializes every extract into the SQLite
warehouse through Dagster (on the instance in ``.dagster_home``, so the runs show in the
UI afterwards), stops the patients extract part way on a short timeout, resumes it from its
checkpoint, and prints a summary: rows per table, rows per second, the ``dw_etl_runs`` rows.

The loader reads 40,000 patients in well under a second, so a timeout alone would not stop
the first run on a fast machine. For that run only, the source answers every page after a
delay (``PUT /_control/latency``) chosen so the first pages arrive well within its timeout
and all of them would take longer (see ``_stopping_latency``): it stops part way on any
machine, and the resume runs at full speed. A source of one page cannot stop part way, so
``--patients`` must be more than a page.
"""

import argparse
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import sqlalchemy as sa

from etl_assets.demo.app import MAX_LATENCY_SECONDS

DEFAULT_PORT = 8765
MAX_TIMEOUT = MAX_LATENCY_SECONDS / 2
"""The longest timeout of the interrupted run: the delay that makes one round of pages take
twice the timeout must stay within what the demo source accepts, or the run would finish."""


def _interrupted_timeout(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value <= MAX_TIMEOUT:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most {MAX_TIMEOUT:g} seconds, got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--patients", type=int, default=40_000, help="patients served (x3 encounters, x5 observations)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port of the demo source")
    parser.add_argument(
        "--timeout", type=_interrupted_timeout, default=1.0, metavar="SECONDS",
        help=f"timeout of the interrupted run, more than 0 and at most {MAX_TIMEOUT:g} (default: %(default)s)",
    )
    parser.add_argument("--dagster-home", default=".dagster_home", help="Dagster instance folder (runs show in `make ui`)")


class _Progress(logging.Handler):
    """Prints the extract's own log lines: progress, checkpoints, warnings."""

    def emit(self, record: logging.LogRecord) -> None:
        print(f"  | {record.getMessage()[:220]}", flush=True)


def _port_taken(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _start_source(port: int, patients: int) -> subprocess.Popen:
    # Another server on the port would answer the health check below and the demo would run
    # against it while reporting success: refuse before starting.
    if _port_taken(port):
        raise SystemExit(
            f"port {port} is taken (another demo source, or `make dev`?); stop it or pass --port"
        )
    process = subprocess.Popen(
        [sys.executable, "-m", "etl_assets.cli", "demo-source", "--port", str(port), "--patients", str(patients)],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the demo source exited with {process.returncode} (is port {port} taken?)")
        try:
            httpx.get(f"http://127.0.0.1:{port}/_control/health", timeout=1).raise_for_status()
            return process
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("the demo source did not start within 30 s")


def _rounds(spec, patients: int) -> int:
    """The first page comes alone (it tells the total); the others ``max_in_flight`` at a
    time, so reading every patient takes this many rounds of requests."""
    pages = max(1, math.ceil(patients / spec.paginator.limit))
    return 1 + math.ceil((pages - 1) / spec.max_in_flight)


def _stopping_latency(spec, patients: int, timeout: float) -> float:
    """The per-page delay that stops the run part way, whatever the machine: the first round
    of pages arrives by 0.6 of ``timeout`` (so some are written), and every round together
    takes at least 1.2 times it (twice, with many rounds), so the run cannot finish."""
    return min(MAX_LATENCY_SECONDS, 2 * timeout / _rounds(spec, patients), 0.6 * timeout)


def _set_latency(port: int, seconds: float) -> None:
    httpx.put(f"http://127.0.0.1:{port}/_control/latency", json={"seconds": seconds}, timeout=10).raise_for_status()


def run(args: argparse.Namespace) -> int:
    home = Path(args.dagster_home).resolve()
    home.mkdir(parents=True, exist_ok=True)
    instance_yaml = home / "dagster.yaml"
    if not instance_yaml.exists():
        instance_yaml.write_text("telemetry:\n  enabled: false\n")
    os.environ["DAGSTER_HOME"] = str(home)
    os.environ["ETL_DEMO_SOURCE_URL"] = f"http://127.0.0.1:{args.port}"
    os.environ.setdefault("ETL_CHECKPOINT_INTERVAL_SECONDS", "3")

    import dagster as dg

    from etl_assets.definitions import build_definitions
    from etl_assets.settings import Settings
    from etl_assets.sources.spec import load_extracts

    settings = Settings.from_env()
    spec = next(spec for spec in load_extracts(settings.extracts_file) if spec.name == "patients")
    if _rounds(spec, args.patients) < 2:
        print(f"etl-assets demo: --patients must be at least {spec.paginator.limit + 1:,}: with "
              f"{args.patients:,}, the source is one page of {spec.paginator.limit:,}, so no timeout can stop "
              "the run part way", file=sys.stderr)
        return 2
    print(f"demo source: http://127.0.0.1:{args.port} with {args.patients:,} patients, "
          f"{args.patients * 3:,} encounters, {args.patients * 5:,} observations")
    print(f"warehouse:   {sa.make_url(settings.database_url).render_as_string(hide_password=True)}")
    print(f"dagster:     {home}")
    source = _start_source(args.port, args.patients)
    handler = _Progress()
    logging.getLogger("etl_assets").addHandler(handler)
    logging.getLogger("etl_assets").setLevel(logging.INFO)
    try:
        defs = build_definitions(settings)
        job = defs.resolve_job_def("all_extracts")
        instance = dg.DagsterInstance.get()
        quiet = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}

        def materialize(name: str, **config: object) -> dg.ExecuteInProcessResult:
            run_config = {**quiet, "ops": {name: {"config": config}}}
            return job.execute_in_process(
                instance=instance, run_config=run_config, op_selection=None, asset_selection=[dg.AssetKey(name)],
                raise_on_error=False,
            )

        timeout = args.timeout
        latency = _stopping_latency(spec, args.patients, timeout)
        print(f"\n1. patients, with a {timeout:g} s timeout; the source answers each page after {latency:.2g} s "
              "so the run cannot finish in time")
        _set_latency(args.port, latency)
        try:
            first = materialize("patients", timeout_seconds=timeout, resume_from_checkpoint=False)
        finally:
            _set_latency(args.port, 0.0)
        failure = next(e for e in first.all_events if e.is_step_failure) if not first.success else None
        if failure is not None:
            error = failure.step_failure_data.error.cause or failure.step_failure_data.error
            message = error.message.split(f"{error.cls_name}: ", 1)[-1].split(". To resume")[0]
            print(f"  stopped: {error.cls_name}: {message}")
        print("\n2. patients again: resumes from the checkpoint")
        results = [materialize("patients")]
        for step, name in ((3, "encounters"), (4, "observations")):
            print(f"\n{step}. {name}")
            results.append(materialize(name, resume_from_checkpoint=False))
        ok = all(r.success for r in results)
        _summary(settings, results)
        print("\nOpen the same runs in the Dagster UI: make ui  (then http://127.0.0.1:3000)")
        return 0 if ok else 1
    finally:
        logging.getLogger("etl_assets").removeHandler(handler)
        source.send_signal(signal.SIGTERM)
        try:
            source.wait(timeout=10)
        except subprocess.TimeoutExpired:
            source.kill()


def _summary(settings, results) -> None:
    from etl_assets.checkpoints import CheckpointStore
    from etl_assets.warehouse.engine import create_warehouse_engine

    print("\nMaterializations")
    print(f"  {'asset':<14}{'fetched':>10}{'inserted':>10}{'updated':>9}{'unchanged':>11}{'resumed at':>12}{'rows/s':>10}")
    for result in results:
        for event in result.get_asset_materialization_events():
            meta = {k: v.value for k, v in event.materialization.metadata.items()}
            resumed = meta["resumed_from_skip"]
            print(f"  {event.asset_key.to_user_string():<14}{meta['records_fetched']:>10,}{meta['inserted']:>10,}"
                  f"{meta['updated']:>9,}{meta['unchanged']:>11,}{'-' if resumed is None else f'{resumed:,}':>12}"
                  f"{meta['rows_per_second']:>10,.0f}")
    engine = create_warehouse_engine(settings.database_url)
    store = CheckpointStore(engine, settings.warehouse_schema)
    print("\nWarehouse tables")
    with engine.connect() as conn:
        for name in ("patients", "encounters", "observations"):
            table = f'"{settings.warehouse_schema}"."stg_{name}"' if settings.warehouse_schema else f'"stg_{name}"'
            count = conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()
            print(f"  stg_{name:<14}{count:>10,} rows")
    print("\ndw_etl_runs (latest 8)")
    print(f"  {'run_id':>6}  {'job_name':<13}{'status':<9}{'records':>10}  {'attempts':>8}  checkpoint")
    for record in store.list_runs(limit=8):
        checkpoint = record.checkpoint
        shown = f"skip={checkpoint.skip}" if checkpoint else "-"
        print(f"  {record.run_id:>6}  {record.job_name:<13}{record.status.value:<9}{record.records_loaded:>10,}"
              f"  {len(record.run_context.get('attempts', [])):>8}  {shown}")
    engine.dispose()
