"""Small pieces the local stack's servers and child processes share."""

from __future__ import annotations

import subprocess
import sys
import threading
from http.server import ThreadingHTTPServer
from typing import Any


def stop_process(process: subprocess.Popen[Any], grace_s: float = 5.0, *, terminate: bool = True) -> None:
    """End a child: terminate it (or, with terminate=False, first give it `grace_s` to exit on its
    own), then kill it if it is still there after `grace_s`."""
    if process.poll() is not None:
        return
    if not terminate:
        try:
            process.wait(timeout=grace_s)
            return
        except subprocess.TimeoutExpired:
            pass
    process.terminate()
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class QuietHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server that does not report clients dropping kept-alive connections."""

    daemon_threads = True
    # socketserver's default listen backlog is 5: a burst of clients connecting at once (the load
    # run opens 300) would be refused by the kernel before a thread could take them.
    request_queue_size = 1024

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return
        super().handle_error(request, client_address)

    _thread: threading.Thread | None = None

    def start_background(self, name: str) -> None:
        # A short poll interval makes shutdown() quick (tests start and stop servers often).
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, name=name, daemon=True
        )
        self._thread.start()

    def stop_background(self) -> None:
        if self._thread is not None:
            self.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self.server_close()
