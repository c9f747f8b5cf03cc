"""AWS faults for the local stack's functions from a botocore `before-send` hook (dev-only), which each
worker installs (devstack.worker): a call a rule matches gets AWS's error in its protocol (botocore
retries it as AWS's own), a dropped connection, or a crash (exit 137, as a Lambda timeout) before it
is sent. Rules and counters live in one JSON file under a flock: `count` and `rate` hold across workers."""

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
from types import SimpleNamespace
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

ENV = "DEVSTACK_CHAOS_FILE"
CRASH_EXIT_CODE = 137  # 128 + SIGKILL: what a process killed for its time or memory exits with
FAULT_MESSAGE = "injected fault"
# botocore's service ids (before-send.<service-id>.<Operation>) that differ from the signing name.
_ALIASES = {"eventbridge": "events", "secrets-manager": "secretsmanager", "dynamodb-streams": "dynamodb"}
_ERRORS = {  # (status, code) of a server_error, then of a throttle; "*" is every other service
    "dynamodb": ((500, "InternalServerError"), (400, "ProvisionedThroughputExceededException")),
    "sqs": ((500, "InternalError"), (400, "RequestThrottled")),
    "s3": ((500, "InternalError"), (503, "SlowDown")),
    "*": ((500, "InternalFailure"), (400, "ThrottlingException")),
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


class Call(NamedTuple):
    """One AWS call as a rule sees it: `function` is the worker's FunctionId; `body` is b"" if streamed."""

    service: str
    operation: str
    function: str | None = None
    body: bytes = b""


def _live(rule: dict[str, Any], state: dict[str, Any], call: Call) -> bool:
    return (
        rule["service"] in ("*", call.service)
        and rule["operation"] in (None, call.operation)
        and rule["function"] in (None, call.function)
        and all(text.encode() in call.body for text in rule["body_contains"])
        and (rule["count"] is None or state["counters"][rule["id"]][1] < rule["count"])
    )


def _fires(rule: dict[str, Any], matched: int) -> bool:
    if rule["rate"] is None or rule["seed"] is None:
        return rule["rate"] is None or random.random() < rule["rate"]
    digest = hashlib.blake2b(f"{rule['seed']}:{matched}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < rule["rate"]


def decide(path: str, call: Call) -> str | None:
    """The fault kind of the first rule that fires for this call, or None; counted in the file."""
    state = _read(path)
    if not any(_live(rule, state, call) for rule in state["rules"]):
        return None  # the common case takes no lock
    with _change(path) as state:
        for rule in (rule for rule in state["rules"] if _live(rule, state, call)):
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

    status, code = _ERRORS.get(service, _ERRORS["*"])[kind == "throttle"]
    headers = {"x-amzn-RequestId": str(uuid.uuid4())}
    if service == "s3":
        headers |= {"x-amz-request-id": headers["x-amzn-RequestId"], "Content-Type": "application/xml"}
        body = f"<Error><Code>{code}</Code><Message>{FAULT_MESSAGE}</Message></Error>".encode()
    else:
        headers |= {"Content-Type": "application/x-amz-json-1.0", "x-amzn-ErrorType": code}
        body = json.dumps({"__type": code, "message": FAULT_MESSAGE}).encode()
        headers["x-amz-crc32"] = str(zlib.crc32(body))  # DynamoDB's; the others ignore it
    body = b"" if request.method == "HEAD" else body  # botocore reads a HEAD's status alone
    headers["Content-Length"] = str(len(body))
    return AWSResponse(request.url, status, headers, SimpleNamespace(stream=lambda **_: iter([body])))


def hook(request: Any, event_name: str, path: str, **_: Any) -> Any:
    """botocore's before-send: None (send it), the fault's AWSResponse, or the end of this process."""
    service_id, operation = event_name.split(".", 2)[1:]
    service, body = _ALIASES.get(service_id, service_id), getattr(request, "body", b"")
    body = body.encode() if isinstance(body, str) else body if isinstance(body, bytes) else b""
    name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")  # devstack.functions: local-<FunctionId>
    call = Call(service, operation, name.removeprefix("local-") if name.startswith("local-") else None, body)
    try:
        kind = decide(path, call)
    except (OSError, ValueError):  # no state file (the stack is stopping): no fault
        return None
    if kind == "crash":  # as Lambda kills an instance out of time or memory: no cleanup, no answer
        sys.stderr.write(f"[devstack.chaos] crashing {call.function} at {service}:{operation} (exit 137)\n")
        sys.stderr.flush()
        os._exit(CRASH_EXIT_CODE)
    if kind == "reset":  # the connection drops before the request is sent
        from botocore.exceptions import ConnectionClosedError

        raise ConnectionClosedError(endpoint_url=request.url)
    return None if kind is None else _error_response(service, kind, request)


def install(path: str, session: Any = None) -> None:
    """The hook, first (ahead of moto's mock), in `session` or else in boto3's default and every new one."""
    import boto3
    from botocore.handlers import BUILTIN_HANDLERS, REGISTER_FIRST

    handler = functools.partial(hook, path=path)
    if session is None:
        BUILTIN_HANDLERS.append(("before-send", handler, REGISTER_FIRST))
        session = boto3.DEFAULT_SESSION
    if session is not None:
        session.events.register_first("before-send", handler)


Text = Annotated[str, Field(min_length=1)]


class FaultRule(BaseModel):
    """One rule: add_fault's arguments, checked here, and its counters, read live from the state file."""

    model_config = ConfigDict(strict=True, extra="forbid")

    id: str = ""  # given by Chaos.add_fault
    service: Text  # a signing name ("dynamodb", "s3", "sqs", "events"), or "*" for any
    operation: Text | None = None  # None: any operation
    kind: Literal["server_error", "throttle", "reset", "crash"] = "server_error"
    count: Annotated[int, Field(ge=0)] | None = None  # None: no limit
    rate: Annotated[float, Field(ge=0, le=1)] | None = None  # None: every matching call
    seed: int | None = None  # makes `rate` fail the same calls of the rule's sequence every run
    function: Text | None = None  # a template FunctionId; None: every process with the hook
    body_contains: list[Text] = Field(default=[], strict=False)  # texts the request must all hold
    _chaos: Chaos = PrivateAttr()

    @property
    def matched(self) -> int:
        """Matching calls seen while the rule could still fire."""
        return int(self._chaos.read()["counters"][self.id][0])

    @property
    def injected(self) -> int:
        return int(self._chaos.read()["counters"][self.id][1])


class Chaos:
    """The stack's fault rules, in a state file its workers read (see the module docstring)."""

    path: str | None = None

    def start(self) -> Chaos:
        self.path = os.path.join(tempfile.mkdtemp(prefix="devstack-chaos-"), "faults.json")
        self._last: dict[str, Any] = {"rules": [], "counters": {}, "faults": {}, "crashes": {}, "next": 1}
        with open(self.path, "w") as file:
            json.dump(self._last, file)
        return self

    def stop(self) -> None:
        if self.path is not None:
            self.read()  # the rules' counts stay readable
            shutil.rmtree(os.path.dirname(self.path), ignore_errors=True)
            self.path = None

    __enter__, __exit__ = start, lambda self, *_: self.stop()

    @property
    def environment(self) -> dict[str, str]:
        """What a worker needs in its environment to install the hook."""
        assert self.path is not None, "chaos not started"
        return {ENV: self.path}

    def read(self) -> dict[str, Any]:
        """The rules, their counters and the tallies (the last copy read once stopped)."""
        self._last = _read(self.path) if self.path is not None else self._last
        return self._last

    def add_fault(self, service: str, operation: str | None = None, **options: Any) -> FaultRule:
        """Fail matching calls of `service` and `operation` (None: any); `options` are FaultRule's
        (`body_contains` may be one text). Rules are tried in the order they were added."""
        if isinstance(options.get("body_contains"), str):
            options["body_contains"] = [options["body_contains"]]
        rule = FaultRule(
            service=service, operation=operation, **{k: v for k, v in options.items() if v is not None}
        )
        with _change(self.environment[ENV]) as state:
            rule.id, state["next"] = f"f{state['next']}", state["next"] + 1
            state["rules"].append(rule.model_dump())
            state["counters"][rule.id] = [0, 0]
        rule._chaos = self
        return rule

    def add_crash(
        self, function: str, service: str, operation: str | None = None, **options: Any
    ) -> FaultRule:
        """Kill `function`'s worker at a matching call before it is sent (the next one unless `count`)."""
        return self.add_fault(
            service, operation, **{"count": 1, **options, "kind": "crash", "function": function}
        )

    def clear(self) -> int:
        """Remove every rule (their counts stay); how many there were."""
        with _change(self.environment[ENV]) as state:
            cleared, state["rules"] = len(state["rules"]), []
        return cleared

    def fault_counts(self) -> dict[tuple[str, str], int]:
        """Faults injected so far (crashes aside), per (service, operation)."""
        return {tuple(key.split(":", 1)): n for key, n in self.read()["faults"].items()}  # type: ignore[misc]

    def crash_counts(self) -> dict[tuple[str, str, str], int]:
        """Workers crashed so far, per (function, service, operation)."""
        return {tuple(key.split(":", 2)): n for key, n in self.read()["crashes"].items()}  # type: ignore[misc]
