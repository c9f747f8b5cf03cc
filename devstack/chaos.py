"""AWS faults for the local stack's functions: a botocore `before-send` hook (dev-only).

The test process owns the rules (`Chaos`, the stack's `chaos`); each function worker installs
`hook` at start-up, before its handler is imported (devstack.worker, when DEVSTACK_CHAOS_FILE is
set), so every botocore client of the process has it. A fault is the answer AWS would give, in the
service's own protocol, returned from before-send instead of sending the request: botocore parses
it into a ClientError with the right code (InternalServerError, ProvisionedThroughputExceeded-
Exception, InternalError, SlowDown...), and its retry mode retries it as it would AWS's own.
Nothing is mocked inside the service code, and moto's server is the workers' AWS_ENDPOINT_URL.

    chaos = Chaos().start()                                   # env: chaos.environment
    rule = chaos.add_fault("dynamodb", "PutItem", count=1)    # the next PutItem, in any worker
    chaos.add_fault("s3", "UploadPart", rate=0.2, seed=7)     # one part in five, repeatably
    rule.injected, chaos.fault_counts()                       # 1, {("dynamodb", "PutItem"): 1}
    chaos.add_crash("ArchiveFunction", "dynamodb", "UpdateItem", body_contains="video_sha256")

A `crash` rule kills the worker process right there (`os._exit(137)`, what a Lambda timeout or
out-of-memory does to an invocation): the request it matched is never sent, and whatever the
invocation did before it (parts uploaded, a POST made, a message sent) stays done. `function`
limits a rule to one template function's workers (their AWS_LAMBDA_FUNCTION_NAME is
`local-<FunctionId>`), and `body_contains` to calls whose serialised request holds that text (one
UpdateItem among several: the one that writes `video_sha256`; a list: every one of its texts). The local event sources answer a
crash as Lambda does (devstack.functions: InvocationFailed "crash"; a fresh instance cold-starts).

The control channel is one small JSON file (no port, no thread): the rules, each rule's
counters and the faults injected per (service, operation). A worker reads it on each AWS call;
only a call that some live rule matches takes the file's exclusive flock and decides there, so
`count=N` is N faults across all workers, and a seeded `rate` fires on a fixed sequence of the
rule's matching calls, numbered in the order they arrive from any worker (the n-th matching call
fails or not by blake2b(seed, n)).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import random
import shutil
import sys
import tempfile
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

ENV = "DEVSTACK_CHAOS_FILE"
# server_error / throttle: an error answer in the service's format (see _error_response).
# reset: the connection "drops" before the request is sent (botocore's ConnectionClosedError).
# crash: the worker process exits at once with CRASH_EXIT_CODE, the request unsent.
KINDS = ("server_error", "throttle", "reset", "crash")
CRASH_EXIT_CODE = 137  # 128 + SIGKILL: what a process killed for its memory or time exits with
FAULT_MESSAGE = "injected fault"
# botocore's service ids (in before-send.<service-id>.<Operation>) that differ from the signing name.
_ALIASES = {"eventbridge": "events", "secrets-manager": "secretsmanager", "dynamodb-streams": "dynamodb"}
# (status, error code) per service and kind; "*" is every other service.
_ERRORS: dict[tuple[str, str], tuple[int, str]] = {
    ("dynamodb", "server_error"): (500, "InternalServerError"),
    ("dynamodb", "throttle"): (400, "ProvisionedThroughputExceededException"),
    ("sqs", "server_error"): (500, "InternalError"),
    ("sqs", "throttle"): (400, "RequestThrottled"),
    ("s3", "server_error"): (500, "InternalError"),
    ("s3", "throttle"): (503, "SlowDown"),
    ("*", "server_error"): (500, "InternalFailure"),
    ("*", "throttle"): (400, "ThrottlingException"),
}
_JSON_TYPE_PREFIX = {"dynamodb": "com.amazonaws.dynamodb.v20120810#", "sqs": "com.amazonaws.sqs#"}


# -- the shared state -------------------------------------------------------------------------------


def _read(path: str) -> dict[str, Any]:
    with open(path) as file:
        return json.load(file)  # type: ignore[no-any-return]


@contextlib.contextmanager
def _change(path: str) -> Iterator[dict[str, Any]]:
    """The state, changed under an exclusive flock (of a lock file beside it) and then replaced
    whole: readers take no lock, and a writer killed half-way leaves the old state intact."""
    with open(path + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        state = _read(path)
        yield state
        with open(path + ".tmp", "w") as file:
            json.dump(state, file)
        os.replace(path + ".tmp", path)


@dataclass(frozen=True)
class Call:
    """What a rule is matched against: one AWS call, and which function's worker makes it."""

    service: str
    operation: str
    function: str | None = None  # the template's FunctionId (None: not in a function worker)
    body: bytes = b""  # the serialised request ("" for a streamed body, such as an S3 part)


