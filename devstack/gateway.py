"""A local API Gateway (REST, Lambda proxy integration) from template.yaml (dev-only).

Routes, API-key requirements, the stage name, each function's handler, timeout, memory and
environment, and the API's GatewayResponses all come from the template through
`devstack.template.Stack`. A request becomes a REST proxy event shaped like events/*.json, runs
in a worker process (devstack.functions: `python -m devstack.worker FunctionId`, one event at a
time, like a Lambda instance), and the proxy result becomes the HTTP answer. Functions triggered by other events
(SQS) get instances too; `invoke()` is how devstack.stack's event sources reach them.

What API Gateway itself answers is reproduced: a missing or unknown x-api-key is 403
INVALID_API_KEY ("Forbidden"), an unknown route or method is MISSING_AUTHENTICATION_TOKEN
("Missing Authentication Token", 403), a body over 10 MB is 413 REQUEST_TOO_LARGE, and a
function that raises, crashes, times out or returns a malformed result is 502 ("Internal server
error"). When the template customises these (GatewayResponses), its status and template are
applied, as the deployed API would; otherwise API Gateway's own `{"message": ...}` bodies.

Not reproduced: usage-plan throttling and quotas, binary media types (a body that is not UTF-8
is passed base64-encoded), API Gateway's 29 s integration timeout (each function gets its own
Timeout), and TLS.
"""

from __future__ import annotations

import base64
import json
import os
import re
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qsl, unquote

from devstack.functions import (
    ACQUIRE_TIMEOUT_S,
    DEFAULT_MEMORY_MB,
    DEFAULT_TIMEOUT_S,
    INIT_TIMEOUT_S,
    FunctionPool,
    FunctionSpec,
    InvocationFailed,
    stop_workers,
)
from devstack.processes import QuietHTTPServer
from devstack.template import ACCOUNT, REGION, ROOT, Route, Stack

MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit
API_ID = "local"
# Event types whose functions get instances here; devstack.stack polls the SQS ones.
LOCAL_EVENT_TYPES = frozenset({"Api", "SQS", "DynamoDB", "Schedule", "ScheduleV2"})


@dataclass(frozen=True)
class GatewayError:
    """One of API Gateway's own answers: its gateway response type, default status and message."""

    response_type: str
    status: int
    message: str


INVALID_API_KEY = GatewayError("INVALID_API_KEY", 403, "Forbidden")
NO_ROUTE = GatewayError("MISSING_AUTHENTICATION_TOKEN", 403, "Missing Authentication Token")
TOO_LARGE = GatewayError("REQUEST_TOO_LARGE", 413, "Request Too Long")
# The function raised, crashed, timed out or returned a malformed result.
FUNCTION_ERROR = GatewayError("DEFAULT_5XX", 502, "Internal server error")
# Lambda refused the invocation (no free instance in time).
INVOKE_REJECTED = GatewayError("DEFAULT_5XX", 500, "Internal server error")
_ERROR_TYPE_HEADER = {
    "INVALID_API_KEY": "ForbiddenException",
    "MISSING_AUTHENTICATION_TOKEN": "ForbiddenException",
}
_HOP_BY_HOP = {"connection", "content-length", "transfer-encoding", "keep-alive", "date", "server"}


# -- events and responses ------------------------------------------------------------------------


