"""A fault-injecting HTTP proxy between the stack's functions and moto's server (dev-only).

The fault suite points the functions' AWS_ENDPOINT_URL at this proxy instead of at moto. Every
request is forwarded unchanged (method, path and query, headers including Authorization, Host and
x-amz-*, body), so SigV4 signatures still verify and the URLs moto builds from the Host header
(SQS queue URLs) point back at the proxy. Rules make chosen requests fail the way AWS fails: an
error answer in the service's own wire format, which botocore parses, retries and raises as a
ClientError with the right code, or a connection dropped without an answer. Nothing is mocked
inside the service code.

    with ChaosProxy(moto_url) as proxy:
        proxy.add_fault("dynamodb", "PutItem", count=1)             # the next PutItem answers 500
        proxy.add_fault("s3", "UploadPart", rate=0.2, seed=7)       # one part in five, repeatably
        proxy.add_fault("sqs", kind="reset", count=1)               # drop the next SQS connection
        proxy.stats()[("dynamodb", "PutItem")]                      # Counts(seen=2, faults=1)

Another process changes the rules over HTTP, under /_chaos/ on the proxy's own address (these
requests are answered by the proxy, never forwarded); `ChaosControl(proxy_url)` wraps them:

    POST   /_chaos/faults        {"service", "operation", "count", "rate", "kind", "seed"} -> 201 rule
    GET    /_chaos/faults        -> {"faults": [rule, ...]}
    DELETE /_chaos/faults        -> {"cleared": n}
    DELETE /_chaos/faults/<id>   -> {"removed": id} (404 if there is no such rule)
    GET    /_chaos/stats         -> {"seen", "faults", "operations": [{"service", "operation", "seen", "faults"}]}
    DELETE /_chaos/stats         -> {"reset": true}

A rule is `{"id", "service", "operation", "kind", "count", "remaining", "rate", "seed", "matched",
"injected"}`; kinds are in KINDS. Bodies are streamed both ways (a part is never held whole), each
request gets its own upstream connection, and clients keep theirs alive. Run it alone with `python -m devstack.chaos --upstream http://127.0.0.1:5000`.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import itertools
import json
import logging
import random
import re
import socket
import struct
import threading
import uuid
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler
from typing import Any, NamedTuple
from urllib.parse import parse_qs, unquote, urlsplit

import httpx

from devstack.processes import QuietHTTPServer

__all__ = [
    "KINDS",
    "ChaosControl",
    "ChaosProxy",
    "Counts",
    "FaultRule",
    "identify",
    "main",
]

logger = logging.getLogger("devstack.chaos")

# server_error / throttle: an error answer in the service's format (see _error_answer).
# reset: the connection is dropped (TCP RST) before the request reaches moto.
# reset_after: moto handles the request, then the connection is dropped before the answer
# (the write happened but the caller cannot know: what idempotency must survive).
KINDS = ("server_error", "throttle", "reset", "reset_after")
CONTROL_PREFIX = "/_chaos"
FAULT_MESSAGE = "injected fault"
_PIECE = 64 * 1024
# Request bodies read before forwarding so the query protocol's Action can be seen (form posts).
_MAX_FORM_BODY = 1 << 20
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "expect",  # answered here (100 Continue); never signed by botocore
    }
)
# "Credential=AKID/20260101/us-east-1/dynamodb/aws4_request" (SigV4a has no region part).
_CREDENTIAL = re.compile(r"Credential=([^,\s]+)")
_TARGET_SERVICES = {"dynamodb": "dynamodb", "dynamodbstreams": "dynamodb", "amazonsqs": "sqs"}


class _ClientGone(ConnectionResetError):
    """The client closed its connection in the middle of sending a request body."""


class Counts(NamedTuple):
    """How many requests of one (service, operation) the proxy saw, and how many it made fail."""

    seen: int
    faults: int


@dataclass
class FaultRule:
    """One fault rule. `count` None: no limit; `rate` None: every matching request."""

    id: str
    service: str  # a signing name ("dynamodb", "s3", "sqs"), or "*" for any
    operation: str | None  # None: any operation of the service
    kind: str
    count: int | None
    rate: float | None
    seed: int | None
    remaining: int | None = field(init=False)  # None: no limit
    matched: int = field(init=False, default=0)  # matching requests seen
    injected: int = field(init=False, default=0)  # faults injected
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.remaining = self.count
        self._rng = random.Random(self.seed)

    def matches(self, service: str, operation: str) -> bool:
        if self.service != "*" and self.service.lower() != service.lower():
            return False
        return self.operation is None or self.operation.lower() == operation.lower()

    def fire(self) -> bool:
        """Whether this matching request fails (call with the proxy's lock held)."""
        self.matched += 1
        if self.remaining is not None and self.remaining <= 0:
            return False
        if self.rate is not None and self._rng.random() >= self.rate:
            return False
        if self.remaining is not None:
            self.remaining -= 1
        self.injected += 1
        return True

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "service": self.service,
            "operation": self.operation,
            "kind": self.kind,
            "count": self.count,
            "remaining": self.remaining,
            "rate": self.rate,
            "seed": self.seed,
            "matched": self.matched,
            "injected": self.injected,
        }