def _texts(body_contains: str | list[str] | None) -> list[str]:
    return [body_contains] if isinstance(body_contains, str) else list(body_contains or ())


def _live(rule: dict[str, Any], state: dict[str, Any], call: Call) -> bool:
    if rule["service"] not in ("*", call.service) or rule["operation"] not in (None, call.operation):
        return False
    if rule.get("function") not in (None, call.function):
        return False
    if any(text.encode() not in call.body for text in _texts(rule.get("body_contains"))):
        return False
    return rule["count"] is None or state["counters"][rule["id"]][1] < rule["count"]


def _fires(rule: dict[str, Any], matched: int) -> bool:
    if rule["rate"] is None:
        return True
    if rule["seed"] is None:
        return random.random() < rule["rate"]
    digest = hashlib.blake2b(f"{rule['seed']}:{matched}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < rule["rate"]


def decide(path: str, service: str | Call, operation: str | None = None) -> str | None:
    """The kind of fault this call gets (rules in the order they were added; the first that
    fires wins), or None. Counted in the state file (a crash under `crashes` as well, by
    function). `decide(path, "dynamodb", "PutItem")` is `decide(path, Call("dynamodb", "PutItem"))`."""
    call = service if isinstance(service, Call) else Call(service, str(operation))
    state = _read(path)
    if not any(_live(rule, state, call) for rule in state["rules"]):
        return None
    with _change(path) as state:
        for rule in state["rules"]:
            if not _live(rule, state, call):
                continue
            counters = state["counters"][rule["id"]]
            counters[0] += 1
            if _fires(rule, counters[0]):
                counters[1] += 1
                key = f"{call.service}:{call.operation}"
                if rule["kind"] == "crash":
                    crashes = state.setdefault("crashes", {})
                    key = f"{call.function}:{key}"
                    crashes[key] = crashes.get(key, 0) + 1
                else:
                    state["faults"][key] = state["faults"].get(key, 0) + 1
                return str(rule["kind"])
    return None


# -- the worker side --------------------------------------------------------------------------------


def _error_response(service: str, kind: str, request: Any) -> Any:
    """The error AWS would answer, in the service's protocol: rest-xml for S3, JSON for the rest
    (DynamoDB, SQS, EventBridge, Secrets Manager; the x-amzn-ErrorType header covers rest-json).
    The query protocol (STS, SNS) is not shaped: the stack's functions do not use it."""
    from botocore.awsrequest import AWSResponse

    status, code = _ERRORS.get((service, kind)) or _ERRORS[("*", kind)]
    request_id = str(uuid.uuid4())
    headers = {"x-amzn-RequestId": request_id}
    if service == "s3":
        host_id = uuid.uuid4().hex
        headers |= {"x-amz-request-id": request_id, "x-amz-id-2": host_id, "Content-Type": "application/xml"}
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>{FAULT_MESSAGE}</Message>"
            f"<RequestId>{request_id}</RequestId><HostId>{host_id}</HostId></Error>"
        ).encode()
    else:
        headers |= {"Content-Type": "application/x-amz-json-1.0", "x-amzn-ErrorType": code}
        if service == "sqs":  # SQS's JSON protocol is query-compatible: the code travels in a header
            headers["x-amzn-query-error"] = f"{code};{'Receiver' if status >= 500 else 'Sender'}"
        error_type = _JSON_TYPE_PREFIX.get(service, "") + code
        body = json.dumps({"__type": error_type, "message": FAULT_MESSAGE}, separators=(",", ":")).encode()
        headers["x-amz-crc32"] = str(zlib.crc32(body))  # DynamoDB's; the others ignore it
    if request.method == "HEAD":
        body = b""  # a HEAD answer has no body: botocore reads the status alone, as from AWS
    headers["Content-Length"] = str(len(body))
    return AWSResponse(request.url, status, headers, SimpleNamespace(stream=lambda **_: iter([body])))


