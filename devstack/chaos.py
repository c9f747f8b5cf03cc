"""AWS faults for the local stack's functions, from a botocore `before-send` hook (dev-only).

The test process adds rules to a `Chaos` (a JSON state file); each function worker installs `hook`
before it imports its handler (devstack.worker), so a matching call gets the error AWS would answer,
in the service's protocol, and botocore retries it as AWS's own. A `crash` rule ends the worker
(exit 137, as a Lambda timeout does) before the request is sent: what the invocation did stays done.
A call that a live rule matches decides under the file's flock, so `count=N` is N faults across
all workers and a seeded `rate` fails the same calls of the rule's sequence on every run.

    rule = chaos.add_fault("dynamodb", "PutItem", count=1)     # the next PutItem, in any worker
    chaos.add_crash("ArchiveFunction", "dynamodb", "UpdateItem", body_contains="video_sha256")
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

ENV = "DEVSTACK_CHAOS_FILE"
# reset: the connection drops before the request is sent (botocore's ConnectionClosedError).
KINDS = ("server_error", "throttle", "reset", "crash")
CRASH_EXIT_CODE = 137  # 128 + SIGKILL: what a process killed for its time or memory exits with
FAULT_MESSAGE = "injected fault"
# botocore's service ids (before-send.<service-id>.<Operation>) that differ from the signing name.
_ALIASES = {"eventbridge": "events", "secrets-manager": "secretsmanager", "dynamodb-streams": "dynamodb"}
_ERRORS: dict[tuple[str, str], tuple[int, str]] = {  # (status, code); "*" is every other service
    ("dynamodb", "server_error"): (500, "InternalServerError"),
    ("dynamodb", "throttle"): (400, "ProvisionedThroughputExceededException"),
    ("sqs", "server_error"): (500, "InternalError"),
    ("sqs", "throttle"): (400, "RequestThrottled"),
    ("s3", "server_error"): (500, "InternalError"),
    ("s3", "throttle"): (503, "SlowDown"),
    ("*", "server_error"): (500, "InternalFailure"),
    ("*", "throttle"): (400, "ThrottlingException"),
}


def _read(path: str) -> dict[str, Any]:
    with open(path) as file:
        return json.load(file)  # type: ignore[no-any-return]


@contextlib.contextmanager
def _change(path: str) -> Iterator[dict[str, Any]]:
    """Changed under a flock, then replaced whole: readers need no lock, a killed writer harms nothing."""
    with open(path + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        state = _read(path)
        yield state
        with open(path + ".tmp", "w") as file:
            json.dump(state, file)
        os.replace(path + ".tmp", path)


@dataclass(frozen=True)
class Call:
    """One AWS call, as a rule sees it."""

    service: str
    operation: str
    function: str | None = None  # the template FunctionId of the worker making it
    body: bytes = b""  # the serialised request (empty for a streamed body, such as an S3 part)


def _live(rule: dict[str, Any], state: dict[str, Any], call: Call) -> bool:
    return (
        rule["service"] in ("*", call.service)
        and rule["operation"] in (None, call.operation)
        and rule["function"] in (None, call.function)
        and all(text.encode() in call.body for text in rule["body_contains"])
        and (rule["count"] is None or state["counters"][rule["id"]][1] < rule["count"])
    )


def _fires(rule: dict[str, Any], matched: int) -> bool:
    if rule["rate"] is None:
        return True
    if rule["seed"] is None:
        return random.random() < rule["rate"]
    digest = hashlib.blake2b(f"{rule['seed']}:{matched}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < rule["rate"]


def decide(path: str, service: str | Call, operation: str | None = None) -> str | None:
    """The fault kind of the first rule that fires for this call, or None; counted in the file."""
    call = service if isinstance(service, Call) else Call(service, str(operation))
    state = _read(path)
    if not any(_live(rule, state, call) for rule in state["rules"]):
        return None  # the common case takes no lock
    with _change(path) as state:
        for rule in state["rules"]:
            if not _live(rule, state, call):
                continue
            counters = state["counters"][rule["id"]]
            counters[0] += 1
            if _fires(rule, counters[0]):
                counters[1] += 1
                crash = rule["kind"] == "crash"
                tally = state["crashes" if crash else "faults"]
                key = f"{call.function}:" * crash + f"{call.service}:{call.operation}"
                tally[key] = tally.get(key, 0) + 1
                return str(rule["kind"])
    return None


def _error_response(service: str, kind: str, request: Any) -> Any:
    """AWS's error answer: rest-xml for S3, JSON for the rest (no function uses the query protocol)."""
    from botocore.awsrequest import AWSResponse

    status, code = _ERRORS.get((service, kind)) or _ERRORS[("*", kind)]
    request_id = str(uuid.uuid4())
    headers = {"x-amzn-RequestId": request_id}
    if service == "s3":
        headers |= {"x-amz-request-id": request_id, "Content-Type": "application/xml"}
        body = f"<Error><Code>{code}</Code><Message>{FAULT_MESSAGE}</Message></Error>".encode()
    else:
        headers |= {"Content-Type": "application/x-amz-json-1.0", "x-amzn-ErrorType": code}
        body = json.dumps({"__type": code, "message": FAULT_MESSAGE}).encode()
        headers["x-amz-crc32"] = str(zlib.crc32(body))  # DynamoDB's; the others ignore it
    body = b"" if request.method == "HEAD" else body  # botocore reads a HEAD's status alone
    headers["Content-Length"] = str(len(body))
    return AWSResponse(request.url, status, headers, SimpleNamespace(stream=lambda **_: iter([body])))


