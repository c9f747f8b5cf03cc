"""The Lambda runtime, locally (dev-only): one worker process per function instance.

Each instance is `python -m devstack.worker FunctionId`, handling one event at a time like a
Lambda instance, with the function's handler, timeout, memory and environment from the template.
`FunctionPool` keeps up to a number of instances per function and hands an event to a free one;
an invocation that raises, crashes, times out or finds no free instance in time is
`InvocationFailed`. devstack.gateway (the API) and devstack.event_sources (queues, streams,
schedules) invoke functions through it.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from devstack.processes import stop_process
from devstack.worker import FRAME_HEADER

DEFAULT_TIMEOUT_S = 3  # Lambda's default when the template sets none
DEFAULT_MEMORY_MB = 128
INIT_TIMEOUT_S = 30.0  # generous: cold starts on a busy 2-core machine take a few seconds
ACQUIRE_TIMEOUT_S = 30.0  # how long a request waits for a free instance when all are busy


class InvocationFailed(Exception):
    """The function did not produce a result; `kind` says why (error, crash, timeout, throttled)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class FunctionSpec:
    """What it takes to run one template function locally."""

    function_id: str
    code_dir: Path
    environment: dict[str, str]
    timeout_s: float
    memory_mb: int


class _Worker:
    """One `devstack.worker` process; the pool guarantees one caller at a time."""

    def __init__(self, spec: FunctionSpec, python: str, log: IO[bytes] | None, console: bool) -> None:
        self.spec = spec
        self.process = subprocess.Popen(
            [python, "-m", "devstack.worker", spec.function_id],
            cwd=spec.code_dir,
            env=spec.environment,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE if console else (log or subprocess.DEVNULL),
            # Its own session: a terminal's Ctrl-C reaches the gateway, which stops the workers.
            start_new_session=True,
        )
        self.pid = self.process.pid
        if console and self.process.stderr is not None:
            threading.Thread(
                target=_pump_lines, args=(self.process.stderr, f"[{spec.function_id}] "), daemon=True
            ).start()

    def wait_ready(self, timeout_s: float) -> None:
        # "ready" or "init_error": either way the instance serves (an init error fails each event).
        self._read(time.monotonic() + timeout_s, "init")

    def invoke(self, event: dict[str, Any], request_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + self.spec.timeout_s
        message = {
            "event": event,
            "context": {
                "aws_request_id": request_id,
                "deadline_ms": int(time.time() * 1000 + self.spec.timeout_s * 1000),
            },
        }
        body = json.dumps(message).encode()
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(FRAME_HEADER.pack(len(body)) + body)
            self.process.stdin.flush()
        except (BrokenPipeError, OSError) as error:
            raise InvocationFailed("crash", f"the instance is gone ({error})") from error
        reply = self._read(deadline, "invoke")
        if not reply.get("ok"):
            raise InvocationFailed("error", f"{reply.get('errorType')}: {reply.get('errorMessage')}")
        return reply.get("result")  # type: ignore[no-any-return]

    def _read(self, deadline: float, phase: str) -> dict[str, Any]:
        header = self._read_exact(FRAME_HEADER.size, deadline, phase)
        return json.loads(self._read_exact(FRAME_HEADER.unpack(header)[0], deadline, phase))  # type: ignore[no-any-return]

    def _read_exact(self, size: int, deadline: float, phase: str) -> bytes:
        assert self.process.stdout is not None
        try:
            fd = self.process.stdout.fileno()
        except ValueError as error:
            raise InvocationFailed("crash", f"the instance was stopped before {phase}") from error
        data = bytearray()
        while len(data) < size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                limit = self.spec.timeout_s if phase == "invoke" else INIT_TIMEOUT_S
                raise InvocationFailed("timeout", f"Task timed out after {limit:.2f} seconds ({phase})")
            try:
                ready, _, _ = select.select([fd], [], [], remaining)
                if not ready:
                    continue
                chunk = os.read(fd, size - len(data))
            except (OSError, ValueError) as error:  # the gateway closed the pipe while stopping
                raise InvocationFailed("crash", f"the instance was stopped during {phase}") from error
            if not chunk:
                code = self.process.poll()
                raise InvocationFailed("crash", f"the instance exited during {phase} (exit code {code})")
            data += chunk
        return bytes(data)

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()
        self.close_pipes()

    def close_pipes(self) -> None:
        """End of input: an idle worker exits on its own."""
        for stream in (self.process.stdin, self.process.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass


def _pump_lines(stream: IO[bytes], prefix: str) -> None:
    for line in iter(stream.readline, b""):
        sys.stderr.write(prefix + line.decode(errors="replace"))
    stream.close()


class FunctionPool:
    """Up to `size` instances of one function, started on demand like Lambda's (cold starts).

    `warm` instances are started up front and kept: one that crashes or times out is replaced
    at once. Each instance handles one event at a time.
    """

    def __init__(
        self,
        spec: FunctionSpec,
        *,
        size: int,
        warm: int,
        python: str = sys.executable,
        log: IO[bytes] | None = None,
        console: bool = False,
        acquire_timeout_s: float = ACQUIRE_TIMEOUT_S,
    ) -> None:
        self.spec = spec
        self.acquire_timeout_s = acquire_timeout_s
        self.size = max(1, size)
        self.warm = min(max(0, warm), self.size)
        self._python = python
        self._log = log
        self._console = console
        self._cond = threading.Condition()  # re-entrant: _spawn may run under it
        self._idle: list[_Worker] = []
        self._all: set[_Worker] = set()
        self._starting = 0
        self._stopped = False
        # One entry per invocation, for measuring (bench/throughput.py): (seconds waiting for a
        # free instance, seconds the instance took, whether it produced a result). Bounded, so a
        # long `make run` session does not grow it without end.
        self.invocations: deque[tuple[float, float, bool]] = deque(maxlen=100_000)
        self.cold_starts = 0

    def _spawn(self) -> None:
        """Start one instance; a starter thread waits for its import (the cold start)."""
        with self._cond:
            if self._stopped:
                return
            worker = _Worker(self.spec, self._python, self._log, self._console)
            self._all.add(worker)
            self._starting += 1
            self.cold_starts += 1
        threading.Thread(target=self._start, args=(worker,), daemon=True).start()

    def _start(self, worker: _Worker) -> None:
        try:
            worker.wait_ready(INIT_TIMEOUT_S)
        except InvocationFailed:
            worker.kill()  # died or hung during init; the next request starts another
            with self._cond:
                self._all.discard(worker)
                self._starting -= 1
                self._cond.notify_all()
            return
        with self._cond:
            self._starting -= 1
            if not self._stopped:
                self._idle.append(worker)
            self._cond.notify_all()

    def start(self) -> None:
        for _ in range(self.warm):
            self._spawn()

    def wait_ready(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while len(self._idle) < self.warm:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    def _acquire(self) -> _Worker:
        """An idle instance, else a new one (one cold start per waiting request), else wait."""
        deadline = time.monotonic() + min(self.spec.timeout_s, self.acquire_timeout_s)
        spawned = False
        with self._cond:
            while True:
                if self._stopped:
                    raise InvocationFailed("throttled", "the gateway is stopping")
                while self._idle:
                    worker = self._idle.pop()
                    if worker.alive():
                        return worker
                    self._all.discard(worker)  # died while idle
                if len(self._all) < self.size and (not spawned or self._starting == 0):
                    self._spawn()
                    spawned = True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise InvocationFailed("throttled", f"no free {self.spec.function_id} instance")
                self._cond.wait(remaining)

    def _release(self, worker: _Worker) -> None:
        with self._cond:
            if not self._stopped:
                self._idle.append(worker)
            self._cond.notify_all()

    def _discard(self, worker: _Worker) -> None:
        """Like Lambda after a timeout or crash: the instance is gone, and a warm one replaces it."""
        worker.kill()
        with self._cond:
            self._all.discard(worker)
            self._cond.notify_all()
            if len(self._all) < self.warm:
                self._spawn()

    def invoke(self, event: dict[str, Any], request_id: str) -> dict[str, Any]:
        asked = time.monotonic()
        try:
            worker = self._acquire()
        except InvocationFailed:
            self.invocations.append((time.monotonic() - asked, 0.0, False))
            raise
        acquired = time.monotonic()
        try:
            result = worker.invoke(event, request_id)
        except InvocationFailed as failure:
            self.invocations.append((acquired - asked, time.monotonic() - acquired, False))
            if failure.kind in ("crash", "timeout"):
                self._discard(worker)
            else:
                self._release(worker)
            raise
        self.invocations.append((acquired - asked, time.monotonic() - acquired, True))
        self._release(worker)
        return result

    def pids(self) -> list[int]:
        with self._cond:
            return [worker.pid for worker in self._all]

    def stop(self) -> None:
        stop_workers(self.close())

    def close(self) -> list[_Worker]:
        """Refuse new invocations and hand over the instances, for stop_workers()."""
        with self._cond:
            self._stopped = True
            workers = list(self._all)
            self._all.clear()
            self._idle.clear()
            self._cond.notify_all()
        return workers


def stop_workers(workers: list[_Worker], grace_s: float = 2.0) -> None:
    """End of input for all first, then wait: the instances exit in parallel."""
    for worker in workers:
        worker.close_pipes()
    for worker in workers:
        stop_process(worker.process, grace_s, terminate=False)