def _this_function() -> str | None:
    """The template FunctionId this worker runs (devstack.functions names it local-<FunctionId>)."""
    name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
    return name.removeprefix("local-") if name.startswith("local-") else None


def _crash(call: Call) -> None:
    """Die now, as Lambda kills an instance that ran out of time or memory: no cleanup, no
    answer. The line says why, in the function's log, before the process goes."""
    sys.stderr.write(
        f"[devstack.chaos] crashing {call.function} at {call.service}:{call.operation}"
        f" (exit {CRASH_EXIT_CODE})\n"
    )
    sys.stderr.flush()
    os._exit(CRASH_EXIT_CODE)


def hook(request: Any, event_name: str, path: str | None = None, **_: Any) -> Any:
    """botocore's before-send: None (send the request) or the fault's AWSResponse; a crash
    rule ends the process here instead."""
    path = path or os.environ.get(ENV)
    _, service_id, operation = event_name.split(".", 2)
    service = _ALIASES.get(service_id, service_id)
    body = getattr(request, "body", b"")
    body = body if isinstance(body, bytes | str) else b""  # a streamed body (an S3 part) is not read
    call = Call(service, operation, _this_function(), body.encode() if isinstance(body, str) else body)
    try:
        kind = decide(path, call) if path else None
    except (OSError, ValueError):  # no state file (the stack is stopping): no fault
        return None
    if kind == "crash":
        _crash(call)
    if kind == "reset":
        from botocore.exceptions import ConnectionClosedError

        raise ConnectionClosedError(endpoint_url=request.url)
    return None if kind is None else _error_response(service, kind, request)


def install(path: str, session: Any = None) -> None:
    """Inject faults by the rules in `path`: into every botocore session created from now on
    (what a worker does before importing its handler) and boto3's default one, or only into
    `session` (a boto3 Session). First among before-send handlers, so also ahead of moto's mock."""
    from botocore.handlers import BUILTIN_HANDLERS, REGISTER_FIRST

    handler = functools.partial(hook, path=path)
    if session is not None:
        session.events.register_first("before-send", handler)
        return
    import boto3

    BUILTIN_HANDLERS.append(("before-send", handler, REGISTER_FIRST))
    if boto3.DEFAULT_SESSION is not None:
        boto3.DEFAULT_SESSION.events.register_first("before-send", handler)


# -- the test side ----------------------------------------------------------------------------------


@dataclass
class FaultRule:
    """One fault rule. `count` None: no limit; `rate` None: every matching call."""

    id: str
    service: str  # a signing name ("dynamodb", "s3", "sqs", "events"), or "*" for any
    operation: str | None  # None: any operation of the service
    kind: str
    count: int | None
    rate: float | None
    seed: int | None
    function: str | None = None  # a template FunctionId, or None for every process with the hook
    body_contains: str | list[str] | None = None  # only calls whose serialised request holds these
    _chaos: Chaos = field(default=None, repr=False, compare=False)  # type: ignore[assignment]

    @property
    def matched(self) -> int:
        """Matching calls seen while the rule could still fire."""
        return int(self._chaos._counters(self.id)[0])

    @property
    def injected(self) -> int:
        return int(self._chaos._counters(self.id)[1])


def _check_scope(function: Any, body_contains: Any) -> None:
    if function is not None and (not isinstance(function, str) or not function):
        raise ValueError("function must be a template FunctionId such as 'ArchiveFunction', or None")
    texts = [body_contains] if isinstance(body_contains, str) else body_contains
    if body_contains is not None and (
        not isinstance(texts, list | tuple) or not texts or not all(isinstance(t, str) and t for t in texts)
    ):
        raise ValueError("body_contains must be a non-empty text or list of texts, or None")


def _check_rule(service: Any, operation: Any, count: Any, rate: Any, kind: Any, seed: Any) -> None:
    if not isinstance(service, str) or not service:
        raise ValueError("service must be a signing name such as 'dynamodb', 's3', 'sqs', or '*'")
    if operation is not None and (not isinstance(operation, str) or not operation):
        raise ValueError("operation must be an operation name such as 'PutItem', or None for any")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if count is not None and (type(count) is not int or count < 0):
        raise ValueError(f"count must be a non-negative integer, got {count!r}")
    if rate is not None and (type(rate) not in (int, float) or not 0 <= rate <= 1):
        raise ValueError(f"rate must be a probability between 0 and 1, got {rate!r}")
    if seed is not None and type(seed) is not int:
        raise ValueError(f"seed must be an integer, got {seed!r}")