def _check_rule(
    service: Any, operation: Any, count: Any, rate: Any, kind: Any, seed: Any
) -> tuple[str, str | None, int | None, float | None, str, int | None]:
    if not isinstance(service, str) or not service:
        raise ValueError("service must be a signing name such as 'dynamodb', 's3', 'sqs', or '*'")
    if operation is not None and (not isinstance(operation, str) or not operation):
        raise ValueError("operation must be an operation name such as 'PutItem', or None for any")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if count is not None and (type(count) is not int or count < 0):
        raise ValueError(f"count must be a non-negative integer, got {count!r}")
    if rate is not None:
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate must be a probability between 0 and 1, got {rate!r}")
        rate = float(rate)
    if seed is not None and type(seed) is not int:
        raise ValueError(f"seed must be an integer, got {seed!r}")
    return service, operation, count, rate, kind, seed


# -- what a request is ------------------------------------------------------------------------------


def _scope_service(credential: str) -> str | None:
    scope = unquote(credential).split("/")
    if len(scope) >= 4 and scope[-1] == "aws4_request":
        return scope[-2]
    return None


# Query parameters that do not change which S3 operation a request is: presigning, botocore's
# x-id hint, and GetObject's response-header overrides.
_S3_PLAIN_PARAMS = frozenset(
    {
        "x-id",
        "AWSAccessKeyId",
        "Signature",
        "Expires",
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Date",
        "X-Amz-Expires",
        "X-Amz-SignedHeaders",
        "X-Amz-Signature",
        "X-Amz-Security-Token",
    }
)
_S3_LIST_PARAMS = frozenset(
    {
        "list-type",
        "prefix",
        "delimiter",
        "max-keys",
        "marker",
        "continuation-token",
        "start-after",
        "encoding-type",
        "fetch-owner",
    }
)