def build_event(
    *,
    route: Route,
    method: str,
    path: str,
    path_parameters: dict[str, str],
    query: str,
    headers: list[tuple[str, str]],
    body: bytes,
    stage: str,
    domain_name: str,
    source_ip: str,
    request_id: str,
    api_key: str | None,
    api_key_id: str | None,
) -> dict[str, Any]:
    """A REST API (v1) Lambda proxy event, shaped like events/*.json."""
    single_headers: dict[str, str] = {}
    multi_headers: dict[str, list[str]] = {}
    for name, value in headers:
        single_headers[name] = value  # API Gateway keeps the last value of a repeated header
        multi_headers.setdefault(name, []).append(value)
    single_query: dict[str, str] = {}
    multi_query: dict[str, list[str]] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        single_query[name] = value
        multi_query.setdefault(name, []).append(value)
    try:
        text: str | None = body.decode() if body else None
        encoded = False
    except UnicodeDecodeError:
        text, encoded = base64.b64encode(body).decode(), True
    return {
        "resource": route.path,
        "path": path,
        "httpMethod": method,
        "headers": single_headers or None,
        "multiValueHeaders": multi_headers or None,
        "queryStringParameters": single_query or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": path_parameters or None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": route.path,
            "httpMethod": method,
            "path": f"/{stage}{path}",
            "stage": stage,
            "accountId": ACCOUNT,
            "apiId": API_ID,
            "protocol": "HTTP/1.1",
            "domainName": domain_name,
            "requestId": request_id,
            "requestTimeEpoch": int(time.time() * 1000),
            "identity": {
                "apiKey": api_key,
                "apiKeyId": api_key_id,
                "sourceIp": source_ip,
                "userAgent": _header(headers, "user-agent"),
            },
        },
        "body": text,
        "isBase64Encoded": encoded,
    }


def _header(headers: list[tuple[str, str]], name: str) -> str | None:
    found = [value for key, value in headers if key.lower() == name]
    return found[-1] if found else None


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def proxy_answer(result: Any) -> HttpAnswer:
    """Turn a Lambda proxy result into an HTTP answer; ValueError if it is malformed."""
    if not isinstance(result, dict):
        raise ValueError("the result is not an object")
    # The REST (v1) proxy format knows these fields only; API Gateway refuses anything else.
    unknown = set(result) - {"statusCode", "headers", "multiValueHeaders", "body", "isBase64Encoded"}
    if unknown:
        raise ValueError(f"unknown fields in the result: {sorted(unknown)}")
    status = result.get("statusCode")
    if isinstance(status, str) and status.isdigit():
        status = int(status)
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        raise ValueError(f"statusCode {status!r} is not an HTTP status")
    merged: dict[str, list[str]] = {}
    for name, values in (result.get("multiValueHeaders") or {}).items():
        if not isinstance(values, list):
            raise ValueError(f"multiValueHeaders[{name!r}] is not a list")
        merged[name] = [str(value) for value in values]
    for name, value in (result.get("headers") or {}).items():
        # API Gateway merges both maps; a pair present in both appears once.
        if str(value) not in merged.setdefault(name, []):
            merged[name].insert(0, str(value))
    body = result.get("body")
    if body is None:
        payload = b""
    elif not isinstance(body, str):
        raise ValueError("body is not a string")
    elif result.get("isBase64Encoded"):
        payload = base64.b64decode(body)
    else:
        payload = body.encode()
    headers = [
        (name, value)
        for name, values in merged.items()
        if name.lower() not in _HOP_BY_HOP
        for value in values
    ]
    return HttpAnswer(status, headers, payload)


class GatewayResponses:
    """API Gateway's own error answers, customised by the template's GatewayResponses if any."""

    def __init__(self, configured: Mapping[str, Any] | None) -> None:
        self._configured = dict(configured or {})

    def answer(self, error: GatewayError, request_id: str, stage: str) -> HttpAnswer:
        family = "DEFAULT_4XX" if error.status < 500 else "DEFAULT_5XX"
        specific = self._configured.get(error.response_type) or {}
        fallback = self._configured.get(family) or {}
        # A specific entry wins; DEFAULT_4XX/5XX supply what it leaves out.
        status = int(specific.get("StatusCode") or fallback.get("StatusCode") or error.status)
        templates = specific.get("ResponseTemplates") or fallback.get("ResponseTemplates") or {}
        template = templates.get("application/json", '{"message":$context.error.messageString}')
        context = {
            "error.responseType": error.response_type,
            "error.messageString": json.dumps(error.message),
            "error.message": error.message,
            "requestId": request_id,
            "stage": stage,
        }
        body = re.sub(
            r"\$context\.([A-Za-z.]+[A-Za-z])",
            lambda found: context.get(found.group(1), found.group(0)),
            template,
        ).encode()
        headers = [("Content-Type", "application/json")]
        params = {**fallback.get("ResponseParameters", {}), **specific.get("ResponseParameters", {})}
        for name, value in (params.get("Headers") or {}).items():
            headers.append((name, str(value).strip("'")))  # static values are quoted in the template
        if error.response_type in _ERROR_TYPE_HEADER:
            headers.append(("x-amzn-ErrorType", _ERROR_TYPE_HEADER[error.response_type]))
        return HttpAnswer(status, headers, body)


