"""API Gateway's REST proxy integration, as data (dev-only; no I/O): the Lambda event a request
becomes, the HTTP answer a proxy result becomes, and API Gateway's own error answers.

A missing or unknown x-api-key is 403 INVALID_API_KEY ("Forbidden"), an unknown route or method is
MISSING_AUTHENTICATION_TOKEN ("Missing Authentication Token", 403), a body over 10 MB is 413
REQUEST_TOO_LARGE, and a function that raises, crashes, times out or returns a malformed result
is 502 ("Internal server error"). When the template customises these (GatewayResponses), its
status and template are applied, as the deployed API would; otherwise API Gateway's own
`{"message": ...}` bodies.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from devstack.template import ACCOUNT, Route

API_ID = "local"


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
_FORBIDDEN = {"INVALID_API_KEY", "MISSING_AUTHENTICATION_TOKEN"}  # x-amzn-ErrorType ForbiddenException
_HOP_BY_HOP = {"connection", "content-length", "transfer-encoding", "keep-alive", "date", "server"}


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def _single_and_multi(
    pairs: list[tuple[str, str]],
) -> tuple[dict[str, str] | None, dict[str, list[str]] | None]:
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for name, value in pairs:
        single[name] = value  # API Gateway keeps the last value of a repeated name
        multi.setdefault(name, []).append(value)
    return single or None, multi or None


def header(headers: list[tuple[str, str]], name: str) -> str | None:
    """The last value of a header, by case-insensitive name."""
    return next((value for key, value in reversed(headers) if key.lower() == name), None)


def build_event(
    route: Route,
    method: str,
    path: str,
    path_parameters: dict[str, str],
    query: str,
    headers: list[tuple[str, str]],
    body: bytes,
    context: dict[str, Any],
    *,
    binary: bool = False,
) -> dict[str, Any]:
    """A REST API (v1) Lambda proxy event, shaped like events/*.json. `context` has the parts of
    its requestContext that the gateway knows: stage, domainName, requestId and the identity
    (apiKey, apiKeyId, sourceIp). `binary`: the request's Content-Type is one of the API's
    BinaryMediaTypes, so the body goes base64-encoded whatever its bytes, as API Gateway sends it."""
    single_headers, multi_headers = _single_and_multi(headers)
    single_query, multi_query = _single_and_multi(parse_qsl(query, keep_blank_values=True))
    if binary and body:
        text, encoded = base64.b64encode(body).decode(), True
    else:
        try:
            text, encoded = (body.decode() if body else None), False
        except UnicodeDecodeError:  # not text and not a binary media type: base64 all the same
            text, encoded = base64.b64encode(body).decode(), True
    identity = {**context["identity"], "userAgent": header(headers, "user-agent")}
    return {
        "resource": route.path,
        "path": path,
        "httpMethod": method,
        "headers": single_headers,
        "multiValueHeaders": multi_headers,
        "queryStringParameters": single_query,
        "multiValueQueryStringParameters": multi_query,
        "pathParameters": path_parameters or None,
        "stageVariables": None,
        "requestContext": {
            **context,
            "resourcePath": route.path,
            "httpMethod": method,
            "path": f"/{context['stage']}{path}",
            "accountId": ACCOUNT,
            "apiId": API_ID,
            "protocol": "HTTP/1.1",
            "requestTimeEpoch": int(time.time() * 1000),
            "identity": identity,
        },
        "body": text,
        "isBase64Encoded": encoded,
    }


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
    if body is not None and not isinstance(body, str):
        raise ValueError("body is not a string")
    payload = base64.b64decode(body) if body and result.get("isBase64Encoded") else (body or "").encode()
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
            r"\$context\.([A-Za-z.]+[A-Za-z])", lambda found: context.get(found[1], found[0]), template
        )
        headers = [("Content-Type", "application/json")]
        if error.response_type in _FORBIDDEN:
            headers.append(("x-amzn-ErrorType", "ForbiddenException"))
        return HttpAnswer(status, headers, body.encode())
