"""Handlers in process against moto (in process) and a fake provider behind httpx transports.

The table, bucket and secrets come from template.yaml (devstack.template.provision, once per
session; devstack.template.reset puts back what each test changed), and each handler runs with the
environment the template gives its function.
"""

from __future__ import annotations

import io
import json
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import httpx
import pytest

from devstack.event_sources.sqs import delete_done, lambda_sqs_record
from devstack.event_sources.streams import StreamReader, filter_patterns, matches_any
from devstack.mp4 import render_mp4
from devstack.template import Stack, secret_value
from sora_relay.adapters import outbound_http, secrets
from sora_relay.adapters.aws import reset_clients
from sora_relay.adapters.tenant_secrets import TenantSecrets, secret_name
from sora_relay.adapters.tenants import TenantStore
from sora_relay.adapters.usage_plan_keys import UsagePlanKeys
from sora_relay.domain import catalogue
from sora_relay.runtime import container as runtime_container
from sora_relay.runtime.container import Container, current
from sora_relay.settings import Settings
from sora_relay.usecases.manage_tenants import TenantAdmin
from tests.conftest import PROVIDER_TOKEN, LambdaContext, SharedAws, load_event, load_handler

PROVIDER_HOST = "api.acedata.cloud"
CDN_HOST = "cdn.provider.test"
SAMPLE_CDN_HOST = "videos.provider.example"  # the host in events/callback-success.json
CLIENT_HOST = "client.example.com"
# Fake DNS: every public test host resolves to this public address (nothing connects to it).
PUBLIC_ADDRESS = "93.184.215.14"
# Tenants as the authorizer names them (requestContext.authorizer.tenant_id); OWNER is the samples'.
OWNER = "ten_SampleTenantId000001"
OTHER_OWNER = "ten_OtherTenantId0000002"


@pytest.fixture(scope="session")
def mp4_bytes() -> bytes:
    """A real, playable H.264 MP4 (2 s, 320x180), rendered once."""
    buffer = io.BytesIO()
    render_mp4(buffer, width=320, height=180, seconds=2, seed="integration")
    return buffer.getvalue()


@dataclass
class FakeInternet:
    """The outside world as an httpx transport: the provider's API, its video CDN, client receivers.

    Requests keep their host names: the address pin lives in outbound_http.pinned_client's network backend,
    which this transport stands in for (the fake DNS is still checked before each request).
    """

    video: bytes
    provider_calls: list[dict[str, Any]] = field(default_factory=list)
    create_failures: list[httpx.Response] = field(default_factory=list)
    videos: dict[str, Callable[[], httpx.Response]] = field(default_factory=dict)
    webhooks: list[httpx.Request] = field(default_factory=list)
    webhook_status: int = 204
    fetched_urls: list[str] = field(default_factory=list)
    # What /sora/tasks reports per provider task id (absent: no response yet).
    task_results: dict[str, dict[str, Any]] = field(default_factory=dict)
    queries: list[list[str]] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        host = request.headers.get("host", request.url.host).split(":")[0]
        if host == PROVIDER_HOST:
            return self._provider(request)
        if host in (CDN_HOST, SAMPLE_CDN_HOST):
            self.fetched_urls.append(str(request.url))
            maker = self.videos.get(request.url.path)
            if maker is not None:
                return maker()
            return httpx.Response(200, headers={"content-type": "video/mp4"}, content=self.video)
        if host == CLIENT_HOST:
            request.read()
            self.webhooks.append(request)
            return httpx.Response(self.webhook_status)
        raise httpx.ConnectError(f"no route to {host}", request=request)

    def _provider(self, request: httpx.Request) -> httpx.Response:
        """AceDataCloud's video services (acedata-video.md): `POST /<svc>/videos` and `/<svc>/tasks`."""
        if request.headers.get("authorization") != f"Bearer {PROVIDER_TOKEN}":
            return httpx.Response(401, json={"error": {"code": "invalid_token", "message": "bad token"}})
        body = json.loads(request.content)
        service, _, route = request.url.path.strip("/").partition("/")
        if route == "videos":
            if self.create_failures:
                return self.create_failures.pop(0)
            provider_task_id = str(uuid.uuid4())
            self.provider_calls.append({"task_id": provider_task_id, "body": body, "service": service})
            return httpx.Response(200, json={"success": True, "task_id": provider_task_id})
        if route == "tasks" and body.get("action") == "retrieve_batch":
            self.queries.append(body["ids"])
            items = [
                {
                    "id": task_id,
                    "created_at": 1.0,
                    "type": "videos",
                    **({"response": self.task_results[task_id]} if task_id in self.task_results else {}),
                }
                for task_id in body["ids"]
            ]
            return httpx.Response(200, json={"items": items, "count": len(items)})
        return httpx.Response(404, json={"error": {"code": "no_api", "message": "no such api"}})

    # --- what the provider would send back ---
    def last_call(self) -> dict[str, Any]:
        return self.provider_calls[-1]

    def success_body(self, call: dict[str, Any], *, video_path: str | None = None) -> bytes:
        """What the provider pushes when the video is ready; its lookup says the same from now on
        (AceData signs nothing: the relay trusts only the lookup that follows a push)."""
        path = video_path or f"/videos/{call['task_id']}.mp4"
        result = {
            "success": True,
            "task_id": call["task_id"],
            "trace_id": str(uuid.uuid4()),
            "data": [{"id": "veo:vid", "video_url": f"https://{CDN_HOST}{path}", "state": "succeeded"}],
        }
        self.task_results[call["task_id"]] = result
        return json.dumps(result).encode()

    def failure_body(self, call: dict[str, Any], code: str = "api_error", message: str = "boom") -> bytes:
        result = {"success": False, "task_id": call["task_id"], "error": {"code": code, "message": message}}
        self.task_results[call["task_id"]] = result
        return json.dumps(result).encode()


