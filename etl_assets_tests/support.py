"""Helpers shared by the tests: warehouse access, spec building, record sets."""

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from etl_assets.checkpoints import CheckpointStore, RunRecord
from etl_assets.extract import ExtractHooks, ExtractOptions, ExtractResult, run_extract
from etl_assets.sources.spec import ExtractSpec, PaginatorSpec, RetrySpec
from etl_assets.warehouse.engine import create_warehouse_engine


@dataclass
class Warehouse:
    """A test's own warehouse: an engine and, on PostgreSQL, its own schema."""

    url: str
    schema: str | None
    engine: Engine
    store: CheckpointStore

    @classmethod
    def create(cls, url: str, schema: str | None) -> "Warehouse":
        engine = create_warehouse_engine(url)
        return cls(url=url, schema=schema, engine=engine, store=CheckpointStore(engine, schema))

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def table(self, name: str) -> str:
        return f'"{self.schema}"."{name}"' if self.schema else f'"{name}"'

    def records(self, extract: str) -> dict[str, dict[str, Any]]:
        """``record_key -> record`` of a staging table."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.text(f"SELECT record_key, record FROM {self.table('stg_' + extract)}"))
            return {key: (json.loads(rec) if isinstance(rec, str) else rec) for key, rec in rows}

    def runs(self, extract: str | None = None) -> list[RunRecord]:
        return list(reversed(self.store.list_runs(extract)))

    def run(self, run_id: int) -> RunRecord:
        record = self.store.get(run_id)
        assert record is not None
        return record


def items_spec(
    base_url: str,
    *,
    name: str = "items",
    path: str = "/items",
    limit: int = 10,
    params: dict[str, Any] | None = None,
    retries: RetrySpec | None = None,
    **paginator: Any,
) -> ExtractSpec:
    """A spec for the demo source's ``{"total", "items"}`` offset paging."""
    return ExtractSpec(
        name=name,
        group="test",
        base_url=base_url,
        path=path,
        primary_key=("id",),
        paginator=PaginatorSpec(
            type="offset",
            limit=limit,
            offset_param="skip",
            limit_param="limit",
            total_path=paginator.pop("total_path", "total"),
            **paginator,
        ),
        retries=retries or RetrySpec(max_attempts=3, backoff_seconds=0.05, max_backoff_seconds=0.2),
        params=params or {},
        data_selector="items",
    )


ITEMS_EXTRACTS_YAML = """
name: {group}
client:
  base_url: {url}
  paginator: {{type: offset, limit: 10, offset_param: skip, limit_param: limit, total_path: total}}
resources:
  - name: items
    primary_key: id
    endpoint: {{path: /items, data_selector: items}}
"""
"""An extracts file with one ``items`` extract of the demo source (format ``group`` and ``url``)."""


def simple_records(count: int, start: int = 1, name: Callable[[int], str] = lambda i: f"name-{i}") -> list[dict]:
    """Records shaped like the field cases: ``{"id", "name", "updated_at"}``."""
    return [
        {"id": i, "name": name(i), "updated_at": f"2026-01-{1 + i % 28:02d}T00:00:00Z"}
        for i in range(start, start + count)
    ]


def extract(
    spec: ExtractSpec,
    warehouse: Warehouse,
    *,
    timeout: float = 60,
    interval: float = 0,
    resume: bool = True,
    hooks: ExtractHooks | None = None,
    environ: dict[str, str] | None = None,
    log: Any = None,
    log_every: float = 10.0,
) -> ExtractResult:
    options = ExtractOptions(
        timeout_seconds=timeout, checkpoint_interval_seconds=interval, resume_from_checkpoint=resume,
        checkpoint_log_seconds=log_every,
    )
    return run_extract(
        spec,
        warehouse.store,
        options,
        hooks=hooks,
        environ=environ or {},
        log=log,
    )


def with_limit(spec: ExtractSpec, limit: int) -> ExtractSpec:
    return replace(spec, paginator=replace(spec.paginator, limit=limit))


def free_port() -> int:
    """A loopback port nobody listens on now, for a server a test starts in another process."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class AppServer:
    """Any ASGI app under a real uvicorn on 127.0.0.1, in a thread, for the length of a test."""

    def __init__(self, app: Any) -> None:
        import socket

        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="off"))
        self.thread: Any = None

    def __enter__(self) -> "AppServer":
        import threading
        import time

        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the app server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


@dataclass(frozen=True)
class SeenRequest:
    """One request as it reached the server: what a test needs to prove a secret was sent."""

    path: str
    query: str
    headers: dict[str, str]


class RequestCapture:
    """ASGI middleware that keeps every HTTP request's path, raw query string and headers.

    The demo source's own request log keeps only ``skip`` and ``limit``; a test that checks a
    secret never leaks must also show the secret did reach the source, or it could pass with
    a run that never sent it."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.seen: list[SeenRequest] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            self.seen.append(SeenRequest(scope["path"], scope["query_string"].decode("latin-1"), headers))
        await self.app(scope, receive, send)
