"""The pieces an entry point outside Dagster needs: definitions, warehouse, instance, launcher.

The HTTP API, the CLI and :class:`etl_assets.executor.JobExecutor` all start from
:meth:`Deployment.from_env`, so they see the same extracts, warehouse and Dagster instance as
the webserver and the daemon started with the same environment.
"""

import os
import threading
import uuid
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit

import dagster as dg
from dagster_graphql import DagsterGraphQLClient

from etl_assets.checkpoints import CheckpointStore
from etl_assets.defs.instance_runs import IN_PROGRESS, InstanceRuns
from etl_assets.errors import LaunchError, SettingsError
from etl_assets.operations import Operations
from etl_assets.resume import DagsterRunInfo, RunLookup
from etl_assets.settings import Settings
from etl_assets.defs.sensors import ASSET_JOB
from etl_assets.sources.partitions import PARTITION_TAG, partition_job_name
from etl_assets.sources.spec import load_extracts
from etl_assets.warehouse.engine import create_warehouse_engine

def job_of(extract: str, tags: dict[str, str]) -> str:
    """The job a run of ``extract`` goes through: its own for a partition, else the shared one."""
    return partition_job_name(extract) if PARTITION_TAG in tags else ASSET_JOB


class WebserverLauncher:
    """Submits runs through the Dagster webserver's GraphQL API, as the UI does.

    The run then goes through the instance's run coordinator and the daemon launches it in
    its own process: the production path.
    """

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SettingsError(f"ETL_DAGSTER_WEBSERVER_URL must be an http(s) URL, got {url!r}")
        self.url = url
        self.client = DagsterGraphQLClient(
            parts.hostname,
            port_number=parts.port,
            use_https=parts.scheme == "https",
            path_prefix=parts.path.rstrip("/"),
            timeout=30,
        )

    def launch(self, extract: str, run_config: dict[str, Any], tags: dict[str, str]) -> str:
        try:
            return self.client.submit_job_execution(
                job_of(extract, tags), run_config=run_config, tags=tags, asset_selection=[dg.AssetKey(extract)]
            )
        except Exception as exc:  # GraphQL, transport and HTTP errors alike
            raise LaunchError(
                f"the Dagster webserver at {self.url} did not launch a run of {extract!r}: "
                f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
            ) from None


class WebserverRuns:
    """Run states from the webserver, for an API or CLI that has no ``DAGSTER_HOME``."""

    def __init__(self, launcher: WebserverLauncher) -> None:
        self.client = launcher.client

    def by_id(self, dagster_run_id: str) -> DagsterRunInfo | None:
        try:
            status = self.client.get_run_status(dagster_run_id)
        except Exception:
            return None
        return DagsterRunInfo(dagster_run_id, status.value, status in IN_PROGRESS)

    def by_resume_key(self, resume_key: str) -> DagsterRunInfo | None:
        return None

    def active_relaunch(self, run_id: int, extract: str) -> DagsterRunInfo | None:
        return None  # the GraphQL client cannot list runs by tag: the row's own holder decides


TERMINAL_CONSOLE_LEVEL = "WARNING"
"""Dagster's console level for runs whose output goes to a terminal (the CLI, a Python call):
the run's warnings and errors, not every DEBUG event; the UI's event log keeps them all."""

_IN_PROCESS_RUNS = threading.Lock()
"""Runs executed in one process go one at a time. Dagster 1.13 sets up each run's log handlers
with ``logging.config.dictConfig``, which holds the logging module's lock while it flushes every
handler, including those of a run already going in another thread, whose emit holds its handler's
lock and then wants the module's: two in-process runs starting together deadlock (seen in a test).
For runs side by side, launch through the webserver (``ETL_DAGSTER_WEBSERVER_URL``)."""


