"""Small pieces the local stack's servers and child processes share."""

from __future__ import annotations

import subprocess
import sys
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

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return
        super().handle_error(request, client_address)
