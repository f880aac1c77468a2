"""The HTTP client of one run: pooled, retrying, and never past the deadline.

Requests run on an ``httpx.AsyncClient`` inside a private event-loop thread, so each
request's *total* time (connect, headers and every byte of the body) can be bounded by
the time left in the run. A synchronous client can only bound each socket read, which a
server dripping one byte every few seconds defeats. Callers stay synchronous: ``get``
blocks, ``submit`` returns a future so the next page can be fetched while one is written.

Requests in flight share one rate-limit gate: when the source answers 429, or any
retryable status with ``Retry-After``, no request of this run starts again before that
time, so pages fetched ahead do not keep hitting a source that asked to be left alone.
"""

import asyncio
import email.utils
import logging
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import anyio
import anyio.from_thread
import httpx

from etl_assets.errors import MalformedPageError, SettingsError, SourceHTTPError, SourceUnavailableError
from etl_assets.sources import templates
from etl_assets.sources.deadline import Deadline, DeadlineExceeded
from etl_assets.sources.secrets import RedactingFilter, Redactor, strip_userinfo, userinfo_secrets
from etl_assets.sources.spec import ExtractSpec

RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
HTTP_LOGGERS = ("httpx", "httpcore", "httpcore.http11", "httpcore.connection")
USER_AGENT = "etl-assets/0.1"


_EMPTY_STREAM = httpx.ByteStream(b"")


def _unbind(response: httpx.Response) -> None:
    """Break the reference cycle between a read response and its stream.

    httpx's ``Response`` and the ``BoundAsyncStream`` it reads from point at each other, so a
    response, body included, is freed only when the cyclic collector next runs, not when the
    page is done with it. With a page of a megabyte or more, and the collector running rarely
    in a loop that pauses it while parsing, that kept tens of megabytes of finished pages
    alive. The body is read in full by then (``get`` reads and closes it), so the stream is
    not needed."""
    response.stream = _EMPTY_STREAM


@dataclass(frozen=True)
class Page:
    """One successful response, body read in full."""

    url: str
    """The URL as it may be shown (credentials masked)."""
    status_code: int
    headers: httpx.Headers
    content: bytes
    attempts: int
    request_url: str = ""
    """The URL really requested, credentials and all: relative next links resolve against it.
    Never shown."""


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    current = datetime.now(timezone.utc).timestamp() if now is None else now
    return max(0.0, when.timestamp() - current)


