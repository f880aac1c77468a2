"""Run the demo source with uvicorn: in a background thread for tests, or in the foreground for the CLI.

The listening socket is bound here, before uvicorn starts, so the port is known up front
(port 0 picks a free one without the race of probing for one and binding it later), and
a client that connects early just waits in the backlog instead of being refused.

Stopping must be prompt even while ``hang`` or ``drip`` faults hold connections open
that no client will ever finish. Rather than cancelling their tasks (which uvicorn logs
as errors with tracebacks), the server first tells the app to close those connections
itself, after which uvicorn's ordinary graceful shutdown has nothing to wait for.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import threading
import time
from collections.abc import Callable
from types import FrameType, TracebackType

import uvicorn

from etl_assets.demo.app import DemoSource, create_app

__all__ = ["ServerThread", "serve"]

LOOPBACK = "127.0.0.1"
_GRACEFUL_SHUTDOWN_SECONDS = 1


class _DemoServer(uvicorn.Server):
    """A uvicorn server that releases fault-held connections before shutting down."""

    def __init__(self, config: uvicorn.Config, stopping: asyncio.Event) -> None:
        super().__init__(config)
        self._stopping = stopping

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._stopping.set()
        await super().shutdown(sockets=sockets)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except BaseException:
        sock.close()
        raise
    return sock


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _build_server(source: DemoSource, *, embedded: bool) -> _DemoServer:
    app = create_app(source)
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=_GRACEFUL_SHUTDOWN_SECONDS,
        **({"log_config": None} if embedded else {}),
    )
    return _DemoServer(config, app.state.stopping)


class ServerThread:
    """The demo source served by uvicorn on 127.0.0.1 in a background thread.

    Use it as a context manager; ``__enter__`` returns once the server accepts
    connections and ``__exit__`` returns once the thread has ended::

        with ServerThread(default_source(50)) as server:
            httpx.get(f"{server.url}/patients")

    ``log_config=None`` keeps uvicorn from reconfiguring the host process's logging:
    its warnings and errors propagate to the root logger like any library's.

    Args:
        source: what to serve; the test keeps it to add faults and read the log.
        port: port to listen on; 0 (the default) picks a free one.
        startup_timeout: seconds :meth:`start` waits for the server to be ready.
        shutdown_timeout: seconds :meth:`stop` waits for a graceful stop before forcing
            one, and again for the forced one.

    Attributes:
        source: the served :class:`DemoSource`.
        port: the bound port, once started.
        url: ``http://127.0.0.1:{port}``, once started.
    """

    def __init__(
        self, source: DemoSource, *, port: int = 0, startup_timeout: float = 10.0, shutdown_timeout: float = 5.0
    ) -> None:
        self.source = source
        self.port: int | None = None
        self.url: str | None = None
        self._requested_port = port
        self._startup_timeout = startup_timeout
        self._shutdown_timeout = shutdown_timeout
        self._server: _DemoServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> ServerThread:
        """Start serving and wait until the server accepts connections.

        Raises:
            RuntimeError: already started, or not ready within ``startup_timeout``.
            OSError: the port cannot be bound.
        """
        if self._thread is not None:
            raise RuntimeError("the demo source server is already running")
        sock = _bind(LOOPBACK, self._requested_port)
        self.port = sock.getsockname()[1]
        self.url = _url(LOOPBACK, self.port)
        server = _build_server(self.source, embedded=True)
        thread = threading.Thread(
            target=self._run, args=(server, sock), name=f"demo-source-{self.port}", daemon=True
        )
        self._server, self._thread = server, thread
        thread.start()
        deadline = time.monotonic() + self._startup_timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"the demo source server on {self.url} did not start within {self._startup_timeout} s"
                )
            time.sleep(0.005)
        return self

    @staticmethod
    def _run(server: _DemoServer, sock: socket.socket) -> None:
        try:
            server.run(sockets=[sock])
        finally:
            sock.close()

    def stop(self) -> None:
        """Stop the server and wait for its thread to end; a no-op when not running.

        Raises:
            RuntimeError: the thread is still alive after a graceful and a forced stop.
        """
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.should_exit = True
        thread.join(self._shutdown_timeout)
        if thread.is_alive():
            server.force_exit = True
            thread.join(self._shutdown_timeout)
        if thread.is_alive():
            raise RuntimeError(f"the demo source server on {self.url} did not stop")
        self._server = self._thread = None

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self._thread is not None else "stopped"
        return f"ServerThread(url={self.url!r}, {state})"


def serve(
    source: DemoSource,
    host: str = LOOPBACK,
    port: int = 8765,
    *,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve ``source`` in the foreground until SIGINT or SIGTERM, then return normally.

    uvicorn re-raises a caught signal once it has shut down, which would kill the
    process with that signal; the handlers installed here for the duration turn it into
    a plain return instead, so a command line ``run`` can exit 0. A signal arriving
    before uvicorn installs its own handlers still stops the server.

    Args:
        source: what to serve.
        host: interface to bind; keep the loopback default unless the source must be
            reachable from elsewhere.
        port: port to bind; 0 picks a free one (``on_ready`` receives it).
        on_ready: called with the base URL once the port is bound, before serving;
            connections made from then on wait in the backlog until the server accepts.
    """
    sock = _bind(host, port)
    try:
        server = _build_server(source, embedded=False)

        def request_exit(signum: int, frame: FrameType | None) -> None:
            if server.should_exit and signum == signal.SIGINT:
                server.force_exit = True
            server.should_exit = True

        in_main_thread = threading.current_thread() is threading.main_thread()
        previous = (
            {sig: signal.signal(sig, request_exit) for sig in (signal.SIGINT, signal.SIGTERM)} if in_main_thread else {}
        )
        try:
            if on_ready is not None:
                on_ready(_url(host, sock.getsockname()[1]))
            server.run(sockets=[sock])
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    finally:
        sock.close()
