"""API Gateway's Lambda authorizers (REST, REQUEST type), as the local gateway runs them (dev-only).

What is reproduced, from the template's `Auth.Authorizers` (SAM's shape):
- the REQUEST event (the proxy event's request parts, `type` and `methodArn`);
- identity sources (`Identity.Headers`): a request missing one is 401 without calling the function;
- the answer cache: with `Identity.ReauthorizeEvery` above 0 (SAM's default is 300) and identity
  sources, an answer is kept that long, keyed by the identity values, and its policy is evaluated
  again against each request's method ARN; with 0 nothing is kept;
- the function raising "Unauthorized": 401; a policy that denies (or allows nothing that matches):
  403 ACCESS_DENIED; any other failure or a malformed answer: 500 AUTHORIZER_FAILURE;
- an allowing answer: its `context`, with `principalId` and `integrationLatency`, becomes the
  handler's `requestContext.authorizer`, and its `usageIdentifierKey` the API key when the API's
  `ApiKeySourceType` is AUTHORIZER.
Not reproduced: TOKEN authorizers, Cognito, IAM, and identity sources other than headers.
"""

from __future__ import annotations

import fnmatch
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from devstack import proxy
from devstack.functions import InvocationFailed
from devstack.template import ACCOUNT, REGION, Stack

SAM_DEFAULT_TTL_S = 300  # ReauthorizeEvery when the template sets none


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
        if spec.get("FunctionPayloadType", "TOKEN") != "REQUEST":
            raise ValueError(f"authorizer {name}: only REQUEST authorizers run locally")
        identity = spec.get("Identity") or {}
        specs[name] = AuthorizerSpec(
            name=name,
            function_id=_function_id(spec.get("FunctionArn")),
            identity_headers=tuple(str(h).lower() for h in identity.get("Headers") or ()),
            ttl_s=float(stack.resolve(identity.get("ReauthorizeEvery", SAM_DEFAULT_TTL_S))),
        )
    return specs


def _function_id(arn: Any) -> str:
    """The logical id of `!GetAtt Fn.Arn` or `!Ref Fn`."""
    if isinstance(arn, dict) and "Fn::GetAtt" in arn:
        target = arn["Fn::GetAtt"]
        return str(target[0] if isinstance(target, list) else target.split(".", 1)[0])
    if isinstance(arn, dict) and "Ref" in arn:
        return str(arn["Ref"]).split(".", 1)[0]
    raise ValueError(f"cannot tell which function the authorizer ARN {arn!r} is")


def method_arn(api_id: str, stage: str, method: str, path: str) -> str:
    return f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{api_id}/{stage}/{method}{path}"


def request_event(proxy_event: dict[str, Any], arn: str) -> dict[str, Any]:
    """The REQUEST authorizer's event: the proxy event without its body, plus type and methodArn."""
    event = {"type": "REQUEST", "methodArn": arn}
    event |= {name: value for name, value in proxy_event.items() if name not in ("body", "isBase64Encoded")}
    return event


def _allows(policy: Any, arn: str) -> bool:
    """IAM's evaluation for one action on one resource: an explicit Deny wins, then an Allow."""
    if not isinstance(policy, dict) or not isinstance(policy.get("Statement"), list):
        raise ValueError("the policyDocument has no Statement list")
    allowed = False
    for statement in policy["Statement"]:
        actions = statement.get("Action", [])
        resources = statement.get("Resource", [])
        actions = [actions] if isinstance(actions, str) else actions
        resources = [resources] if isinstance(resources, str) else resources
        if not any(fnmatch.fnmatchcase("execute-api:Invoke", action) for action in actions):
            continue
        if not any(fnmatch.fnmatchcase(arn, resource) for resource in resources):
            continue
        if statement.get("Effect") == "Deny":
            return False
        allowed = allowed or statement.get("Effect") == "Allow"
    return allowed


class Authorizers:
    """Runs the API's authorizers through `invoke` (the gateway's function pools), with the cache."""

    def __init__(
        self,
        specs: dict[str, AuthorizerSpec],
        invoke: Callable[[str, dict[str, Any], str], Any],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.specs = specs
        self._invoke = invoke
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, tuple[str, ...]], tuple[float, dict[str, Any]]] = {}
        self.invocations = 0  # how many times a function was called (the rest came from the cache)

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
        answer = self._cached(cache_key)
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
            allowed = _allows(answer.get("policyDocument"), arn)
        except (ValueError, TypeError, AttributeError):
            return proxy.AUTHORIZER_FAILURE
        if cache_key is not None:
            with self._lock:
                self._cache[cache_key] = (self._clock() + spec.ttl_s, answer)
        if not allowed:
            return proxy.ACCESS_DENIED
        context = {
            **{key: value for key, value in (answer.get("context") or {}).items()},
            "principalId": answer["principalId"],
            "integrationLatency": round((time.monotonic() - started) * 1000),
        }
        usage_key = answer.get("usageIdentifierKey")
        return Authorized(context, str(usage_key) if usage_key else None)

    def _cached(self, cache_key: tuple[str, tuple[str, ...]] | None) -> dict[str, Any] | None:
        if cache_key is None:
            return None
        with self._lock:
            found = self._cache.get(cache_key)
            if found is None:
                return None
            if self._clock() >= found[0]:
                del self._cache[cache_key]
                return None
            return found[1]
