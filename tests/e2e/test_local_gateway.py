"""The local gateway itself, on a small template of its own: event shape, API Gateway's own answers,
and what happens when a function raises, crashes, hangs or answers nonsense.

These functions are tiny stdlib handlers, so the checks stay fast and need no AWS at all.
"""

from __future__ import annotations

import base64
import json
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from devstack.gateway import LocalApiGateway
from devstack.processes import local_http
from devstack.template import ROOT, Stack, load_template

pytestmark = pytest.mark.e2e

API_KEY, API_KEY_ID = "local-test-key", "k3y1d00001"
MAX_BODY = 4096

ECHO = """
import base64, json, os, sys, time


def lambda_handler(event, context):
    body = event.get("body") or ""
    print("stdout from the function")  # must land in the log, not in the gateway's protocol
    print("stderr from the function", file=sys.stderr)
    if body == "crash":
        os._exit(3)
    if body == "hang":
        time.sleep(30)
    if body == "raise":
        raise RuntimeError("boom")
    if body == "malformed":
        return {"status": 200}
    if body == "nap":
        time.sleep(0.3)
    if body == "binary":
        return {"statusCode": 200, "headers": {"Content-Type": "application/octet-stream"},
                "body": base64.b64encode(bytes(range(256))).decode(), "isBase64Encoded": True}
    return {
        "statusCode": 201,
        "headers": {"Content-Type": "application/json", "X-Single": "one"},
        "multiValueHeaders": {"X-Multi": ["a", "b"]},
        "body": json.dumps({"event": event, "pid": os.getpid(),
                            "remaining_ms": context.get_remaining_time_in_millis(),
                            "cwd": os.getcwd(), "table": os.environ.get("TABLE")}),
    }
"""


def _api_event(path: str, method: str, **extra: object) -> dict:
    return {"Type": "Api", "Properties": {"Path": path, "Method": method, **extra}}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory) -> LocalApiGateway:
    code = tmp_path_factory.mktemp("functions")
    (code / "echo").mkdir()
    (code / "echo" / "app.py").write_text(textwrap.dedent(ECHO))
    (code / "broken").mkdir()
    (code / "broken" / "app.py").write_text("raise ImportError('a missing dependency')\n")
    template = {
        "Globals": {
            "Function": {
                "Handler": "app.lambda_handler",
                "Timeout": 5,
                "Environment": {"Variables": {"TABLE": "from-globals"}},
            }
        },
        "Resources": {
            "Api": {
                "Type": "AWS::Serverless::Api",
                "Properties": {
                    "StageName": "live",
                    "Auth": {"ApiKeyRequired": True},
                    "BinaryMediaTypes": load_template()["Resources"]["RestApi"]["Properties"][
                        "BinaryMediaTypes"
                    ],
                },
            },
            "EchoFunction": {
                "Type": "AWS::Serverless::Function",
                "Properties": {
                    "CodeUri": str(code / "echo"),
                    "Events": {
                        "Post": _api_event("/things/{thing_id}", "post"),
                        "Get": _api_event("/things/{thing_id}", "get"),
                        "Literal": _api_event("/things/special", "get"),
                        "Open": _api_event("/open", "post", Auth={"ApiKeyRequired": False}),
                    },
                },
            },
            "SlowFunction": {
                "Type": "AWS::Serverless::Function",
                "Properties": {
                    "CodeUri": str(code / "echo"),
                    "Timeout": 1,
                    "Events": {"Hang": _api_event("/slow", "post")},
                },
            },
            "BrokenFunction": {
                "Type": "AWS::Serverless::Function",
                "Properties": {
                    "CodeUri": str(code / "broken"),
                    "Events": {"Any": _api_event("/broken", "get")},
                },
            },
        },
    }
    logs = tmp_path_factory.mktemp("logs")
    with LocalApiGateway(
        Stack(template, {}), {API_KEY: API_KEY_ID}.get, pool_size=2, log_dir=logs, max_body_bytes=MAX_BODY
    ) as local:
        yield local


@pytest.fixture
def http(gateway) -> httpx.Client:
    with local_http(gateway.url, headers={"x-api-key": API_KEY}) as client:
        yield client


