"""API Gateway's REST Lambda authorizers of REQUEST type, as the local gateway runs them (dev-only):
header identity sources, the answer cache (`ReauthorizeEvery`), API Gateway's 401/403/500 answers,
the `context` and `usageIdentifierKey` of an allowing answer. Not reproduced: TOKEN, Cognito and
IAM authorizers, identity sources other than headers.
"""

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
    name: str
    function_id: str
    identity_headers: tuple[str, ...]  # lower case
    ttl_s: float


@dataclass(frozen=True)
class Authorized:
    """What an allowing answer gives the request."""

    context: dict[str, Any]  # requestContext.authorizer
    usage_identifier_key: str | None


def authorizer_specs(stack: Stack, api: dict[str, Any]) -> dict[str, AuthorizerSpec]:
    """The REQUEST authorizers of the API's `Auth.Authorizers`, by name."""
    specs = {}
    for name, spec in (api.get("Auth", {}).get("Authorizers") or {}).items():
        function_id = _logical_id(spec.get("FunctionArn"))
        if spec.get("FunctionPayloadType", "TOKEN") != "REQUEST" or function_id is None:
            raise ValueError(
                f"authorizer {name}: only REQUEST authorizers of a template function run locally"
            )
        identity = spec.get("Identity") or {}
        headers = tuple(str(header).lower() for header in identity.get("Headers") or ())
        ttl_s = float(stack.resolve(identity.get("ReauthorizeEvery", SAM_DEFAULT_TTL_S)))
        specs[name] = AuthorizerSpec(name, function_id, headers, ttl_s)
    return specs


def method_arn(api_id: str, stage: str, method: str, path: str) -> str:
    return f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{api_id}/{stage}/{method}{path}"


def request_event(proxy_event: dict[str, Any], arn: str) -> dict[str, Any]:
    """The REQUEST authorizer's event: the proxy event without its body, plus type and methodArn."""
    kept = {name: value for name, value in proxy_event.items() if name not in ("body", "isBase64Encoded")}
    return {"type": "REQUEST", "methodArn": arn, **kept}


def _allows(policy: Any, arn: str) -> bool:
    """IAM's evaluation (moto's): an explicit Deny wins, then an Allow."""
    found = IAMPolicy(json.dumps(policy)).is_action_permitted("execute-api:Invoke", arn)
    return found == PermissionResult.PERMITTED


class Authorizers:
    """Runs the API's authorizers through `invoke` (the gateway's function pools), with the cache."""

    def __init__(self, specs: dict[str, AuthorizerSpec], invoke: Invoke) -> None:
        self.specs = specs
        self._invoke = invoke
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, tuple[str, ...]], tuple[float, dict[str, Any]]] = {}
        self.invocations = 0  # calls of a function (the other answers came from the cache)

    def flush(self) -> None:
        """Forget every cached answer (API Gateway's "flush authorizer cache")."""
        with self._lock:
            self._cache.clear()

    def authorize(
        self, name: str, proxy_event: dict[str, Any], arn: str, request_id: str
    ) -> Authorized | proxy.GatewayError:
        spec = self.specs[name]
        headers = {key.lower(): value for key, value in (proxy_event.get("headers") or {}).items()}
        identity = tuple(str(headers.get(header) or "") for header in spec.identity_headers)
        if not all(identity):
            return proxy.UNAUTHORIZED  # API Gateway does not call the function
        cache_key = (name, identity) if spec.ttl_s > 0 and spec.identity_headers else None
        with self._lock:  # a None key is never stored; an expired answer is replaced below
            expires, answer = self._cache.get(cache_key, (0.0, None))  # type: ignore[arg-type]
        if time.monotonic() >= expires:
            answer = None
        started = time.monotonic()
        if answer is None:
            try:
                self.invocations += 1
                answer = self._invoke(spec.function_id, request_event(proxy_event, arn), request_id)
            except InvocationFailed as failure:
                if failure.kind == "error" and str(failure).partition(": ")[2] == "Unauthorized":
                    return proxy.UNAUTHORIZED
                return proxy.AUTHORIZER_FAILURE
        try:
            if not isinstance(answer, dict) or not answer.get("principalId"):
                raise ValueError("no principalId")
            allowed = _allows(answer["policyDocument"], arn)
        except (ValueError, TypeError, AttributeError, KeyError):
            return proxy.AUTHORIZER_FAILURE
        if cache_key is not None:
            with self._lock:
                self._cache[cache_key] = (time.monotonic() + spec.ttl_s, answer)
        if not allowed:
            return proxy.ACCESS_DENIED
        context = {**(answer.get("context") or {}), "principalId": answer["principalId"]}
        context["integrationLatency"] = round((time.monotonic() - started) * 1000)
        usage_key = answer.get("usageIdentifierKey")
        return Authorized(context, str(usage_key) if usage_key else None)