class Chaos:
    """The fault rules of the local stack, in a state file its workers read (see the module docstring)."""

    def __init__(self) -> None:
        self.path: str | None = None
        self._last: dict[str, Any] = {"rules": [], "counters": {}, "faults": {}, "crashes": {}, "next": 1}

    def start(self) -> Chaos:
        if self.path is not None:
            raise RuntimeError("chaos already started")
        path = os.path.join(tempfile.mkdtemp(prefix="devstack-chaos-"), "faults.json")
        with open(path, "w") as file:
            json.dump(self._last, file)
        self.path = path
        return self

    def stop(self) -> None:
        if self.path is not None:
            self._read()  # rules keep their counts after the stop
            shutil.rmtree(os.path.dirname(self.path), ignore_errors=True)
            self.path = None

    @property
    def environment(self) -> dict[str, str]:
        """What a worker needs in its environment to install the hook."""
        if self.path is None:
            raise RuntimeError("chaos not started")
        return {ENV: self.path}

    def _read(self) -> dict[str, Any]:
        if self.path is not None:
            self._last = _read(self.path)
        return self._last

    @contextlib.contextmanager
    def _change(self) -> Iterator[dict[str, Any]]:
        if self.path is None:
            raise RuntimeError("chaos not started")
        with _change(self.path) as state:
            yield state
            self._last = state

    def _counters(self, rule_id: str) -> list[int]:
        return list(self._read()["counters"][rule_id])

    def add_fault(
        self,
        service: str,
        operation: str | None = None,
        *,
        count: int | None = None,
        rate: float | None = None,
        kind: str = "server_error",
        seed: int | None = None,
        function: str | None = None,
        body_contains: str | list[str] | None = None,
    ) -> FaultRule:
        """Make matching calls fail: the next `count` of them, each with probability `rate`
        (seeded by `seed`, for a repeatable sequence), at most `count` times with both, every one
        with neither. Rules are tried in the order they were added; the first that fires wins.
        `function` and `body_contains` narrow the calls a rule matches (see the module docstring)."""
        _check_rule(service, operation, count, rate, kind, seed)
        _check_scope(function, body_contains)
        rate = None if rate is None else float(rate)
        with self._change() as state:
            rule_id = f"f{state['next']}"
            state["next"] += 1
            spec = dict(service=service, operation=operation, kind=kind, count=count, rate=rate, seed=seed)
            texts = [body_contains] if isinstance(body_contains, str) else body_contains
            spec |= dict(function=function, body_contains=None if texts is None else list(texts))
            state["rules"].append({"id": rule_id, **spec})
            state["counters"][rule_id] = [0, 0]
        return FaultRule(rule_id, _chaos=self, **spec)

    def add_crash(
        self,
        function: str,
        service: str,
        operation: str | None = None,
        *,
        body_contains: str | list[str] | None = None,
        count: int | None = 1,
        rate: float | None = None,
        seed: int | None = None,
    ) -> FaultRule:
        """Kill `function`'s worker when it makes a matching call (the next one by default),
        before the request is sent: the invocation dies half-way, as on a Lambda timeout."""
        return self.add_fault(
            service,
            operation,
            count=count,
            rate=rate,
            kind="crash",
            seed=seed,
            function=function,
            body_contains=body_contains,
        )

    def faults(self) -> list[FaultRule]:
        return [FaultRule(_chaos=self, **rule) for rule in self._read()["rules"]]

    def clear(self) -> int:
        """Remove every rule; return how many there were. The counts are kept."""
        with self._change() as state:
            cleared = len(state["rules"])
            state["rules"] = []
        return cleared

    def fault_counts(self) -> dict[tuple[str, str], int]:
        """Faults injected so far (crashes aside), per (service, operation) that had any."""
        faults = self._read()["faults"]
        return {tuple(key.split(":", 1)): count for key, count in faults.items()}  # type: ignore[misc]

    def crash_counts(self) -> dict[tuple[str, str, str], int]:
        """Workers crashed so far, per (function, service, operation)."""
        crashes = self._read().get("crashes", {})
        return {tuple(key.split(":", 2)): count for key, count in crashes.items()}  # type: ignore[misc]

    def __enter__(self) -> Chaos:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
