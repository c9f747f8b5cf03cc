"""One local Lambda instance: `python -m devstack.worker FunctionId` (dev-only).

The local gateway starts this with the function's environment and cwd = its CodeUri directory,
then sends it events one at a time. Like Lambda it imports the handler once (cold start), keeps
module state between invocations (warm starts), and writes the function's logs plus
START/END/REPORT lines to stderr, which the gateway sends to a log file or the console.

Protocol (private to devstack.gateway): frames of a 4-byte big-endian length and UTF-8 JSON,
read from the original stdin and written to the original stdout. Powertools logs to stdout, so
before anything is imported fd 1 is pointed at stderr and the protocol keeps a duplicate of
the original; fd 0 becomes /dev/null so function code cannot swallow a frame either.

    worker -> gateway  {"type": "ready", "init_ms": ...} or {"type": "init_error", ...}
    gateway -> worker  {"event": {...}, "context": {"aws_request_id": ..., "deadline_ms": ...}}
    worker -> gateway  {"ok": true, "result": ...} or {"ok": false, "errorType": ..., "errorMessage": ...}

End of input (the gateway closed the pipe or died) ends the worker.

With `DEVSTACK_CHAOS_FILE` set (the stack's `aws_faults`), devstack.chaos's botocore hook is
installed before the handler is imported, so every client the function makes can be failed by
the rules in that file.

Measuring (opt-in, for bench/throughput.py; off by default, and then nothing extra is imported):

- `DEVSTACK_PROFILE_DIR`: each invocation runs under cProfile (one profiler per process, enabled
  only around the handler call, so the cold start and the waits between events are not in it);
  at end of input the process writes `<FunctionId>.<pid>.prof` there (pstats format).
  `DEVSTACK_PROFILE_CLOCK=cpu` profiles CPU time (time.thread_time) instead of wall time.
- `DEVSTACK_STATS_DIR`: every AWS API call the function makes through botocore is counted by
  service and operation; at end of input the process writes `<FunctionId>.<pid>.json` there with
  those counts, its invocation count and its init time.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import struct
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any, BinaryIO

FRAME_HEADER = struct.Struct(">I")


def read_frame(stream: BinaryIO) -> Any | None:
    """The next JSON frame, or None at end of input."""
    header = _read_exact(stream, FRAME_HEADER.size)
    if header is None:
        return None
    body = _read_exact(stream, FRAME_HEADER.unpack(header)[0])
    if body is None:
        return None
    return json.loads(body)


def write_frame(stream: BinaryIO, message: Any) -> None:
    body = json.dumps(message).encode()
    stream.write(FRAME_HEADER.pack(len(body)) + body)
    stream.flush()


def _read_exact(stream: BinaryIO, size: int) -> bytes | None:
    data = bytearray()
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            return None
        data += chunk
    return bytes(data)


class LocalContext:
    """The parts of the Lambda context object that handlers and Powertools read."""

    def __init__(self, request_id: str, deadline_ms: int) -> None:
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "local")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        region = os.environ.get("AWS_REGION", "us-east-1")
        self.invoked_function_arn = f"arn:aws:lambda:{region}:123456789012:function:{self.function_name}"
        self.memory_limit_in_mb = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"))
        self.aws_request_id = request_id
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", f"/aws/lambda/{self.function_name}")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "local")
        self.identity = None
        self.client_context = None
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self._deadline_ms - int(time.time() * 1000))


def _load_handler() -> Callable[[Any, Any], Any]:
    # Like Lambda: the code directory first on sys.path, then the handler named by _HANDLER.
    sys.path.insert(0, os.getcwd())
    module_name, _, function_name = os.environ.get("_HANDLER", "app.lambda_handler").rpartition(".")
    module = importlib.import_module(module_name)
    return getattr(module, function_name)


def _error_reply(kind: str, error: BaseException) -> dict[str, Any]:
    print(f"[ERROR] {kind}: {error}", file=sys.stderr)
    traceback.print_exception(error, file=sys.stderr)
    return {"ok": False, "errorType": kind, "errorMessage": str(error)}


class Measure:
    """The opt-in profile and API-call counts of this process (see the module docstring)."""

    def __init__(self, function_id: str, environ: dict[str, str] | None = None) -> None:
        environ = dict(os.environ if environ is None else environ)
        self.function_id = function_id
        self.profile_dir = environ.get("DEVSTACK_PROFILE_DIR") or None
        self.stats_dir = environ.get("DEVSTACK_STATS_DIR") or None
        self.profiler: Any = None
        if self.profile_dir:
            import cProfile

            # wall (cProfile's default): where an invocation's time goes, waits included;
            # cpu: this thread's CPU time only, what the invocation costs the machine.
            cpu = environ.get("DEVSTACK_PROFILE_CLOCK", "wall") == "cpu"
            self.profiler = cProfile.Profile(time.thread_time) if cpu else cProfile.Profile()
        self.api_calls: dict[str, int] = {}
        self.invocations = 0
        self.init_ms = 0

    def install(self) -> None:
        """Count botocore API calls (before the handler imports anything that makes clients)."""
        if not self.stats_dir:
            return
        from botocore.client import BaseClient

        original = BaseClient._make_api_call
        calls = self.api_calls

        def counted(client: Any, operation_name: str, api_params: Any) -> Any:
            key = f"{client.meta.service_model.service_name}:{operation_name}"
            calls[key] = calls.get(key, 0) + 1
            return original(client, operation_name, api_params)

        BaseClient._make_api_call = counted  # type: ignore[method-assign]

    def call(self, handler: Callable[[Any, Any], Any], event: Any, context: Any) -> Any:
        self.invocations += 1
        if self.profiler is None:
            return handler(event, context)
        self.profiler.enable()
        try:
            return handler(event, context)
        finally:
            self.profiler.disable()

    def dump(self) -> None:
        name = f"{self.function_id}.{os.getpid()}"
        try:
            if self.profiler is not None and self.profile_dir and self.invocations:
                os.makedirs(self.profile_dir, exist_ok=True)
                self.profiler.dump_stats(os.path.join(self.profile_dir, name + ".prof"))
            if self.stats_dir:
                os.makedirs(self.stats_dir, exist_ok=True)
                stats = {
                    "function_id": self.function_id,
                    "pid": os.getpid(),
                    "invocations": self.invocations,
                    "init_ms": self.init_ms,
                    "api_calls": self.api_calls,
                }
                with open(os.path.join(self.stats_dir, name + ".json"), "w") as out:
                    json.dump(stats, out)
        except OSError as error:  # measuring must never break the function
            print(f"[devstack.worker] could not write the profile/stats: {error}", file=sys.stderr)


_NO_MEASURE = Measure("function", {})


def _invoke(
    handler: Callable[[Any, Any], Any], message: dict[str, Any], measure: Measure = _NO_MEASURE
) -> dict[str, Any]:
    context = message.get("context", {})
    request_id = str(context.get("aws_request_id", "local"))
    lambda_context = LocalContext(request_id, int(context.get("deadline_ms", 0)))
    print(f"START RequestId: {request_id} Version: $LATEST", file=sys.stderr, flush=True)
    started = time.monotonic()
    reply: dict[str, Any]
    try:
        result = measure.call(handler, message.get("event"), lambda_context)
    except Exception as error:
        reply = _error_reply(type(error).__name__, error)
    else:
        try:
            json.dumps(result)  # what Lambda cannot serialise is an error, not a gateway crash
            reply = {"ok": True, "result": result}
        except (TypeError, ValueError) as error:
            reply = _error_reply("Runtime.MarshalError", error)
    duration = (time.monotonic() - started) * 1000
    print(f"END RequestId: {request_id}", file=sys.stderr)
    print(
        f"REPORT RequestId: {request_id}\tDuration: {duration:.2f} ms\t"
        f"Memory Size: {lambda_context.memory_limit_in_mb} MB",
        file=sys.stderr,
        flush=True,
    )
    return reply


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    function_id = args[0] if args else os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "function")
    # The gateway owns our lifetime: a terminal's Ctrl-C is for it, not for each instance.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    # Move the protocol off fds 0/1 before any function code (or Powertools) is imported.
    channel_in: BinaryIO = os.fdopen(os.dup(0), "rb", buffering=0)
    channel_out: BinaryIO = os.fdopen(os.dup(1), "wb", buffering=0)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]

    started = time.monotonic()
    measure = Measure(function_id)
    handler: Callable[[Any, Any], Any] | None = None
    init_error: dict[str, Any] | None = None
    try:
        if os.environ.get("DEVSTACK_CHAOS_FILE"):  # the fault suite's AWS faults (devstack.chaos)
            from devstack.chaos import install

            install(os.environ["DEVSTACK_CHAOS_FILE"])
        measure.install()
        handler = _load_handler()
    except Exception as error:
        print(f"[ERROR] Runtime.ImportModuleError in {function_id}: {error}", file=sys.stderr)
        traceback.print_exc(file=sys.stderr)
        init_error = {
            "ok": False,
            "errorType": "Runtime.ImportModuleError",
            "errorMessage": f"Unable to import the handler: {error}",
        }
    init_ms = measure.init_ms = round((time.monotonic() - started) * 1000)
    print(f"INIT {function_id}: {init_ms} ms (pid {os.getpid()})", file=sys.stderr, flush=True)
    try:
        write_frame(channel_out, {"type": "init_error" if init_error else "ready", "init_ms": init_ms})
        while (message := read_frame(channel_in)) is not None:
            # A failed init fails every invocation, as on Lambda, without a crash loop.
            reply = init_error or _invoke(handler, message, measure)  # type: ignore[arg-type]
            write_frame(channel_out, reply)
    except BrokenPipeError:
        pass  # the gateway went away: nothing left to serve
    measure.dump()
    return 0


if __name__ == "__main__":
    sys.exit(main())
