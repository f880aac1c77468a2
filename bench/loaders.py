"""The loaders the benchmark compares, each run in a child process of its own.

``python bench/loaders.py NAME --url URL --database-url URL --schema S --limit L`` loads the
bench source's ``/patients`` and prints one JSON line: ``{"rows": n, "seconds": t}``, where
``seconds`` is the load alone (imports and interpreter start-up are left out, for every
loader alike); for the project, ``extract_seconds`` is the time inside the asset, the rest
being Dagster's own work for the run (instance, events, the step). The parent (``bench/run.py``) measures CPU, memory and PostgreSQL's CPU
around the whole process and verifies the row count in the database itself.

- ``project``: this project's extract through Dagster, as a user runs it from Python
  (``JobExecutor().execute_job("patients")``: a real materialization on an ephemeral instance);
  with ``--profile`` its JSON line also says where the run's time went (see :class:`Profile`);
- ``fetch``: the source ceiling, one sequential httpx client that parses pages and drops them;
- ``copy``: the database ceiling, psycopg 3 ``COPY`` of rows fetched beforehand (untimed);
- ``executemany``: the naive loader, httpx plus SQLAlchemy ``executemany``, commit per page.
dlt runs from its own virtual environment: see ``bench/dlt_loader.py``.
"""

import argparse
import gc
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

TABLE = "bench_rows"


def pages(url: str, limit: int, client: httpx.Client) -> Any:
    """Yield the records of each page, sequentially, until a short page or the total."""
    skip = 0
    while True:
        response = client.get(f"{url}/patients", params={"skip": skip, "limit": limit})
        response.raise_for_status()
        body = orjson.loads(response.content)
        items = body["items"]
        yield items
        skip += len(items)
        if not items or skip >= body["total"]:
            return


