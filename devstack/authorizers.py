"""API Gateway's REST Lambda authorizers of REQUEST type for the local gateway (dev-only): header identity
sources, the answer cache (`ReauthorizeEvery`), the 401/403/500 answers, an allowing answer's `context`
and `usageIdentifierKey`. Not reproduced: TOKEN, Cognito, IAM authorizers, other identity sources."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from moto.iam.access_control import IAMPolicy, PermissionResult

from devstack import proxy
from devstack.functions import InvocationFailed
from devstack.template import ACCOUNT, REGION, Stack, _logical_id

SAM_DEFAULT_TTL_S = 300  # ReauthorizeEvery when the template sets none
Invoke = Callable[[str, dict[str, Any], str], Any]  # (function id, event, request id) -> result


@dataclass(frozen=True)
class AuthorizerSpec:
    function_id: str
    identity_headers: tuple[str, ...]  # lower case
    ttl_s: float


@dataclass(frozen=True)
class Authorized:
    """What an allowing answer gives the request."""

    context: dict[str, Any]  # requestContext.authorizer
    usage_identifier_key: str | None


class Authorizers:
    """The API's `Auth.Authorizers`, run through `invoke` (the gateway's function pools), with the cache."""

    def __init__(self, stack: Stack, api: dict[str, Any], invoke: Invoke) -> None:
        self.specs: dict[str, AuthorizerSpec] = {}
        for name, spec in (api.get("Auth", {}).get("Authorizers") or {}).items():
            function_id = _logical_id(spec.get("FunctionArn"))
            if spec.get("FunctionPayloadType", "TOKEN") != "REQUEST" or function_id is None:
                raise ValueError(
                    f"authorizer {name}: only REQUEST authorizers of a template function run locally"
                )
            identity = spec.get("Identity") or {}
            headers = tuple(str(header).lower() for header in identity.get("Headers") or ())
            ttl_s = float(stack.resolve(identity.get("ReauthorizeEvery", SAM_DEFAULT_TTL_S)))
            self.specs[name] = AuthorizerSpec(function_id, headers, ttl_s)
        self._invoke, self._lock = invoke, threading.Lock()
        self._cache: dict[tuple[str, tuple[str, ...]], tuple[float, dict[str, Any]]] = {}
        self.invocations = 0  # calls of a function (the other answers came from the cache)

    def flush(self) -> None:
        """Forget every cached answer (API Gateway's "flush authorizer cache")."""
        with self._lock:
            self._cache.clear()

    def authorize(self, name: str, event: dict[str, Any], request_id: str) -> Authorized | proxy.GatewayError:
        """Whether the proxy `event` may reach its function, as the authorizer `name` answers."""
        spec, context = self.specs[name], event["requestContext"]
        headers = {key.lower(): value for key, value in (event.get("headers") or {}).items()}
        identity = tuple(str(headers.get(header) or "") for header in spec.identity_headers)
        if not all(identity):
            return proxy.UNAUTHORIZED  # API Gateway does not call the function
        arn = f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{context['apiId']}/{context['stage']}/"
        arn += f"{event['httpMethod']}{event['path']}"
        key = (name, identity) if spec.ttl_s > 0 and spec.identity_headers else None
        with self._lock:  # a None key is never stored; an expired answer is replaced below
            expires, answer = self._cache.get(key, (0.0, None))  # type: ignore[arg-type]
        started = time.monotonic()
        if started >= expires:
            # The REQUEST authorizer's event: the proxy event without its body, plus type and methodArn.
            asked = {"type": "REQUEST", "methodArn": arn, **event}
            del asked["body"], asked["isBase64Encoded"]
            try:
                self.invocations += 1
                answer = self._invoke(spec.function_id, asked, request_id)
            except InvocationFailed as failure:
                unauthorized = failure.kind == "error" and str(failure).partition(": ")[2] == "Unauthorized"
                return proxy.UNAUTHORIZED if unauthorized else proxy.AUTHORIZER_FAILURE
        try:
            if not isinstance(answer, dict) or not answer.get("principalId"):
                raise ValueError("no principalId")
            # IAM's evaluation (moto's): an explicit Deny wins, then an Allow.
            policy = IAMPolicy(json.dumps(answer["policyDocument"]))
            allowed = policy.is_action_permitted("execute-api:Invoke", arn) == PermissionResult.PERMITTED
        except (ValueError, TypeError, AttributeError, KeyError):
            return proxy.AUTHORIZER_FAILURE
        if key is not None:
            with self._lock:
                self._cache[key] = (time.monotonic() + spec.ttl_s, answer)
        if not allowed:
            return proxy.ACCESS_DENIED
        context = {**(answer.get("context") or {}), "principalId": answer["principalId"]}
        context["integrationLatency"] = round((time.monotonic() - started) * 1000)
        usage_key = answer.get("usageIdentifierKey")
        return Authorized(context, str(usage_key) if usage_key else None)
