"""The Lambda runtime, locally (dev-only): per function a pool of `devstack.worker` processes."""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from devstack.processes import stop_process
from devstack.template import REGION, ROOT, Stack

DEFAULT_TIMEOUT_S = 3  # Lambda's default when the template sets none
INIT_TIMEOUT_S = 30.0  # generous: cold starts on a busy 2-core machine take a few seconds
ACQUIRE_TIMEOUT_S = 30.0  # how long an event waits for a free instance when all are busy


class InvocationFailed(Exception):
    """The function did not produce a result; `kind` says why (error, crash, timeout, throttled)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class FunctionSpec:
    function_id: str
    environment: dict[str, str]  # all of it, as on Lambda: nothing of the developer's shell leaks in
    timeout_s: float


def function_spec(stack: Stack, function_id: str, overrides: Mapping[str, str] | None = None) -> FunctionSpec:
    """A template function's handler, timeout and environment: Globals, its properties, `overrides`."""
    globals_ = stack.template.get("Globals", {}).get("Function", {})
    props = {**globals_, **stack.functions()[function_id]["Properties"]}
    # Its layers (Globals' then its own) as Lambda's /opt/python, the common one if none; then this
    # checkout's devstack, not whichever checkout an editable install points at.
    layers = [*globals_.get("Layers", []), *props.get("Layers", [])]
    resources = stack.template["Resources"]
    paths = {str(ROOT / resources[layer["Ref"]]["Properties"]["ContentUri"]): None for layer in layers}
    runtime = {
        "PATH": os.environ.get("PATH", os.defpath),
        "LANG": "C.UTF-8",
        "TZ": "UTC",
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": os.pathsep.join([*(paths or [str(ROOT / "layers" / "common")]), str(ROOT)]),
        "_HANDLER": str(stack.resolve(props.get("Handler", "app.lambda_handler"))),
        "LAMBDA_TASK_ROOT": str(stack.code_dir(function_id)),
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_LAMBDA_FUNCTION_NAME": f"local-{function_id}",  # the name devstack.chaos rules match
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(stack.resolve(props.get("MemorySize", 128))),
    }
    environment = {**runtime, **stack.function_environment(function_id), **(overrides or {})}
    return FunctionSpec(
        function_id, environment, float(stack.resolve(props.get("Timeout", DEFAULT_TIMEOUT_S)))
    )


class _Worker:
    """One `devstack.worker` process, given one event at a time on its stdin (JSON lines)."""

    def __init__(self, spec: FunctionSpec, log: Path | None) -> None:
        # Append mode: the instances share the log file and each write lands whole at its end.
        with open(log, "ab") if log is not None else contextlib.nullcontext(subprocess.PIPE) as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "devstack.worker", spec.function_id],
                cwd=spec.environment["LAMBDA_TASK_ROOT"],
                env=spec.environment,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                encoding="utf-8",
                start_new_session=True,  # a terminal's Ctrl-C reaches the stack, which stops the workers
            )
        if log is None:  # the console, each line marked with the function
            threading.Thread(
                target=_pump_lines, args=(self.process.stderr, spec.function_id), daemon=True
            ).start()

    def call(self, message: dict[str, Any] | None, timeout_s: float, phase: str) -> dict[str, Any]:
        """Send `message` (None: nothing, for the init answer) and read the answer in `timeout_s`."""
        assert self.process.stdin is not None and self.process.stdout is not None
        try:
            if message is not None:
                self.process.stdin.write(json.dumps(message) + "\n")
                self.process.stdin.flush()
            ready, _, _ = select.select([self.process.stdout], [], [], timeout_s)
            line = self.process.stdout.readline() if ready else None
        except (OSError, ValueError) as error:  # the pipes were closed: the pool is stopping
            raise InvocationFailed("crash", f"the instance is gone ({error})") from error
        if line is None:
            raise InvocationFailed("timeout", f"Task timed out after {timeout_s:.2f} seconds ({phase})")
        if not line:
            code = self.process.poll()
            raise InvocationFailed("crash", f"the instance exited during {phase} (exit code {code})")
        return json.loads(line)  # type: ignore[no-any-return]

    def close_pipes(self) -> None:
        """End of input: an idle worker exits on its own."""
        for stream in (self.process.stdin, self.process.stdout):
            with contextlib.suppress(OSError):
                stream.close()  # type: ignore[union-attr]


