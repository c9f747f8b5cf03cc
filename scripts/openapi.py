"""Write docs/openapi.yaml from the code, or (--check) fail when the committed copy has drifted.

    python scripts/openapi.py           # write docs/openapi.yaml (`make openapi`)
    python scripts/openapi.py --check   # exit 1 with a diff if docs/openapi.yaml is not what this writes

Powertools generates each API function's part: its resolver's routes (summary, description,
tags, `responses=` with the pydantic models the handlers return), the inputs each handler
declares with `@reads` (runtime/api.py says why they are declared rather than typed parameters)
and the models' JSON schemas (their Field constraints and descriptions). OpenAPIMerge joins the
functions' parts. What no function knows comes from here: the document's info and servers, the
API key scheme, which routes need the key (template.yaml's Auth), and the answers API Gateway
gives before or instead of a function (template.yaml's GatewayResponses give them the error shape).

Importing a function's app.py builds its resolver and nothing else: no AWS call, no setting read.
"""

from __future__ import annotations

import argparse
import difflib
import importlib.util
import inspect
import json
import re
import sys
import tomllib
from copy import copy
from pathlib import Path
from typing import Annotated, Any

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "layers" / "common"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import yaml  # noqa: E402
from aws_lambda_powertools.event_handler import APIGatewayRestResolver  # noqa: E402
from aws_lambda_powertools.event_handler.openapi.merge import OpenAPIMerge  # noqa: E402
from aws_lambda_powertools.event_handler.openapi.params import Body, Header, Query  # noqa: E402
from aws_lambda_powertools.event_handler.openapi.params import Path as PathParam  # noqa: E402
from pydantic import Field  # noqa: E402
from pydantic_core import PydanticUndefined  # noqa: E402

from devstack.template import Stack, load_template  # noqa: E402
from sora_relay.runtime.api import Input, RequestInputs  # noqa: E402
from sora_relay.runtime.multipart import FORM_EXTENSION, MULTIPART  # noqa: E402

DOCUMENT = ROOT / "docs" / "openapi.yaml"
HEADER = "# Generated from the code by scripts/openapi.py (`make openapi`); do not edit.\n"
ERROR_SCHEMA = "#/components/schemas/ErrorResponse"

DESCRIPTION = """\
Asynchronous AI video generation (Sora) as a job service. A client creates a video with a
prompt and gets its id at once (202); the relay asks the provider to generate it, copies the
finished MP4 into its own bucket when the provider calls back, and, if the client gave a
`callback_url`, POSTs a signed webhook (Standard Webhooks) when the video is `completed` or
`failed`. The client can also poll the video and download it.

Every route except the provider's callback needs an API key in `x-api-key`. Each API key is
one owner: another owner's video is a 404 on every route.

Every error, the service's own and API Gateway's (a missing or unknown key, throttling, an
unknown route, a function failure), is OpenAI's `{"error": {"message", "type", "param", "code"}}`. `code` is a
stable string: the codes each response can carry are listed in its `x-error-codes`; the
upper-case ones are API Gateway's response types. `param` names the request field, header,
query or path parameter at fault, or is null. An unknown route or method is a 404 `not_found`.

This document is generated from the code by scripts/openapi.py; `python -m devstack.fuzz`
runs schemathesis against the local stack with it."""

SERVERS = [
    {
        "url": "{api_url}",
        "description": "The API's stage URL (the stack's `ApiUrl` output, e.g."
        " https://{id}.execute-api.{region}.amazonaws.com/live).",
        "variables": {
            "api_url": {
                "default": "http://127.0.0.1:3000/live",
                "description": "The stage URL; `make run` prints the local one.",
            }
        },
    }
]
API_KEY = {
    "ApiKey": {
        "type": "apiKey",
        "in": "header",
        "name": "x-api-key",
        "description": "An API Gateway API key of the stack's usage plan; each key is one owner.",
    }
}
TAGS = [
    {"name": "videos", "description": "Create, read, list and download videos (API key)."},
    {
        "name": "provider",
        "description": "The video provider's result callback (no API key; a per-task token).",
    },
]

# API Gateway's own answers: (status, codes, description, which operations). `codes` are its
# gateway response types, which template.yaml's DEFAULT_4XX/DEFAULT_5XX templates put in `code`.
GATEWAY_ANSWERS: list[tuple[int, tuple[str, ...], str, str]] = [
    (
        403,
        ("INVALID_API_KEY",),
        "the x-api-key header is missing or is not a key of the usage plan.",
        "api_key",
    ),
    (413, ("REQUEST_TOO_LARGE",), "the body is larger than its 10 MB.", "body"),
    (
        429,
        ("THROTTLED", "QUOTA_EXCEEDED"),
        "the usage plan's rate or quota for this key, or the stage's limit, is used up.",
        "all",
    ),
    (500, ("DEFAULT_5XX",), "the function could not be invoked (throttled or refused).", "all"),
    (502, ("DEFAULT_5XX",), "the function failed.", "all"),
    (504, ("INTEGRATION_TIMEOUT", "INTEGRATION_FAILURE"), "the function took longer than 29 s.", "all"),
]


