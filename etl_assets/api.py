"""The retry HTTP API: ``etl-assets api --host 127.0.0.1 --port 8000``.

Routes::

    GET  /health                    liveness and whether the warehouse answers (no token needed)
    GET  /runs?extract=&status=&limit=
    GET  /runs/{run_id}             status, checkpoint, attempts, relaunch history
    POST /runs/{run_id}/retry       body {"dry_run": bool}: 202 with the Dagster run id, or the plan

Every error is JSON ``{"error": {"code": ..., "message": ...}}``: 400 malformed id or body,
401 missing or wrong token, 404 unknown run, 409 a run that succeeded or is still active,
503 when Dagster or the warehouse cannot be reached. Nothing answers 500 on bad input.
"""

import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import sqlalchemy.exc
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from etl_assets.checkpoints import RunStatus
from etl_assets.deployment import Deployment
from etl_assets.errors import CorruptRunError, LaunchError, RunConflictError, RunNotFoundError
from etl_assets.operations import Launcher, Operations, run_detail, run_summary
from etl_assets.settings import IDENTIFIER

log = logging.getLogger("etl_assets.api")
MAX_LIMIT = 1000


class BadRequest(Exception):
    def __init__(self, message: str, code: str = "bad_request") -> None:
        super().__init__(message)
        self.code = code


def error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


MAX_RUN_ID = 2**31 - 1  # dw_etl_runs.run_id is a 32-bit integer on PostgreSQL


def parse_run_id(raw: str) -> int:
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18 or not 1 <= int(raw) <= MAX_RUN_ID:
        raise BadRequest(f"run_id must be an integer from 1 to {MAX_RUN_ID}, got {raw[:40]!r}", "invalid_run_id")
    return int(raw)


async def parse_retry_body(request: Request) -> bool:
    raw = await request.body()
    if not raw.strip():
        return False
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BadRequest('the body must be JSON like {"dry_run": false}', "invalid_json") from None
    if not isinstance(body, dict):
        raise BadRequest('the body must be a JSON object like {"dry_run": false}', "invalid_body")
    unknown = sorted(set(body) - {"dry_run"})
    if unknown:
        raise BadRequest(f"unknown field(s) in the body: {', '.join(unknown)}", "invalid_body")
    dry_run = body.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise BadRequest(f"dry_run must be true or false, got {json.dumps(dry_run)[:40]}", "invalid_body")
    return dry_run


def create_app(operations: Operations, launcher: Launcher, *, token: str | None) -> Starlette:
    """The ASGI app over ``operations``; ``token`` turns on bearer authentication."""

    async def health(request: Request) -> Response:
        try:
            await run_in_threadpool(operations.store.ensure_schema)
        except Exception as exc:
            return error(503, "warehouse_unavailable", f"the warehouse does not answer: {type(exc).__name__}")
        return JSONResponse({"status": "ok", "extracts": sorted(operations.extracts)})

    async def list_runs(request: Request) -> Response:
        params = request.query_params
        extract = params.get("extract") or None
        if extract is not None and not IDENTIFIER.match(extract):
            raise BadRequest(f"extract must be an extract name, got {extract[:40]!r}", "invalid_query")
        status = params.get("status") or None
        if status is not None and status not in {s.value for s in RunStatus}:
            raise BadRequest(f"status must be running, success or failed, got {status[:40]!r}", "invalid_query")
        raw_limit = params.get("limit", "50")
        if not raw_limit.isascii() or not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_LIMIT:
            raise BadRequest(f"limit must be an integer from 1 to {MAX_LIMIT}, got {raw_limit[:40]!r}", "invalid_query")
        rows = await run_in_threadpool(operations.list, extract=extract, status=status, limit=int(raw_limit))
        return JSONResponse({"runs": [run_summary(r) for r in rows]})

    async def show_run(request: Request) -> Response:
        run_id = parse_run_id(request.path_params["run_id"])
        row = await run_in_threadpool(operations.get, run_id)
        return JSONResponse(run_detail(row))

    async def retry(request: Request) -> Response:
        run_id = parse_run_id(request.path_params["run_id"])
        dry_run = await parse_retry_body(request)
        if dry_run:
            plan = await run_in_threadpool(operations.plan_retry, run_id)
            return JSONResponse({"dry_run": True, "would": plan.to_json()})
        plan, dagster_run_id = await run_in_threadpool(operations.retry, run_id, launcher)
        log.info("retry of dw_etl_runs run %s launched as Dagster run %s", run_id, dagster_run_id)
        return JSONResponse({"dry_run": False, "dagster_run_id": dagster_run_id, **plan.to_json()}, status_code=202)

    def guarded(endpoint: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        async def wrapper(request: Request) -> Response:
            if token is not None:
                given = request.headers.get("authorization", "")
                scheme, _, value = given.partition(" ")
                if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token.encode()):
                    return error(401, "unauthorized", "a valid `Authorization: Bearer <token>` header is required",
                                 {"WWW-Authenticate": "Bearer"})
            try:
                return await endpoint(request)
            except BadRequest as exc:
                return error(400, exc.code, str(exc))
            except RunNotFoundError as exc:
                return error(404, "not_found", str(exc))
            except RunConflictError as exc:
                return error(409, "conflict", str(exc))
            except LaunchError as exc:
                return error(503, "launch_failed", str(exc))
            except CorruptRunError as exc:
                return error(500, "corrupt_run", str(exc))
            except sqlalchemy.exc.OperationalError as exc:
                # Only the exception's class: its text can hold the database URL.
                log.warning("the warehouse does not answer on %s %s: %s", request.method, request.url.path,
                            type(exc.orig or exc).__name__)
                return error(503, "warehouse_unavailable",
                             f"the warehouse does not answer: {type(exc.orig or exc).__name__}")

        return wrapper

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return error(exc.status_code, "http_error", str(exc.detail))

    async def server_error(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error(500, "internal_error", f"unexpected {type(exc).__name__}; see the API log")

    return Starlette(
        routes=[
            Route("/health", health, methods=["GET"]),
            Route("/runs", guarded(list_runs), methods=["GET"]),
            Route("/runs/{run_id}", guarded(show_run), methods=["GET"]),
            Route("/runs/{run_id}/retry", guarded(retry), methods=["POST"]),
        ],
        exception_handlers={HTTPException: http_error, Exception: server_error},
    )


def add_arguments(parser: Any) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")


def run(args: Any) -> int:
    import uvicorn

    deployment = Deployment.from_env(background=True)
    app = create_app(deployment.operations("api"), deployment.launcher, token=deployment.settings.api_token)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    finally:
        deployment.close()
    return 0
