"""One run of one extract: fetch pages, write them, checkpoint, stop on time.

This is the engine behind every entry point (the Dagster asset, the Python API, the
CLI); it knows nothing of Dagster. The flow of a run:

1. find this extract's latest resumable ``dw_etl_runs`` row; resume it when its
   parameters match, otherwise start a new row (and say which parameters differ);
2. fetch pages ahead (up to ``client.max_in_flight`` requests at once while the source's
   total says they exist) and parse them on a worker thread, while the main thread writes
   the pages strictly in order, so the checkpoint is always a contiguous prefix;
3. write each page in its own transaction, and every ``checkpoint_interval_seconds``
   put the checkpoint in that same transaction, so it never points past stored data;
4. on the deadline, save the checkpoint, leave the row ``running`` and raise
   :class:`JobTimeoutError`; on any other failure save it and mark the row ``failed``;
   on success clear it and mark the row ``success``.
"""

import gc
import hashlib
import logging
import os
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, NoReturn

import httpx
import sqlalchemy.exc
from sqlalchemy.engine import Connection

from etl_assets.checkpoints import Checkpoint, CheckpointStore, RunRecord, RunStatus
from etl_assets.checkpoints.models import utcnow
from etl_assets.errors import (
    CorruptRunError,
    ExtractAlreadyRunningError,
    ExtractError,
    JobTimeoutError,
    MalformedPageError,
    WarehouseError,
)
from etl_assets import jsoncodec
from etl_assets.resume import NO_RUNS
from etl_assets.resume import holder as resume_holder
from etl_assets.settings import Settings
from etl_assets.sources import incremental, templates
from etl_assets.sources.client import Page, SourceClient
from etl_assets.sources.deadline import Deadline, DeadlineExceeded
from etl_assets.sources.partitions import PartitionWindow, partition_key
from etl_assets.sources.paginators import LoopGuard, PageRequest, Paginator, PointerError, Position, build_paginator
from etl_assets.sources.secrets import Redactor, strip_userinfo
from etl_assets.sources.selectors import MISSING, parse_selector, select
from etl_assets.sources.spec import ExtractSpec, PaginatorSpec
from etl_assets.warehouse import PreparedPage, StagingLoader, prepare_page

MAX_ATTEMPTS_KEPT = 50
CREDENTIAL_NAME = re.compile(r"key|token|secret|passw|signature|sig$|auth|session|credential", re.IGNORECASE)
"""Parameters whose names say they carry a credential: a rotated credential is the same run, so
their values stay out of the parameters' digest (which also keeps a guessable hash of them out of
``run_context``)."""
MAX_WARNINGS_KEPT = 20


class RunLog:
    """Sends each message to a run's own log (Dagster's ``context.log``) and to the
    ``etl_assets`` Python logger, so a script or the demo can follow a run without
    reading Dagster's event log."""

    def __init__(self, primary: Any, python_logger: logging.Logger | None = None) -> None:
        self.primary = primary
        self.python = python_logger or logging.getLogger("etl_assets")

    def _emit(self, level: int, message: str) -> None:
        getattr(self.primary, logging.getLevelName(level).lower())(message)
        if self.python.isEnabledFor(level) and self.python.handlers:
            self.python.log(level, message)

    def debug(self, message: str) -> None:
        self._emit(logging.DEBUG, message)

    def info(self, message: str) -> None:
        self._emit(logging.INFO, message)

    def warning(self, message: str) -> None:
        self._emit(logging.WARNING, message)

    def error(self, message: str) -> None:
        self._emit(logging.ERROR, message)


@dataclass(frozen=True)
class ExtractOptions:
    """How one run behaves; the Dagster run config maps onto this."""

    timeout_seconds: float
    checkpoint_interval_seconds: float = 60.0
    checkpoint_log_seconds: float = 10.0
    """At most one ``checkpoint_saved`` line per this many seconds (0: one per checkpoint). Under
    Dagster every line is an event written to the instance: with checkpoints on every page, a
    line per page cost about 2 ms of CPU each. The checkpoint a run stops with is always logged."""
    resume_from_checkpoint: bool = True
    dagster_run_id: str | None = None
    resume_run_id: int | None = None
    partition: PartitionWindow | None = None
    """The time window of a partitioned extract's run (the Dagster partition)."""


@dataclass(frozen=True)
class _ParsedPage:
    """A fetched page, parsed and prepared off the main thread."""

    count: int
    total: int | None
    prepared: PreparedPage
    warnings: list[str]
    pointer: str | None = None
    """The next page's URL or cursor, for link and cursor paging."""
    high_water: Any = None
    """The page's largest incremental cursor value."""


@dataclass(frozen=True)
class _InFlight:
    """A page requested (perhaps ahead): its position, the HTTP request and the parsing after it."""

    skip: int
    fetch: "Future[Page]"
    parsed: "Future[_ParsedPage]"

    def cancel(self) -> None:
        self.fetch.cancel()
        self.parsed.cancel()


@dataclass
class ExtractHooks:
    """Seams for tests that inject database faults at exact points of a run.

    ``before_commit(conn, skip, with_checkpoint)`` runs inside a page's transaction after
    its rows are written (and after its checkpoint, when one is due), just before commit.
    """

    before_commit: Callable[[Connection, int, bool], None] | None = None


@dataclass
class ExtractResult:
    """What one successful run did; the Dagster materialization metadata comes from here."""

    extract: str
    run_id: int
    records_fetched: int = 0
    records_loaded: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    duplicates: int = 0
    pages: int = 0
    requests: int = 0
    resumed_from_skip: int | None = None
    seconds: float = 0.0
    source_total: int | None = None
    warnings: list[str] = field(default_factory=list)
    watermark: Any = None
    """An incremental extract's watermark for its next run (the largest cursor value read)."""
    drift: dict[str, Any] | None = None
    """How the source's total moved during an offset run, and what the re-read found."""

    @property
    def rows_per_second(self) -> float:
        return self.records_fetched / self.seconds if self.seconds > 0 else 0.0


