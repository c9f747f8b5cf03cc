"""A local API Gateway (REST, Lambda proxy) from template.yaml (dev-only): routes, API keys, authorizers,
stage, BinaryMediaTypes (requests), GatewayResponses, and the functions' instances (devstack.functions)
that devstack.event_sources reach through `invoke()`. Not reproduced: binary responses, usage-plan
throttling, the 29 s integration timeout, TLS."""

from __future__ import annotations

import fnmatch
import json
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from werkzeug.serving import DechunkedInput

from devstack import functions, proxy
from devstack.authorizers import Authorized, Authorizers
from devstack.functions import FunctionPool, InvocationFailed
from devstack.processes import QuietHTTPServer
from devstack.template import Stack

MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit
# Event types whose functions get instances here (devstack.event_sources runs all but Api).
LOCAL_EVENT_TYPES = frozenset({"Api", "SQS", "DynamoDB", "Schedule", "ScheduleV2"})
_ACCESS_FIELDS = ("apiKeyId", "tenantId", "resourcePath", "integrationLatency", "errorType")  # set later


class LocalApiGateway:
    """The API of one template on 127.0.0.1 at `url`, the stage URL (the ApiUrl output). `api_keys`: a
    usage plan key's id by its value, or None; logs go to `log_dir` (per function, gateway, api-access)
    or else to stderr."""

    def __init__(
        self,
        stack: Stack,
        api_keys: Callable[[str], str | None],
        *,
        port: int = 0,
        environment: Mapping[str, str] | None = None,
        pool_size: int = 4,
        log_dir: Path | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
        acquire_timeout_s: float = functions.ACQUIRE_TIMEOUT_S,
    ) -> None:
        self.stack, self.log_dir, self.max_body_bytes = stack, log_dir, max_body_bytes
        self._api_keys, self._pool_size, self.acquire_timeout_s = api_keys, pool_size, acquire_timeout_s
        self._environment = dict(environment or {})
        resources = stack.template["Resources"].values()
        api = next((r["Properties"] for r in resources if r["Type"] == "AWS::Serverless::Api"), {})
        self.stage = str(stack.resolve(api.get("StageName", "Prod")))
        self.responses = dict(api.get("GatewayResponses") or {})
        # SAM writes `/` as `~1` in BinaryMediaTypes; `*` wildcards as API Gateway matches them.
        self.binary_media_types = [
            str(stack.resolve(kind)).replace("~1", "/").lower() for kind in api.get("BinaryMediaTypes") or []
        ]
        self.api_key_source = str(api.get("ApiKeySourceType", "HEADER"))  # or AUTHORIZER
        self.authorizers = Authorizers(stack, api, self.invoke)
        # Literal routes before parameterised ones, as API Gateway matches them.
        self.routes = sorted(stack.routes(), key=lambda route: route.path.count("{"))
        self._server = QuietHTTPServer(self, port)
        self.port = int(self._server.server_address[1])
        self.domain_name = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.domain_name}/{self.stage}"
        self.pools: dict[str, FunctionPool] = {}

    def function_spec(self, function_id: str) -> functions.FunctionSpec:
        return functions.function_spec(self.stack, function_id, self._environment)

    def start(self) -> LocalApiGateway:
        """A pool for every function something local calls (instances start with events), then the server."""
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            for name in ("gateway", "api-access", *self.stack.functions()):
                (self.log_dir / f"{name}.log").write_text("")  # each run starts fresh logs
        called = {spec.function_id for spec in self.authorizers.specs.values()}
        for function_id in self.stack.functions():
            events = self.stack.function_events(function_id).values()
            if function_id not in called and not any(e.get("Type") in LOCAL_EVENT_TYPES for e in events):
                continue
            if not self.stack.code_dir(function_id).is_dir():  # its routes answer 502, the rest runs
                self._log("gateway", f"{function_id}: no code at {self.stack.code_dir(function_id)}")
                continue
            log = self.log_dir / f"{function_id}.log" if self.log_dir is not None else None
            options = {"size": self._pool_size, "log": log, "acquire_timeout_s": self.acquire_timeout_s}
            self.pools[function_id] = FunctionPool(self.function_spec(function_id), **options)
        self._server.start_background("local-api-gateway")
        return self

    def stop(self) -> None:
        self._server.stop_background()
        functions.stop_workers([worker for pool in self.pools.values() for worker in pool.close()])

    def __enter__(self) -> LocalApiGateway:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def worker_pids(self) -> list[int]:
        return [pid for pool in self.pools.values() for pid in pool.pids()]

    def invoke(self, function_id: str, event: dict[str, Any], request_id: str | None = None) -> Any:
        """Run one event on an instance of the function (Lambda's Invoke): its result, or InvocationFailed."""
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

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        started = time.monotonic()
        record: dict[str, Any] = {"requestId": str(uuid.uuid4()), "ip": request.client_address[0]}
        record |= {"httpMethod": request.command, **dict.fromkeys(_ACCESS_FIELDS)}
        try:
            answer = self._answer(request, record)
        except Exception:  # a gateway bug still answers, like API Gateway's own 500
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
        path = raw_path.removeprefix(f"/{self.stage}")
        route = next((r for r in self.routes if r.match(request.command, path) is not None), None)
        if route is None or path == raw_path:  # outside the stage: no route
            return self._refuse(record, proxy.NO_ROUTE)
        record["resourcePath"] = route.path
        headers = list(request.headers.items())
        present = {name.lower() for name, _ in headers}
        ip = request.client_address[0]
        forwarded = {"X-Forwarded-For": ip, "X-Forwarded-Port": str(self.port), "X-Forwarded-Proto": "http"}
        headers += [(name, value) for name, value in forwarded.items() if name.lower() not in present]
        context = {"stage": self.stage, "domainName": self.domain_name, "requestId": record["requestId"]}
        context["identity"] = {"apiKey": None, "apiKeyId": None, "sourceIp": ip}
        kind = (proxy.header(headers, "content-type") or "").split(";", 1)[0].strip().lower()
        binary = bool(kind) and any(fnmatch.fnmatchcase(kind, pattern) for pattern in self.binary_media_types)
        event = proxy.build_event(route, path, query, headers, body, binary, context)
        authorized = None
        if route.authorizer is not None:
            authorized = self.authorizers.authorize(route.authorizer, event, record["requestId"])
            if not isinstance(authorized, Authorized):
                return self._refuse(record, authorized)
            event["requestContext"]["authorizer"] = authorized.context
            record["tenantId"] = authorized.context.get("tenant_id")
        if route.api_key_required:
            key = proxy.header(headers, "x-api-key")
            if self.api_key_source == "AUTHORIZER":
                key = authorized.usage_identifier_key if authorized is not None else None
            record["apiKeyId"] = self._api_keys(key) if key else None
            if record["apiKeyId"] is None:
                return self._refuse(record, proxy.INVALID_API_KEY)
            event["requestContext"]["identity"] |= {"apiKey": key, "apiKeyId": record["apiKeyId"]}
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
        return proxy.gateway_answer(self.responses, error, record["requestId"], self.stage)


def _read_body(request: BaseHTTPRequestHandler, limit: int) -> bytes | None:
    """The body, or None over `limit`: then read and dropped (up to 8 times it): the client sees the 413."""
    if "chunked" in (request.headers.get("Transfer-Encoding") or "").lower():
        body = DechunkedInput(request.rfile).read(limit + 1)
        if len(body) <= limit:
            return body
        request.close_connection = True  # the rest of the chunks stays unread
        return None
    declared = request.headers.get("Content-Length") or "0"
    length = int(declared) if declared.isdigit() else 0
    if length <= limit:
        return request.rfile.read(length)
    if length > 8 * limit:
        request.close_connection = True
    while 0 < length <= 8 * limit and (chunk := request.rfile.read(min(length, 1 << 20))):
        length -= len(chunk)
    return None
