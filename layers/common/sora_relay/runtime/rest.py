"""A small router for API Gateway REST (v1) Lambda proxy events, and the event they carry.

It does what the API functions used Powertools' `APIGatewayRestResolver` and `APIGatewayProxyEvent`
for, with the same answers, at a fraction of the import cost (aws_lambda_powertools.event_handler
pulls in asyncio and every event data class, which a cold start pays for):

- Routes are `"/v1/videos/<video_id>"` rules, matched against the event's `path` and HTTP method
  exactly as the resolver did: a `<name>` matches one path segment of URL-safe characters (no
  `/`), trailing slashes are ignored, static routes are tried before dynamic ones, and the path
  parameters are passed to the route function as keyword arguments.
- No route for the path and method: the `not_found` handler (as with Powertools, an unknown method
  on a known path is not found too).
- An exception from a route goes to the handler registered for its nearest class (`__mro__`);
  without one it propagates.
- The answer is the REST proxy result: statusCode, body, isBase64Encoded and multiValueHeaders.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

# A `<name>` in a rule matches one segment of these characters (Powertools' _SAFE_URI and
# _UNSAFE_URI, plus \w); a REST path may end with any number of slashes.
_SEGMENT = r"[-._~()'!*:@,;=+&$%<> \[\]{}|^\w]+"
_PARAMETER = re.compile(r"(<\w+>)")

Handler = Callable[..., "Response"]
H = TypeVar("H", bound=Callable[..., Any])


class Headers(dict[str, str]):
    """Request headers, looked up case-insensitively (keys are stored lower-cased)."""

    def __init__(self, headers: Mapping[str, str] | None = None) -> None:
        super().__init__((str(key).lower(), value) for key, value in (headers or {}).items())

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(key.lower(), default)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return super().__contains__(key.lower() if isinstance(key, str) else key)


class Identity:
    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data = data

    @property
    def api_key_id(self) -> str | None:
        """The id of the API key API Gateway checked, if the route requires one."""
        return self._data.get("apiKeyId")


class RequestContext:
    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data = data

    @property
    def identity(self) -> Identity:
        return Identity(self._data["identity"])

    @property
    def domain_name(self) -> str | None:
        return self._data.get("domainName")

    @property
    def stage(self) -> str:
        return self._data["stage"]  # type: ignore[no-any-return]


class RestEvent:
    """A REST (v1) proxy event: what the handlers read of it."""

    def __init__(self, event: Mapping[str, Any]) -> None:
        self.raw_event = event
        self.headers = Headers(event.get("headers"))

    @property
    def http_method(self) -> str:
        return self.raw_event["httpMethod"]  # type: ignore[no-any-return]

    @property
    def path(self) -> str:
        return self.raw_event["path"]  # type: ignore[no-any-return]

    @property
    def query_string_parameters(self) -> dict[str, str]:
        return self.raw_event.get("queryStringParameters") or {}

    def get_query_string_value(self, name: str, default_value: str | None = None) -> str | None:
        return self.query_string_parameters.get(name, default_value)

    @property
    def request_context(self) -> RequestContext:
        return RequestContext(self.raw_event["requestContext"])

    @property
    def is_base64_encoded(self) -> bool:
        return bool(self.raw_event.get("isBase64Encoded"))

    @property
    def body(self) -> str | None:
        return self.raw_event.get("body")

    @property
    def decoded_body(self) -> str | None:
        """The body as text, base64-decoded first if so marked.

        Raises UnicodeDecodeError if the bytes are not UTF-8, and ValueError (binascii.Error) if
        the base64 is malformed.
        """
        body = self.body
        if self.is_base64_encoded and body:
            return base64.b64decode(body.encode()).decode()
        return body


class Response:
    """One answer; `content_type` becomes a Content-Type header unless `headers` has one."""

    def __init__(
        self,
        status_code: int,
        content_type: str | None = None,
        body: str | bytes | None = None,
        headers: Mapping[str, str | list[str]] | None = None,
    ) -> None:
        self.status_code = status_code
        self.body = body
        self.headers: dict[str, str | list[str]] = dict(headers) if headers else {}
        if content_type:
            self.headers.setdefault("Content-Type", content_type)

    def to_proxy_result(self) -> dict[str, Any]:
        """The REST proxy result (headers as multiValueHeaders; bytes bodies base64-encoded)."""
        body = self.body
        encoded = False
        if isinstance(body, bytes):
            body, encoded = base64.b64encode(body).decode(), True
        headers: dict[str, list[str]] = {}
        for name, values in self.headers.items():
            if values is None:
                continue
            headers.setdefault(name, []).extend([values] if isinstance(values, str) else values)
        return {
            "statusCode": self.status_code,
            "body": body,
            "isBase64Encoded": encoded,
            "multiValueHeaders": headers,
        }


class _Route:
    def __init__(self, method: str, rule: str, func: Handler) -> None:
        self.method = method.upper()
        self.rule = rule
        self.func = func
        pattern = _PARAMETER.sub(lambda match: f"(?P{match.group(1)}{_SEGMENT})", rule)
        self.regex = re.compile(f"^{pattern}/*$")
        self.dynamic = _PARAMETER.search(rule) is not None


class RouteNotFound(Exception):
    """No route for the request's path and method; what a `not_found` handler receives."""


class RestRouter:
    """Routes REST proxy events to functions; see the module docstring for the rules."""

    def __init__(self) -> None:
        self._routes: list[_Route] = []
        self._exception_handlers: dict[type[BaseException], Callable[[Any], Response]] = {}
        self.current_event: RestEvent
        self.lambda_context: Any = None

    def route(self, rule: str, method: str) -> Callable[[H], H]:
        def register(func: H) -> H:
            self._routes.append(_Route(method, rule.rstrip("/"), func))
            # Static routes first, then dynamic ones, each in the order they were registered.
            self._routes.sort(key=lambda route: route.dynamic)
            return func

        return register

    def get(self, rule: str) -> Callable[[H], H]:
        return self.route(rule, "GET")

    def post(self, rule: str) -> Callable[[H], H]:
        return self.route(rule, "POST")

    def exception_handler(self, exc_class: type[BaseException]) -> Callable[[H], H]:
        def register(func: H) -> H:
            self._exception_handlers[exc_class] = func
            return func

        return register

    def not_found(self, func: H) -> H:
        return self.exception_handler(RouteNotFound)(func)

    def resolve(self, event: Mapping[str, Any], context: Any) -> dict[str, Any]:
        self.current_event = current = RestEvent(event)
        self.lambda_context = context
        method = current.http_method.upper()
        path = current.path
        for route in self._routes:
            if route.method != method:
                continue
            match = route.regex.match(path)
            if match:
                return self._call(route.func, match.groupdict()).to_proxy_result()
        return self._call(self._no_route, {}).to_proxy_result()

    def _no_route(self) -> Response:
        handler = self._exception_handlers.get(RouteNotFound)
        if handler is not None:
            return handler(RouteNotFound())
        return Response(404, "application/json", '{"statusCode":404,"message":"Not found"}')

    def _call(self, func: Handler, arguments: dict[str, str]) -> Response:
        try:
            response = func(**arguments)
            if not isinstance(response, Response):
                raise TypeError(f"{func.__name__} returned {type(response).__name__}, not a Response")
        except Exception as error:
            handler = self._handler_for(type(error))
            if handler is None:
                raise
            response = handler(error)
        return response

    def _handler_for(self, error_type: type[BaseException]) -> Callable[[Any], Response] | None:
        for cls in error_type.__mro__:
            if cls in self._exception_handlers:
                return self._exception_handlers[cls]
        return None