# The MCP endpoint speaks JSON-RPC over one POST (docs/mcp.md), not REST: it is not in this document.
NOT_REST = "/mcp"


def rest_routes() -> list[Any]:
    return [
        route for route in Stack(template=load_template(), parameters={}).routes() if route.path != NOT_REST
    ]


def api_functions() -> dict[str, Path]:
    """The functions behind the API's REST routes (template.yaml's Api events), with their app.py."""
    stack = Stack(template=load_template(), parameters={})
    return {route.function_id: stack.code_dir(route.function_id) / "app.py" for route in rest_routes()}


def load_resolver(function_id: str, app_file: Path) -> APIGatewayRestResolver:
    spec = importlib.util.spec_from_file_location(f"openapi_{function_id}", app_file)
    assert spec and spec.loader, app_file
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.app  # type: ignore[no-any-return]


# -- one function's part ------------------------------------------------------------------------------


def _plain(field: Any) -> Any:
    """The Field without its default and description (the parameter carries those)."""
    plain = copy(field)
    plain.default = PydanticUndefined
    plain.description = None
    return plain


def _parameter(name: str, declared: Input, marker: type, **marker_args: Any) -> inspect.Parameter:
    kind, field = declared
    default = inspect.Parameter.empty if field.default is PydanticUndefined else field.default
    annotation = Annotated[kind, _plain(field), marker(description=field.description, **marker_args)]
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


def documented_signature(path: str, inputs: RequestInputs) -> inspect.Signature:
    """What the handler would take as typed parameters if Powertools validated its requests."""
    parameters = [
        _parameter(name, inputs.path.get(name, (str, Field())), PathParam)
        for name in re.findall(r"<(\w+)>", path)
    ]
    parameters += [_parameter(name, declared, Query) for name, declared in inputs.query.items()]
    parameters += [
        _parameter(f"header_{index}", declared, Header, alias=name)
        for index, (name, declared) in enumerate(inputs.headers.items())
    ]
    if isinstance(inputs.body, tuple):  # a type and its Field
        parameters.append(_parameter("body", inputs.body, Body))
    elif inputs.body is not None:  # a model
        annotation = Annotated[inputs.body, Body()]
        parameters.append(inspect.Parameter("body", inspect.Parameter.KEYWORD_ONLY, annotation=annotation))
    return inspect.Signature(parameters)


def function_schema(app: APIGatewayRestResolver) -> dict[str, Any]:
    """Powertools' OpenAPI schema of one resolver, each route documented with its declared inputs.

    A twin resolver gets each route with the same OpenAPI settings and a handler whose signature
    is the declared inputs; the real resolver and its handlers are left as they are."""
    twin = APIGatewayRestResolver()
    # The routes as Powertools' own get_openapi_schema() reads them (it has no public accessor).
    for route in app._static_routes + app._dynamic_routes:

        def handler(**_: Any) -> None: ...

        handler.__name__ = route.func.__name__
        handler.__signature__ = documented_signature(  # type: ignore[attr-defined]
            route.path, getattr(route.func, "request_inputs", RequestInputs())
        )
        twin.route(
            route.path,
            route.method,
            summary=route.summary,
            description=route.description,
            responses=route.responses,
            tags=route.tags,
            operation_id=route.operation_id,
            include_in_schema=route.include_in_schema,
            security=route.security,
            openapi_extensions=route.openapi_extensions,
            deprecated=route.deprecated,
            status_code=route.status_code,
        )(handler)
    schema: dict[str, Any] = twin.get_openapi_schema().model_dump(
        by_alias=True, exclude_none=True, mode="json"
    )
    return schema


# -- the whole document ----------------------------------------------------------------------------------------


def _operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method.upper(), path): operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
    }


def _add_gateway_answers(operation: dict[str, Any], api_key: bool) -> None:
    responses = operation["responses"]
    for status, codes, description, where in GATEWAY_ANSWERS:
        if (where == "api_key" and not api_key) or (where == "body" and "requestBody" not in operation):
            continue
        response = responses.setdefault(
            str(status),
            {"description": "", "content": {"application/json": {"schema": {"$ref": ERROR_SCHEMA}}}},
        )
        response["description"] = f"{response['description']} API Gateway: {description}".strip()
        response["x-error-codes"] = [*response.get("x-error-codes", []), *codes]
    operation["responses"] = {status: responses[status] for status in sorted(responses)}


def _referenced(node: Any) -> set[str]:
    text = json.dumps(node)
    return set(re.findall(r'"#/components/schemas/([^"]+)"', text))