def _pump_lines(stream: IO[str], function_id: str) -> None:
    for line in iter(stream.readline, ""):
        sys.stderr.write(f"[{function_id}] {line}")


class FunctionPool:
    """Up to `size` instances of a function, started (cold) by events finding none idle, as on
    Lambda; an event finding all busy waits up to its Timeout or `acquire_timeout_s` ("throttled")."""

    def __init__(
        self,
        spec: FunctionSpec,
        *,
        size: int,
        log: Path | None = None,
        acquire_timeout_s: float = ACQUIRE_TIMEOUT_S,
    ) -> None:
        self.spec, self.size, self.acquire_timeout_s = spec, max(1, size), acquire_timeout_s
        self._log = log  # the instances' stderr (None: the console)
        self._cond = threading.Condition()
        self._idle: list[_Worker] = []
        self._all: set[_Worker] = set()  # alive or starting
        self._stopped = False
        # (s waiting for an instance, s it took, whether it answered) per invocation, for
        # bench/throughput.py; bounded, for long `make run` sessions.
        self.invocations: deque[tuple[float, float, bool]] = deque(maxlen=100_000)
        self.cold_starts = self.lost_instances = 0  # lost: died or killed (crash, timeout, failed init)

    def _acquire(self) -> _Worker:
        """An idle instance, else a new one (a cold start) below `size`, else the next to be free."""
        deadline = time.monotonic() + min(self.spec.timeout_s, self.acquire_timeout_s)
        with self._cond:
            while not self._stopped:
                while self._idle:
                    if (worker := self._idle.pop()).process.poll() is None:
                        return worker
                    self._all.discard(worker)  # died while idle
                if len(self._all) < self.size:
                    break
                if (remaining := deadline - time.monotonic()) <= 0:
                    raise InvocationFailed("throttled", f"no free {self.spec.function_id} instance")
                self._cond.wait(remaining)
            else:
                raise InvocationFailed("throttled", "the pool is stopping")
            worker = _Worker(self.spec, self._log)
            self._all.add(worker)
            self.cold_starts += 1
        try:
            worker.call(None, INIT_TIMEOUT_S, "init")  # "ready" or "init_error": either one serves
        except InvocationFailed:
            self._drop(worker)  # died or hung during init
            raise
        return worker

    def _drop(self, worker: _Worker) -> None:
        """Like Lambda after a timeout or crash: the instance is gone, the next event starts another."""
        worker.process.kill()
        worker.process.wait()
        worker.close_pipes()
        with self._cond:
            self.lost_instances += 1
            self._all.discard(worker)
            self._cond.notify_all()

    def invoke(self, event: dict[str, Any], request_id: str) -> Any:
        asked = time.monotonic()
        try:
            worker = self._acquire()
        except InvocationFailed:
            self.invocations.append((time.monotonic() - asked, 0.0, False))
            raise
        acquired, reply = time.monotonic(), {}
        deadline_ms = int((time.time() + self.spec.timeout_s) * 1000)
        try:
            message = {"event": event, "request_id": request_id, "deadline_ms": deadline_ms}
            reply = worker.call(message, self.spec.timeout_s, "invoke")
        except InvocationFailed:
            self._drop(worker)
            raise
        finally:
            self.invocations.append((acquired - asked, time.monotonic() - acquired, bool(reply.get("ok"))))
        with self._cond:
            if not self._stopped:
                self._idle.append(worker)
                self._cond.notify_all()
        if not reply.get("ok"):
            raise InvocationFailed("error", f"{reply.get('errorType')}: {reply.get('errorMessage')}")
        return reply.get("result")

    def pids(self) -> list[int]:
        with self._cond:
            return [worker.process.pid for worker in self._all]

    def close(self) -> list[_Worker]:
        """Refuse new invocations and hand over the instances, for stop_workers()."""
        with self._cond:
            self._stopped = True
            workers, self._idle = list(self._all), []
            self._all.clear()
            self._cond.notify_all()
        return workers


def stop_workers(workers: list[_Worker], grace_s: float = 2.0) -> None:
    """End of input for all first, then wait: the instances exit in parallel."""
    for worker in workers:
        worker.close_pipes()
    for worker in workers:
        stop_process(worker.process, grace_s, terminate=False)