def extract_parameters(
    spec: ExtractSpec,
    base_url: str,
    redact: Redactor,
    resolved_params: Mapping[str, Any] | None = None,
    watermark: Any = None,
) -> dict[str, Any]:
    """What defines a logical run: a resume is only allowed when these are equal.

    The page size is left out on purpose: a resume continues at ``skip`` (a count of
    records), which means the same under any page size. Parameter values are kept as
    written in the spec, so a ``${TOKEN}`` reference is stored, never the token; what such
    references resolve to is kept as a digest, so a filter changed through its environment
    variable (``updated_since: ${SINCE}``) is still a different run (field case C12b).
    """
    parameters: dict[str, Any] = {
        "extract": spec.name,
        "base_url": redact(strip_userinfo(base_url)),
        "path": spec.path,
        "params": dict(spec.params),
        "data_selector": spec.data_selector,
        "primary_key": list(spec.primary_key),
        "paginator": _paginator_parameters(spec.paginator),
    }
    if spec.incremental is not None:
        # The window a run reads is part of what it is: a resume continues the same window.
        parameters["incremental"] = {
            "cursor_path": spec.incremental.cursor_path,
            "param": spec.incremental.param,
            "start_value": watermark,
        }
    templated = {
        name: (resolved_params or {}).get(name)
        for name, value in spec.params.items()
        if isinstance(value, str) and templates.references(value) and not CREDENTIAL_NAME.search(name)
    }
    if templated:
        canonical = jsoncodec.dumps({k: str(v) for k, v in templated.items()}).encode()
        parameters["resolved_params_digest"] = hashlib.blake2b(canonical, digest_size=16).hexdigest()
    return parameters


def _paginator_parameters(spec: PaginatorSpec) -> dict[str, Any]:
    """What of the paginator defines where a checkpoint points: a resume under another style or
    other parameter names would read from the wrong place. Offset runs keep the keys they
    always had, so their existing checkpoints still resume."""
    own: dict[str, tuple[str, ...]] = {
        "offset": ("offset_param", "limit_param"),
        # A page number means page * limit records: a resume under another limit would land
        # elsewhere, so the page size is a parameter here (offset and pointer styles resume at
        # a record or a pointer, whatever the page size).
        "page_number": ("page_param", "base_page", "limit_param", "limit"),
        "json_link": ("next_url_path",),
        "header_link": ("links_next_key",),
        "cursor": ("cursor_path", "cursor_param"),
        "keyset": ("cursor_path", "cursor_param"),
    }
    return {"type": spec.type, **{name: getattr(spec, name) for name in own[spec.type]}}


def current_parameters(
    spec: ExtractSpec, environ: Mapping[str, str] | None = None, store: CheckpointStore | None = None
) -> dict[str, Any]:
    """The parameters a run of ``spec`` would start with now (what a dry-run retry compares)."""
    redactor = Redactor()
    client = SourceClient(
        spec, deadline=Deadline(1), redactor=redactor, environ=os.environ if environ is None else environ,
        log=logging.getLogger("etl_assets"),
    )
    parameters = extract_parameters(spec, client.base_url, redactor, client.params)
    if store is not None and spec.incremental is not None:
        parameters["incremental"]["start_value"] = current_watermark(spec, store, parameters)
    return parameters


def _window_free(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters without the incremental start value: what two windows of one extract share."""
    out = dict(parameters)
    if isinstance(out.get("incremental"), dict):
        out["incremental"] = {k: v for k, v in out["incremental"].items() if k != "start_value"}
    return out


def current_watermark(spec: ExtractSpec, store: CheckpointStore, parameters: Mapping[str, Any]) -> Any:
    """Where an incremental run of ``spec`` with ``parameters`` starts: the watermark of the
    newest successful run with the same parameters (another filter, path or source is another
    stream of records, whose watermark says nothing here), else ``initial_value``."""
    if spec.incremental is None:
        return None
    mine = _window_free(parameters)
    for row in store.list_runs(spec.name, limit=500):
        if row.status is RunStatus.SUCCESS and _window_free(row.parameters) == mine:
            return incremental.start_value(spec.incremental, row.run_context)
    return spec.incremental.initial_value


def parameter_differences(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Readable ``key: old -> new`` lines for every leaf that differs."""
    out: list[str] = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, "<absent>"), new.get(key, "<absent>")
        name = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            out.extend(parameter_differences(a, b, f"{name}."))
        elif a != b:
            out.append(f"{name}: {a!r} -> {b!r}")
    return out


def _partition_window(spec: ExtractSpec, options: ExtractOptions) -> PartitionWindow | None:
    if spec.partitions is None:
        if options.partition is not None:
            raise ExtractError(f"extract {spec.name!r} is not partitioned; it was given partition "
                               f"{options.partition.key!r}", extract=spec.name)
        return None
    if options.partition is None:
        raise ExtractError(
            f"extract {spec.name!r} is partitioned ({spec.partitions.period} from {spec.partitions.start}): "
            "materialize one partition or a range of them (a backfill), e.g. "
            f"`dagster asset materialize -m etl_assets.definitions --select {spec.name} --partition "
            f"{spec.partitions.start}`",
            extract=spec.name,
        )
    return options.partition