def _s3_operation(method: str, path: str, query: Mapping[str, Any], headers: Mapping[str, str]) -> str:
    """The S3 operation of a path-style request (what botocore sends to an IP endpoint)."""
    bucket, _, key = path.lstrip("/").partition("/")
    params = {name for name in query if name not in _S3_PLAIN_PARAMS and not name.startswith("response-")}
    copy = "x-amz-copy-source" in headers
    if not bucket:
        return "ListBuckets" if method == "GET" else method
    if key:
        if method == "PUT" and {"partNumber", "uploadId"} <= params:
            return "UploadPartCopy" if copy else "UploadPart"
        if method == "PUT" and not params:
            return "CopyObject" if copy else "PutObject"
        if method == "POST" and "uploads" in params:
            return "CreateMultipartUpload"
        if method == "POST" and "uploadId" in params:
            return "CompleteMultipartUpload"
        if method == "DELETE" and params <= {"uploadId", "versionId"}:
            return "AbortMultipartUpload" if "uploadId" in params else "DeleteObject"
        if method == "GET" and "uploadId" in params:
            return "ListParts"
        if method in ("GET", "HEAD") and params <= {"partNumber", "versionId"}:
            return "GetObject" if method == "GET" else "HeadObject"
    else:
        bucket_ops = {"PUT": "CreateBucket", "HEAD": "HeadBucket", "DELETE": "DeleteBucket"}
        if method in bucket_ops and not params:
            return bucket_ops[method]
        if method == "GET" and "uploads" in params:
            return "ListMultipartUploads"
        if method == "GET" and params <= _S3_LIST_PARAMS:
            return "ListObjectsV2" if query.get("list-type") == ["2"] else "ListObjects"
        if method == "POST" and "delete" in params:
            return "DeleteObjects"
    # Anything else (bucket configuration, tagging, ACLs...): the method and the subresource.
    return f"{method} ?{min(params)}" if params else method


def identify(
    method: str, target: str, headers: Mapping[str, str], body: bytes | None = None
) -> tuple[str, str]:
    """(service, operation) of one request: the service from the SigV4 credential scope (header
    or presigned query), the operation from X-Amz-Target, the query protocol's Action, or, for
    S3, the method and query. Unknown requests are ("unknown", METHOD)."""
    lowered = {name.lower(): value for name, value in headers.items()}
    parts = urlsplit(target)
    path = parts.path or "/"
    query = parse_qs(parts.query, keep_blank_values=True)
    if path.startswith("/moto-api"):
        return "moto-api", method

    service: str | None = None
    authorization = lowered.get("authorization", "")
    if credential := _CREDENTIAL.search(authorization):
        service = _scope_service(credential[1])
    elif authorization.startswith("AWS "):  # SigV2: only S3 still takes it
        service = "s3"
    elif "X-Amz-Credential" in query:
        service = _scope_service(query["X-Amz-Credential"][0])
    elif "AWSAccessKeyId" in query and "Signature" in query:
        service = "s3"

    operation: str | None = None
    if amz_target := lowered.get("x-amz-target"):
        prefix, _, operation = amz_target.rpartition(".")
        if service is None:
            name = prefix.split("_", 1)[0].lower()
            service = _TARGET_SERVICES.get(name, name or None)
    elif "Action" in query:
        operation = query["Action"][0]
    elif body and "x-www-form-urlencoded" in lowered.get("content-type", ""):
        form = parse_qs(body.decode("latin-1"), keep_blank_values=True)
        if "Action" in form:
            operation = form["Action"][0]

    if service is None:
        return "unknown", operation or method
    if operation is None:
        operation = _s3_operation(method, path, query, lowered) if service == "s3" else method
    return service, operation


# -- what a fault answers ---------------------------------------------------------------------------


def _protocol(service: str, headers: Mapping[str, str], operation_from_action: bool) -> str:
    if service == "s3":
        return "rest-xml"
    if any(name.lower() == "x-amz-target" for name in headers):
        return "json"
    return "query" if operation_from_action else "rest-json"


# (status, error code, JSON __type) per service and kind; "*" is every other service.
_ERRORS: dict[tuple[str, str], tuple[int, str, str]] = {
    ("dynamodb", "server_error"): (
        500,
        "InternalServerError",
        "com.amazonaws.dynamodb.v20120810#InternalServerError",
    ),
    ("dynamodb", "throttle"): (
        400,
        "ProvisionedThroughputExceededException",
        "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
    ),
    ("sqs", "server_error"): (500, "InternalError", "com.amazonaws.sqs#InternalError"),
    ("sqs", "throttle"): (400, "RequestThrottled", "com.amazonaws.sqs#RequestThrottled"),
    ("s3", "server_error"): (500, "InternalError", "InternalError"),
    ("s3", "throttle"): (503, "SlowDown", "SlowDown"),
    ("*", "server_error"): (500, "InternalFailure", "InternalFailure"),
    ("*", "throttle"): (400, "ThrottlingException", "ThrottlingException"),
}