def _fake_resolve(host: str, port: int) -> list[str]:
    addresses = {
        host: PUBLIC_ADDRESS
        for host in (PROVIDER_HOST, CDN_HOST, SAMPLE_CDN_HOST, CLIENT_HOST, "client.example.com")
    }
    if host in addresses:
        return [addresses[host]]
    if host == "internal.client.test":  # a name that resolves to the metadata service
        return ["169.254.169.254"]
    raise OSError(f"{host} does not resolve")


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "SoraRelayTest",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def apply_function_env(monkeypatch: pytest.MonkeyPatch, stack: Stack, **overrides: str) -> None:
    """Every function's environment from the template (they agree where they overlap, except the
    intake function's PUBLIC_BASE_URL, which the API functions leave empty: tests that need it set it)."""
    for function_id in stack.functions():
        for name, value in stack.function_environment(function_id).items():
            if function_id == "IntakeFunction" and name == "PUBLIC_BASE_URL":
                continue
            monkeypatch.setenv(name, value)
    for name, value in overrides.items():
        monkeypatch.setenv(name, value)
    _clients_for_this_endpoint()
    secrets.clear_cache()  # the secrets read: the adapters' own cache, per stack
    install_container(monkeypatch, Container())


_clients_made_for: list[tuple[Any, ...]] = []


def _clients_for_this_endpoint() -> None:
    """The adapters' boto3 clients are made again when the endpoint or boto3's session changed
    since they were made (test_memory's moto server; the shared session), else kept: a client
    costs milliseconds to make, and holds nothing of a test's (tests patch its methods with
    monkeypatch, which puts them back)."""
    key = (os.environ.get("AWS_ENDPOINT_URL"), os.environ.get("AWS_DEFAULT_REGION"), boto3.DEFAULT_SESSION)
    if _clients_made_for != [key]:
        reset_clients()
        _clients_made_for[:] = [key]


def install_container(monkeypatch: pytest.MonkeyPatch, built: Container) -> Container:
    """`built` is the process's container (the handlers' `current()`) until the test ends."""
    monkeypatch.setattr(runtime_container, "_current", built)
    return built


def reload_settings(monkeypatch: pytest.MonkeyPatch) -> Container:
    """After a test changed the environment: settings read again, the same collaborators given
    (the fake internet), the rest built afresh from the new settings."""
    return install_container(monkeypatch, current().replace(settings=Settings()))