def run_extract(
    spec: ExtractSpec,
    store: CheckpointStore,
    options: ExtractOptions,
    *,
    environ: Mapping[str, str] | None = None,
    log: logging.Logger | Any = None,
    holder: Callable[[RunRecord], str | None] | None = None,
    hooks: ExtractHooks | None = None,
) -> ExtractResult:
    """Run (or resume) one extract to completion, its deadline, or its first hard error.

    ``holder(row)`` says why another run still holds a ``running`` row (see
    :func:`etl_assets.resume.holder`), or ``None`` when the run that held it has ended.
    Without it, every other run counts as ended.
    """
    log = log or logging.getLogger("etl_assets")
    if options.dagster_run_id is None:
        # Every attempt needs an identity of its own: writes are fenced on it, and a row
        # held by an id nobody knows is protected by its lease.
        options = replace(options, dagster_run_id=f"local-{uuid.uuid4()}")
    lease = Settings.from_env(environ if environ is not None else None).run_lease_seconds
    if holder is None:
        holder = lambda row: resume_holder(row, NO_RUNS, lease, utcnow())  # noqa: E731
    redactor = Redactor()
    deadline = Deadline(options.timeout_seconds)
    client = SourceClient(
        spec, deadline=deadline, redactor=redactor, environ=os.environ if environ is None else environ, log=log
    )
    store.ensure_schema()
    window = _partition_window(spec, options)
    if window is not None:
        assert spec.partitions is not None
        client.params.update(window.params(spec.partitions))
    parameters = extract_parameters(spec, client.base_url, redactor, client.params)
    if window is not None:
        parameters["partition"] = window.parameters()
    if spec.incremental is not None:
        watermark = current_watermark(spec, store, parameters)
        parameters["incremental"]["start_value"] = watermark
        client.params[spec.incremental.param] = watermark
    loader = StagingLoader(store.engine, spec.table_name, store.schema)
    loader.ensure_table()
    run = _Run(spec, store, loader, client, options, deadline, log, redactor, hooks or ExtractHooks())
    run.claim(parameters, holder)
    with client, Heartbeat(store, run.record.run_id, options.dagster_run_id, lease / 3, log):
        return run.execute()


class DriftWatch:
    """Watches an offset run's source total, in ``run_context["drift"]`` so it survives resumes.

    Offset paging over a source that gains or loses records mid-run shifts records across page
    boundaries: a record can be read twice or never. The total is the only sign an API gives, so
    a total that moves makes the run re-read the range it had passed once, before it succeeds.
    """

    def __init__(self, context: dict[str, Any]) -> None:
        self.state: dict[str, Any] = context.setdefault("drift", {"total_at_start": None, "changes": []})

    def saw(self, skip: int, total: int | None) -> None:
        state = self.state
        if total is None:
            return
        if state["total_at_start"] is None:
            state["total_at_start"] = total
        last = state.get("total_at_end", state["total_at_start"])
        if total != last:
            state["changes"] = (state["changes"] + [{"skip": skip, "from": last, "to": total}])[-20:]
            state["last_change_skip"] = skip
        state["total_at_end"] = total

    @property
    def needs_reread(self) -> bool:
        return bool(self.state["changes"]) and self.state.get("status") in (None, "rereading")

    def start_reread(self, end: int) -> dict[str, Any]:
        self.state.update(status="rereading", reread_to=end, reread_totals=[])
        return self.state

    def saw_in_reread(self, total: int | None) -> None:
        if total is not None:
            self.state["reread_totals"].append(total)

    def finish_reread(self, found: int, changed: int) -> dict[str, Any]:
        totals = self.state["reread_totals"]
        moved = len(set(totals)) > 1 or (totals and totals[0] != self.state["total_at_end"])
        self.state.update(status="unresolved" if moved else "reread", reread_found=found, reread_changed=changed)
        if totals:
            self.state["reread_totals"] = [totals[0], totals[-1]]
        return self.state