def _error_answer(
    service: str, kind: str, protocol: str, request_content_type: str
) -> tuple[int, list[tuple[str, str]], bytes]:
    """The error AWS would answer, shaped so that botocore's parser for `protocol` reads its code."""
    status, code, error_type = _ERRORS.get((service, kind)) or _ERRORS[("*", kind)]
    request_id = str(uuid.uuid4())
    headers = [("x-amzn-RequestId", request_id)]
    if protocol == "rest-xml":
        host_id = uuid.uuid4().hex
        headers += [
            ("x-amz-request-id", request_id),
            ("x-amz-id-2", host_id),
            ("Content-Type", "application/xml"),
        ]
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>{FAULT_MESSAGE}</Message>"
            f"<RequestId>{request_id}</RequestId><HostId>{host_id}</HostId></Error>"
        ).encode()
    elif protocol == "query":
        side = "Receiver" if status >= 500 else "Sender"
        headers.append(("Content-Type", "text/xml"))
        body = (
            f"<ErrorResponse><Error><Type>{side}</Type><Code>{code}</Code><Message>{FAULT_MESSAGE}</Message>"
            f"<Detail/></Error><RequestId>{request_id}</RequestId></ErrorResponse>"
        ).encode()
    elif protocol == "rest-json":
        headers += [("Content-Type", "application/json"), ("x-amzn-ErrorType", code)]
        status = 429 if kind == "throttle" else status
        body = json.dumps({"message": FAULT_MESSAGE}).encode()
    else:
        json_type = request_content_type.startswith("application/x-amz-json")
        headers.append(("Content-Type", request_content_type if json_type else "application/x-amz-json-1.0"))
        if service == "sqs":  # SQS's JSON protocol is query-compatible: the code travels in a header
            headers.append(("x-amzn-query-error", f"{code};{'Receiver' if status >= 500 else 'Sender'}"))
        body = json.dumps({"__type": error_type, "message": FAULT_MESSAGE}, separators=(",", ":")).encode()
        if service == "dynamodb":
            headers.append(("x-amz-crc32", str(zlib.crc32(body))))
    return status, headers, body


# -- the proxy -------------------------------------------------------------------------------------


