"""ServerThread starts and stops cleanly; the command line serves until terminated."""

import errno
import json
import os
import re
import select
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

import etl_assets
from etl_assets.demo import Fault, ServerThread, default_source, patient

REPO_ROOT = Path(etl_assets.__file__).resolve().parent.parent
LISTENING = re.compile(
    r"demo source listening on (http://127\.0\.0\.1:(\d+)) \(patients=7, encounters=21, observations=35\)"
)


def test_context_manager_serves_on_a_free_loopback_port():
    server = ServerThread(default_source(3))

    with server as entered:
        response = httpx.get(f"{server.url}/patients", params={"limit": 1})
        url, port = server.url, server.port

    assert entered is server
    assert url == f"http://127.0.0.1:{port}"
    assert port > 0
    assert response.json() == {"total": 3, "items": [patient(0)]}
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/_control/health")


def test_start_stop_and_restart_on_the_same_port():
    server = ServerThread(default_source(1))
    assert server.start() is server
    port = server.port
    with pytest.raises(RuntimeError, match="already running"):
        server.start()
    server.stop()
    server.stop()

    again = ServerThread(default_source(2), port=port).start()
    try:
        assert again.port == port
        assert httpx.get(f"{again.url}/patients").json()["total"] == 2
    finally:
        again.stop()


def test_a_busy_port_fails_to_start():
    blocker = socket.socket()
    try:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        with pytest.raises(OSError) as caught:
            ServerThread(default_source(1), port=blocker.getsockname()[1]).start()
    finally:
        blocker.close()

    assert caught.value.errno == errno.EADDRINUSE


def test_stops_promptly_with_hung_and_dripping_requests_open():
    threads_before = threading.active_count()
    source = default_source(5)
    source.add_fault(Fault("/patients", action="hang"))
    source.add_fault(Fault("/encounters", action="drip", drip_interval=0.2))
    outcomes: dict[str, BaseException | None] = {}

    def fetch(path: str) -> None:
        try:
            with httpx.stream("GET", f"{server.url}{path}", timeout=30) as response:
                for _ in response.iter_raw():
                    pass
            outcomes[path] = None
        except BaseException as exc:
            outcomes[path] = exc

    server = ServerThread(source).start()
    clients = [threading.Thread(target=fetch, args=(path,)) for path in ("/patients", "/encounters")]
    try:
        for client in clients:
            client.start()
        deadline = time.monotonic() + 5
        while len(source.requests()) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)
        assert sorted(r.action for r in source.requests()) == ["drip", "hang"]
    finally:
        started = time.monotonic()
        server.stop()
        stopped_after = time.monotonic() - started
        for client in clients:
            client.join(10)

    assert stopped_after < 3.0
    assert threading.active_count() == threads_before
    assert type(outcomes["/patients"]) is httpx.RemoteProtocolError
    assert str(outcomes["/patients"]) == "Server disconnected without sending a response."
    assert type(outcomes["/encounters"]) is httpx.RemoteProtocolError


def _cli(*args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
    return subprocess.Popen(
        [sys.executable, "-m", "etl_assets.demo.cli", *args],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _first_line(process: subprocess.Popen, timeout: float = 15.0) -> str:
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    assert ready, "the demo source printed nothing"
    return process.stdout.readline()


def test_cli_serves_until_terminated(tmp_path):
    faults_file = tmp_path / "faults.json"
    faults_file.write_text(json.dumps([{"path": "/encounters", "status": 504}]), encoding="utf-8")
    process = _cli(
        "--port", "0", "--patients", "7",
        "--fault", '{"path": "/patients", "skip": 5, "status": 429, "retry_after": "2"}',
        "--faults-file", str(faults_file),
    )
    try:
        line = _first_line(process)
        match = LISTENING.fullmatch(line.rstrip("\n"))
        assert match, line
        url = match.group(1)
        with httpx.Client(base_url=url, timeout=10) as http:
            page = http.get("/patients", params={"skip": 0, "limit": 100})
            limited = http.get("/patients", params={"skip": 5})
            encounters = http.get("/encounters")
            health = http.get("/_control/health")
    finally:
        process.terminate()
        try:
            returncode = process.wait(10)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            process.stdout.close()
            process.stderr.close()

    assert page.status_code == 200
    assert [item["id"] for item in page.json()["items"]] == [f"pat-{i:08d}" for i in range(7)]
    assert page.json() == {"total": 7, "items": [patient(i) for i in range(7)]}
    assert (limited.status_code, limited.headers["retry-after"]) == (429, "2")
    assert encounters.status_code == 504
    assert health.json() == {"ok": True}
    assert returncode == 0


def test_cli_refuses_an_invalid_fault():
    process = _cli("--port", "0", "--fault", '{"path": "/patients", "action": "explode"}')
    try:
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()

    assert process.returncode == 2
    assert stderr.splitlines()[-1] == (
        "python -m etl_assets.demo.cli: error: argument --fault: invalid fault "
        """'{"path": "/patients", "action": "explode"}': """
        "fault action must be one of status, hang, drip, malformed, drop, got 'explode'"
    )
