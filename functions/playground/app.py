"""GET / of the stage: the playground page; GET /playground/{asset}: its script, styles and images.

Public routes (no API key): the page holds no data, and every API call it makes carries the key the
user pastes. The files are in static/ beside this handler, so they ship with this function only.
"""

from pathlib import Path

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import Field

from sora_relay.observability import logger, metrics
from sora_relay.runtime.api import SERVER_ERRORS, install_error_handlers, reads, refusal
from sora_relay.runtime.playground import ASSETS, STRIP_PREFIXES, Playground

app = APIGatewayRestResolver(strip_prefixes=STRIP_PREFIXES)
install_error_handlers(app)
site = Playground(Path(__file__).parent / "static")

CACHED = {304: {"description": "Not modified: the `If-None-Match` ETag is current.", "content": {}}}


@app.get(
    "/",
    operation_id="getPlayground",
    tags=["playground"],
    summary="The playground page",
    description=(
        "An HTML page that makes a video, plays it and shows its webhook attempts, through this API"
        " with the key the user pastes (sent as a header, kept in the tab's session storage). A strict"
        " Content-Security-Policy: its own script and styles, the API on this origin, media from the"
        " presigned links' origin."
    ),
    responses={
        200: {"description": "The page.", "content": {"text/html": {"schema": {"type": "string"}}}},
        301: {"description": "To the stage URL with its trailing slash.", "content": {}},
        **CACHED,
        **SERVER_ERRORS,
    },
)
def page_route() -> Response:
    event = app.current_event
    return site.page(
        request_path=event.request_context.path or event.path,
        if_none_match=event.headers.get("if-none-match"),
    )


@app.get(
    "/playground/<asset>",
    operation_id="getPlaygroundAsset",
    tags=["playground"],
    summary="One of the playground page's files",
    responses={
        200: {
            "description": "The file (JavaScript, CSS or SVG); immutable when asked for with its `v`.",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
        **CACHED,
        404: refusal("No such file of the page.", "not_found"),
        **SERVER_ERRORS,
    },
)
@reads(
    path={"asset": (str, Field(description=f"One of {', '.join(ASSETS)}."))},
    query={"v": (str, Field(None, description="The version the page names it with (a hash of its bytes)."))},
)
def asset_route(asset: str) -> Response:
    event = app.current_event
    return site.asset(
        asset,
        version=event.get_query_string_value("v"),
        if_none_match=event.headers.get("if-none-match"),
    )


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