class Heartbeat:
    """Renews the run's lease on its ``dw_etl_runs`` row while the run lives.

    Pages renew it too, but a live run can go a long time without one (a ``Retry-After``, a
    slow source); without a heartbeat its lease would lapse and a second run would take the row
    while the first still works. A dead run stops beating, so its row is free one lease later
    whatever the Dagster instance still says of it (a SIGKILLed worker's run can stay STARTED)."""

    def __init__(self, store: CheckpointStore, run_id: int, owner: str | None, interval: float, log: Any) -> None:
        self.store, self.run_id, self.owner, self.log = store, run_id, owner, log
        self.interval = max(0.2, interval)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._beat, name=f"etl-heartbeat-{run_id}", daemon=True)

    def __enter__(self) -> "Heartbeat":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.thread.join(10)

    def _beat(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                with self.store.transaction() as conn:
                    if not self.store.heartbeat(conn, self.run_id, self.owner):
                        return  # the row ended or another run took it: nothing left to renew
            except Exception as exc:  # a database hiccup: the next page or beat tries again
                self.log.warning(f"dw_etl_runs run {self.run_id}: could not renew its lease ({type(exc).__name__})")


class _Run:
    """The state of one attempt at a logical run."""

    def __init__(
        self,
        spec: ExtractSpec,
        store: CheckpointStore,
        loader: StagingLoader,
        client: SourceClient,
        options: ExtractOptions,
        deadline: Deadline,
        log: Any,
        redact: Redactor,
        hooks: ExtractHooks,
    ) -> None:
        self.spec = spec
        self.store = store
        self.loader = loader
        self.client = client
        self.options = options
        self.deadline = deadline
        self.log = log
        self.redact = redact
        self.hooks = hooks
        self.started = time.monotonic()
        self.selector = parse_selector(spec.data_selector)
        self.total_selector = parse_selector(spec.paginator.total_path) if spec.paginator.total_path else None
        self.cursor_selector = spec.incremental.selector if spec.incremental else None
        self.high_water: Any = None
        self.record: RunRecord | None = None
        self.context: dict[str, Any] = {}
        self.attempt: dict[str, Any] = {}
        self.committed = Position()
        self.committed_records = 0
        self.saved_at = -float("inf")
        """When this attempt last saved a checkpoint: never yet, so its first page saves one.
        A worker killed in its first interval then leaves a checkpoint the sensor resumes
        from, not a ``running`` row without one that nothing relaunches."""
        self.logged_at: float | None = None
        self.result: ExtractResult | None = None
        self.lost_row = False
        self.page_conn: Connection | None = None

    # -- choosing the dw_etl_runs row ---------------------------------------------------

    def claim(self, parameters: dict[str, Any], holder: Callable[[RunRecord], str | None]) -> None:
        name = self.spec.name
        me = self.options.dagster_run_id
        wanted = self.options.resume_run_id
        with self.store.transaction() as conn:
            self.store.lock_extract(conn, name)
            # A partition is a logical run of its own: rows of other partitions are not this
            # run's to resume or retire.
            self._refuse_a_new_key(conn, parameters)
            mine = partition_key(parameters)
            candidates = [c for c in self.store.unfinished(conn, name) if partition_key(c.parameters) == mine]
            if wanted is not None:
                candidates = self._wanted_first(conn, candidates, wanted, mine)
            resume: RunRecord | None = None
            for row in candidates:
                if row.dagster_run_id == me and me is not None:
                    continue
                held = holder(row)
                if held:
                    raise ExtractAlreadyRunningError(
                        f"extract {name!r} is already running: dw_etl_runs run {row.run_id} is held by "
                        f"{held}; this run made no request and wrote nothing",
                        extract=name,
                    )
            for row in candidates:
                try:
                    checkpoint = row.checkpoint
                except CorruptRunError as exc:
                    if row.run_id == wanted:
                        raise ExtractError(f"extract {name!r}: cannot resume: {exc}", extract=name) from None
                    # Nothing can resume it; left as it is, it would stop every run of the extract.
                    self.log.warning(f"extract {name!r}: {exc}; it is closed and this run starts afresh")
                    self._retire(conn, row, f"abandoned: {exc}")
                    continue
                if checkpoint is None:
                    self._retire(conn, row, "abandoned: its run ended before saving a checkpoint")
                    continue
                if resume is None and (self.options.resume_from_checkpoint or row.run_id == wanted):
                    differences = parameter_differences(row.parameters, parameters)
                    if not differences:
                        resume = row
                        continue
                    self.log.warning(
                        f"extract {name!r}: not resuming dw_etl_runs run {row.run_id} "
                        f"(checkpoint skip={checkpoint.skip}) because its parameters differ: "
                        + "; ".join(self.redact(d) for d in differences)
                        + "; starting a new run from the beginning"
                    )
                    self._retire(conn, row, "superseded: parameters changed: " + "; ".join(differences))
                    continue
                reason = "superseded: a new run started with resume_from_checkpoint=false"
                if resume is not None:
                    reason = f"superseded: run {resume.run_id} is resumed instead"
                self._retire(conn, row, reason)

            self.attempt = {
                "dagster_run_id": me,
                "started_at": utcnow().isoformat(),
                "outcome": "running",
                "limit": self.spec.paginator.limit,
                "timeout_seconds": self.options.timeout_seconds,
            }
            if resume is not None:
                checkpoint = resume.checkpoint
                assert checkpoint is not None
                context = dict(resume.run_context)
                context["attempts"] = (list(context.get("attempts") or []) + [self.attempt])[-MAX_ATTEMPTS_KEPT:]
                self.attempt["resumed_from_skip"] = checkpoint.skip
                if not self.store.claim(conn, resume, me, context, checkpoint.total_records):
                    raise ExtractAlreadyRunningError(
                        f"extract {name!r} is already running: another run claimed dw_etl_runs run "
                        f"{resume.run_id} first; this run did nothing",
                        extract=name,
                    )
                self.record = resume
                self.context = context
                self.committed = Position.of(checkpoint)
                self.committed_records = checkpoint.total_records
                self.log.info(
                    f"extract {name!r}: resuming dw_etl_runs run {resume.run_id} from checkpoint "
                    f"skip={checkpoint.skip}, page_index={checkpoint.page_index}, "
                    f"records={checkpoint.total_records}"
                )
            else:
                self.context = {"parameters": parameters, "attempts": [self.attempt]}
                if self.spec.incremental is not None:
                    start = parameters["incremental"]["start_value"]
                    self.context["incremental"] = incremental.context_for(self.spec.incremental, start)
                self.record = self.store.create(conn, name, self.context, me)
                self.log.info(f"extract {name!r}: started dw_etl_runs run {self.record.run_id}")
        self.high_water = (self.context.get("incremental") or {}).get("high_water")
        self.result = ExtractResult(
            extract=name,
            run_id=self.record.run_id,
            records_loaded=self.committed_records,
            resumed_from_skip=self.committed.skip if resume is not None else None,
        )

    def _refuse_a_new_key(self, conn: Connection, parameters: dict[str, Any]) -> None:
        """Stop when the primary key changed while the staging table holds rows keyed by the
        old one: the new keys would match none of them, and every record would be stored
        twice, each run reporting success."""
        name = self.spec.name
        previous = self.store.list_runs(name, limit=1)
        old = previous[0].parameters.get("primary_key") if previous else None
        new = parameters.get("primary_key")
        if old is None or old == new or not self.loader.has_rows(conn):
            return
        table = self.loader.qualified
        raise ExtractError(
            f"extract {name!r}: the primary key changed from {old} to {new}, and {table} holds rows keyed by "
            f"{old} (dw_etl_runs run {previous[0].run_id}); their keys would match none of the new ones and "
            f"every record would be stored twice. Empty the table (TRUNCATE {table}) or drop it, then run the "
            "extract again; nothing was changed",
            extract=name,
        )

    def _wanted_first(
        self, conn: Connection, candidates: list[RunRecord], wanted: int, partition: str | None
    ) -> list[RunRecord]:
        """Put the row a caller asked to resume first, or say why it cannot be resumed."""
        name = self.spec.name
        row = self.store.get(wanted, conn)
        if row is None:
            raise ExtractError(f"extract {name!r}: there is no dw_etl_runs run {wanted} to resume", extract=name)
        if row.job_name != name:
            raise ExtractError(
                f"extract {name!r}: dw_etl_runs run {wanted} belongs to extract {row.job_name!r}", extract=name
            )
        if row.status is RunStatus.SUCCESS:
            raise ExtractError(
                f"extract {name!r}: dw_etl_runs run {wanted} already succeeded; there is nothing to resume",
                extract=name,
            )
        if partition_key(row.parameters) != partition:
            raise ExtractError(
                f"extract {name!r}: dw_etl_runs run {wanted} is partition {partition_key(row.parameters)!r}, "
                f"not {partition!r}; resume it in its own partition",
                extract=name,
            )
        others = [c for c in candidates if c.run_id != wanted]
        return [row, *others]

    def _retire(self, conn: Connection, row: RunRecord, reason: str) -> None:
        """Close an older row for good so nothing resumes it twice; its data stays."""
        context = dict(row.run_context)
        if "checkpoint" in context:
            context["superseded_checkpoint"] = context.pop("checkpoint")
        self.store.save(
            conn,
            row.run_id,
            run_context=context,
            records_loaded=row.records_loaded,
            status=RunStatus.FAILED,
            error_message=reason,
            finished=True,
        )
        self.log.info(f"extract {self.spec.name!r}: dw_etl_runs run {row.run_id} closed as failed ({reason})")

    # -- the page loop ------------------------------------------------------------------

    def execute(self) -> ExtractResult:
        assert self.record is not None and self.result is not None
        try:
            self._loop()
        except DeadlineExceeded as exc:
            self._stop(RunStatus.RUNNING, "timeout", None)
            raise JobTimeoutError(self._timeout_message(str(exc)), extract=self.spec.name) from None
        except ExtractError as exc:
            exc.args = (self.redact(str(exc)),)  # a server may echo a token into a page excerpt
            self._stop(RunStatus.FAILED, "failed", str(exc))
            raise
        except sqlalchemy.exc.SQLAlchemyError as exc:
            self._warehouse_failed(exc, f"the warehouse refused the page at skip={self.committed.skip}")
        except BaseException as exc:
            message = self.redact(f"extract {self.spec.name!r} stopped at skip={self.committed.skip}: "
                                  f"{type(exc).__name__}: {exc}")
            self._stop(RunStatus.FAILED, "failed", message)
            raise
        try:
            self._finish()
        except sqlalchemy.exc.SQLAlchemyError as exc:
            self._warehouse_failed(exc, "could not record the run's success")
        return self.result

    def _warehouse_failed(self, exc: sqlalchemy.exc.SQLAlchemyError, what: str) -> NoReturn:
        """Save what can be saved and raise the warehouse's error as a :class:`WarehouseError`."""
        cause = getattr(exc, "orig", None) or exc  # only DBAPI errors carry the driver's own
        text = str(cause).strip().splitlines()
        message = self.redact(
            f"extract {self.spec.name!r}: {what}: {type(cause).__name__}: {text[0][:300] if text else ''}"
        )
        self._stop(RunStatus.FAILED, "failed", message)
        raise WarehouseError(message, extract=self.spec.name) from exc

    def _loop(self) -> None:
        assert self.record is not None and self.result is not None
        paginator = build_paginator(self.spec.paginator, start=self.committed)
        if self.committed.exhausted:
            paginator.has_next = False  # every page was written before the run was interrupted
        spec = self.spec.paginator
        guard = LoopGuard(spec.stop_on_repeat, spec.max_pages_without_progress)
        window: deque[_InFlight] = deque()
        workers = ThreadPoolExecutor(1, thread_name_prefix=f"etl-parse-{self.spec.name}")
        stride = spec.limit
        warned_total = False
        drift = DriftWatch(self.context) if spec.type == "offset" else None
        guard_stopped = False
        # One connection for every page of the run: no pool checkout and liveness ping per page.
        self.page_conn = self.store.engine.connect()
        # Everything alive now (Dagster's definitions, the instance, imported modules: a few
        # hundred thousand objects) lives through the run; frozen, no full collection walks it
        # again while pages come and go. Unfrozen at the end, so it is collectable as before.
        # A process that froze its heap itself (before forking workers, say), or another run
        # in this process that did, is left with what it froze.
        froze = gc.get_freeze_count() == 0
        if froze:
            gc.freeze()
        try:
            while paginator.has_next:
                skip = paginator.skip
                if not window:
                    window.append(self._request(paginator, paginator.next_request(), workers))
                parsed = window.popleft().parsed.result()
                if why := guard.check(list(parsed.prepared.rows), paginator.believes_total):
                    self._warn(
                        f"extract {self.spec.name!r}: loop guard: the page at skip={skip} "
                        f"(page {paginator.page_index + 1}) is not written and the run stops: {why}"
                    )
                    guard_stopped = True
                    break
                if drift is not None:
                    drift.saw(skip, parsed.total)
                paginator.advance(parsed.count, parsed.total, parsed.pointer)
                stride = parsed.count or stride
                if window and window[0].skip != paginator.skip:
                    # The page was shorter (or longer) than planned: what was asked ahead
                    # starts at the wrong record. Drop it; nothing of it was written.
                    self._drop(window)
                self._fetch_ahead(paginator, window, stride, workers)
                for warning in parsed.warnings:
                    self._warn(warning)
                if paginator.total_exceeded and not warned_total:
                    warned_total = True
                    self._warn(
                        f"extract {self.spec.name!r}: the source's total ({parsed.total}) disagreed with the "
                        f"records seen ({self.committed_records + parsed.count} by skip={paginator.skip}); "
                        "reading on until a short page"
                    )
                for warning in parsed.prepared.warnings:
                    self._warn(warning)
                position = replace(paginator.state(), exhausted=not paginator.has_next)
                self._commit(parsed.prepared, self._storable(position, skip), skip, parsed.high_water)
                self.result.source_total = parsed.total
                if paginator.stopped_because:
                    # Masked before it is cut short, or a cut would leave part of a secret behind.
                    shown = repr(self.redact(paginator.repeated or "")[:200])
                    self._warn(f"extract {self.spec.name!r}: loop guard: "
                               + paginator.stopped_because.replace("{pointer}", shown))
            if drift is not None and not guard_stopped and drift.needs_reread:
                self._reread(drift, paginator)
        finally:
            self._drop(window)
            workers.shutdown(wait=True, cancel_futures=True)
            self.page_conn.close()
            self.page_conn = None
            if froze:
                gc.unfreeze()
        if self.result.source_total is not None and self.result.source_total != self.committed_records:
            if spec.type != "page_number" or spec.total_is == "records":
                self._warn(
                    f"extract {self.spec.name!r}: the source's total ({self.result.source_total}) disagreed "
                    f"with the records seen ({self.committed_records})"
                )

    def _reread(self, drift: "DriftWatch", paginator: Paginator) -> None:
        """Read the range the source's moving total may have shifted once more, writing pages
        without moving the checkpoint: records that slid across a page boundary while the run
        passed them are caught, and the run says what it found."""
        assert self.result is not None
        end = min(drift.state["last_change_skip"] + self.spec.paginator.limit, self.committed.skip)
        state = drift.start_reread(end)
        self._warn(
            f"extract {self.spec.name!r}: the source's total moved during the run ({state['total_at_start']} at the "
            f"start, {state['total_at_end']} at the end, first change seen at skip={state['changes'][0]['skip']}): "
            f"offset paging may have skipped or repeated records; re-reading skip=0 to {end}"
        )
        before = (self.result.inserted, self.result.updated)
        skip = 0
        while skip < end:
            fetch = self.client.submit(paginator.request_params(skip))
            parsed = self._parse_fetched(fetch, skip, paginator)
            drift.saw_in_reread(parsed.total)
            if not parsed.count:
                break
            self._write_only(parsed.prepared, skip)
            skip += parsed.count  # by the rows returned, as the first pass: an API may cap pages
        found, changed = self.result.inserted - before[0], self.result.updated - before[1]
        state = drift.finish_reread(found, changed)
        message = (
            f"extract {self.spec.name!r}: the re-read of skip=0 to {end} found {found} records the first pass "
            f"had missed and {changed} changed since"
        )
        if state["status"] == "unresolved":
            message += (
                f"; the total moved again during the re-read ({state['reread_totals'][0]} -> "
                f"{state['reread_totals'][-1]}): records may still be missing. Use keyset paging or a stable "
                "order_by parameter, or run again when the source is quiet"
            )
        self._warn(message)

    def _write_only(self, prepared: Any, skip: int) -> None:
        """Write a re-read page in its own transaction, renewing the lease but leaving the
        checkpoint and the run's record count where they are."""
        assert self.record is not None and self.result is not None and self.page_conn is not None
        with self.page_conn.begin():
            write = self.loader.write(self.page_conn, prepared, run_id=self.record.run_id, now=utcnow())
            if not self.store.touch(self.page_conn, self.record.run_id, records_loaded=self.committed_records,
                                    owner=self.options.dagster_run_id):
                self.lost_row = True
                raise ExtractAlreadyRunningError(
                    f"extract {self.spec.name!r}: another run took over dw_etl_runs run {self.record.run_id} "
                    f"while it re-read skip={skip}",
                    extract=self.spec.name,
                )
        result = self.result
        result.records_fetched += prepared.received
        result.inserted += write.inserted
        result.updated += write.updated
        result.unchanged += write.unchanged
        result.duplicates += prepared.duplicates
        result.pages += 1

    def _storable(self, position: Position, skip: int) -> Position:
        """The position as it may be stored: a next URL without the parameters that repeat the
        spec's own with the same value (credentials among them; every request adds the spec's
        parameters a link lacks), and never with a secret."""
        for kind, pointer in (("next link", position.next_url), ("cursor", position.cursor)):
            if pointer is None:
                continue
            if any(ord(c) < 32 or ord(c) == 127 or 0xD800 <= ord(c) <= 0xDFFF for c in pointer):
                raise MalformedPageError(
                    f"extract {self.spec.name!r}, skip={skip}: the source's {kind} holds a control character or "
                    f"a lone surrogate ({self.redact(pointer)[:200]!r}); it cannot be sent or stored",
                    extract=self.spec.name,
                )
        if position.cursor is not None and self.redact(position.cursor) != position.cursor:
            raise MalformedPageError(
                f"extract {self.spec.name!r}, skip={skip}: the source's cursor carries a credential "
                f"({self.redact(position.cursor)[:200]}); it cannot be stored in a checkpoint",
                extract=self.spec.name,
            )
        if position.next_url is None:
            return position
        url = httpx.URL(position.next_url)
        own = {name: str(value) for name, value in self.client.params.items()}
        kept = [(k, v) for k, v in url.params.multi_items() if own.get(k) != v]
        stored = str(url.copy_with(query=None).copy_merge_params(kept) if kept else url.copy_with(query=None))
        if self.redact(stored) != stored:
            raise MalformedPageError(
                f"extract {self.spec.name!r}, skip={skip}: the source's next link carries a credential outside "
                f"the spec's own parameters ({self.redact(stored)[:300]}); it cannot be stored in a checkpoint",
                extract=self.spec.name,
            )
        return replace(position, next_url=stored)

    def _request(self, paginator: Paginator, request: PageRequest, workers: ThreadPoolExecutor) -> _InFlight:
        fetch = self.client.submit(request.params, request.url)
        return _InFlight(request.skip, fetch, workers.submit(self._parse_fetched, fetch, request.skip, paginator))

    def _fetch_ahead(
        self, paginator: Paginator, window: deque[_InFlight], stride: int, workers: ThreadPoolExecutor
    ) -> None:
        """Keep up to ``max_in_flight`` requests going: the next page always, and pages
        after it while the source's total says they exist (offset paging only)."""
        if not paginator.has_next or not paginator.fetches_ahead:
            return
        while len(window) < self.spec.max_in_flight:
            skip = window[-1].skip + stride if window else paginator.skip
            if window and not paginator.known_needed(skip):
                return
            window.append(self._request(paginator, paginator.request_at(skip), workers))

    @staticmethod
    def _drop(window: deque[_InFlight]) -> None:
        while window:
            window.pop().cancel()

    def _parse_fetched(self, fetch: "Future[Page]", skip: int, paginator: Paginator) -> _ParsedPage:
        """Runs on the worker thread: wait for the page, parse it, key and encode its records."""
        page = fetch.result()
        warnings: list[str] = []
        # The parsed tree is tens of thousands of objects that die with this call: with the
        # collector paused none of its young-generation passes walks them, and the first
        # collection after the block finds them already freed.
        with jsoncodec.collector_paused():
            records, total, body = self._parse(page, skip, warnings)
            prepared = prepare_page(records, extract=self.spec.name, primary_key=self.spec.primary_key, skip=skip)
            try:
                pointer = paginator.read(body, page.headers, page.request_url, records)
            except PointerError as exc:
                raise MalformedPageError(f"extract {self.spec.name!r}, skip={skip}, {page.url}: {exc}",
                                         extract=self.spec.name) from None
            high = incremental.page_high_water(records, self.cursor_selector) if self.cursor_selector else None
            count = len(records)
            del records, body
        return _ParsedPage(count, total, prepared, warnings, pointer, high)

    def _parse(self, page: Page, skip: int, warnings: list[str]) -> tuple[list[Any], int | None, Any]:
        where = f"extract {self.spec.name!r}, skip={skip}, {page.url}"
        try:
            body = jsoncodec.loads(page.content)
        except (ValueError, RecursionError) as exc:  # ValueError covers UnicodeDecodeError
            start = page.content[:80].decode("utf-8", "replace")
            kind = page.headers.get("content-type", "no content type")
            raise MalformedPageError(
                f"{where}: the body is not valid JSON ({exc}); content type {kind!r}, "
                f"{len(page.content)} bytes, starting {start!r}",
                extract=self.spec.name,
            ) from None
        records = select(body, self.selector)
        if records is MISSING or not isinstance(records, list):
            found = "nothing" if records is MISSING else type(records).__name__
            raise MalformedPageError(
                f"{where}: data_selector {self.spec.data_selector or '$'!r} must select a list of "
                f"records, found {found}",
                extract=self.spec.name,
            )
        return records, self._total(body, page, where, warnings), body

    def _total(self, body: Any, page: Page, where: str, warnings: list[str]) -> int | None:
        spec = self.spec.paginator
        if self.total_selector is not None:
            raw: Any = select(body, self.total_selector)
            origin = f"total_path {spec.total_path!r}"
            if raw is MISSING:
                raw = None
        elif spec.total_header:
            raw = page.headers.get(spec.total_header)
            origin = f"header {spec.total_header}"
        else:
            return None
        if raw is None:
            return None
        if isinstance(raw, str) and raw.strip().isascii() and raw.strip().isdigit():
            raw = int(raw.strip())
        if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
            warnings.append(f"{where}: ignoring the source's total from {origin}: {raw!r} is not a count")
            return None
        return raw

    def _commit(self, prepared: Any, state: Position, skip: int, page_high: Any = None) -> None:
        assert self.record is not None and self.result is not None
        records = self.committed_records + prepared.received
        high_water = incremental.later(self.high_water, page_high)
        due = time.monotonic() - self.saved_at >= self.options.checkpoint_interval_seconds
        now = utcnow()
        me = self.options.dagster_run_id
        conn = self.page_conn
        assert conn is not None
        run_id = self.record.run_id
        if due:
            # Set before the page is written, so it can ride in the page's statement. Should the
            # page fail, the run's stop rewrites it from the last committed position.
            self._set_checkpoint(state, records, now, high_water)
        with conn.begin():
            # On PostgreSQL the row's progress (and checkpoint) rides in the page's own statement.
            if due:
                carry = self.store.carried_save(run_id, run_context=self.context, records_loaded=records, owner=me, now=now)
            else:
                carry = self.store.carried_touch(run_id, records_loaded=records, owner=me, now=now)
            write = self.loader.write(conn, prepared, run_id=run_id, now=now, carry=carry)
            if write.carried is not None:
                owned = write.carried == 1
            elif due:
                owned = self.store.save(conn, run_id, run_context=self.context, records_loaded=records, owner=me)
            else:
                owned = self.store.touch(conn, run_id, records_loaded=records, owner=me)
            if not owned:
                self.lost_row = True
                raise ExtractAlreadyRunningError(
                    f"extract {self.spec.name!r}: another run took over dw_etl_runs run {self.record.run_id}; "
                    f"this run stops without writing the page at skip={skip}",
                    extract=self.spec.name,
                )
            if self.hooks.before_commit is not None:
                self.hooks.before_commit(conn, skip, due)
        self.committed = state
        self.committed_records = records
        self.high_water = high_water
        result = self.result
        result.records_fetched += prepared.received
        result.records_loaded = records
        result.inserted += write.inserted
        result.updated += write.updated
        result.unchanged += write.unchanged
        result.duplicates += prepared.duplicates
        result.pages += 1
        if due:
            self.saved_at = time.monotonic()
            if self.logged_at is not None and self.saved_at - self.logged_at < self.options.checkpoint_log_seconds:
                return
            self.logged_at = self.saved_at
            self.log.info(
                f"checkpoint_saved extract={self.spec.name} run_id={self.record.run_id} "
                f"skip={state.skip} page_index={state.page_index} records={records}"
            )

    def _set_checkpoint(self, state: Position, records: int, now: Any, high_water: Any = None) -> None:
        self._update_attempt()
        if "incremental" in self.context:
            # The largest cursor value of the pages the checkpoint covers, saved with it.
            self.context["incremental"]["high_water"] = high_water
        self.context["checkpoint"] = Checkpoint(
            state.skip, state.page_index, records, now, state.next_url, state.cursor, state.exhausted
        ).to_json()

    def _update_attempt(self) -> None:
        assert self.result is not None
        result = self.result
        self.attempt.update(
            records_fetched=result.records_fetched,
            inserted=result.inserted,
            updated=result.updated,
            unchanged=result.unchanged,
            duplicates=result.duplicates,
            pages=result.pages,
            requests=self.client.requests_made,
        )

    def _warn(self, message: str) -> None:
        assert self.result is not None
        message = self.redact(message)
        self.log.warning(message)
        if message not in self.result.warnings:
            self.result.warnings.append(message)
            warnings = self.context.setdefault("warnings", [])
            warnings.append(message)
            del warnings[:-MAX_WARNINGS_KEPT]

    # -- ending ---------------------------------------------------------------------------

    def _stop(self, status: RunStatus, outcome: str, error: str | None) -> None:
        """Save the checkpoint of the last committed page; the row stays resumable."""
        assert self.record is not None and self.result is not None
        self.result.seconds = time.monotonic() - self.started
        self.result.requests = self.client.requests_made
        if self.lost_row:
            return
        self._set_checkpoint(self.committed, self.committed_records, utcnow(), self.high_water)
        self.attempt.update(outcome=outcome, ended_at=utcnow().isoformat(), error=error)
        try:
            with self.store.transaction() as conn:
                stored = self._commits_lost(conn)
                if stored is not None:
                    error = self._fall_back_to(stored, error)
                if not self.store.save(
                    conn,
                    self.record.run_id,
                    run_context=self.context,
                    records_loaded=self.committed_records,
                    status=status,
                    error_message=error,
                    finished=status is RunStatus.FAILED,
                    owner=self.options.dagster_run_id,
                ):
                    self.log.warning(
                        f"extract {self.spec.name!r}: dw_etl_runs run {self.record.run_id} was taken over "
                        "by another run; its checkpoint is left to that run"
                    )
                    return
        except Exception as exc:  # the database may be what failed; the original error matters more
            self.log.error(
                f"extract {self.spec.name!r}: could not save the checkpoint at skip={self.committed.skip} "
                f"({type(exc).__name__}); the run will resume from the last saved one"
            )
            return
        self.log.info(
            f"checkpoint_saved extract={self.spec.name} run_id={self.record.run_id} "
            f"skip={self.committed.skip} page_index={self.committed.page_index} "
            f"records={self.committed_records} status={status.value}"
        )

    def _finish(self) -> None:
        assert self.record is not None and self.result is not None
        result = self.result
        result.seconds = time.monotonic() - self.started
        result.requests = self.client.requests_made
        with self.store.transaction() as conn:
            # Checked in the transaction that writes success: its synchronous commit makes
            # every earlier page commit durable, or a crash before it loses this write too.
            stored = self._commits_lost(conn)
            if stored is None:
                self._save_success(conn)
        if stored is not None:
            message = self._lost_message(stored)
            self._stop(RunStatus.FAILED, "failed", None)
            raise WarehouseError(message, extract=self.spec.name)
        self.log.info(
            f"extract {self.spec.name!r}: success, dw_etl_runs run {self.record.run_id}: "
            f"{result.records_fetched} records fetched in {result.pages} pages "
            f"({result.inserted} inserted, {result.updated} updated, {result.unchanged} unchanged), "
            f"{result.records_loaded} in the whole run, {result.seconds:.1f} s"
        )

    def _save_success(self, conn: Connection) -> None:
        assert self.record is not None and self.result is not None
        self._update_attempt()
        self.attempt.update(outcome="success", ended_at=utcnow().isoformat())
        self.context.pop("checkpoint", None)
        self.context["source_total"] = self.result.source_total
        if (self.context.get("drift") or {}).get("changes"):
            self.result.drift = self.context["drift"]
        if "incremental" in self.context:
            state = self.context["incremental"]
            state["high_water"] = self.high_water
            state["watermark"] = incremental.next_watermark(state)
            self.result.watermark = state["watermark"]
        if not self.store.save(
            conn,
            self.record.run_id,
            run_context=self.context,
            records_loaded=self.committed_records,
            status=RunStatus.SUCCESS,
            finished=True,
            owner=self.options.dagster_run_id,
        ):
            raise ExtractAlreadyRunningError(
                f"extract {self.spec.name!r}: another run took over dw_etl_runs run {self.record.run_id} "
                "before this one could mark it successful",
                extract=self.spec.name,
            )

    def _commits_lost(self, conn: Connection) -> RunRecord | None:
        """The row as the warehouse holds it, when it holds less than this run committed.

        Page transactions commit with ``synchronous_commit`` off, so a PostgreSQL crash can
        roll back the last fraction of a second of them after the run saw them commit. The
        row's ``records_loaded`` moves in the same transaction as every page, so a count behind
        the run's own means pages were lost, and the run's in-memory checkpoint must not be
        written over the stored one: it would point past stored data.
        """
        assert self.record is not None
        row = self.store.get(self.record.run_id, conn)
        if row is None or row.dagster_run_id != self.options.dagster_run_id:
            return None  # taken over: the fenced save says so
        return row if row.records_loaded != self.committed_records else None

    def _lost_message(self, stored: RunRecord) -> str:
        checkpoint = stored.checkpoint
        where = f"skip={checkpoint.skip}" if checkpoint else "the beginning (no checkpoint was stored)"
        return (
            f"extract {self.spec.name!r}: the warehouse holds {stored.records_loaded} of the "
            f"{self.committed_records} records this run committed (up to skip={self.committed.skip}); "
            "the last page commits were rolled back, as a PostgreSQL crash does to commits made with "
            f"synchronous_commit off; the run resumes from {where}"
        )

    def _fall_back_to(self, stored: RunRecord, error: str | None) -> str:
        """Adopt the stored checkpoint and count; return the row's error message."""
        message = self._lost_message(stored)
        self.log.warning(message)
        checkpoint = stored.checkpoint
        if checkpoint is None:
            self.context.pop("checkpoint", None)
            self.committed = Position()
        else:
            self.context["checkpoint"] = checkpoint.to_json()
            self.committed = Position.of(checkpoint)
        self.committed_records = stored.records_loaded
        self.high_water = (stored.run_context.get("incremental") or {}).get("high_water")
        if "incremental" in self.context:
            self.context["incremental"]["high_water"] = self.high_water
        return message if error is None else f"{error}; {message}"

    def _timeout_message(self, reason: str) -> str:
        assert self.record is not None
        name = self.spec.name
        return (
            f"extract {name!r} stopped at its time budget ({reason}). Progress is saved: "
            f"dw_etl_runs run {self.record.run_id} stays 'running' with checkpoint "
            f"skip={self.committed.skip}, page_index={self.committed.page_index}, "
            f"records={self.committed_records}. To resume, materialize {name!r} again "
            f"(resume_from_checkpoint is on by default), e.g. "
            f"`dagster asset materialize -m etl_assets.definitions --select {name}`; "
            f"to get further per run, raise timeout_seconds in the run config "
            f"(--config-json '{{\"ops\": {{\"{name}\": {{\"config\": {{\"timeout_seconds\": 600}}}}}}}}') "
            f"or ETL_DEFAULT_TIMEOUT_SECONDS."
        )