def hook(request: Any, event_name: str, path: str | None = None, **_: Any) -> Any:
    """botocore's before-send: None (send it), the fault's AWSResponse, or the end of this process."""
    path = path or os.environ.get(ENV)
    service_id, operation = event_name.split(".", 2)[1:]
    service = _ALIASES.get(service_id, service_id)
    body = getattr(request, "body", b"")
    body = body.encode() if isinstance(body, str) else body if isinstance(body, bytes) else b""
    name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")  # devstack.functions: local-<FunctionId>
    call = Call(service, operation, name.removeprefix("local-") if name.startswith("local-") else None, body)
    try:
        kind = decide(path, call) if path else None
    except (OSError, ValueError):  # no state file (the stack is stopping): no fault
        return None
    if kind == "crash":  # as Lambda kills an instance out of time or memory: no cleanup, no answer
        sys.stderr.write(f"[devstack.chaos] crashing {call.function} at {service}:{operation} (exit 137)\n")
        sys.stderr.flush()
        os._exit(CRASH_EXIT_CODE)
    if kind == "reset":
        from botocore.exceptions import ConnectionClosedError

        raise ConnectionClosedError(endpoint_url=request.url)
    return None if kind is None else _error_response(service, kind, request)


def install(path: str, session: Any = None) -> None:
    """The hook, first among before-send handlers (ahead of moto's mock), in `session` (a boto3
    Session) or else in every botocore session created from now on and boto3's default one."""
    from botocore.handlers import BUILTIN_HANDLERS, REGISTER_FIRST

    handler = functools.partial(hook, path=path)
    if session is not None:
        session.events.register_first("before-send", handler)
        return
    import boto3

    BUILTIN_HANDLERS.append(("before-send", handler, REGISTER_FIRST))
    if boto3.DEFAULT_SESSION is not None:
        boto3.DEFAULT_SESSION.events.register_first("before-send", handler)


@dataclass(frozen=True)
class FaultRule:
    """One rule: add_fault's arguments (`spec`) and its counters, read live from the state file."""

    id: str
    spec: dict[str, Any] = field(compare=False)
    _chaos: Chaos = field(repr=False, compare=False)

    @property
    def matched(self) -> int:
        """Matching calls seen while the rule could still fire."""
        return int(self._chaos._read()["counters"][self.id][0])

    @property
    def injected(self) -> int:
        return int(self._chaos._read()["counters"][self.id][1])


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


