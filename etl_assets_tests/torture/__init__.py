"""Fault injection over whole runs: nothing lost, nothing doubled, nothing stuck.

For each seed, an extract of a few thousand patient records runs against the demo source (in
offset, cursor or FHIR-bundle next-link paging, drawn per seed) into a throwaway PostgreSQL
cluster (:mod:`etl_assets_tests.pgcluster`) while faults are injected, one per attempt, drawn
from:

- ``sigkill``: SIGKILL of the run's process once it has asked for a random number of pages;
- ``timeout``: a time budget of a random fraction of a second, so the run stops mid-way;
- ``http_burst``: bursts of 429 (``Retry-After: 0``), 500, 502, 503 or 504 at random pages,
  some longer than the run's retries;
- ``hang``: requests the source never answers (the client's request timeout ends them);
- ``drop``: connections closed before any response;
- ``pg_terminate``: every backend of the run killed with ``pg_terminate_backend`` mid-run;
- ``pg_restart``: PostgreSQL restarted cleanly mid-run (``pg_ctl restart -m fast``);
- ``pg_crash``: PostgreSQL crashed and recovered mid-run (``-m immediate``), which rolls back
  page commits made with ``synchronous_commit`` off that were not flushed yet.

Before the torture run, a clean run stores an older version of some of the records, so the
run must also update what changed and leave the rest untouched. After each fault the run is
resumed as the resume sensor would (its own :func:`etl_assets.resume.plan` decides), until it
succeeds. Checked while it runs and after each attempt (from a consistent snapshot):

- the checkpoint never points past stored data (every record before ``skip`` is stored with
  its latest content);
- ``page_index`` never goes down, and a stored checkpoint is never dropped for a fresh start;
- no run is left stuck: once its lease is over, a row with a checkpoint is relaunched;

and after the seed: every source record is stored exactly once with its latest content,
records that did not change still carry the earlier run's id, ``records_loaded`` equals the
number of source records, and the run ended ``success`` with its checkpoint cleared.

Each attempt runs in a process of its own (forked from a preloaded server process, so it
starts in milliseconds and can be killed outright). ``make torture`` runs the full suite;
``etl_assets_tests/test_torture.py`` runs a short version in the normal test suite.

    python -m etl_assets_tests.torture --seeds 40
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import random
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from etl_assets.checkpoints import CheckpointStore, RunRecord, RunStatus
from etl_assets.demo import DemoSource, Fault, ListCollection, ServerThread
from etl_assets.demo.records import patient
from etl_assets.resume import NO_RUNS, Action, ResumePolicy, holder, plan
from etl_assets.sources.spec import ExtractSpec, PaginatorSpec, RetrySpec
from etl_assets.warehouse import prepare_page
from etl_assets.warehouse.engine import create_warehouse_engine
from etl_assets_tests.pgcluster import ThrowawayCluster
from etl_assets_tests.support import items_spec

STYLES = ("offset", "offset", "cursor", "json_link")
"""Paging styles a seed draws from (the demo source serves the same records in each)."""
FAULT_KINDS = ("sigkill", "timeout", "http_burst", "hang", "drop", "pg_terminate", "pg_restart", "pg_crash")
LEASE_SECONDS = 1.5
HARNESS = "etl-torture-harness"
ATTEMPT_DEADLINE = 90.0
"""An attempt still alive after this long is a stuck run (a violation), and is killed."""
CLEAN_ATTEMPTS = 8
"""Attempts without an injected fault allowed after the faulty ones before a seed counts as stuck."""


# -- the child process --------------------------------------------------------------------


def _attempt(spec: ExtractSpec, url: str, schema: str, timeout: float, interval: float,
             resume_run_id: int | None, result_path: str, log_path: str) -> None:
    """One attempt at the run, in its own process: the outcome goes to ``result_path``."""
    from etl_assets.errors import ExtractError, JobTimeoutError
    from etl_assets.extract import ExtractOptions, run_extract

    handler = logging.FileHandler(log_path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log = logging.getLogger("etl_assets.torture.attempt")
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False
    store = CheckpointStore(create_warehouse_engine(url), schema)
    options = ExtractOptions(
        timeout_seconds=timeout, checkpoint_interval_seconds=interval, resume_run_id=resume_run_id
    )
    try:
        result = run_extract(
            spec, store, options, environ={"ETL_RUN_LEASE_SECONDS": str(LEASE_SECONDS)}, log=log
        )
        outcome: dict[str, Any] = {"outcome": "success", "records_loaded": result.records_loaded}
    except JobTimeoutError:
        outcome = {"outcome": "timeout"}
    except ExtractError as exc:
        outcome = {"outcome": "failed", "error": f"{type(exc).__name__}: {exc}"}
    except Exception as exc:  # the engine's contract is ExtractError; anything else is a finding
        outcome = {"outcome": "crashed", "error": f"{type(exc).__name__}: {exc}"}
    Path(result_path).write_text(json.dumps(outcome))


# -- the data ----------------------------------------------------------------------------


def _record(i: int, version: int) -> dict[str, Any]:
    record = patient(i)
    record["meta"] = {**record["meta"], "versionId": str(version)}
    return record


@dataclass
class Dataset:
    """The records as the source serves them now, and the older version stored before."""

    current: list[dict[str, Any]]
    earlier: list[dict[str, Any]]
    changed: set[str]
    unchanged: set[str]

    @classmethod
    def draw(cls, rng: random.Random, count: int) -> Dataset:
        earlier_ids = sorted(rng.sample(range(1, count + 1), int(count * 0.4)))
        changed = {i for i in earlier_ids if rng.random() < 0.5}
        unchanged = set(earlier_ids) - changed
        earlier = [_record(i, 1) for i in earlier_ids]
        current = [_record(i, 1 if i in unchanged else 2) for i in range(1, count + 1)]
        key = lambda i: current[i - 1]["id"]  # noqa: E731
        return cls(
            current=current,
            earlier=earlier,
            changed={key(i) for i in changed},
            unchanged={key(i) for i in unchanged},
        )

    def hashes(self) -> list[tuple[str, str]]:
        """``(key, hash)`` of every current record in source order, hashed as the loader does."""
        page = prepare_page(self.current, extract="items", primary_key=("id",), skip=0)
        return [(key, digest) for key, (_data, digest) in page.rows.items()]


def styled(spec: ExtractSpec, style: str) -> ExtractSpec:
    """The offset spec of a seed, turned into the demo source's cursor or FHIR-bundle style."""
    limit = spec.paginator.limit
    if style == "cursor":
        return replace(spec, path="/cursor/items", paginator=PaginatorSpec(
            type="cursor", limit=limit, limit_param="limit", cursor_path="next_cursor", cursor_param="cursor"))
    if style == "json_link":
        return replace(spec, path="/fhir/items", data_selector="entry[*].resource", paginator=PaginatorSpec(
            type="json_link", limit=limit, limit_param="_count", next_url_path="link[relation=next].url",
            total_path="total"))
    return spec


