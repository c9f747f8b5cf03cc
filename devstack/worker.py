"""One local Lambda instance: `python -m devstack.worker FunctionId` (dev-only).

devstack.functions starts it with the function's environment and cwd = its CodeUri directory,
then sends it events one at a time. Like Lambda it imports the handler once (cold start), keeps
module state between invocations (warm starts), and writes the function's logs plus
START/END/REPORT lines to stderr, which goes to a log file or the console.

Protocol (private to devstack.functions): one JSON object per line, read from the original stdin
and written to the original stdout. Powertools logs to stdout, so before anything is imported
fd 1 is pointed at stderr and the protocol keeps a duplicate of the original; fd 0 becomes
/dev/null so function code cannot swallow an event either.

    worker -> pool  {"type": "ready" | "init_error", "init_ms": ...}
    pool -> worker  {"event": {...}, "request_id": ..., "deadline_ms": ...}
    worker -> pool  {"ok": true, "result": ...} or {"ok": false, "errorType": ..., "errorMessage": ...}

End of input (the pool closed the pipe or died) ends the worker.

With `DEVSTACK_CHAOS_FILE` set (the stack's `aws_faults`), devstack.chaos's botocore hook is
installed before the handler is imported, so every client the function makes can be failed.

Measuring (opt-in, for bench/throughput.py; off by default, and then nothing extra is imported):

- `DEVSTACK_PROFILE_DIR`: each invocation runs under cProfile (enabled only around the handler
  call, so the cold start and the waits between events are not in it); at end of input the
  process writes `<FunctionId>.<pid>.prof` there. `DEVSTACK_PROFILE_CLOCK=cpu` profiles CPU time
  (time.thread_time) instead of wall time.
- `DEVSTACK_STATS_DIR`: every AWS API call the function makes is counted by service and
  operation (a botocore before-call hook); at end of input the process writes
  `<FunctionId>.<pid>.json` there with those counts, its invocation count and its init time.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import signal
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable
from types import SimpleNamespace
from typing import IO, Any

Handler = Callable[[Any, Any], Any]


def _context(request_id: str, deadline_ms: int) -> Any:
    """The parts of the Lambda context object that handlers and Powertools read."""
    name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "local")
    region = os.environ.get("AWS_REGION", "us-east-1")
    return SimpleNamespace(
        function_name=name,
        function_version="$LATEST",
        invoked_function_arn=f"arn:aws:lambda:{region}:123456789012:function:{name}",
        memory_limit_in_mb=int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")),
        aws_request_id=request_id,
        log_group_name=f"/aws/lambda/{name}",
        log_stream_name="local",
        identity=None,
        client_context=None,
        get_remaining_time_in_millis=lambda: max(0, deadline_ms - int(time.time() * 1000)),
    )


class Measure:
    """The opt-in profile and AWS call counts of this process (see the module docstring)."""

    def __init__(self, function_id: str) -> None:
        self.function_id = function_id
        self.profile_dir = os.environ.get("DEVSTACK_PROFILE_DIR")
        self.stats_dir = os.environ.get("DEVSTACK_STATS_DIR")
        self.api_calls: Counter[str] = Counter()
        self.invocations = self.init_ms = 0
        self.profiler: Any = None
        if self.profile_dir:
            import cProfile

            # wall: where an invocation's time goes, waits included; cpu: what it costs the machine.
            cpu = os.environ.get("DEVSTACK_PROFILE_CLOCK") == "cpu"
            self.profiler = cProfile.Profile(time.thread_time) if cpu else cProfile.Profile()
        if self.stats_dir:  # before the handler makes a client: every botocore session counts
            from botocore.handlers import BUILTIN_HANDLERS

            BUILTIN_HANDLERS.append(("before-call", self._count))

    def _count(self, model: Any, **_: Any) -> None:
        self.api_calls[f"{model.service_model.service_name}:{model.name}"] += 1

    def call(self, handler: Handler, event: Any, context: Any) -> Any:
        self.invocations += 1
        with self.profiler or contextlib.nullcontext():  # enabled around the handler call only
            return handler(event, context)

    def dump(self) -> None:
        name = f"{self.function_id}.{os.getpid()}"
        try:
            if self.profiler is not None and self.profile_dir and self.invocations:
                os.makedirs(self.profile_dir, exist_ok=True)
                self.profiler.dump_stats(os.path.join(self.profile_dir, name + ".prof"))
            if self.stats_dir:
                os.makedirs(self.stats_dir, exist_ok=True)
                stats = {"function_id": self.function_id, "pid": os.getpid(), "invocations": self.invocations}
                stats |= {"init_ms": self.init_ms, "api_calls": dict(self.api_calls)}
                with open(os.path.join(self.stats_dir, name + ".json"), "w") as out:
                    json.dump(stats, out)
        except OSError as error:  # measuring must never break the function
            print(f"[devstack.worker] could not write the profile/stats: {error}", file=sys.stderr)


def _error_reply(kind: str, error: BaseException) -> dict[str, Any]:
    print(f"[ERROR] {kind}: {error}", file=sys.stderr)
    traceback.print_exception(error, file=sys.stderr)
    return {"ok": False, "errorType": kind, "errorMessage": str(error)}


def _invoke(handler: Handler, message: dict[str, Any], measure: Measure) -> dict[str, Any]:
    request_id = str(message.get("request_id", "local"))
    context = _context(request_id, int(message.get("deadline_ms", 0)))
    print(f"START RequestId: {request_id} Version: $LATEST", file=sys.stderr, flush=True)
    started = time.monotonic()
    try:
        result = measure.call(handler, message.get("event"), context)
    except Exception as error:
        reply = _error_reply(type(error).__name__, error)
    else:
        try:
            json.dumps(result)
            reply = {"ok": True, "result": result}
        except (TypeError, ValueError) as error:  # what Lambda cannot serialise is an error
            reply = _error_reply("Runtime.MarshalError", error)
    duration = (time.monotonic() - started) * 1000
    print(f"END RequestId: {request_id}", file=sys.stderr)
    print(
        f"REPORT RequestId: {request_id}\tDuration: {duration:.2f} ms\tMemory Size: {context.memory_limit_in_mb} MB",
        file=sys.stderr,
        flush=True,
    )
    return reply


def _send(channel: IO[str], message: dict[str, Any]) -> None:
    channel.write(json.dumps(message) + "\n")
    channel.flush()


def main() -> int:
    function_id = sys.argv[1] if len(sys.argv) > 1 else "function"
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the pool owns our lifetime: Ctrl-C is for it
    # Move the protocol off fds 0/1 before any function code (or Powertools) is imported.
    requests, replies = os.fdopen(os.dup(0), encoding="utf-8"), os.fdopen(os.dup(1), "w", encoding="utf-8")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]

    started = time.monotonic()
    measure = Measure(function_id)
    init_error: dict[str, Any] | None = None
    try:
        if os.environ.get("DEVSTACK_CHAOS_FILE"):  # the fault suite's AWS faults (devstack.chaos)
            from devstack.chaos import install

            install(os.environ["DEVSTACK_CHAOS_FILE"])
        # Like Lambda: the code directory first on sys.path, then the handler named by _HANDLER.
        sys.path.insert(0, os.getcwd())
        module, _, name = os.environ.get("_HANDLER", "app.lambda_handler").rpartition(".")
        handler = getattr(importlib.import_module(module), name)
    except Exception as error:
        init_error = _error_reply("Runtime.ImportModuleError", error)
        init_error["errorMessage"] = f"Unable to import the handler: {error}"
    measure.init_ms = round((time.monotonic() - started) * 1000)
    print(f"INIT {function_id}: {measure.init_ms} ms (pid {os.getpid()})", file=sys.stderr, flush=True)
    try:
        _send(replies, {"type": "init_error" if init_error else "ready", "init_ms": measure.init_ms})
        for line in requests:
            # A failed init fails every invocation, as on Lambda, without a crash loop.
            _send(replies, init_error or _invoke(handler, json.loads(line), measure))
    except BrokenPipeError:
        pass  # the pool went away: nothing left to serve
    measure.dump()
    return 0


if __name__ == "__main__":
    sys.exit(main())