def _drop_unreferenced_schemas(document: dict[str, Any]) -> None:
    """Powertools always adds its validation error schemas; the API answers neither."""
    schemas = document["components"]["schemas"]
    used = _referenced(document["paths"])
    while True:
        more = _referenced({name: schemas[name] for name in used}) - used
        if not more:
            break
        used |= more
    document["components"]["schemas"] = {name: schemas[name] for name in sorted(used)}


def _form_schema(kind: str, json_schema: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    """The multipart/form-data twin of a JSON body (routes marked with FORM_EXTENSION): each
    field a text part with the JSON field's constraints (a number's digits), OpenAI's
    `input_reference[image_url]`, and for `create` the image file as `input_reference`."""
    model = schemas[json_schema["$ref"].rsplit("/", 1)[-1]]
    properties: dict[str, Any] = {}
    for name, field in model["properties"].items():
        options = field.get("anyOf", [field])
        types = {option.get("type") for option in options}
        if name == "input_reference" or "array" in types:
            continue  # an object or a list is spelled otherwise in a form (below; image_urls[] per item)
        text = next((option for option in options if option.get("type") == "string"), {})
        part: dict[str, Any] = {"type": "string", "description": field.get("description", "")}
        part |= {
            key: text[key] for key in ("pattern", "minLength", "maxLength", "enum", "format") if key in text
        }
        if "enum" in field:
            part["enum"] = field["enum"]
        if "integer" in types:
            part["pattern"] = "^[0-9]{1,2}$"
        properties[name] = part
    if kind == "create":
        properties["input_reference"] = {
            "type": "string",
            "format": "binary",
            "description": "The reference image file (PNG, JPEG or WebP by its bytes, at most 4 MiB).",
        }
        properties["input_reference[image_url]"] = {
            "type": "string",
            "description": "OpenAI's `input_reference.image_url` (an https URL or a base64 data URL), as"
            " its SDK spells it in a form.",
        }
    return {
        "type": "object",
        "properties": properties,
        "required": model.get("required", []),
        "additionalProperties": False,
    }


def _add_forms(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    for operation in _operations(document).values():
        kind = operation.pop(FORM_EXTENSION, None)
        if kind is None:
            continue
        content = operation["requestBody"]["content"]
        content[MULTIPART] = {"schema": _form_schema(kind, content["application/json"]["schema"], schemas)}
        if kind == "create":
            content[MULTIPART]["encoding"] = {
                "input_reference": {"contentType": "image/png, image/jpeg, image/webp"}
            }


def build() -> dict[str, Any]:
    """The OpenAPI document of the API, as a dict."""
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    merge = OpenAPIMerge(
        title="sora-relay",
        version=version,
        description=DESCRIPTION,
        servers=SERVERS,  # type: ignore[arg-type]  # dicts, as the merged document holds them
        security_schemes=API_KEY,  # type: ignore[arg-type]
        security=[{"ApiKey": []}],
        tags=TAGS,  # type: ignore[arg-type]
        on_conflict="error",
    )
    seen: dict[str, Any] = {}
    for function_id, app_file in api_functions().items():
        part = function_schema(load_resolver(function_id, app_file))
        for name, schema in part.get("components", {}).get("schemas", {}).items():
            # OpenAPIMerge keeps the last of two schemas of one name; two models must not share one.
            if seen.setdefault(name, schema) != schema:
                raise SystemExit(f"two different models are named {name} ({function_id})")
        merge.add_schema(part)
    document = merge.get_openapi_schema()
    document["paths"] = {path: document["paths"][path] for path in sorted(document["paths"])}

    template_routes = rest_routes()
    operations = _operations(document)
    routed = {(route.method, route.path) for route in template_routes}
    if routed != set(operations):
        raise SystemExit(f"template routes {sorted(routed)} are not the resolvers' {sorted(operations)}")
    for route in template_routes:
        operation = operations[(route.method, route.path)]
        if not route.api_key_required:
            operation["security"] = []
        for response in operation["responses"].values():
            if response.get("content") == {}:
                del response["content"]  # a redirect has no body
        _add_gateway_answers(operation, route.api_key_required)
    _add_forms(document)
    _drop_unreferenced_schemas(document)
    return document


class _Dumper(yaml.SafeDumper):
    """Multi-line text (descriptions) as literal blocks, which read as they were written."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def render(document: dict[str, Any]) -> str:
    return HEADER + yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="fail (with a diff) if docs/openapi.yaml differs"
    )
    args = parser.parse_args(argv)
    text = render(build())
    if not args.check:
        DOCUMENT.write_text(text)
        print(f"wrote {DOCUMENT.relative_to(ROOT)}")
        return 0
    committed = DOCUMENT.read_text() if DOCUMENT.exists() else ""
    if committed == text:
        return 0
    diff = difflib.unified_diff(
        committed.splitlines(keepends=True),
        text.splitlines(keepends=True),
        "docs/openapi.yaml (committed)",
        "docs/openapi.yaml (from the code)",
    )
    sys.stdout.writelines(diff)
    print("docs/openapi.yaml is not what the code says: run `make openapi` and commit it", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
