"""A local API Gateway (REST, Lambda proxy integration) from template.yaml (dev-only).

Routes, API-key requirements, the stage name, each function's handler, timeout, memory and
environment, and the API's GatewayResponses all come from the template through
`devstack.template.Stack`. A request becomes a REST proxy event (devstack.proxy), runs on an
instance of its function (devstack.functions, one event at a time, like a Lambda instance), and
the proxy result becomes the HTTP answer. Functions triggered by other events (SQS, DynamoDB
streams, schedules) get instances too; `invoke()` is how devstack.event_sources reach them.

Not reproduced: usage-plan throttling and quotas, binary media types (a body that is not UTF-8
is passed base64-encoded), API Gateway's 29 s integration timeout (each function gets its own
Timeout), and TLS.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
import uuid
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from werkzeug.serving import DechunkedInput

from devstack import proxy
from devstack.functions import (
    ACQUIRE_TIMEOUT_S,
    INIT_TIMEOUT_S,
    FunctionPool,
    FunctionSpec,
    InvocationFailed,
    function_spec,
    stop_workers,
)
from devstack.processes import QuietHTTPServer
from devstack.template import Route, Stack

MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit
# Event types whose functions get instances here (devstack.event_sources runs all but Api).
LOCAL_EVENT_TYPES = frozenset({"Api", "SQS", "DynamoDB", "Schedule", "ScheduleV2"})


class LocalApiGateway:
    """The API of one template on 127.0.0.1; `url` is the stage URL (like the ApiUrl output).

    Logs go to `log_dir` (a file per function, gateway.log for failures, api-access.log with one
    JSON line per request), or without a log_dir to stderr.
    """

    def __init__(
        self,
        stack: Stack,
        api_keys: Mapping[str, str],
        *,
        port: int = 0,
        environment: Mapping[str, str] | None = None,
        pool_size: int = 4,
        log_dir: Path | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
        acquire_timeout_s: float = ACQUIRE_TIMEOUT_S,
    ) -> None:
        self.stack = stack
        self.api_keys = dict(api_keys)  # key value -> key id
        self.max_body_bytes = max_body_bytes
        self.acquire_timeout_s = acquire_timeout_s  # at most the function's Timeout
        self.log_dir = log_dir
        self._environment = dict(environment or {})
        self._pool_size = pool_size
        apis = [
            r["Properties"]
            for r in stack.template["Resources"].values()
            if r["Type"] == "AWS::Serverless::Api"
        ]
        api = apis[0] if apis else {}
        self.stage = str(stack.resolve(api.get("StageName", "Prod")))
        self.responses = proxy.GatewayResponses(api.get("GatewayResponses"))
        # Literal routes before parameterised ones, as API Gateway matches them.
        self.routes = sorted(stack.routes(), key=lambda route: route.path.count("{"))
        self._server = QuietHTTPServer(self, port)
        self.pools: dict[str, FunctionPool] = {}

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def domain_name(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.domain_name}/{self.stage}"

    # -- lifecycle --

    def function_spec(self, function_id: str) -> FunctionSpec:
        return function_spec(self.stack, function_id, self._environment)

    def start(self) -> LocalApiGateway:
        """Instances for every function something local calls (API routes and the events
        devstack.event_sources runs), then the HTTP server."""
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            for name in ("gateway", "api-access", *self.stack.functions()):
                (self.log_dir / f"{name}.log").write_text("")  # each run starts fresh logs
        for function_id in self.stack.functions():
            if not any(
                e.get("Type") in LOCAL_EVENT_TYPES for e in self.stack.function_events(function_id).values()
            ):
                continue
            if not self.stack.code_dir(function_id).is_dir():
                # Its routes answer 502 until the code exists; the rest of the API still runs.
                self._log("gateway", f"{function_id}: no code at {self.stack.code_dir(function_id)}")
                continue
            log = self.log_dir / f"{function_id}.log" if self.log_dir is not None else None
            self.pools[function_id] = FunctionPool(
                self.function_spec(function_id),
                size=self._pool_size,
                log=log,
                acquire_timeout_s=self.acquire_timeout_s,
            )
            self.pools[function_id].start()
        self._server.start_background("local-api-gateway")
        return self

    def wait_ready(self, timeout_s: float = INIT_TIMEOUT_S) -> bool:
        deadline = time.monotonic() + timeout_s
        return all(pool.wait_ready(max(0.0, deadline - time.monotonic())) for pool in self.pools.values())

    def stop(self) -> None:
        self._server.stop_background()
        stop_workers([worker for pool in self.pools.values() for worker in pool.close()])

    def __enter__(self) -> LocalApiGateway:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def worker_pids(self) -> list[int]:
        return [pid for pool in self.pools.values() for pid in pool.pids()]

    def invoke(self, function_id: str, event: dict[str, Any], request_id: str | None = None) -> Any:
        """Run one event on an instance of the function (what Lambda's Invoke does); the result,
        or InvocationFailed. Event sources other than the API call this too."""
        pool = self.pools.get(function_id)
        if pool is None:
            raise InvocationFailed("error", f"{function_id} is not running locally")
        return pool.invoke(event, request_id or str(uuid.uuid4()))

    def _log(self, name: str, line: str) -> None:
        if self.log_dir is None:
            print(f"[{name}] {line}", file=sys.stderr, flush=True)
            return
        with (self.log_dir / f"{name}.log").open("a") as log:  # one write per line: lines stay whole
            log.write(line + "\n")

    # -- one request --

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        started = time.monotonic()
        record = {
            "requestId": str(uuid.uuid4()),
            "ip": request.client_address[0],
            "httpMethod": request.command,
        }
        record |= dict.fromkeys(("apiKeyId", "resourcePath", "integrationLatency", "errorType"))
        try:
            answer = self._answer(request, record)
        except Exception:  # a gateway bug must still answer, like API Gateway's own 500
            self._log("gateway", f"{record['requestId']}: {traceback.format_exc()}")
            answer = self._refuse(record, proxy.INVOKE_REJECTED)
            request.close_connection = True  # the request body may not have been read
        try:
            request.send_response(answer.status)
            for name, value in [*answer.headers, ("x-amzn-RequestId", record["requestId"])]:
                request.send_header(name, value)
            request.send_header("Content-Length", str(len(answer.body)))
            request.end_headers()
            if request.command != "HEAD":
                request.wfile.write(answer.body)
        except (BrokenPipeError, ConnectionResetError):
            request.close_connection = True  # the client went away
        record |= {"status": answer.status, "responseLength": len(answer.body)}
        record["responseLatency"] = round((time.monotonic() - started) * 1000)
        self._log("api-access", json.dumps(record))

    def _answer(self, request: BaseHTTPRequestHandler, record: dict[str, Any]) -> proxy.HttpAnswer:
        raw_path, _, query = request.path.partition("?")
        body = _read_body(request, self.max_body_bytes)
        if body is None:
            return self._refuse(record, proxy.TOO_LARGE)
        matched = self._match(request.command, raw_path)
        if matched is None:
            return self._refuse(record, proxy.NO_ROUTE)
        route, path, params = matched
        record["resourcePath"] = route.path
        headers = list(request.headers.items())
        key = proxy.header(headers, "x-api-key") if route.api_key_required else None
        if route.api_key_required and key is None:
            key = _bearer_key(headers)  # TEMP until the authorizer lands
        if route.api_key_required:
            record["apiKeyId"] = self.api_keys.get(key or "")
            if record["apiKeyId"] is None:
                return self._refuse(record, proxy.INVALID_API_KEY)
        # What API Gateway adds in front of every integration request.
        forwarded = [("X-Forwarded-For", request.client_address[0]), ("X-Forwarded-Port", str(self.port))]
        forwarded.append(("X-Forwarded-Proto", "http"))
        present = {name.lower() for name, _ in headers}
        headers += [(name, value) for name, value in forwarded if name.lower() not in present]
        identity = {"apiKey": key, "apiKeyId": record["apiKeyId"], "sourceIp": request.client_address[0]}
        context = {"stage": self.stage, "domainName": self.domain_name, "requestId": record["requestId"]}
        event = proxy.build_event(
            route, request.command, path, params, query, headers, body, {**context, "identity": identity}
        )
        invoked = time.monotonic()
        try:
            return proxy.proxy_answer(self.invoke(route.function_id, event, record["requestId"]))
        except (InvocationFailed, ValueError) as failure:  # ValueError: a malformed proxy result
            self._log("gateway", f"{route.function_id} {record['requestId']}: {failure!r}")
            throttled = isinstance(failure, InvocationFailed) and failure.kind == "throttled"
            return self._refuse(record, proxy.INVOKE_REJECTED if throttled else proxy.FUNCTION_ERROR)
        finally:
            record["integrationLatency"] = round((time.monotonic() - invoked) * 1000)

    def _refuse(self, record: dict[str, Any], error: proxy.GatewayError) -> proxy.HttpAnswer:
        record["errorType"] = error.response_type
        return self.responses.answer(error, record["requestId"], self.stage)

    def _match(self, method: str, raw_path: str) -> tuple[Route, str, dict[str, str]] | None:
        prefix = f"/{self.stage}/"
        if not raw_path.startswith(prefix):
            return None
        path = raw_path[len(prefix) - 1 :]
        for route in self.routes:
            params = route.match(method, path)
            if params is not None:
                return route, path, {name: unquote(value) for name, value in params.items()}
        return None


def _bearer_key(headers: list[tuple[str, str]]) -> str | None:
    """TEMP until the authorizer lands: `Authorization: Bearer K` counts as `x-api-key: K` (what
    the playground page sends)."""
    scheme, _, token = (proxy.header(headers, "authorization") or "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def _read_body(request: BaseHTTPRequestHandler, limit: int) -> bytes | None:
    """The request body, or None when it is over `limit`: then it is read and dropped (up to a
    bound) so that the client sees the 413 rather than a reset connection."""
    if "chunked" in (request.headers.get("Transfer-Encoding") or "").lower():
        body = DechunkedInput(request.rfile).read(limit + 1)
        if len(body) <= limit:
            return body
        request.close_connection = True  # the rest of the chunks stays unread
        return None
    try:
        length = max(0, int(request.headers.get("Content-Length") or 0))
    except ValueError:
        length = 0
    if length <= limit:
        return request.rfile.read(length)
    if length > 8 * limit:
        request.close_connection = True
    while 0 < length <= 8 * limit and (chunk := request.rfile.read(min(length, 1 << 20))):
        length -= len(chunk)
    return None