class Profile:
    """Where a project run's time goes, measured from inside its process without changing it:
    CPU per thread (sampled from ``/proc/self/task``, since the run's threads end with it),
    the garbage collector's pauses (``gc.callbacks``), and the main thread's time inside
    ``StagingLoader.write``: the page's statement in PostgreSQL plus taking the GIL back."""

    def __init__(self) -> None:
        self.threads: dict[int, tuple[str, float]] = {}
        self.gc = {0: [0, 0.0], 1: [0, 0.0], 2: [0, 0.0]}
        self.write = [0, 0.0]
        self._gc_started = 0.0
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)

    def _sample_once(self) -> None:
        names = {thread.native_id: thread.name for thread in threading.enumerate()}
        for tid in os.listdir("/proc/self/task"):
            try:
                fields = Path(f"/proc/self/task/{tid}/stat").read_text()
            except OSError:
                continue  # the thread ended: its last sample stands
            fields = fields[fields.rindex(")") + 2 :].split()
            name = names.get(int(tid)) or self.threads.get(int(tid), ("?", 0.0))[0]
            self.threads[int(tid)] = (name, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"))

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            self._sample_once()

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            entry = self.gc[info["generation"]]
            entry[0] += 1
            entry[1] += time.perf_counter() - self._gc_started

    def start(self) -> None:
        from etl_assets.warehouse import StagingLoader

        write = StagingLoader.write

        def timed_write(loader: Any, *args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return write(loader, *args, **kwargs)
            finally:
                self.write[0] += 1
                self.write[1] += time.perf_counter() - started

        StagingLoader.write = timed_write  # type: ignore[method-assign]
        self._sample_once()
        self._cpu_before = {tid: cpu for tid, (_, cpu) in self.threads.items()}
        gc.callbacks.append(self._on_gc)
        self._sampler.start()

    def result(self) -> dict[str, Any]:
        self._stop.set()
        self._sampler.join()
        self._sample_once()
        gc.callbacks.remove(self._on_gc)
        groups: dict[str, float] = {}
        for tid, (name, cpu) in self.threads.items():
            kind = ("main" if name == "MainThread" else "parse" if name.startswith("etl-parse")
                    else "http" if name.startswith("asyncio-portal") else "other")
            groups[kind] = groups.get(kind, 0.0) + cpu - self._cpu_before.get(tid, 0.0)
        return {
            "thread_cpu": groups,
            "gc": {str(gen): {"collections": n, "seconds": s} for gen, (n, s) in self.gc.items()},
            "write": {"pages": self.write[0], "seconds": self.write[1]},
        }


def load_project(args: argparse.Namespace, clock: dict[str, float]) -> int:
    folder = Path(tempfile.mkdtemp(prefix="etl-bench-"))
    extracts = folder / "extracts.yaml"
    extracts.write_text(
        f"""name: bench
client:
  base_url: {args.url}
  max_in_flight: {args.in_flight}
  paginator: {{type: offset, limit: {args.limit}, offset_param: skip, limit_param: limit, total_path: total}}
  retries: {{max_attempts: 2, backoff_seconds: 0.05, max_backoff_seconds: 0.1}}
resources:
  - name: patients
    primary_key: id
    endpoint: {{path: /patients, data_selector: items}}
"""
    )
    os.environ.update(
        ETL_EXTRACTS_FILE=str(extracts),
        ETL_DATABASE_URL=args.database_url,
        ETL_CHECKPOINT_INTERVAL_SECONDS=str(args.checkpoint_interval),
    )
    if args.schema:
        os.environ["ETL_WAREHOUSE_SCHEMA"] = args.schema
    os.environ.pop("DAGSTER_HOME", None)  # an ephemeral instance: nothing left behind
    from etl_assets.errors import EtlError
    from etl_assets.executor import JobExecutor

    with JobExecutor() as executor:
        profile = Profile() if args.profile else None
        if profile is not None:
            profile.start()
        clock["start"] = time.perf_counter()  # the materialization alone, as for the others
        try:
            result = executor.execute_job("patients", resume_from_checkpoint=args.resume, timeout_seconds=3600)
        except EtlError as exc:
            if not args.allow_failure:
                raise
            print(f"expected failure: {str(exc)[:200]}", file=sys.stderr)
            return 0
    args.inner_seconds = result.seconds
    if profile is not None:
        args.profile_result = dict(profile.result(), pages=result.pages)
    return result.records_fetched


def load_fetch(args: argparse.Namespace) -> int:
    rows = 0
    with httpx.Client(timeout=60) as client:
        for items in pages(args.url, args.limit, client):
            rows += len(items)
    return rows


def _connect(args: argparse.Namespace) -> Any:
    import psycopg

    url = args.database_url.replace("postgresql+psycopg://", "postgresql://")
    conn = psycopg.connect(url, autocommit=False)
    with conn.cursor() as cur:
        cur.execute(f'CREATE SCHEMA IF NOT EXISTS "{args.schema}"')
        cur.execute(f'CREATE TABLE "{args.schema}".{TABLE} (record_key text PRIMARY KEY, record jsonb NOT NULL)')
    conn.commit()
    return conn


def load_copy(args: argparse.Namespace, clock: dict[str, float]) -> int:
    with httpx.Client(timeout=60) as client:
        records = [record for items in pages(args.url, args.limit, client) for record in items]
    conn = _connect(args)
    clock["start"] = time.perf_counter()  # only the COPY is timed: rows already in memory
    with conn.cursor() as cur, cur.copy(f'COPY "{args.schema}".{TABLE} (record_key, record) FROM STDIN') as copy:
        for record in records:
            copy.write_row((str(record["id"]), orjson.dumps(record).decode()))
    conn.commit()
    conn.close()
    return len(records)


def load_executemany(args: argparse.Namespace) -> int:
    import sqlalchemy as sa

    engine = sa.create_engine(args.database_url)
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{args.schema}"'))
        conn.execute(
            sa.text(f'CREATE TABLE "{args.schema}".{TABLE} (record_key text PRIMARY KEY, record jsonb NOT NULL)')
        )
    insert = sa.text(
        f'INSERT INTO "{args.schema}".{TABLE} (record_key, record) VALUES (:key, CAST(:record AS jsonb)) '
        "ON CONFLICT (record_key) DO UPDATE SET record = excluded.record"
    )
    rows = 0
    with httpx.Client(timeout=60) as client:
        for items in pages(args.url, args.limit, client):
            with engine.begin() as conn:
                conn.execute(insert, [{"key": str(r["id"]), "record": orjson.dumps(r).decode()} for r in items])
            rows += len(items)
    engine.dispose()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("loader", choices=["project", "fetch", "copy", "executemany"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--schema", default="")
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("--in-flight", type=int, default=4)
    parser.add_argument("--checkpoint-interval", type=float, default=60)
    parser.add_argument("--resume", action="store_true", help="project: resume the latest interrupted run")
    parser.add_argument("--allow-failure", action="store_true", help="project: a failed run is expected")
    parser.add_argument("--profile", action="store_true", help="project: report where the run's time goes")
    args = parser.parse_args()
    clock = {"start": time.perf_counter()}
    if args.loader in ("copy", "project"):
        rows = {"copy": load_copy, "project": load_project}[args.loader](args, clock)
    else:
        rows = {"fetch": load_fetch, "executemany": load_executemany}[args.loader](args)
    seconds = time.perf_counter() - clock["start"]
    print(json.dumps({"rows": rows, "seconds": seconds, "extract_seconds": getattr(args, "inner_seconds", None),
                      "profile": getattr(args, "profile_result", None)}))


if __name__ == "__main__":
    main()