class SourceClient:
    """Fetches pages of one extract. Use as a context manager; it owns its thread."""

    def __init__(
        self,
        spec: ExtractSpec,
        *,
        deadline: Deadline,
        redactor: Redactor,
        environ: Mapping[str, str],
        log: logging.Logger | Any,
    ) -> None:
        self.spec = spec
        self.deadline = deadline
        self.redact = redactor
        self.log = log
        where = f"extract {spec.name!r}"
        self.base_url = templates.resolve(spec.base_url, environ, where=f"{where}: client.base_url")
        for secret in userinfo_secrets(self.base_url):
            redactor.add(secret)
        self.headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        for name, value in spec.headers.items():
            self._register_secrets(value, environ)
            resolved = templates.resolve(value, environ, where=f"{where}: client.headers.{name}")
            if templates.references(value):
                redactor.add(resolved)
                redactor.add(resolved.split(" ", 1)[-1])
                resolved = resolved.rstrip("\r\n")
                if "\n" in resolved or "\r" in resolved:
                    variables = ", ".join(templates.references(value))
                    raise SettingsError(
                        f"{where}: client.headers.{name}: the value of {variables} contains a line break, "
                        "which HTTP headers cannot carry"
                    )
            if not resolved.isascii() or any(ord(c) < 32 and c != "\t" or ord(c) == 127 for c in resolved):
                source = f"the value of {', '.join(templates.references(value))}" if templates.references(value) \
                    else "its value"
                raise SettingsError(
                    f"{where}: client.headers.{name}: {source} holds a character HTTP headers cannot carry "
                    "(only printable ASCII is allowed)"
                )
            self.headers[name] = resolved
        self.params: dict[str, Any] = {}
        for name, value in spec.params.items():
            if isinstance(value, str):
                self._register_secrets(value, environ)
                resolved = templates.resolve(value, environ, where=f"{where}: endpoint.params.{name}")
                if templates.references(value):
                    redactor.add(resolved)
                self.params[name] = resolved
            elif isinstance(value, bool):
                self.params[name] = "true" if value else "false"
            elif value is not None:
                self.params[name] = value
        self.requests_made = 0
        self._portal_cm: Any = None
        self._portal: anyio.from_thread.BlockingPortal | None = None
        self._client: httpx.AsyncClient | None = None
        self._pending: set[Future[Page]] = set()
        self._not_before = 0.0  # the rate-limit gate, on the event loop's clock
        self._log_filter = RedactingFilter(redactor)

    def _register_secrets(self, value: str, environ: Mapping[str, str]) -> None:
        """Every variable a header or parameter refers to is a secret, on its own too
        (``key=${TOKEN}`` must also hide a bare token a server echoes back)."""
        for variable in templates.references(value):
            secret = environ.get(variable, "")
            self.redact.add(secret)
            self.redact.add(secret.strip())

    def __enter__(self) -> "SourceClient":
        for name in HTTP_LOGGERS:
            logging.getLogger(name).addFilter(self._log_filter)
        self._portal_cm = anyio.from_thread.start_blocking_portal()
        self._portal = self._portal_cm.__enter__()
        try:
            self._client = self._portal.call(self._open)
        except BaseException:
            self.close()  # stop the portal's thread, or the process cannot exit
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Cancel what is in flight, close the pool and stop the thread."""
        if self._portal is None:
            return
        for future in list(self._pending):
            future.cancel()
        try:
            if self._client is not None:
                self._portal.call(self._client.aclose)
        finally:
            self._portal_cm.__exit__(None, None, None)
            self._portal = None
            self._client = None
            for name in HTTP_LOGGERS:
                logging.getLogger(name).removeFilter(self._log_filter)

    async def _refuse_foreign_redirect(self, request: httpx.Request) -> None:
        """Secrets from the environment go to the configured host only: httpx drops just the
        ``Authorization`` header on a redirect to another host, not an ``X-Api-Key`` or a
        query parameter."""
        url = request.url
        if (url.scheme, url.host, url.port) != self._origin:
            shown = self.redact(strip_userinfo(str(url.copy_with(query=None))))
            raise SourceHTTPError(
                f"extract {self.spec.name!r}: the source redirected to {shown}, another host than "
                f"client.base_url; its credentials are not sent there",
                extract=self.spec.name,
                status_code=None,
            )

    async def _open(self) -> httpx.AsyncClient:
        base = httpx.URL(self.base_url)
        self._origin = (base.scheme, base.host, base.port)
        secret_bearing = any(
            isinstance(v, str) and templates.references(v) for v in [*self.spec.headers.values(), *self.spec.params.values()]
        )
        return httpx.AsyncClient(
            event_hooks={"request": [self._refuse_foreign_redirect]} if secret_bearing else {},
            base_url=self.base_url,
            headers=self.headers,
            timeout=httpx.Timeout(self.spec.request_timeout_seconds),
            limits=httpx.Limits(max_connections=max(8, self.spec.max_in_flight),
                                max_keepalive_connections=max(8, self.spec.max_in_flight)),
            follow_redirects=True,
        )

    def shown_url(self, params: Mapping[str, Any]) -> str:
        """The request URL as it may appear in logs and errors."""
        url = httpx.URL(self.base_url.rstrip("/") + self.spec.path, params={**self.params, **params})
        return self.redact(strip_userinfo(str(url)))

    def submit(self, params: Mapping[str, Any], url: str | None = None) -> "Future[Page]":
        """Start fetching a page in the background; the future holds the page or the error.

        ``url`` is a next link (absolute, or relative to the page that gave it, already
        resolved); ``None`` requests the endpoint's path."""
        assert self._portal is not None, "SourceClient used outside its context"
        future = self._portal.start_task_soon(self._fetch, dict(params), url)
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)
        return future

    def get(self, params: Mapping[str, Any], url: str | None = None) -> Page:
        """Fetch a page, retrying what can be retried; block until done."""
        return self.submit(params, url).result()

    def _link_target(self, url: str, params: Mapping[str, Any]) -> tuple[httpx.URL, list[tuple[str, Any]]]:
        """A next link as a URL and its query: the link's own parameters, then the spec's and
        the paginator's where the link lacks them (a resumed link was stored without the
        spec's credentials). A link to another host is refused: the credentials go to
        ``client.base_url``'s host only."""
        try:
            target = httpx.URL(self.base_url).join(url)
        except httpx.InvalidURL as exc:
            raise MalformedPageError(
                f"extract {self.spec.name!r}: the source's next link is not a usable URL ({exc}): "
                f"{self.redact(strip_userinfo(url))[:200]}",
                extract=self.spec.name,
            ) from None
        if (target.scheme, target.host, target.port) != self._origin:
            shown = self.redact(strip_userinfo(str(target.copy_with(query=None))))
            raise SourceHTTPError(
                f"extract {self.spec.name!r}: the source's next link points to {shown}, another host than "
                "client.base_url; its credentials are not sent there",
                extract=self.spec.name,
                status_code=None,
            )
        pairs: list[tuple[str, Any]] = list(target.params.multi_items())
        present = {name for name, _ in pairs}
        pairs += [(name, value) for name, value in {**self.params, **params}.items() if name not in present]
        return target.copy_with(query=None), pairs

    async def _fetch(self, params: dict[str, Any], url: str | None = None) -> Page:
        assert self._client is not None
        retries = self.spec.retries
        if url is None:
            target: httpx.URL | str = self.spec.path
            query: Any = {**self.params, **params}
            shown = self.shown_url(params)
        else:
            target, query = self._link_target(url, params)
            shown = self.redact(strip_userinfo(str(target.copy_merge_params(query))))
        attempt = 0
        while True:
            attempt += 1
            await self._wait_for_gate(shown)
            self.deadline.check(f"requesting {shown}")
            budget = min(self.deadline.remaining(), self.spec.request_timeout_seconds)
            wait: float | None = None
            self.requests_made += 1
            try:
                with anyio.fail_after(budget):
                    response = await self._client.get(target, params=query)
            except TimeoutError:
                if self.deadline.expired():
                    raise DeadlineExceeded(
                        f"time budget of {self.deadline.seconds:g} s ran out while waiting for {shown}"
                    ) from None
                problem = f"no complete answer within {budget:.1f} s"
                status = None
            except httpx.TransportError as exc:
                problem = self.redact(f"{type(exc).__name__}: {exc}".rstrip(": "))
                status = None
            else:
                _unbind(response)
                status = response.status_code
                if 200 <= status < 300:
                    return Page(shown, status, response.headers, response.content, attempt, str(response.url))
                reason = self.redact(response.reason_phrase or "")
                problem = f"HTTP {status} {reason}".strip()
                if status not in RETRYABLE_STATUS:
                    raise SourceHTTPError(
                        f"extract {self.spec.name!r}: {shown} answered {problem}; "
                        "this status is not retried (check the URL, parameters and credentials)",
                        extract=self.spec.name,
                        status_code=status,
                    )
                wait = retry_after_seconds(response.headers.get("Retry-After"))
            if attempt >= retries.max_attempts:
                message = (
                    f"extract {self.spec.name!r}: {shown} failed {attempt} times, last: {problem}"
                )
                if status is None:
                    raise SourceUnavailableError(message, extract=self.spec.name)
                raise SourceHTTPError(message, extract=self.spec.name, status_code=status)
            shared = wait is not None or status == 429
            if wait is None:
                wait = min(retries.backoff_seconds * 2 ** (attempt - 1), retries.max_backoff_seconds)
            if wait >= self.deadline.remaining():
                raise DeadlineExceeded(
                    f"{shown} answered {problem} and asked to wait {wait:g} s, "
                    f"past the end of the {self.deadline.seconds:g} s time budget"
                )
            self.log.warning(
                f"extract {self.spec.name!r}: {shown}: {problem}; "
                f"retry {attempt}/{retries.max_attempts - 1} in {wait:.2f} s"
            )
            if shared:
                loop = asyncio.get_running_loop()
                self._not_before = max(self._not_before, loop.time() + wait)
            await asyncio.sleep(wait)

    async def _wait_for_gate(self, shown: str) -> None:
        """Hold a request until the source's last ``Retry-After`` (or 429) has passed."""
        delay = self._not_before - asyncio.get_running_loop().time()
        if delay <= 0:
            return
        if delay >= self.deadline.remaining():
            raise DeadlineExceeded(
                f"the source asked this run to wait {delay:.1f} s before {shown}, "
                f"past the end of the {self.deadline.seconds:g} s time budget"
            )
        await asyncio.sleep(delay)


