"""moto's server as the local stack's AWS (dev-only; fake credentials): a child process on 127.0.0.1
that exits with its parent (no port stays held), optionally profiling each request (bench/throughput.py)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any
from unittest import mock

from devstack.processes import stop_process
from devstack.template import REGION

HOST = "127.0.0.1"
# What every process of the stack sees of AWS: moto, fake credentials, no profile or config file.
FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",  # moto accepts any credentials
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
}


@contextlib.contextmanager
def aws_environment(endpoint_url: str) -> Iterator[None]:
    """This process's boto3 pointed at moto for the duration (provisioning)."""
    import boto3

    # A session made before would keep its own credentials.
    with (
        mock.patch.dict(os.environ, {**FAKE_AWS, "AWS_ENDPOINT_URL": endpoint_url}),
        mock.patch.object(boto3, "DEFAULT_SESSION", None),
    ):
        os.environ.pop("AWS_PROFILE", None)
        yield


def moto_client(service: str, endpoint_url: str) -> Any:
    """A boto3 client for moto with fake credentials and no global state."""
    import boto3

    session = boto3.session.Session("testing", "testing", region_name=REGION)
    return session.client(service, endpoint_url=endpoint_url)


def free_port(preferred: int = 0, host: str = HOST) -> int:
    """`preferred` if nothing listens there (0: any), else a port the OS picks."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, preferred))
        except OSError:  # taken
            probe.bind((host, 0))
        return int(probe.getsockname()[1])


def wait_listening(port: int, process: subprocess.Popen[bytes], deadline: float) -> bool:
    """Whether `process` listens on `port` before `deadline` (False if it exits)."""
    while time.monotonic() < deadline and process.poll() is None:
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
            return True
        time.sleep(0.05)
    return False


def start_moto(
    port: int = 0, *, log: IO[bytes] | None = None, profile: Path | None = None, timeout_s: float = 30.0
) -> tuple[subprocess.Popen[bytes], str]:
    """moto's server on `port` if it is free, else on any free port: (its process, its URL)."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(("AWS_", "MOTO_"))}
    env |= {**FAKE_AWS, "DEVSTACK_PARENT_PID": str(os.getpid())}
    env |= {"DEVSTACK_MOTO_PROFILE": str(profile)} if profile is not None else {}
    deadline = time.monotonic() + timeout_s
    for _ in range(3):  # another process may take the probed port before moto binds it
        port = free_port(port)
        process = subprocess.Popen(
            [sys.executable, "-m", "devstack.fake_aws", "-H", HOST, "-p", str(port)],
            cwd=Path(__file__).resolve().parents[1],  # this checkout's devstack
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches the stack, which stops it in order
        )
        if wait_listening(port, process, deadline):
            return process, f"http://{HOST}:{port}"
        stop_process(process)
        port = 0
    raise RuntimeError("moto's server did not start")


@contextlib.contextmanager
def moto_server(timeout_s: float = 30.0, *, profile: Path | None = None) -> Iterator[str]:
    """moto's server alone on a free port, for the duration; yields its URL."""
    process, url = start_moto(profile=profile, timeout_s=timeout_s)
    try:
        yield url
    finally:
        stop_process(process)


def _profile_requests(path: str) -> None:
    """cProfile each request handler thread's CPU; the merged profile goes to `path` at exit."""
    import atexit
    import cProfile
    import pstats

    from werkzeug.serving import WSGIRequestHandler

    profilers: list[cProfile.Profile] = []
    local, stopping, run_wsgi = threading.local(), threading.Event(), WSGIRequestHandler.run_wsgi
    active: set[int] = set()  # the threads in a profiled request

    def profiled(handler: WSGIRequestHandler) -> None:
        if stopping.is_set():
            return run_wsgi(handler)
        if not hasattr(local, "profiler"):
            local.profiler = cProfile.Profile(time.thread_time)
            profilers.append(local.profiler)
        active.add(threading.get_ident())
        local.profiler.enable()
        try:
            return run_wsgi(handler)
        finally:
            local.profiler.disable()
            active.discard(threading.get_ident())

    def dump() -> None:
        stopping.set()  # and no profiler is read while its thread still writes to it
        deadline = time.monotonic() + 2
        while active and time.monotonic() < deadline:
            time.sleep(0.01)
        if profilers:
            pstats.Stats(*profilers).dump_stats(path)  # type: ignore[arg-type]

    WSGIRequestHandler.run_wsgi = profiled  # type: ignore[method-assign]
    atexit.register(dump)  # moto's server exits on SIGTERM (sys.exit in its own handler)


def main() -> None:
    parent = int(os.environ["DEVSTACK_PARENT_PID"])

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()
    if os.environ.get("DEVSTACK_MOTO_PROFILE"):
        _profile_requests(os.environ["DEVSTACK_MOTO_PROFILE"])
    from moto.server import main as moto_main

    moto_main(sys.argv[1:])


if __name__ == "__main__":
    main()