class _Server(QuietHTTPServer):
    proxy: ChaosProxy

    def __init__(self, address: tuple[str, int], proxy: ChaosProxy) -> None:
        super().__init__(address, _Handler)
        self.proxy = proxy
        self.resets: set[socket.socket] = set()
        self.connections: set[socket.socket] = set()

    def drop_connections(self) -> None:
        """End the kept-alive client connections, so a stopped proxy forwards nothing more."""
        for connection in list(self.connections):
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def shutdown_request(self, request: Any) -> None:
        if request in self.resets:
            # No FIN first: close with SO_LINGER 0, so the client sees a reset, as from a dead peer.
            self.resets.discard(request)
            self.close_request(request)
            return
        super().shutdown_request(request)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive, as botocore's connection pool expects
    server_version = "devstack-chaos"
    # Headers and body go out in separate writes: without this, Nagle and delayed ACKs add 40 ms.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)

    def setup(self) -> None:
        super().setup()
        self.server.connections.add(self.connection)

    def finish(self) -> None:
        self.server.connections.discard(self.connection)
        super().finish()

    def handle_expect_100(self) -> bool:
        # Deferred: a fault answers at once without reading the body, as S3 does; a forwarded
        # request gets its 100 Continue in _handle.
        return True

    def do_GET(self) -> None:
        self._handle()

    do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_GET

    # -- dispatch --

    def _handle(self) -> None:
        target = self.path
        if target.startswith(("http://", "https://")):  # absolute form, if used as an HTTP proxy
            parts = urlsplit(target)
            target = parts.path + (f"?{parts.query}" if parts.query else "")
        self.target = target or "/"
        if self.target == CONTROL_PREFIX or self.target.startswith(CONTROL_PREFIX + "/"):
            self._control()
            return
        proxy = self.server.proxy
        expect = self.headers.get("Expect", "").lower() == "100-continue"
        body: bytes | None = None
        if "x-www-form-urlencoded" in self.headers.get("Content-Type", "") and not self._chunked():
            length = self._content_length()
            if length <= _MAX_FORM_BODY:
                if expect:
                    self._continue()
                    expect = False
                body = self.rfile.read(length)
        service, operation = identify(self.command, self.target, self.headers, body)
        rule = proxy._decide(service, operation)
        if rule is not None:
            logger.info("injecting %s into %s %s", rule.kind, service, operation)
        if rule is None or rule.kind == "reset_after":
            if expect:
                self._continue()
            self._forward(body, drop_answer=rule is not None)
            return
        if rule.kind == "reset":
            if not expect and body is None:
                self._drain()
            self._reset()
            return
        action = body is not None or "Action" in parse_qs(urlsplit(self.target).query)
        protocol = _protocol(service, self.headers, action)
        status, headers, payload = _error_answer(
            service, rule.kind, protocol, self.headers.get("Content-Type", "")
        )
        if expect:
            headers.append(("Connection", "close"))  # the unsent body would otherwise follow
        elif body is None:
            self._drain()
        self._answer(status, headers, payload)

    # -- client side --

    def _chunked(self) -> bool:
        return "chunked" in self.headers.get("Transfer-Encoding", "").lower()

    def _content_length(self) -> int:
        try:
            return max(0, int(self.headers.get("Content-Length") or 0))
        except ValueError:
            return 0

    def _continue(self) -> None:
        self.send_response_only(100)
        self.end_headers()

    def _body_pieces(self) -> Iterator[bytes]:
        """The request body as it arrives (chunked or Content-Length), in pieces."""
        if self._chunked():
            while True:
                size_line = self.rfile.readline(65537)
                if not size_line:
                    raise _ClientGone("client closed the connection mid-body")
                size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers: dropped (botocore sends none; aws-chunked ones are in the body)
                    return
                left = size
                while left:
                    piece = self.rfile.read(min(left, _PIECE))
                    if not piece:
                        raise _ClientGone("client closed the connection mid-body")
                    left -= len(piece)
                    yield piece
                self.rfile.readline(3)
        else:
            left = self._content_length()
            while left:
                piece = self.rfile.read(min(left, _PIECE))
                if not piece:
                    raise _ClientGone("client closed the connection mid-body")
                left -= len(piece)
                yield piece

    def _drain(self) -> None:
        for _ in self._body_pieces():
            pass

    def _reset(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.server.resets.add(self.connection)

    def _answer(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.log_request(status)
        self.send_response_only(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    # -- upstream side --

    def _forward(self, body: bytes | None, *, drop_answer: bool) -> None:
        proxy = self.server.proxy
        connection_type = (
            http.client.HTTPSConnection if proxy._scheme == "https" else http.client.HTTPConnection
        )
        upstream = connection_type(proxy._upstream_host, proxy._upstream_port, timeout=proxy.timeout)
        try:
            try:
                upstream.connect()
                upstream.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._send_upstream(upstream, body)
                response = upstream.getresponse()
            except _ClientGone:
                self.close_connection = True
                return
            except (OSError, http.client.HTTPException) as error:
                self._bad_gateway(error)
                return
            if drop_answer:
                while response.read(_PIECE):
                    pass
                self._reset()
                return
            try:
                self._relay(response)
            except (OSError, http.client.HTTPException) as error:
                # The answer has started: all that is left is to cut it short.
                logger.warning("relaying %s %s failed: %s", self.command, self.target, error)
                self.close_connection = True
        finally:
            upstream.close()

    def _send_upstream(self, upstream: http.client.HTTPConnection, body: bytes | None) -> None:
        proxy = self.server.proxy
        upstream.putrequest(
            self.command, proxy._upstream_path + self.target, skip_host=True, skip_accept_encoding=True
        )
        drop = _HOP_BY_HOP | _connection_tokens(self.headers)
        has_host = False
        for name, value in self.headers.items():
            lower = name.lower()
            if lower in drop:
                continue
            has_host = has_host or lower == "host"
            upstream.putheader(name, value)
        if not has_host:
            upstream.putheader("Host", proxy._upstream_netloc)
        chunked = body is None and self._chunked()
        if chunked:
            upstream.putheader("Transfer-Encoding", "chunked")
        upstream.putheader("Connection", "close")  # one upstream connection per request
        if body is not None:
            upstream.endheaders(body)
            return
        upstream.endheaders()
        for piece in self._body_pieces():
            upstream.send(b"%x\r\n%b\r\n" % (len(piece), piece) if chunked else piece)
        if chunked:
            upstream.send(b"0\r\n\r\n")

    def _relay(self, response: http.client.HTTPResponse) -> None:
        self.log_request(response.status)
        self.send_response_only(response.status, response.reason)
        drop = _HOP_BY_HOP | _connection_tokens(response.msg)
        for name, value in response.getheaders():
            if name.lower() not in drop:
                self.send_header(name, value)
        no_body = self.command == "HEAD" or response.status in (204, 304) or response.status < 200
        if no_body:
            self.end_headers()
            return
        if response.getheader("Content-Length") is not None:
            self.end_headers()
            while piece := response.read(_PIECE):
                self.wfile.write(piece)
            return
        if self.request_version == "HTTP/1.0":
            self.close_connection = True
            self.end_headers()
            while piece := response.read(_PIECE):
                self.wfile.write(piece)
            return
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        while piece := response.read(_PIECE):
            self.wfile.write(b"%x\r\n%b\r\n" % (len(piece), piece))
        self.wfile.write(b"0\r\n\r\n")

    def _bad_gateway(self, error: BaseException) -> None:
        logger.warning("upstream %s failed: %s", self.server.proxy.upstream_url, error)
        self.close_connection = True
        payload = f"chaos proxy: upstream unreachable: {error}".encode()
        self._answer(502, [("Content-Type", "text/plain"), ("Connection", "close")], payload)

    # -- control surface --

    def _control(self) -> None:
        proxy = self.server.proxy
        route = urlsplit(self.target).path.rstrip("/")
        if self.headers.get("Expect", "").lower() == "100-continue":
            self._continue()
        try:
            payload = b"".join(self._body_pieces())
            if self.command == "POST" and route == f"{CONTROL_PREFIX}/faults":
                try:
                    spec = json.loads(payload or b"null")
                except ValueError:
                    spec = None
                if not isinstance(spec, dict):
                    raise ValueError("the body must be a JSON object describing the rule")
                unknown = set(spec) - {"service", "operation", "count", "rate", "kind", "seed"}
                if unknown:
                    raise ValueError(f"unknown rule fields: {', '.join(sorted(unknown))}")
                rule = proxy.add_fault(
                    spec.get("service"),
                    spec.get("operation"),
                    count=spec.get("count"),
                    rate=spec.get("rate"),
                    kind=spec.get("kind", "server_error"),
                    seed=spec.get("seed"),
                )
                self._json(201, rule.to_dict())
            elif self.command == "GET" and route == f"{CONTROL_PREFIX}/faults":
                self._json(200, {"faults": [rule.to_dict() for rule in proxy.faults()]})
            elif self.command == "DELETE" and route == f"{CONTROL_PREFIX}/faults":
                self._json(200, {"cleared": proxy.clear()})
            elif self.command == "DELETE" and route.startswith(f"{CONTROL_PREFIX}/faults/"):
                rule_id = route.rsplit("/", 1)[1]
                if proxy.remove_fault(rule_id):
                    self._json(200, {"removed": rule_id})
                else:
                    self._json(404, {"error": f"no fault rule {rule_id!r}"})
            elif self.command == "GET" and route == f"{CONTROL_PREFIX}/stats":
                self._json(200, _stats_json(proxy.stats()))
            elif self.command == "DELETE" and route == f"{CONTROL_PREFIX}/stats":
                proxy.reset_stats()
                self._json(200, {"reset": True})
            else:
                self._json(404, {"error": f"no control route {self.command} {route}"})
        except ValueError as error:
            self._json(400, {"error": str(error)})

    def _json(self, status: int, body: Any) -> None:
        self._answer(status, [("Content-Type", "application/json")], json.dumps(body).encode())


def _connection_tokens(headers: Message) -> frozenset[str]:
    """Headers named in Connection are hop-by-hop too."""
    values = headers.get_all("Connection") or []
    return frozenset(token.strip().lower() for value in values for token in value.split(",") if token.strip())


def _stats_json(stats: Mapping[tuple[str, str], Counts]) -> dict[str, Any]:
    return {
        "seen": sum(counts.seen for counts in stats.values()),
        "faults": sum(counts.faults for counts in stats.values()),
        "operations": [
            {"service": service, "operation": operation, "seen": counts.seen, "faults": counts.faults}
            for (service, operation), counts in sorted(stats.items())
        ],
    }


class ChaosProxy:
    """Forwards every request to `upstream_url` (moto's server) unless a fault rule fires."""

    def __init__(
        self, upstream_url: str, host: str = "127.0.0.1", port: int = 0, *, timeout: float = 60.0
    ) -> None:
        parts = urlsplit(upstream_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"upstream_url must be an http(s) URL, got {upstream_url!r}")
        self.upstream_url = upstream_url.rstrip("/")
        self.timeout = timeout
        self._scheme = parts.scheme
        self._upstream_host = parts.hostname
        self._upstream_port = parts.port or (443 if parts.scheme == "https" else 80)
        self._upstream_netloc = parts.netloc
        self._upstream_path = parts.path.rstrip("/")
        self._host = host
        self._port = port
        self._server: _Server | None = None
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self._ids = itertools.count(1)
        self._seen: dict[tuple[str, str], int] = {}
        self._faults: dict[tuple[str, str], int] = {}

    # -- lifecycle --

    def start(self) -> ChaosProxy:
        if self._server is not None:
            raise RuntimeError("chaos proxy already started")
        self._server = _Server((self._host, self._port), self)
        self._server.start_background("chaos-proxy")
        logger.info("chaos proxy on %s -> %s", self.url, self.upstream_url)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop_background()
            self._server.drop_connections()
            self._server = None

    def __enter__(self) -> ChaosProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("chaos proxy not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self._host in ("0.0.0.0", "") else self._host  # noqa: S104
        return f"http://{host}:{self.port}"

    # -- rules --

    def add_fault(
        self,
        service: str,
        operation: str | None = None,
        *,
        count: int | None = None,
        rate: float | None = None,
        kind: str = "server_error",
        seed: int | None = None,
    ) -> FaultRule:
        """Make matching requests fail: the next `count` of them, each with probability `rate`
        (seeded by `seed`, for a repeatable sequence), at most `count` times with both, every one
        with neither. Rules are tried in the order they were added; the first that fires wins."""
        checked = _check_rule(service, operation, count, rate, kind, seed)
        with self._lock:
            service, operation, count, rate, kind, seed = checked
            rule = FaultRule(
                id=f"f{next(self._ids)}",
                service=service,
                operation=operation,
                kind=kind,
                count=count,
                rate=rate,
                seed=seed,
            )
            self._rules.append(rule)
        return rule

    def remove_fault(self, rule: FaultRule | str) -> bool:
        rule_id = rule.id if isinstance(rule, FaultRule) else rule
        with self._lock:
            kept = [candidate for candidate in self._rules if candidate.id != rule_id]
            removed = len(kept) != len(self._rules)
            self._rules = kept
        return removed

    def faults(self) -> list[FaultRule]:
        with self._lock:
            return list(self._rules)

    def clear(self) -> int:
        """Remove every rule; return how many there were. The counters are kept (reset_stats)."""
        with self._lock:
            cleared = len(self._rules)
            self._rules = []
        return cleared

    # -- counters --

    def stats(self) -> dict[tuple[str, str], Counts]:
        with self._lock:
            return {key: Counts(seen, self._faults.get(key, 0)) for key, seen in self._seen.items()}

    def fault_counts(self) -> dict[tuple[str, str], int]:
        """Faults injected so far, per (service, operation) that had any."""
        with self._lock:
            return {key: faults for key, faults in self._faults.items() if faults}

    def reset_stats(self) -> None:
        with self._lock:
            self._seen.clear()
            self._faults.clear()

    def _decide(self, service: str, operation: str) -> FaultRule | None:
        key = (service, operation)
        with self._lock:
            self._seen[key] = self._seen.get(key, 0) + 1
            for rule in self._rules:
                if rule.matches(service, operation) and rule.fire():
                    self._faults[key] = self._faults.get(key, 0) + 1
                    return rule
        return None


class ChaosControl:
    """The control surface of a ChaosProxy running elsewhere (another process), over HTTP."""

    def __init__(self, proxy_url: str, *, timeout: float = 10.0) -> None:
        self._http = httpx.Client(base_url=proxy_url.rstrip("/") + CONTROL_PREFIX, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ChaosControl:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        response = self._http.request(method, path, json=body)
        if response.status_code >= 400:
            error = response.json().get("error", response.text)
            if response.status_code == 400:
                raise ValueError(error)
            raise RuntimeError(f"chaos control {method} {path}: {response.status_code} {error}")
        return response.json()

    def add_fault(
        self,
        service: str,
        operation: str | None = None,
        *,
        count: int | None = None,
        rate: float | None = None,
        kind: str = "server_error",
        seed: int | None = None,
    ) -> dict[str, Any]:
        spec = {
            "service": service,
            "operation": operation,
            "count": count,
            "rate": rate,
            "kind": kind,
            "seed": seed,
        }
        return dict(self._call("POST", "/faults", spec))

    def remove_fault(self, rule_id: str) -> bool:
        response = self._http.delete(f"/faults/{rule_id}")
        return response.status_code == 200

    def faults(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/faults")["faults"])

    def clear(self) -> int:
        return int(self._call("DELETE", "/faults")["cleared"])

    def stats(self) -> dict[tuple[str, str], Counts]:
        body = self._call("GET", "/stats")
        return {
            (entry["service"], entry["operation"]): Counts(entry["seen"], entry["faults"])
            for entry in body["operations"]
        }

    def reset_stats(self) -> None:
        self._call("DELETE", "/stats")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Fault-injecting proxy in front of moto's server (dev-only)."
    )
    parser.add_argument("--upstream", required=True, help="moto's server, e.g. http://127.0.0.1:5000")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    proxy = ChaosProxy(args.upstream, args.host, args.port).start()
    print(
        f"chaos proxy on {proxy.url} -> {proxy.upstream_url} (rules: {proxy.url}{CONTROL_PREFIX}/faults)",
        flush=True,
    )
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        proxy.stop()


if __name__ == "__main__":
    main()
