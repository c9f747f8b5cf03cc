"""What the local stack's servers, children and tests share: waits, a 127.0.0.1 client, stops."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

import httpx

T = TypeVar("T")


def eventually(probe: Callable[[], T | None], *, timeout: float, what: str = "a condition") -> T:
    """Poll `probe` until it returns something truthy; at the deadline, an AssertionError (a failed check)."""
    deadline, interval = time.monotonic() + timeout, 0.01
    while not (value := probe()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)
        interval = min(interval * 1.5, 0.2)
    return value


def local_http(base_url: str = "", **options: Any) -> httpx.Client:
    """An httpx client for 127.0.0.1: trust_env=False, so a developer's proxy never reroutes it."""
    return httpx.Client(base_url=base_url, trust_env=False, **{"timeout": 30, **options})


def stop_process(process: subprocess.Popen[Any], grace_s: float = 5.0, *, terminate: bool = True) -> None:
    """End a child: terminate (terminate=False: after `grace_s` to exit), then kill it `grace_s` later."""
    steps: list[Callable[[], None]] = [process.terminate, process.kill]
    for step in steps if terminate else [lambda: None, *steps]:
        if process.poll() is None:
            step()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=grace_s)
    process.wait()


class _Dispatch(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as clients of the real services expect
    server_version, sys_version = "devstack", ""
    server: QuietHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # each server keeps its own log

    def do_GET(self) -> None:
        self.server.owner.handle(self)

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET


class QuietHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server on 127.0.0.1 that hands every request to `owner.handle(request)` and
    does not report clients dropping kept-alive connections."""

    daemon_threads = True
    request_queue_size = 1024  # not socketserver's 5: the load run's 300 clients connect at once
    _thread: threading.Thread | None = None

    def __init__(self, owner: Any, port: int = 0, *, host: str = "127.0.0.1") -> None:
        super().__init__((host, port), _Dispatch)
        self.owner = owner

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionResetError | BrokenPipeError):
            super().handle_error(request, client_address)

    def start_background(self, name: str) -> None:
        # A short poll interval makes shutdown() quick (tests start and stop servers often).
        self._thread = threading.Thread(target=self.serve_forever, args=(0.05,), name=name, daemon=True)
        self._thread.start()

    def stop_background(self) -> None:
        if self._thread is not None:
            self.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self.server_close()