def test_the_event_is_shaped_like_the_sample_events(gateway, http):
    response = http.post(
        "/things/th%20ing?a=1&a=2&b=",
        content='{"hello": "world"}',
        headers={"content-type": "application/json", "x-extra": "yes"},
    )

    assert response.status_code == 201
    event = response.json()["event"]
    samples = [json.loads(path.read_text()) for path in sorted((ROOT / "events").glob("*.json"))]
    # Proxy events: not env.json, SQS, or the authorizer's own event (authorizer.json)
    api_samples = [sample for sample in samples if "requestContext" in sample and "methodArn" not in sample]
    assert api_samples
    for expected in api_samples:
        assert set(event) == set(expected), expected["resource"]
        # `authorizer` is there only on routes behind a Lambda authorizer (this one has none)
        wanted = set(expected["requestContext"]) - {"authorizer"}
        assert set(event["requestContext"]) == wanted, expected["resource"]
        assert set(event["requestContext"]["identity"]) == set(expected["requestContext"]["identity"])
    assert event["resource"] == "/things/{thing_id}"
    assert event["path"] == "/things/th%20ing"
    assert event["httpMethod"] == "POST"
    assert event["pathParameters"] == {"thing_id": "th ing"}
    assert event["queryStringParameters"] == {"a": "2", "b": ""}
    assert event["multiValueQueryStringParameters"] == {"a": ["1", "2"], "b": [""]}
    assert event["headers"]["x-extra"] == "yes"
    assert event["multiValueHeaders"]["x-extra"] == ["yes"]
    assert event["body"] == '{"hello": "world"}'
    assert event["isBase64Encoded"] is False
    assert event["stageVariables"] is None
    context = event["requestContext"]
    assert context["stage"] == "live"
    assert context["path"] == "/live/things/th%20ing"
    assert context["resourcePath"] == "/things/{thing_id}"
    assert context["domainName"] == f"127.0.0.1:{gateway.port}"
    assert context["requestId"] == response.headers["x-amzn-requestid"]
    assert context["identity"]["apiKeyId"] == API_KEY_ID
    assert context["identity"]["apiKey"] == API_KEY
    assert context["identity"]["sourceIp"] == "127.0.0.1"


def test_the_function_runs_like_a_lambda_instance(gateway, http):
    body = http.get("/things/x").json()

    # cwd is the CodeUri directory, the environment comes from the template plus local overrides
    assert Path(body["cwd"]).name == "echo"
    assert body["table"] == "from-globals"
    assert 0 < body["remaining_ms"] <= 5000
    assert body["event"]["queryStringParameters"] is None
    assert body["event"]["body"] is None


def test_the_proxy_result_becomes_the_http_answer(http):
    response = http.get("/things/x")
    assert response.status_code == 201
    assert response.headers["x-single"] == "one"
    assert response.headers.get_list("x-multi") == ["a", "b"]

    binary = http.post("/things/x", content="binary")
    assert binary.status_code == 200
    assert binary.content == bytes(range(256))


def test_a_binary_media_type_reaches_the_function_base64_even_when_it_is_text(http):
    # The template's BinaryMediaTypes, in SAM's spelling of the slash, matched case-insensitively
    assert load_template()["Resources"]["RestApi"]["Properties"]["BinaryMediaTypes"] == [
        "multipart~1form-data"
    ]
    body = b'--b\r\nContent-Disposition: form-data; name="prompt"\r\n\r\nx\r\n--b--\r\n'
    sent = http.post("/things/x", content=body, headers={"content-type": "Multipart/Form-Data; boundary=b"})
    event = sent.json()["event"]
    assert event["isBase64Encoded"] is True and base64.b64decode(event["body"]) == body


def test_a_literal_route_wins_over_a_parameter(http):
    assert http.get("/things/special").json()["event"]["resource"] == "/things/special"


def test_a_missing_or_unknown_api_key_is_forbidden(gateway):
    with local_http(gateway.url) as anonymous:
        for headers in ({}, {"x-api-key": "wrong"}):
            response = anonymous.get("/things/x", headers=headers)
            assert response.status_code == 403
            assert response.json() == {"message": "Forbidden"}
        # A route that needs no key reaches the function, with no key identity
        opened = anonymous.post("/open", content="hi")
        assert opened.status_code == 201
        assert opened.json()["event"]["requestContext"]["identity"]["apiKeyId"] is None


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/nothing"), ("DELETE", "/things/x"), ("GET", "/things/x/y"), ("GET", "/")]
)
def test_an_unknown_route_is_missing_authentication_token(gateway, http, method, path):
    response = http.request(method, path)
    assert response.status_code == 403
    assert response.json() == {"message": "Missing Authentication Token"}


def test_a_path_outside_the_stage_is_unknown(gateway):
    with local_http(f"http://{gateway.domain_name}") as client:
        response = client.get("/things/x", headers={"x-api-key": API_KEY})
    assert response.status_code == 403
    assert response.json() == {"message": "Missing Authentication Token"}