@pytest.fixture
def stack(shared_aws: SharedAws, aws_env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    """The template in moto (provisioned once per session), as provisioned: what earlier tests
    changed is undone first. Every function's environment is set from it."""
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", shared_aws.session)
    provisioned = shared_aws.borrow()
    apply_function_env(monkeypatch, provisioned)
    _tenant_secrets(shared_aws, provisioned)
    yield provisioned
    shared_aws.give_back()


def _tenant_secrets(shared_aws: SharedAws, provisioned: Stack) -> None:
    """The two test tenants' webhook signing secrets, as the operator command makes them (their
    tasks' webhooks are signed with these, not the service-wide secret): made once per provision and
    recorded as the stack's own secrets, so reset() keeps them and puts their values back after a
    test rotated one (made afresh for every test, they cost two creates and a list and two deletes
    in each reset). Their names are `<stack>/tenants/<tenant>/webhook`, which reset() knows as
    `<stack>/<logical id>`."""
    prefix = str(provisioned.resolve(provisioned.template["Outputs"]["TenantSecretPrefix"]["Value"]))
    missing = [
        tenant
        for tenant in (OWNER, OTHER_OWNER)
        if secret_name(prefix, tenant).removeprefix(f"{provisioned.stack_name}/")
        not in provisioned.secret_values
    ]
    if not missing:
        return
    shared_aws.changes.recording = False  # part of the provisioned stack, not a test's change
    try:
        client = aws("secretsmanager")
        for tenant in missing:
            name = secret_name(prefix, tenant)
            assert name.startswith(f"{provisioned.stack_name}/"), name
            TenantSecrets(client, prefix).create(tenant)
            stored = client.get_secret_value(SecretId=name)
            logical_id = name.removeprefix(f"{provisioned.stack_name}/")
            provisioned.refs[logical_id] = stored["ARN"]
            provisioned.secret_values[logical_id] = stored["SecretString"]
    finally:
        shared_aws.changes.recording = True


def connect_internet(monkeypatch: pytest.MonkeyPatch, fake: FakeInternet) -> None:
    """Route the service's HTTP (provider API and strangers' URLs) to `fake`, with fake DNS."""
    transport = httpx.MockTransport(fake)
    install_container(
        monkeypatch,
        current().replace(
            provider_http=httpx.Client(transport=transport),
            outbound_http=outbound_http.SafeHttp(httpx.Client(transport=transport), allow_loopback=False),
        ),
    )
    monkeypatch.setattr(outbound_http, "resolve_host", _fake_resolve)


@pytest.fixture
def internet(stack: Stack, mp4_bytes: bytes, monkeypatch: pytest.MonkeyPatch) -> FakeInternet:
    fake = FakeInternet(video=mp4_bytes)
    connect_internet(monkeypatch, fake)
    return fake


@dataclass
class Api:
    """Invokes the API handlers with API Gateway events built from events/*.json; `callback` also
    runs what Lambda runs right after it (the archive queue into ArchiveFunction)."""

    handlers: dict[str, Any]
    stack: Stack

    def call(self, function: str, event: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
        answer = self.handlers[function].lambda_handler(event, LambdaContext())
        body = answer.get("body") or ""
        parsed = json.loads(body) if body else None
        headers = {key.lower(): value for key, value in (answer.get("headers") or {}).items()}
        for key, values in (answer.get("multiValueHeaders") or {}).items():
            headers.setdefault(key.lower(), values[0])
        return answer["statusCode"], headers, parsed

    def submit(
        self,
        body: Any,
        *,
        owner: str | None = OWNER,
        raw: str | None = None,
        idempotency_key: str | None = None,
        base_path: str | None = None,
    ) -> tuple[int, dict, Any]:
        event = load_event("submit")
        event["body"] = raw if raw is not None else json.dumps(body)
        if idempotency_key is not None:
            event["headers"]["idempotency-key"] = idempotency_key
            event["multiValueHeaders"]["idempotency-key"] = [idempotency_key]
        as_tenant(event, owner)
        if base_path is not None:
            through_a_custom_domain(event, base_path)
        return self.call("submit", event)

    def callback(
        self, callback_url: str, body: bytes, *, token: str | None = "keep", archive: bool = True
    ) -> tuple[int, dict, Any]:
        """POST a provider push; with `archive`, then copy what it queued (the callback's own
        answer is returned: the task is `in_progress` in it, `completed` once archived)."""
        answer = self.push(callback_url, body, token=token)
        if archive:
            self.archive()
        return answer

    def archive(self, *, rounds: int = 5) -> list[dict[str, Any]]:
        """Poll the archive queue into ArchiveFunction until nothing is visible (as Lambda would)."""
        answers = []
        for _ in range(rounds):
            event, answer = run_queue(self.stack, "ArchiveQueue", self.handlers["archive"])
            if not event["Records"]:
                break
            answers.append(answer)
        return answers

    def push(
        self, callback_url: str, body: bytes, *, token: str | None = "keep", base_path: str | None = None
    ) -> tuple[int, dict, Any]:
        parts = urlsplit(callback_url)
        # {public base}/v1/callbacks/{provider}/{task_id}; the base may carry the stage name.
        segments = parts.path.split("/")[-4:]
        provider, task_id = segments[2], segments[3]
        query = {key: values[0] for key, values in parse_qs(parts.query).items()}
        if token != "keep":
            query = {"token": token} if token is not None else {}
        event = load_event("callback-success")
        event["path"] = "/" + "/".join(segments)
        event["pathParameters"] = {"provider": provider, "task_id": task_id}
        event["queryStringParameters"] = query or None
        event["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()} or None
        event["body"] = body.decode()
        if base_path is not None:
            through_a_custom_domain(event, base_path)
        return self.call("callback", event)

    def get(self, video_id: str, *, owner: str = OWNER, content: bool = False) -> tuple[int, dict, Any]:
        event = load_event("content" if content else "get")
        event["path"] = f"/v1/videos/{video_id}" + ("/content" if content else "")
        event["pathParameters"] = {"video_id": video_id}
        as_tenant(event, owner)
        return self.call("status", event)

    def list(self, *, owner: str = OWNER, **query: str) -> tuple[int, dict, Any]:
        event = load_event("list")
        event["queryStringParameters"] = query or None
        event["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()} or None
        as_tenant(event, owner)
        return self.call("status", event)


def as_tenant(event: dict[str, Any], tenant_id: str | None) -> dict[str, Any]:
    """The event as API Gateway passes it on after the authorizer let `tenant_id` through (None:
    no authorizer context at all, which API Gateway never lets reach a protected route)."""
    if tenant_id is None:
        event["requestContext"].pop("authorizer", None)
    else:
        authorizer = event["requestContext"].setdefault("authorizer", {})
        authorizer |= {"tenant_id": tenant_id, "principalId": tenant_id}
    return event


def through_a_custom_domain(event: dict, base_path: str = "/relay") -> dict:
    """The event as API Gateway sends it for a custom domain whose base path mapping is `base_path`:
    `path` carries the base path (`resource` does not), and there is no stage in it."""
    event["path"] = base_path + event["path"]
    event["requestContext"]["path"] = event["path"]
    event["requestContext"]["domainName"] = "api.example.com"
    event["headers"]["Host"] = event["multiValueHeaders"]["Host"][0] = "api.example.com"
    return event


@pytest.fixture(scope="session")
def handlers() -> dict[str, Any]:
    names = (
        "submit",
        "callback",
        "archive",
        "status",
        "dispatch",
        "reconcile",
        "task_events",
        "webhook",
        "intake",
    )
    return {name: load_handler(name) for name in names}


@pytest.fixture
def api(handlers: dict[str, Any], internet: FakeInternet, stack: Stack) -> Api:
    return Api(handlers, stack)


@pytest.fixture
def webhook_secret(stack: Stack) -> str:
    """OWNER's webhook signing secret (the tenant the tests submit as)."""
    prefix = str(stack.resolve(stack.template["Outputs"]["TenantSecretPrefix"]["Value"]))
    document = aws("secretsmanager").get_secret_value(SecretId=secret_name(prefix, OWNER))["SecretString"]
    return str(json.loads(document)["signing"][0]["secret"])


@pytest.fixture
def service_webhook_secret(stack: Stack) -> str:
    """The service-wide secret: webhooks of owners that are no tenant (SQS intake) are signed with it."""
    return "whsec_" + secret_value(stack, "WebhookSigningSecret")


@pytest.fixture
def s3(stack: Stack) -> Any:
    return aws("s3")


VALID = {
    "prompt": "A paper boat drifting down a rainy street",
    "callback_url": f"https://{CLIENT_HOST}/hooks",
}


def submitted(api: Api, internet: FakeInternet, **fields: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Submit a valid request; returns the video object and the provider call it made."""
    status, _, video = api.submit({**VALID, **fields})
    assert status == 202, video
    return video, internet.last_call()


def sqs_event(stack: Stack, logical_id: str, *, max_messages: int = 10) -> dict[str, Any]:
    """Receive what is visible on a queue and shape it as the SQS event Lambda would deliver."""
    client = aws("sqs")
    received = client.receive_message(
        QueueUrl=stack.refs[logical_id],
        MaxNumberOfMessages=max_messages,
        AttributeNames=["All"],
        MessageAttributeNames=["All"],
    ).get("Messages", [])
    arn = stack.attributes[(logical_id, "Arn")]
    return {"Records": [lambda_sqs_record(message, arn) for message in received]}


def run_queue(stack: Stack, logical_id: str, handler: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """One poll of a queue into its function, as Lambda's event source mapping does it: the
    messages the function does not report as failed are deleted; the others stay (hidden for
    their visibility timeout, or for the delay the function set). Returns the event and answer."""
    event = sqs_event(stack, logical_id)
    if not event["Records"]:
        return event, {"batchItemFailures": []}
    answer = handler.lambda_handler(event, LambdaContext())
    delete_done(aws("sqs"), stack.refs[logical_id], event["Records"], answer)
    return event, answer


@dataclass
class Downstream:
    """What follows a terminal transition, run the way Lambda would run it, in process: the table's
    stream (through the template's filter) into TaskEventsFunction, the webhook queue into
    WebhookFunction, and a rule on the bus copying every event to a queue the test reads."""

    stack: Stack
    handlers: dict[str, Any]
    reader: Any
    filters: list[Any]
    tap_url: str
    stream_batches: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)

    def pump_stream(self) -> dict[str, Any]:
        records = [record for record in self.reader.read() if matches_any(self.filters, record)]
        if not records:
            return {"batchItemFailures": []}
        event = {"Records": records}
        self.stream_batches.append(event)
        return self.handlers["task_events"].lambda_handler(event, LambdaContext())

    def pump_webhooks(self, *, rounds: int = 5) -> list[dict[str, Any]]:
        answers = []
        for _ in range(rounds):
            event, answer = run_queue(self.stack, "WebhookQueue", self.handlers["webhook"])
            if not event["Records"]:
                break
            answers.append(answer)
        return answers

    def pump(self) -> None:
        """Stream, then webhooks: what a client would see shortly after a task finishes."""
        answer = self.pump_stream()
        assert answer == {"batchItemFailures": []}, answer
        self.pump_webhooks()

    def bus_events(self) -> list[dict[str, Any]]:
        """Every event published on the bus so far (the tap queue is drained into `events`)."""
        client = aws("sqs")
        while True:
            messages = client.receive_message(QueueUrl=self.tap_url, MaxNumberOfMessages=10).get(
                "Messages", []
            )
            if not messages:
                return self.events
            for message in messages:
                self.events.append(json.loads(message["Body"]))
                client.delete_message(QueueUrl=self.tap_url, ReceiptHandle=message["ReceiptHandle"])


def stream_filters(stack: Stack, function_id: str = "TaskEventsFunction") -> list[Any]:
    events = stack.function_events(function_id)
    source = next(event for event in events.values() if event["Type"] == "DynamoDB")
    return filter_patterns(source["Properties"].get("FilterCriteria"))


@pytest.fixture
def downstream(stack: Stack, handlers: dict[str, Any], internet: FakeInternet) -> Downstream:
    sqs = aws("sqs")
    tap_url = sqs.create_queue(QueueName="test-event-tap")["QueueUrl"]
    tap_arn = sqs.get_queue_attributes(QueueUrl=tap_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events = aws("events")
    bus = stack.refs["EventBus"]
    events.put_rule(Name="tap", EventBusName=bus, EventPattern=json.dumps({"source": ["sora-relay"]}))
    events.put_targets(Rule="tap", EventBusName=bus, Targets=[{"Id": "tap", "Arn": tap_arn}])
    reader = StreamReader(
        aws("dynamodbstreams"),
        stack.attributes[("TasksTable", "StreamArn")],
    )
    return Downstream(stack, handlers, reader, stream_filters(stack), tap_url)


# -- tenants, made as the operator command (scripts/tenants.py) makes them ---------------------------


_test_clients: dict[tuple[Any, ...], Any] = {}


def aws(service: str) -> Any:
    """A boto3 client the tests' helpers share, made once per service, endpoint and boto3 session
    (the shared session is the same for every test; test_memory's moto server is another endpoint):
    making one costs about 10 ms of CPU, and the helpers asked for 1,300 of them per run. A client
    holds nothing of a test's (tests patch its methods with monkeypatch, which puts them back)."""
    key = (service, os.environ.get("AWS_ENDPOINT_URL"), boto3.DEFAULT_SESSION)
    if key not in _test_clients:
        _test_clients[key] = boto3.client(service, region_name="us-east-1")
    return _test_clients[key]


@pytest.fixture
def usage_plan(stack: Stack) -> str:
    """The usage plan SAM makes for the API (RestApiUsagePlan), in moto's API Gateway."""
    plan = aws("apigateway").create_usage_plan(name="test-usage-plan")["id"]
    stack.refs["RestApiUsagePlan"] = plan
    return str(plan)


@pytest.fixture
def secret_prefix(stack: Stack) -> str:
    return str(stack.resolve(stack.template["Outputs"]["TenantSecretPrefix"]["Value"]))


@pytest.fixture
def tenant_admin(stack: Stack, usage_plan: str, secret_prefix: str) -> TenantAdmin:
    return TenantAdmin(
        TenantStore(aws("dynamodb"), stack.refs["TenantsTable"]),
        TenantSecrets(aws("secretsmanager"), secret_prefix),
        UsagePlanKeys(aws("apigateway"), usage_plan),
        model_ids=[entry.id for entry in catalogue.default().models],
    )