# -- the HTTP server -----------------------------------------------------------------------------


class _Server(QuietHTTPServer):
    gateway: LocalApiGateway


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive, as clients of the real API expect
    server_version = "local-api-gateway"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the gateway writes its own access log

    def do_GET(self) -> None:
        self.server.gateway.handle(self)

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET


@dataclass
class _Exchange:
    """What one request came to, for the access log."""

    request_id: str
    method: str
    route: Route | None = None
    key_id: str | None = None
    error: GatewayError | None = None
    integration_ms: int | None = None


class LocalApiGateway:
    """The API of one template on 127.0.0.1; `url` is the stage URL (like the ApiUrl output)."""

    def __init__(
        self,
        stack: Stack,
        api_keys: Mapping[str, str],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        environment: Mapping[str, str] | None = None,
        pool_size: int = 4,
        warm: int = 1,
        log_dir: Path | None = None,
        console_logs: bool = False,
        access_log: Callable[[dict[str, Any]], None] | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
        template_responses: bool = True,
        python: str = sys.executable,
        acquire_timeout_s: float = ACQUIRE_TIMEOUT_S,
    ) -> None:
        self.stack = stack
        # How long a request waits for a free instance (at most the function's Timeout).
        self.acquire_timeout_s = acquire_timeout_s
        self.api_keys = dict(api_keys)  # key value -> key id
        self.max_body_bytes = max_body_bytes
        self._environment = dict(environment or {})
        self._pool_size = pool_size
        self._warm = warm
        self.log_dir = log_dir
        self._console = console_logs
        self._access_log = access_log
        self._python = python
        api = _api_resource(stack)
        self.stage = str(stack.resolve(api.get("StageName", "Prod"))) if api else "Prod"
        self.responses = GatewayResponses(api.get("GatewayResponses") if template_responses and api else None)
        # Literal routes before parameterised ones, as API Gateway matches them.
        self.routes = sorted(stack.routes(), key=lambda route: route.path.count("{"))
        self._server = _Server((host, port), _Handler)
        self._server.gateway = self
        self._logs: list[IO[bytes]] = []
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
        props = self.stack.functions()[function_id].get("Properties", {})
        defaults = self.stack.template.get("Globals", {}).get("Function", {})
        timeout = float(self.stack.resolve(props.get("Timeout", defaults.get("Timeout", DEFAULT_TIMEOUT_S))))
        memory = int(
            self.stack.resolve(props.get("MemorySize", defaults.get("MemorySize", DEFAULT_MEMORY_MB)))
        )
        handler = str(self.stack.resolve(props.get("Handler", defaults.get("Handler", "app.lambda_handler"))))
        name = f"local-{function_id}"
        # The function's layers (Globals' then its own), as Lambda unpacks them into /opt/python;
        # the common layer for a template that declares none.
        layers = [*defaults.get("Layers", []), *props.get("Layers", [])]
        resources = self.stack.template["Resources"]
        layer_dirs = [str(ROOT / resources[layer["Ref"]]["Properties"]["ContentUri"]) for layer in layers]
        layer_dirs = layer_dirs or [str(ROOT / "layers" / "common")]
        runtime = {
            # A clean environment, as Lambda has: nothing of the developer's shell leaks in.
            "PATH": os.environ.get("PATH", os.defpath),
            "LANG": "C.UTF-8",
            "TZ": "UTC",
            "PYTHONUNBUFFERED": "1",
            # This checkout's layer (Lambda's /opt/python) and devstack, not whichever checkout an
            # editable install of the package points at.
            "PYTHONPATH": os.pathsep.join([*layer_dirs, str(ROOT)]),
            "_HANDLER": handler,
            "LAMBDA_TASK_ROOT": str(self.stack.code_dir(function_id)),
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_LAMBDA_FUNCTION_NAME": name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": "local",
        }
        environment = {
            **runtime,
            **self.stack.function_environment(function_id),
            **self._environment,
            "PUBLIC_BASE_URL": self._environment.get("PUBLIC_BASE_URL", self.url),
        }
        return FunctionSpec(function_id, self.stack.code_dir(function_id), environment, timeout, memory)

    def function_ids(self) -> list[str]:
        """The functions something local can call: API routes and the event sources devstack runs."""
        triggered = {
            function_id
            for function_id in self.stack.functions()
            for event in self.stack.function_events(function_id).values()
            if event.get("Type") in LOCAL_EVENT_TYPES
        }
        return sorted(triggered | {route.function_id for route in self.routes})

    def start(self) -> LocalApiGateway:
        if self.log_dir is not None and not self._console:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            (self.log_dir / "gateway.log").write_text("")  # each run starts fresh logs
        for function_id in self.function_ids():
            if not self.stack.code_dir(function_id).is_dir():
                # Its routes answer 502 until the code exists; the rest of the API still runs.
                self._log_failure(function_id, "-", f"no code at {self.stack.code_dir(function_id)}")
                continue
            log = None
            if self.log_dir is not None and not self._console:
                path = self.log_dir / f"{function_id}.log"
                path.write_bytes(b"")
                # Append mode: the instances share this file and each write lands whole at its end.
                log = path.open("ab")
                self._logs.append(log)
            pool = FunctionPool(
                self.function_spec(function_id),
                size=self._pool_size,
                warm=self._warm,
                python=self._python,
                log=log,
                console=self._console,
                acquire_timeout_s=self.acquire_timeout_s,
            )
            self.pools[function_id] = pool
            pool.start()
        self._server.start_background("local-api-gateway")
        return self

    def wait_ready(self, timeout_s: float = INIT_TIMEOUT_S) -> bool:
        deadline = time.monotonic() + timeout_s
        return all(pool.wait_ready(max(0.0, deadline - time.monotonic())) for pool in self.pools.values())

    def stop(self) -> None:
        self._server.stop_background()
        stop_workers([worker for pool in self.pools.values() for worker in pool.close()])
        for log in self._logs:
            log.close()
        self._logs.clear()

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

    # -- one request --

    def handle(self, request: _Handler) -> None:
        started = time.monotonic()
        exchange = _Exchange(request_id=str(uuid.uuid4()), method=request.command)
        try:
            answer = self._answer(request, exchange)
        except Exception:  # a gateway bug must still answer, like API Gateway's own 500
            self._log_failure("gateway", exchange.request_id, traceback.format_exc())
            answer = self._refuse(exchange, INVOKE_REJECTED)
            request.close_connection = True  # the request body may not have been read
        self._write(request, answer, exchange.request_id)
        if self._access_log is not None:
            self._access_log(
                {
                    "requestId": exchange.request_id,
                    "ip": request.client_address[0],
                    "apiKeyId": exchange.key_id,
                    "httpMethod": exchange.method,
                    "resourcePath": exchange.route.path if exchange.route else None,
                    "status": answer.status,
                    "responseLength": len(answer.body),
                    "responseLatency": round((time.monotonic() - started) * 1000),
                    "integrationLatency": exchange.integration_ms,
                    "errorType": exchange.error.response_type if exchange.error else None,
                }
            )

    def _answer(self, request: _Handler, exchange: _Exchange) -> HttpAnswer:
        raw_path, _, query = request.path.partition("?")
        length = _content_length(request)
        if length is not None and length > self.max_body_bytes:
            _drain(request, length)
            return self._refuse(exchange, TOO_LARGE)
        body = _read_body(request, length, self.max_body_bytes)
        if body is None:
            return self._refuse(exchange, TOO_LARGE)
        matched = self._match(exchange.method, raw_path)
        if matched is None:
            return self._refuse(exchange, NO_ROUTE)
        route, path, params = matched
        exchange.route = route
        headers = list(request.headers.items())
        key = _header(headers, "x-api-key") if route.api_key_required else None
        if route.api_key_required:
            exchange.key_id = self.api_keys.get(key or "")
            if exchange.key_id is None:
                return self._refuse(exchange, INVALID_API_KEY)
        event = build_event(
            route=route,
            method=exchange.method,
            path=path,
            path_parameters=params,
            query=query,
            headers=[*headers, *self._forwarded(request, headers)],
            body=body,
            stage=self.stage,
            domain_name=self.domain_name,
            source_ip=request.client_address[0],
            request_id=exchange.request_id,
            api_key=key,
            api_key_id=exchange.key_id,
        )
        invoked = time.monotonic()
        try:
            return proxy_answer(self.invoke(route.function_id, event, exchange.request_id))
        except InvocationFailed as failure:
            self._log_failure(route.function_id, exchange.request_id, str(failure))
            return self._refuse(exchange, INVOKE_REJECTED if failure.kind == "throttled" else FUNCTION_ERROR)
        except ValueError as error:
            self._log_failure(
                route.function_id, exchange.request_id, f"Malformed Lambda proxy response: {error}"
            )
            return self._refuse(exchange, FUNCTION_ERROR)
        finally:
            exchange.integration_ms = round((time.monotonic() - invoked) * 1000)

    def _refuse(self, exchange: _Exchange, error: GatewayError) -> HttpAnswer:
        exchange.error = error
        return self.responses.answer(error, exchange.request_id, self.stage)

    def _log_failure(self, function_id: str, request_id: str, message: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {function_id} {request_id}: {message}\n"
        if self._console or self.log_dir is None:
            sys.stderr.write(f"[gateway] {line}")
            return
        with (self.log_dir / "gateway.log").open("a") as log:
            log.write(line)

    def _match(self, method: str, raw_path: str) -> tuple[Route, str, dict[str, str]] | None:
        prefix = f"/{self.stage}"
        if not raw_path.startswith(prefix + "/"):
            return None
        path = raw_path[len(prefix) :]
        for route in self.routes:
            params = route.match(method, path)
            if params is not None:
                return route, path, {name: unquote(value) for name, value in params.items()}
        return None

    def _forwarded(self, request: _Handler, headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
        # What API Gateway adds in front of every integration request.
        present = {name.lower() for name, _ in headers}
        added = [
            ("X-Forwarded-For", request.client_address[0]),
            ("X-Forwarded-Port", str(self.port)),
            ("X-Forwarded-Proto", "http"),
        ]
        return [(name, value) for name, value in added if name.lower() not in present]

    def _write(self, request: _Handler, answer: HttpAnswer, request_id: str) -> None:
        try:
            request.send_response(answer.status, _reason(answer.status))
            for name, value in answer.headers:
                request.send_header(name, value)
            request.send_header("Content-Length", str(len(answer.body)))
            request.send_header("x-amzn-RequestId", request_id)
            request.end_headers()
            if request.command != "HEAD":
                request.wfile.write(answer.body)
        except (BrokenPipeError, ConnectionResetError):
            request.close_connection = True  # the client went away


def _api_resource(stack: Stack) -> dict[str, Any]:
    for resource in stack.template.get("Resources", {}).values():
        if resource.get("Type") == "AWS::Serverless::Api":
            return dict(resource.get("Properties", {}))
    return {}


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _content_length(request: _Handler) -> int | None:
    raw = request.headers.get("Content-Length")
    if raw is None:
        return None
    try:
        return max(0, int(raw))
    except ValueError:
        return 0


def _read_body(request: _Handler, length: int | None, limit: int) -> bytes | None:
    """The request body, or None when a chunked body runs past `limit`."""
    if length is not None:
        return request.rfile.read(length) if length else b""
    if "chunked" not in (request.headers.get("Transfer-Encoding") or "").lower():
        return b""
    body = bytearray()
    while True:
        size = int(request.rfile.readline().split(b";")[0].strip() or b"0", 16)
        if size == 0:
            while request.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return bytes(body) if len(body) <= limit else None
        body += request.rfile.read(size)
        request.rfile.readline()
        if len(body) > limit:
            request.close_connection = True
            return None


def _drain(request: _Handler, length: int) -> None:
    # Reading what the client sends (up to a bound) lets it see the 413 instead of a reset.
    if length > 8 * MAX_BODY_BYTES:
        request.close_connection = True
        return
    remaining = length
    while remaining > 0:
        chunk = request.rfile.read(min(remaining, 1 << 20))
        if not chunk:
            break
        remaining -= len(chunk)