def test_a_body_over_the_limit_is_413(http):
    response = http.post("/things/x", content=b"x" * (MAX_BODY + 1))
    assert response.status_code == 413
    assert response.json() == {"message": "Request Too Long"}
    assert http.post("/things/x", content=b"x" * MAX_BODY).status_code == 201


@pytest.mark.parametrize("body", ["raise", "malformed"])
def test_a_function_error_is_502_and_the_instance_stays(http, body):
    before = http.get("/things/x").json()["pid"]

    response = http.post("/things/x", content=body)

    assert response.status_code == 502
    assert response.json() == {"message": "Internal server error"}
    assert http.get("/things/x").json()["pid"] == before


def test_a_crashed_instance_is_502_and_is_replaced(gateway, http):
    pool = gateway.pools["EchoFunction"]
    lost, started = pool.lost_instances, pool.cold_starts

    response = http.post("/things/x", content="crash")

    assert response.status_code == 502
    assert response.json() == {"message": "Internal server error"}
    # The instance is gone, and the next requests are served, a new instance starting when needed
    assert pool.lost_instances == lost + 1
    with ThreadPoolExecutor(max_workers=2) as clients:
        answers = list(clients.map(lambda _: http.post("/things/x", content="nap"), range(2)))
    assert [answer.status_code for answer in answers] == [201, 201]
    assert pool.cold_starts > started


def test_an_invocation_past_the_functions_timeout_is_502(gateway, http):
    started = time.monotonic()

    response = http.post("/slow", content="hang")

    elapsed = time.monotonic() - started
    assert response.status_code == 502
    assert 1.0 <= elapsed < 5  # SlowFunction's Timeout is 1 s
    assert http.post("/slow", content="fine").status_code == 201


def test_an_import_error_fails_every_invocation_with_502(http):
    for _ in range(2):
        assert http.get("/broken").status_code == 502


def test_instances_serve_one_event_at_a_time(gateway, http):
    # Four slow requests on a pool of two: each instance takes them in turn, all succeed.
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(lambda _: http.post("/things/x", content="nap"), range(4)))

    assert [answer.status_code for answer in answers] == [201] * 4
    assert len({answer.json()["pid"] for answer in answers}) <= 2


def test_function_output_goes_to_its_log_not_to_the_protocol(gateway, http, eventually):
    http.get("/things/x")

    log = gateway.log_dir / "EchoFunction.log"
    text = eventually(
        lambda: content if "stderr from the function" in (content := log.read_text()) else None,
        what="the function log",
    )
    assert "stdout from the function" in text
    assert "START RequestId:" in text and "REPORT RequestId:" in text


# -- Lambda authorizers (REQUEST) --------------------------------------------------------------------

AUTHORIZER = """
def lambda_handler(event, context):
    token = (event.get("headers") or {}).get("x-token") or ""
    if token == "raise":
        raise Exception("Unauthorized")
    if token == "boom":
        raise RuntimeError("boom")
    if token == "junk":
        return {"nope": 1}
    stage_arn = event["methodArn"].split("/", 2)
    return {
        "principalId": "p-" + token,
        "policyDocument": {"Version": "2012-10-17", "Statement": [{
            "Action": "execute-api:Invoke",
            "Effect": "Deny" if token == "deny" else "Allow",
            "Resource": stage_arn[0] + "/" + stage_arn[1] + "/*",
        }]},
        "usageIdentifierKey": "usage-" + token,
        "context": {"who": token, "type": event["type"], "arn": event["methodArn"]},
    }
"""


@pytest.fixture(scope="module")
def guarded(tmp_path_factory) -> LocalApiGateway:
    code = tmp_path_factory.mktemp("guarded")
    for name, source in (("echo", ECHO), ("authorizer", AUTHORIZER)):
        (code / name).mkdir()
        (code / name / "app.py").write_text(textwrap.dedent(source))
    authorizer_arn = {"Fn::GetAtt": ["AuthFunction", "Arn"]}
    template = {
        "Globals": {"Function": {"Handler": "app.lambda_handler", "Timeout": 5}},
        "Resources": {
            "Api": {
                "Type": "AWS::Serverless::Api",
                "Properties": {
                    "StageName": "live",
                    "ApiKeySourceType": "AUTHORIZER",
                    "Auth": {
                        "ApiKeyRequired": True,
                        "DefaultAuthorizer": "Cached",
                        "Authorizers": {
                            "Cached": {
                                "FunctionArn": authorizer_arn,
                                "FunctionPayloadType": "REQUEST",
                                "Identity": {"Headers": ["x-token"], "ReauthorizeEvery": 300},
                            },
                            "Uncached": {
                                "FunctionArn": authorizer_arn,
                                "FunctionPayloadType": "REQUEST",
                                "Identity": {"ReauthorizeEvery": 0},
                            },
                        },
                    },
                },
            },
            "AuthFunction": {
                "Type": "AWS::Serverless::Function",
                "Properties": {"CodeUri": str(code / "authorizer")},
            },
            "EchoFunction": {
                "Type": "AWS::Serverless::Function",
                "Properties": {
                    "CodeUri": str(code / "echo"),
                    "Events": {
                        "Cached": _api_event("/cached/{thing}", "get"),
                        "Uncached": _api_event("/uncached", "get", Auth={"Authorizer": "Uncached"}),
                        "Open": _api_event(
                            "/open", "post", Auth={"ApiKeyRequired": False, "Authorizer": "NONE"}
                        ),
                    },
                },
            },
        },
    }
    keys = {"usage-good": "uk-good", "usage-": "uk-empty"}
    logs = tmp_path_factory.mktemp("guarded-logs")
    with LocalApiGateway(Stack(template, {}), keys.get, pool_size=1, log_dir=logs) as local:
        yield local