# -- one seed ----------------------------------------------------------------------------


@dataclass
class SeedReport:
    seed: int
    records: int = 0
    attempts: int = 0
    resumes: int = 0
    drawn: Counter[str] = field(default_factory=Counter)
    """Fault kinds dealt to attempts; ``faults`` counts those that took effect."""
    faults: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    style: str = "offset"

    def violate(self, message: str) -> None:
        """Record a violation once (the watcher sees a lasting one at every sample)."""
        if message not in self.violations:
            self.violations.append(message)


@dataclass
class Sample:
    run_id: int
    status: RunStatus
    skip: int | None
    page_index: int | None
    records_loaded: int


class Torture:
    """Runs seeds against one source server and one throwaway cluster."""

    def __init__(self, cluster: ThrowawayCluster, source: DemoSource, server_url: str, workdir: Path,
                 records: int, deck_seed: int, kinds: tuple[str, ...] = FAULT_KINDS) -> None:
        self.cluster = cluster
        self.source = source
        self.server_url = server_url
        self.workdir = workdir
        self.records = records
        self.kinds = kinds
        self.deck: list[str] = []
        self.stores: dict[str, CheckpointStore] = {}
        self.deck_rng = random.Random(deck_seed)
        self.context = multiprocessing.get_context("forkserver")
        self.context.set_forkserver_preload(["etl_assets.extract", "etl_assets_tests.torture"])
        self.engine = sa.create_engine(
            cluster.url + f"?application_name={HARNESS}", pool_pre_ping=True, isolation_level="AUTOCOMMIT"
        )

    def store(self, schema: str) -> CheckpointStore:
        """The seed's store on the harness's engine, built once (snapshots run ten times a second)."""
        if schema not in self.stores:
            self.stores[schema] = CheckpointStore(self.engine, schema)
        return self.stores[schema]

    def draw_fault(self) -> str:
        """Faults come from a shuffled deck of every kind, so a short run still sees each one."""
        if not self.deck:
            self.deck = list(self.kinds)
            self.deck_rng.shuffle(self.deck)
        return self.deck.pop()

    # -- database access, robust to the faults the harness itself injects

    @contextmanager
    def snapshot(self) -> Iterator[sa.Connection]:
        with self.engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn:
            with conn.begin():
                yield conn

    def flush_wal(self) -> None:
        """Make everything committed so far durable, so what the harness sees cannot be rolled
        back by a later crash (page commits are asynchronous)."""
        with self.engine.connect() as conn:  # AUTOCOMMIT: each statement commits on its own
            conn.exec_driver_sql("SET synchronous_commit = on")
            conn.exec_driver_sql("SELECT txid_current()")

    def retrying(self, action: Any, what: str) -> Any:
        deadline = time.monotonic() + 60
        while True:
            try:
                return action()
            except sa.exc.OperationalError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the throwaway cluster did not come back for {what}") from None
                time.sleep(0.1)

    # -- the seed

    def run_seed(self, seed: int) -> SeedReport:
        rng = random.Random(seed)
        report = SeedReport(seed=seed, records=self.records)
        data = Dataset.draw(rng, self.records)
        expected_hashes = data.hashes()
        schema = f"torture_{seed}"
        with self.engine.connect() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        store = self.store(schema)
        spec = replace(
            items_spec(
                self.server_url,
                limit=rng.choice([25, 50, 100]),
                retries=RetrySpec(max_attempts=3, backoff_seconds=0.01, max_backoff_seconds=0.05),
            ),
            request_timeout_seconds=0.4,
            max_in_flight=rng.choice([1, 4]),
        )
        report.style = rng.choice(STYLES)
        spec = styled(spec, report.style)
        interval = rng.choice([0.0, 0.0, 0.2])
        # With latency the run spends most of its time waiting on the source, so a database
        # fault often lands between two pages rather than inside a commit.
        self.source.latency_seconds = rng.choice([0.0, 0.0, 0.01, 0.03])
        collection = ListCollection(data.earlier)
        self.source.collections["items"] = collection
        preload = self._attempt(spec, schema, 120, 0, None, f"{seed}-preload")
        if preload.get("outcome") != "success":
            report.violate(f"the clean preload run did not succeed: {preload}")
            return report
        (preload_row,) = store.list_runs("items")
        collection.replace(data.current)

        faulty = rng.randint(2, 4)
        previous: Sample | None = None
        resume_run_id: int | None = None
        for attempt in range(1, faulty + CLEAN_ATTEMPTS + 1):
            kind = self.draw_fault() if attempt <= faulty else None
            if kind is not None:
                report.drawn[kind] += 1
            report.attempts += 1
            if resume_run_id is not None:
                report.resumes += 1
            outcome = self._faulty_attempt(rng, seed, attempt, kind, spec, schema, interval, resume_run_id,
                                           expected_hashes, report)
            report.outcomes[outcome.get("outcome", "killed")] += 1
            if outcome.get("outcome") == "crashed":
                report.violate(f"attempt {attempt}: the engine raised a non-ExtractError: {outcome['error']}")
            self.retrying(self.flush_wal, "a WAL flush")
            sample = self.retrying(lambda: self._check_snapshot(schema, expected_hashes, report, attempt),
                                   "a snapshot")
            if sample is None:
                report.violate(f"attempt {attempt}: no dw_etl_runs row after the attempt")
                break
            self._check_progress(previous, sample, report, attempt)
            previous = sample
            if sample.status is RunStatus.SUCCESS:
                break
            resume_run_id = self._as_the_sensor(store, sample, report, attempt)
        else:
            report.violate(
                f"stuck: no success after {report.attempts} attempts ({faulty} with faults); last: {previous}"
            )
            return report
        self._check_final(store, schema, data, preload_row, report)
        return report

    def _attempt(self, spec: ExtractSpec, schema: str, timeout: float, interval: float,
                 resume_run_id: int | None, name: str) -> dict[str, Any]:
        process, result_path = self._start(spec, schema, timeout, interval, resume_run_id, name)
        process.join(ATTEMPT_DEADLINE)
        return self._outcome(process, result_path)

    def _start(self, spec: ExtractSpec, schema: str, timeout: float, interval: float,
               resume_run_id: int | None, name: str) -> tuple[Any, Path]:
        result_path = self.workdir / f"{name}.json"
        result_path.unlink(missing_ok=True)
        process = self.context.Process(
            target=_attempt,
            args=(spec, self.cluster.url, schema, timeout, interval, resume_run_id, str(result_path),
                  str(self.workdir / f"{name}.log")),
        )
        process.start()
        return process, result_path

    @staticmethod
    def _outcome(process: Any, result_path: Path) -> dict[str, Any]:
        if process.is_alive():
            process.kill()
            process.join()
            return {"outcome": "hung"}
        if result_path.exists():
            return json.loads(result_path.read_text())
        return {"outcome": "killed", "exitcode": process.exitcode}

    def _faulty_attempt(self, rng: random.Random, seed: int, attempt: int, kind: str | None, spec: ExtractSpec,
                        schema: str, interval: float, resume_run_id: int | None,
                        expected_hashes: list[tuple[str, str]], report: SeedReport) -> dict[str, Any]:
        source = self.source
        source.clear_faults()
        source.clear_requests()
        pages = -(-self.records // spec.paginator.limit)
        start_page = 0 if resume_run_id is None else self._checkpoint_page(schema, resume_run_id)
        remaining = max(1, pages - start_page)
        timeout = 120.0
        trigger: int | None = None  # fire after this many requests of the attempt
        if kind == "timeout":
            timeout = rng.uniform(0.05, 0.6)
        elif kind in ("http_burst", "hang", "drop"):
            for _ in range(rng.randint(1, 3)):
                skip = spec.paginator.limit * rng.randint(start_page, pages - 1)
                if kind == "http_burst":
                    status = rng.choice([429, 500, 502, 503, 504])
                    fault = Fault(path=spec.path, skip=skip, status=status, times=rng.randint(1, 5),
                                  retry_after="0" if status == 429 else None)
                else:
                    fault = Fault(path=spec.path, skip=skip, action=kind, times=rng.randint(1, 3))
                source.add_fault(fault)
        elif kind is not None:
            trigger = rng.randint(1, remaining)

        process, result_path = self._start(spec, schema, timeout, interval, resume_run_id, f"{seed}-{attempt}")
        fired: threading.Thread | None = None
        began = time.monotonic()
        last_sample = 0.0
        while process.is_alive() and time.monotonic() - began < ATTEMPT_DEADLINE:
            if trigger is not None and fired is None and len(source.requests(spec.path)) >= trigger:
                fired = self._fire(kind, process, report)
            if time.monotonic() - last_sample > 0.1 and kind not in ("pg_restart", "pg_crash"):
                last_sample = time.monotonic()
                try:
                    self._check_snapshot(schema, expected_hashes, report, attempt)
                except sa.exc.OperationalError:
                    pass  # the fault may have ended the harness's connection too
            time.sleep(0.005)
        if fired is not None:
            fired.join()
        outcome = self._outcome(process, result_path)
        if outcome["outcome"] == "hung":
            report.violate(f"attempt {attempt} ({kind}): still running after {ATTEMPT_DEADLINE:.0f} s")
        if kind == "timeout" and outcome["outcome"] == "timeout":
            report.faults[kind] += 1
        for request in source.requests(spec.path):
            if request.action in ("status", "hang", "drop"):
                report.faults[{"status": "http_burst"}.get(request.action, request.action)] += 1
        return outcome

    def _fire(self, kind: str | None, process: Any, report: SeedReport) -> threading.Thread:
        def act() -> None:
            if kind == "sigkill":
                if process.is_alive():
                    os.kill(process.pid, signal.SIGKILL)
                    report.faults[kind] += 1
            elif kind == "pg_terminate":
                with self.engine.connect() as conn:
                    killed = conn.exec_driver_sql(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                        "AND application_name <> %(harness)s",
                        {"harness": HARNESS},
                    ).scalar_one()
                if killed:
                    report.faults[kind] += 1
            elif kind in ("pg_restart", "pg_crash"):
                self.cluster.restart("fast" if kind == "pg_restart" else "immediate")
                report.faults[kind] += 1

        thread = threading.Thread(target=act, name=f"torture-{kind}")
        thread.start()
        return thread

    def _checkpoint_page(self, schema: str, run_id: int) -> int:
        store = self.store(schema)
        row = self.retrying(lambda: store.get(run_id), "the checkpoint")
        return row.checkpoint.page_index if row and row.checkpoint else 0

    # -- invariants

    def _check_snapshot(self, schema: str, expected: list[tuple[str, str]], report: SeedReport,
                        attempt: int) -> Sample | None:
        """In one snapshot: the newest run row, and every record before its checkpoint stored
        with its latest content."""
        with self.snapshot() as conn:
            store = self.store(schema)
            rows = [r for r in self._rows(conn, store)]
            if not rows:
                return None
            row = rows[0]
            stored = dict(conn.execute(sa.text(f'SELECT record_key, record_hash FROM "{schema}"."stg_items"')).all())
        checkpoint = row.checkpoint
        sample = Sample(row.run_id, row.status, checkpoint.skip if checkpoint else None,
                        checkpoint.page_index if checkpoint else None, row.records_loaded)
        if checkpoint is not None:
            missing = [key for key, digest in expected[: checkpoint.skip] if stored.get(key) != digest]
            if missing:
                report.violate(
                    f"attempt {attempt}: run {row.run_id}'s checkpoint skip={checkpoint.skip} points past stored "
                    f"data: {len(missing)} records before it are missing or stale (first {missing[0]})"
                )
        return sample

    @staticmethod
    def _rows(conn: sa.Connection, store: CheckpointStore) -> list[RunRecord]:
        table = store.table
        result = conn.execute(sa.select(table).where(table.c.job_name == "items").order_by(table.c.run_id.desc()))
        return [store._record(r) for r in result]

    def _check_progress(self, previous: Sample | None, sample: Sample, report: SeedReport, attempt: int) -> None:
        if previous is None or previous.page_index is None:
            return
        if sample.run_id != previous.run_id:
            report.violate(
                f"attempt {attempt}: run {previous.run_id} had a checkpoint (page_index={previous.page_index}) "
                f"but run {sample.run_id} started over"
            )
        elif sample.status is not RunStatus.SUCCESS and (sample.page_index or 0) < previous.page_index:
            report.violate(
                f"attempt {attempt}: page_index went down from {previous.page_index} to {sample.page_index}"
            )

    def _as_the_sensor(self, store: CheckpointStore, sample: Sample, report: SeedReport, attempt: int) -> int | None:
        """Wait out the lease as the sensor would, then ask it: relaunch from the checkpoint,
        or (no checkpoint yet) leave it to the next scheduled run, which starts over."""
        policy = ResumePolicy(max_attempts=1000, backoff_seconds=0, lease_seconds=LEASE_SECONDS)
        deadline = time.monotonic() + LEASE_SECONDS + 30
        while True:
            row = self.retrying(lambda: store.get(sample.run_id), "the run row")
            now = datetime.now(timezone.utc)
            if holder(row, NO_RUNS, LEASE_SECONDS, now) is None:
                break
            if time.monotonic() > deadline:
                report.violate(f"attempt {attempt}: run {row.run_id} still held after its lease")
                return None
            time.sleep(0.1)
        decision = plan(row, NO_RUNS, policy, now)
        if row.checkpoint is None:
            if decision.action is not Action.SKIP:
                report.violate(f"attempt {attempt}: the sensor would {decision.action} a row without a checkpoint")
            return None
        if decision.action is not Action.LAUNCH:
            report.violate(
                f"attempt {attempt}: run {row.run_id} has a checkpoint but the sensor would not relaunch it "
                f"({decision.action}: {decision.reason})"
            )
            return None
        return row.run_id

    def _check_final(self, store: CheckpointStore, schema: str, data: Dataset, preload: RunRecord,
                     report: SeedReport) -> None:
        with self.snapshot() as conn:
            stored = conn.execute(
                sa.text(f'SELECT record_key, record, etl_run_id FROM "{schema}"."stg_items"')
            ).all()
            rows = self._rows(conn, store)
        final = rows[0]
        count = len(data.current)
        if not (final.status is RunStatus.SUCCESS and final.checkpoint is None and final.records_loaded == count):
            report.violate(
                f"final run {final.run_id}: status={final.status}, checkpoint={final.checkpoint}, "
                f"records_loaded={final.records_loaded} (want success, none, {count})"
            )
        for row in rows[1:]:
            if row.run_id != preload.run_id and row.status is not RunStatus.FAILED:
                report.violate(f"run {row.run_id} was left {row.status}")
        if len(stored) != count:
            report.violate(f"{len(stored)} rows stored for {count} source records")
        by_key = {key: (record, run_id) for key, record, run_id in stored}
        torture_runs = {r.run_id for r in rows if r.run_id != preload.run_id}
        wrong = stale = touched = 0
        for record in data.current:
            key = record["id"]
            got = by_key.get(key)
            if got is None or got[0] != record:
                wrong += 1
            elif key in data.unchanged and got[1] != preload.run_id:
                touched += 1
            elif key not in data.unchanged and got[1] not in torture_runs:
                stale += 1
        for problem, n in (("missing or not their latest content", wrong),
                           ("unchanged but rewritten by the torture run", touched),
                           ("changed or new but not written by the torture run", stale)):
            if n:
                report.violate(f"{n} records {problem}")


# -- the report --------------------------------------------------------------------------


def table(reports: list[SeedReport], seconds: float | None = None) -> str:
    faults: Counter[str] = Counter()
    for report in reports:
        faults.update(report.faults)
    violations = sum(len(r.violations) for r in reports)
    lines = [
        "| seeds | " + " | ".join(FAULT_KINDS) + " | faults | attempts | resumes | records checked | violations |",
        "|---|" + "---|" * (len(FAULT_KINDS) + 5),
        f"| {len(reports)} | " + " | ".join(str(faults[k]) for k in FAULT_KINDS)
        + f" | {sum(faults.values())} | {sum(r.attempts for r in reports)} | {sum(r.resumes for r in reports)}"
        f" | {sum(r.records for r in reports)} | {violations} |",
    ]
    styles = Counter(r.style for r in reports)
    lines.append("\nPaging styles: " + ", ".join(f"{style} {styles[style]}" for style in dict.fromkeys(STYLES)) + ".")
    took = "" if seconds is None else f"{seconds:.0f} s. "
    lines.append(f"{took}Faults count only those that took effect (a kill or restart that came "
                 "after the run had ended, or an HTTP fault at a page it never asked for, is not counted).")
    for report in reports:
        for violation in report.violations:
            lines.append(f"seed {report.seed}: VIOLATION {violation}")
    return "\n".join(lines)


def run(seeds: list[int], records: int, workdir: Path | None = None, echo: Any = None,
        kinds: tuple[str, ...] = FAULT_KINDS) -> list[SeedReport]:
    workdir = workdir or Path(tempfile.mkdtemp(prefix="etl-torture-"))
    workdir.mkdir(parents=True, exist_ok=True)
    reports: list[SeedReport] = []
    with ThrowawayCluster() as cluster, ServerThread(DemoSource(collections={})) as server:
        torture = Torture(cluster, server.source, server.url, workdir, records, deck_seed=seeds[0] if seeds else 0,
                          kinds=kinds)
        try:
            for seed in seeds:
                began = time.monotonic()
                report = torture.run_seed(seed)
                reports.append(report)
                if echo:
                    echo(f"seed {seed} ({report.style}): {report.attempts} attempts, faults {dict(report.faults)}, "
                         f"outcomes {dict(report.outcomes)}, {len(report.violations)} violations, "
                         f"{time.monotonic() - began:.1f} s")
        finally:
            torture.engine.dispose()
    return reports
