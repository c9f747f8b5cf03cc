"""One local Lambda instance, `python -m devstack.worker FunctionId` (dev-only): it imports the
handler once (the cold start), keeps module state between events and logs START/END/REPORT lines.

Protocol (private to devstack.functions): JSON lines on the original fds 0/1, out of function code's
reach (fd 1 goes to stderr, with Powertools' logs): {"type": "ready" | "init_error"}, then for each
{"event", "request_id", "deadline_ms"} a {"ok": true, "result"} or {"ok": false, "errorType",
"errorMessage"}, until end of input. DEVSTACK_CHAOS_FILE: devstack.chaos's botocore hook. For
bench/throughput.py, written at end of input: DEVSTACK_PROFILE_DIR (cProfile of the handler calls,
DEVSTACK_PROFILE_CLOCK=cpu for CPU time), DEVSTACK_STATS_DIR (AWS calls by service:operation).
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
from pathlib import Path
from types import SimpleNamespace
from typing import Any


def _context(request_id: str, deadline_ms: int) -> Any:
    """The parts of the Lambda context object that the handlers and Powertools read."""
    name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "local")
    return SimpleNamespace(
        function_name=name,
        invoked_function_arn=f"arn:aws:lambda:{os.environ.get('AWS_REGION')}:123456789012:function:{name}",
        memory_limit_in_mb=int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")),
        aws_request_id=request_id,
        get_remaining_time_in_millis=lambda: max(0, deadline_ms - int(time.time() * 1000)),
    )


class Measure:
    """The opt-in profile and AWS call counts of this process (see the module docstring)."""

    def __init__(self, function_id: str) -> None:
        self.function_id, self.invocations, self.api_calls = function_id, 0, Counter[str]()
        self.profiler: Any = None
        if os.environ.get("DEVSTACK_PROFILE_DIR"):
            import cProfile

            cpu = os.environ.get("DEVSTACK_PROFILE_CLOCK") == "cpu"  # wall: waits included
            self.profiler = cProfile.Profile(time.thread_time) if cpu else cProfile.Profile()
        if os.environ.get("DEVSTACK_STATS_DIR"):  # before the handler makes a client: all sessions count
            from botocore.handlers import BUILTIN_HANDLERS

            BUILTIN_HANDLERS.append(("before-call", self._count))

    def _count(self, model: Any, **_: Any) -> None:
        self.api_calls[f"{model.service_model.service_name}:{model.name}"] += 1

    def call(self, handler: Any, event: Any, context: Any) -> Any:
        self.invocations += 1
        with self.profiler or contextlib.nullcontext():  # enabled around the handler call only
            return handler(event, context)

    def dump(self) -> None:
        name = f"{self.function_id}.{os.getpid()}"
        profiles, stats = os.environ.get("DEVSTACK_PROFILE_DIR"), os.environ.get("DEVSTACK_STATS_DIR")
        try:
            if profiles and self.invocations:
                os.makedirs(profiles, exist_ok=True)
                self.profiler.dump_stats(os.path.join(profiles, name + ".prof"))
            if stats:
                os.makedirs(stats, exist_ok=True)
                counts = {"function_id": self.function_id, "invocations": self.invocations}
                Path(stats, name + ".json").write_text(json.dumps({**counts, "api_calls": self.api_calls}))
        except OSError as error:  # measuring must never break the function
            print(f"[devstack.worker] could not write the profile/stats: {error}", file=sys.stderr)


def _error_reply(kind: str, error: BaseException, message: str = "") -> dict[str, Any]:
    print(f"[ERROR] {kind}: {error}", file=sys.stderr)
    traceback.print_exception(error, file=sys.stderr)
    return {"ok": False, "errorType": kind, "errorMessage": message + str(error)}


def _invoke(handler: Any, message: dict[str, Any], measure: Measure) -> dict[str, Any]:
    request_id = str(message.get("request_id", "local"))
    context = _context(request_id, int(message.get("deadline_ms", 0)))
    print(f"START RequestId: {request_id} Version: $LATEST", file=sys.stderr, flush=True)
    started = time.monotonic()
    try:
        reply = {"ok": True, "result": measure.call(handler, message.get("event"), context)}
    except Exception as error:
        reply = _error_reply(type(error).__name__, error)
    duration = (time.monotonic() - started) * 1000
    report = f"Duration: {duration:.2f} ms\tMemory Size: {context.memory_limit_in_mb} MB"
    print(
        f"END RequestId: {request_id}\nREPORT RequestId: {request_id}\t{report}", file=sys.stderr, flush=True
    )
    return reply


def _send(channel: Any, reply: dict[str, Any]) -> None:
    try:
        line = json.dumps(reply)
    except (TypeError, ValueError) as error:  # what Lambda cannot serialise is an error
        line = json.dumps(_error_reply("Runtime.MarshalError", error))
    channel.write(line + "\n")
    channel.flush()


def main() -> int:
    function_id = sys.argv[1] if len(sys.argv) > 1 else "function"
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the pool owns our lifetime: Ctrl-C is for it
    # Move the protocol off fds 0/1 before any function code (or Powertools) is imported.
    requests, replies = os.fdopen(os.dup(0), encoding="utf-8"), os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    os.dup2(2, 1)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    started, measure, init_error = time.monotonic(), Measure(function_id), None
    try:
        if os.environ.get("DEVSTACK_CHAOS_FILE"):  # the fault suite's AWS faults (devstack.chaos)
            from devstack.chaos import install

            install(os.environ["DEVSTACK_CHAOS_FILE"])
        # Like Lambda: the code directory first on sys.path, then the handler named by _HANDLER.
        sys.path.insert(0, os.getcwd())
        module, _, name = os.environ.get("_HANDLER", "app.lambda_handler").rpartition(".")
        handler = getattr(importlib.import_module(module), name)
    except Exception as error:
        init_error = _error_reply("Runtime.ImportModuleError", error, "Unable to import the handler: ")
    init_ms = round((time.monotonic() - started) * 1000)
    print(f"INIT {function_id}: {init_ms} ms (pid {os.getpid()})", file=sys.stderr, flush=True)
    with contextlib.suppress(BrokenPipeError):  # the pool went away: nothing left to serve
        _send(replies, {"type": "init_error" if init_error else "ready", "init_ms": init_ms})
        for line in requests:  # a failed init fails every invocation, as on Lambda, without a crash loop
            _send(replies, init_error or _invoke(handler, json.loads(line), measure))
    measure.dump()
    return 0


if __name__ == "__main__":
    sys.exit(main())