def _optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: value is None or check(value)


_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "service": (_text, "a signing name such as 'dynamodb', or '*'"),
    "operation": (_optional(_text), "an operation name such as 'PutItem', or None for any"),
    "kind": (lambda kind: kind in KINDS, f"one of {', '.join(KINDS)}"),
    "count": (_optional(lambda n: type(n) is int and n >= 0), "a non-negative integer"),
    "rate": (_optional(lambda p: type(p) in (int, float) and 0 <= p <= 1), "a probability from 0 to 1"),
    "seed": (_optional(lambda seed: type(seed) is int), "an integer"),
    "function": (_optional(_text), "a template FunctionId such as 'ArchiveFunction', or None"),
    "body_contains": (
        _optional(lambda texts: isinstance(texts, list | tuple) and bool(texts) and all(map(_text, texts))),
        "a non-empty text or list of texts, or None",
    ),
}


class Chaos:
    """The stack's fault rules, in a state file its workers read (see the module docstring)."""

    def __init__(self) -> None:
        self.path: str | None = None
        self._last: dict[str, Any] = {"rules": [], "counters": {}, "faults": {}, "crashes": {}, "next": 1}

    def start(self) -> Chaos:
        if self.path is not None:
            raise RuntimeError("chaos already started")
        self.path = os.path.join(tempfile.mkdtemp(prefix="devstack-chaos-"), "faults.json")
        with open(self.path, "w") as file:
            json.dump(self._last, file)
        return self

    def stop(self) -> None:
        if self.path is not None:
            self._read()  # the rules' counts stay readable
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
        with _change(self.environment[ENV]) as state:
            yield state
            self._last = state

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
        """Fail matching calls of `service` ("dynamodb", "s3", "sqs", "events" or "*") and `operation`
        (None: any): the next `count`, each with probability `rate` (repeatable with `seed`), or every
        one; only in `function`'s workers (a template FunctionId) and for requests holding every text
        of `body_contains`, if given. Rules are tried in the order they were added."""
        texts = [body_contains] if isinstance(body_contains, str) else body_contains
        spec = dict(service=service, operation=operation, kind=kind, count=count, rate=rate, seed=seed)
        spec |= dict(function=function, body_contains=texts)
        for name, (valid, wanted) in _CHECKS.items():
            if not valid(spec[name]):
                raise ValueError(f"{name} must be {wanted}, got {spec[name]!r}")
        spec |= dict(rate=None if rate is None else float(rate), body_contains=list(texts or ()))
        with self._change() as state:
            rule_id = f"f{state['next']}"
            state["next"] += 1
            state["rules"].append({"id": rule_id, **spec})
            state["counters"][rule_id] = [0, 0]
        return FaultRule(rule_id, spec, self)

    def add_crash(
        self,
        function: str,
        service: str,
        operation: str | None = None,
        *,
        count: int | None = 1,
        **scope: Any,
    ) -> FaultRule:
        """Kill `function`'s worker at a matching call (the next one by default), before it is sent;
        `scope`: add_fault's body_contains, rate and seed."""
        return self.add_fault(service, operation, count=count, kind="crash", function=function, **scope)

    def faults(self) -> list[FaultRule]:
        return [FaultRule(rule["id"], rule, self) for rule in self._read()["rules"]]

    def clear(self) -> int:
        """Remove every rule (their counts stay); how many there were."""
        with self._change() as state:
            cleared, state["rules"] = len(state["rules"]), []
        return cleared

    def fault_counts(self) -> dict[tuple[str, str], int]:
        """Faults injected so far (crashes aside), per (service, operation)."""
        return {tuple(key.split(":", 1)): n for key, n in self._read()["faults"].items()}  # type: ignore[misc]

    def crash_counts(self) -> dict[tuple[str, str, str], int]:
        """Workers crashed so far, per (function, service, operation)."""
        return {tuple(key.split(":", 2)): n for key, n in self._read()["crashes"].items()}  # type: ignore[misc]

    def __enter__(self) -> Chaos:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