class InProcessLauncher:
    """Runs the asset in this process on the instance (shown in the UI when it is
    ``DAGSTER_HOME``'s). ``background`` returns at once with the run id (the API);
    otherwise the call returns when the run has ended (the CLI, Python). Runs in one process
    go one at a time (see ``_IN_PROCESS_RUNS``)."""

    def __init__(
        self, defs: dg.Definitions, instance: dg.DagsterInstance, *, background: bool, console_level: str | None = None
    ) -> None:
        self.defs = defs
        self.instance = instance
        self.background = background
        self.console_level = console_level
        """The level of Dagster's console log for these runs, unless their run config sets
        one: a CLI retry printed every DEBUG event of the run to the terminal before its own
        one-line result. The instance's event log (the UI) keeps every event whatever it is."""
        self.threads: list[threading.Thread] = []
        self.results: dict[str, dg.ExecuteInProcessResult] = {}
        self._pending: dict[str, dict[str, str]] = {}
        """Background runs launched whose Dagster run may not exist yet, by Dagster run id: the
        run is created only when its thread gets the in-process lock, and until then no lookup
        of the instance can see it."""
        self._pending_lock = threading.Lock()

    def execute(
        self, extract: str, run_config: dict[str, Any], tags: dict[str, str], run_id: str | None = None
    ) -> dg.ExecuteInProcessResult:
        run_id = run_id or str(uuid.uuid4())
        with _IN_PROCESS_RUNS:
            return self._execute(extract, run_config, tags, run_id)

    def _execute(
        self, extract: str, run_config: dict[str, Any], tags: dict[str, str], run_id: str
    ) -> dg.ExecuteInProcessResult:
        tags = dict(tags)
        partition = tags.pop(PARTITION_TAG, None)
        job = self.defs.resolve_job_def(job_of(extract, {PARTITION_TAG: partition} if partition else {}))
        if self.console_level is not None and "loggers" not in run_config:
            run_config = {**run_config, "loggers": {"console": {"config": {"log_level": self.console_level}}}}
        result = job.execute_in_process(
            run_config=run_config,
            instance=self.instance,
            asset_selection=[dg.AssetKey(extract)],
            run_id=run_id,
            tags=tags,
            partition_key=partition,
            raise_on_error=False,
        )
        self.results[run_id] = result
        return result

    def launch(self, extract: str, run_config: dict[str, Any], tags: dict[str, str]) -> str:
        run_id = str(uuid.uuid4())
        if not self.background:
            self.execute(extract, run_config, tags, run_id)
            return run_id
        with self._pending_lock:
            self._pending[run_id] = dict(tags)
        thread = threading.Thread(
            target=self._execute_pending, args=(extract, run_config, tags, run_id), name=f"etl-run-{run_id[:8]}",
            daemon=True,
        )
        thread.start()
        self.threads.append(thread)
        return run_id

    def _execute_pending(self, extract: str, run_config: dict[str, Any], tags: dict[str, str], run_id: str) -> None:
        try:
            self.execute(extract, run_config, tags, run_id)
        finally:
            with self._pending_lock:
                self._pending.pop(run_id, None)

    def pending_with(self, key: str, value: str) -> DagsterRunInfo | None:
        """A background run launched with tag ``key=value`` that has not ended."""
        with self._pending_lock:
            for run_id, tags in self._pending.items():
                if tags.get(key) == value:
                    return DagsterRunInfo(run_id, "LAUNCHING", True)
        return None

    def join(self, timeout: float | None = None) -> None:
        for thread in self.threads:
            thread.join(timeout)


class Deployment:
    """Built from the environment; the Dagster parts are made on first use, so reading rows
    (``runs list``) stays quick and never touches the Dagster instance."""

    def __init__(self, settings: Settings, *, background: bool) -> None:
        self.settings = settings
        self.background = background
        self.store = CheckpointStore(create_warehouse_engine(settings.database_url), settings.warehouse_schema)

    @classmethod
    def from_env(cls, *, background: bool, settings: Settings | None = None) -> "Deployment":
        return cls(settings or Settings.from_env(), background=background)

    @cached_property
    def defs(self) -> dg.Definitions:
        from etl_assets.definitions import build_definitions

        return build_definitions(self.settings)

    @cached_property
    def instance(self) -> dg.DagsterInstance:
        return dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else dg.DagsterInstance.ephemeral()

    @cached_property
    def launcher(self) -> WebserverLauncher | InProcessLauncher:
        if self.settings.dagster_webserver_url:
            return WebserverLauncher(self.settings.dagster_webserver_url)
        # A server's log (the API) keeps Dagster's usual output.
        return InProcessLauncher(self.defs, self.instance, background=self.background,
                                 console_level=None if self.background else TERMINAL_CONSOLE_LEVEL)

    @cached_property
    def lookup(self) -> RunLookup:
        launcher = self.launcher
        if isinstance(launcher, WebserverLauncher) and not os.environ.get("DAGSTER_HOME"):
            return WebserverRuns(launcher)
        return InstanceRuns(self.instance)

    def operations(self, launched_by: str) -> Operations:
        specs = {spec.name: spec for spec in load_extracts(self.settings.extracts_file)}
        return Operations(
            self.store, specs, _Lazy(self), lease_seconds=self.settings.run_lease_seconds, launched_by=launched_by
        )

    def close(self) -> None:
        launcher = self.__dict__.get("launcher")
        if isinstance(launcher, InProcessLauncher):
            launcher.join()
        self.store.engine.dispose()
        if "instance" in self.__dict__:
            self.instance.dispose()


class _Lazy:
    """A :class:`RunLookup` that creates the deployment's lookup only when first asked."""

    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment

    def by_id(self, dagster_run_id: str) -> DagsterRunInfo | None:
        return self.deployment.lookup.by_id(dagster_run_id)

    def by_resume_key(self, resume_key: str) -> DagsterRunInfo | None:
        return self.deployment.lookup.by_resume_key(resume_key)

    def active_relaunch(self, run_id: int, extract: str) -> DagsterRunInfo | None:
        return self.deployment.lookup.active_relaunch(run_id, extract)