@pytest.fixture
def anyone(guarded) -> httpx.Client:
    guarded.authorizers.flush()
    with local_http(guarded.url) as client:
        yield client


def test_an_allowing_authorizer_passes_its_context_and_usage_key_to_the_function(guarded, anyone):
    response = anyone.get("/cached/a", headers={"x-token": "good"})

    assert response.status_code == 201, response.text
    context = response.json()["event"]["requestContext"]
    authorizer = context["authorizer"]
    assert authorizer["principalId"] == "p-good" and authorizer["who"] == "good"
    assert isinstance(authorizer["integrationLatency"], int)
    # The authorizer saw a REQUEST event for this method and path
    assert authorizer["type"] == "REQUEST"
    assert authorizer["arn"] == "arn:aws:execute-api:us-east-1:123456789012:local/live/GET/cached/a"
    # and its usageIdentifierKey is the request's API key (ApiKeySourceType AUTHORIZER)
    assert (context["identity"]["apiKey"], context["identity"]["apiKeyId"]) == ("usage-good", "uk-good")


def test_a_missing_identity_source_is_401_without_calling_the_authorizer(guarded, anyone):
    before = guarded.authorizers.invocations
    response = anyone.get("/cached/a")
    assert response.status_code == 401
    assert response.json() == {"message": "Unauthorized"}
    assert response.headers["x-amzn-errortype"] == "UnauthorizedException"
    assert guarded.authorizers.invocations == before


def test_answers_are_cached_by_identity_for_the_ttl_and_hold_on_other_routes(guarded, anyone):
    assert anyone.get("/cached/a", headers={"x-token": "good"}).status_code == 201
    calls = guarded.authorizers.invocations

    # The same identity on another path of the policy: the cached answer, evaluated again
    again = anyone.get("/cached/b", headers={"x-token": "good"})
    assert again.status_code == 201
    assert again.json()["event"]["requestContext"]["authorizer"]["arn"].endswith("/GET/cached/a")
    assert guarded.authorizers.invocations == calls
    # Another identity is asked for
    assert anyone.get("/cached/a", headers={"x-token": "deny"}).status_code == 403
    assert guarded.authorizers.invocations == calls + 1
    # And a flush forgets the answers
    guarded.authorizers.flush()
    assert anyone.get("/cached/a", headers={"x-token": "good"}).status_code == 201
    assert guarded.authorizers.invocations == calls + 2


def test_without_identity_sources_and_a_ttl_of_0_the_authorizer_runs_every_time(guarded, anyone):
    calls = guarded.authorizers.invocations
    for _ in range(2):
        assert anyone.get("/uncached").status_code == 201  # "usage-" is on the plan
    assert guarded.authorizers.invocations == calls + 2


@pytest.mark.parametrize(
    ("token", "status", "body"),
    [
        ("raise", 401, {"message": "Unauthorized"}),
        ("deny", 403, {"message": "User is not authorized to access this resource with an explicit deny"}),
        ("boom", 500, {"message": "Internal server error"}),
        ("junk", 500, {"message": "Internal server error"}),
        ("other", 403, {"message": "Forbidden"}),  # allowed, but usage-other is no key of the plan
    ],
)
def test_refusals_and_failures_answer_as_api_gateway_does(anyone, token, status, body):
    response = anyone.get("/cached/a", headers={"x-token": token})
    assert (response.status_code, response.json()) == (status, body)


def test_a_route_without_an_authorizer_reaches_the_function_without_one(anyone):
    response = anyone.post("/open", content="hi")
    assert response.status_code == 201
    assert "authorizer" not in response.json()["event"]["requestContext"]
