"""The whole local stack in one object (dev-only): moto, the provider simulator, the gateway.

    with DevStack() as stack:
        print(stack.api_url, stack.api_key)

Two tenants are made on start, through the same TenantAdmin the operator command uses
(scripts/tenants.py): `api_key` and `other_api_key` are their first keys (`tenant_id`,
`other_tenant_id` their ids, the owners of their tasks), on a usage plan in moto's API Gateway.
`tenant_admin()` makes more, revokes keys or disables tenants while the stack runs.

`start()` starts moto's server as a child process (devstack.fake_aws), the AceDataCloud simulator
in a thread, provisions template.yaml's resources into moto, serves the API on the local gateway,
whose function workers talk to moto (AWS_ENDPOINT_URL) and the simulator, and runs the template's
other event sources (devstack.event_sources). `stop()` stops everything it started, by process
id. Nothing leaves 127.0.0.1 and no real AWS credential is read: every process gets fake
credentials and no AWS config file. What the functions publish on the event bus reaches tests
through an "event tap" (a rule on each bus sending `source: sora-relay` events to the queue
`{prefix}-event-tap`, read by `bus_events()`).
"""

from __future__ import annotations

import atexit
import functools
import json
import secrets
import string
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from boto3.dynamodb.types import TypeDeserializer

from devstack.chaos import Chaos
from devstack.event_sources import EventSource, build_event_sources
from devstack.event_sources.sqs import drain_queue, peek_queue, tap_event_buses
from devstack.fake_aws import FAKE_AWS, HOST, aws_environment, free_port, moto_client, start_moto

# Tests and benchmarks reach moto's server through here too.
from devstack.fake_aws import moto_server as moto_server
from devstack.fake_aws import wait_listening as wait_listening
from devstack.functions import ACQUIRE_TIMEOUT_S
from devstack.gateway import LocalApiGateway
from devstack.processes import stop_process
from devstack.simulator import ProviderSimulator, SimulatorConfig
from devstack.template import ROOT, Stack, provision, secret_value
from sora_relay.adapters.tenant_secrets import TenantSecrets
from sora_relay.adapters.tenants import TenantStore
from sora_relay.adapters.usage_plan_keys import UsagePlanKeys
from sora_relay.domain import catalogue
from sora_relay.usecases.manage_tenants import CreatedTenant, TenantAdmin

DEFAULT_LOG_DIR = ROOT / ".devstack" / "logs"
STARTUP_TIMEOUT_S = 60.0
# What the event tap lets through: every event the service publishes.
EVENT_TAP_PATTERN = {"source": ["sora-relay"]}
# What `make tenants` reads to reach a running `make run` stack (scripts/tenants.py --outputs-file).
OUTPUTS_FILE = ROOT / ".devstack" / "outputs.json"
USAGE_KEYS_MAX_AGE_S = 1.0  # how stale the gateway's copy of the usage plan's keys may be


def plain_item(item: Mapping[str, Any]) -> dict[str, Any]:
    """A DynamoDB item (attribute values, as boto3's client returns it) as plain Python values."""
    deserializer = TypeDeserializer()
    return {name: deserializer.deserialize(value) for name, value in item.items()}


def _token(length: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


@dataclass(kw_only=True, eq=False)
class DevStack:
    """moto + simulator + gateway + event sources on 127.0.0.1; a context manager.

    Ports: 4566 (moto), 8701 (simulator) and 3000 (gateway) by default; a default that is taken
    is replaced by a free port, and 0 always means "any free port".

    `schedule_interval_s` runs every Schedule/ScheduleV2 event at that interval instead of its
    rate() (None: the template's; the first tick comes one interval after start).
    PUBLIC_BASE_URL is the gateway's stage URL (`api_url`) unless `parameters` give PublicBaseUrl.
    `workers` instances per function at most; a request finding all busy waits up to
    `acquire_timeout_s` (and the function's Timeout) for one, then is answered 500.
    With `aws_faults` (or an `aws_fault_rate` above 0) the function workers install devstack.chaos's
    botocore hook, whose rules are `chaos`: tests add rules to it, and a rate fails that share of
    their DynamoDB and S3 calls from the start (half server errors, half throttling).
    Measuring (bench/throughput.py): `moto_profile` runs moto's server under cProfile, its
    profile written there when the stack stops; `api_calls` counts every AWS call this process
    makes through aws_client(), by (label, service, operation).
    """

    moto_port: int = 4566
    simulator_port: int = 8701
    gateway_port: int = 3000
    callback_delay: float = 1.0
    late_callback_delay: float = 6.0
    workers: int = 4
    log_dir: Path | None = DEFAULT_LOG_DIR
    console_logs: bool = False
    function_env: dict[str, str] = field(default_factory=dict)  # overrides on top of the template's
    parameters: dict[str, str] = field(default_factory=dict)  # template parameter values
    prefix: str = "sora-relay-local"
    schedule_interval_s: float | None = None
    aws_faults: bool = False
    aws_fault_rate: float = 0.0
    moto_profile: Path | None = None
    acquire_timeout_s: float = ACQUIRE_TIMEOUT_S
    # Every queue's VisibilityTimeout at most this (None: the template's, up to 960 s): how soon
    # the message of a crashed invocation comes back (devstack.chaos crash rules).
    queue_visibility_timeout_s: int | None = None

    def __post_init__(self) -> None:
        self.function_env, self.parameters = dict(self.function_env), dict(self.parameters)
        self.aws_faults = self.aws_faults or self.aws_fault_rate > 0
        self.api_calls: Counter[tuple[str, str, str]] = Counter()
        # The two tenants' first keys (sr_...), their key ids and the tenants (set by start()).
        self.api_key = self.api_key_id = self.tenant_id = ""
        self.other_api_key = self.other_api_key_id = self.other_tenant_id = ""
        self.tenants: list[CreatedTenant] = []
        self._usage_keys: dict[str, str] = {}  # value -> id of the usage plan's enabled keys
        self._usage_keys_read = 0.0
        self._usage_keys_lock = threading.Lock()
        # One key per provider family, each in its own secret, as a deployment with all three has.
        self.provider_api_key = _token(48)  # AceDataCloud
        self.fal_key = _token(40)
        self.replicate_token = "r8_" + _token(37)

        self._moto: subprocess.Popen[bytes] | None = None
        self._moto_log: IO[bytes] | None = None
        self.moto_url = ""
        self.chaos: Chaos | None = None
        self.simulator: ProviderSimulator | None = None
        self.gateway: LocalApiGateway | None = None
        self.event_sources: list[EventSource] = []
        self.stack: Stack | None = None
        self.webhook_secret = ""
        self.event_tap_url = ""
        self._bus_events: list[dict[str, Any]] = []
        self._tap_lock = threading.Lock()
        self._started = False

    # -- what callers use --

    @property
    def api_url(self) -> str:
        if self.gateway is None:
            raise RuntimeError("the stack is not started")
        return self.gateway.url

    @property
    def moto_pid(self) -> int | None:
        """The process id of moto's server (None when it is not running)."""
        return self._moto.pid if self._moto is not None else None

    def aws_client(self, service: str, *, label: str = "local") -> Any:
        """A boto3 client for moto (fake credentials, explicit endpoint: no global state). Its
        calls are counted in `api_calls` under `label` ("event-sources" for the stack's pollers)."""
        client = moto_client(service, self.moto_url)
        client.meta.events.register("before-call", functools.partial(self._count_call, label))
        return client

    def _count_call(self, label: str, model: Any, **_: Any) -> None:
        self.api_calls[(label, model.service_model.service_name, model.name)] += 1

    def _provisioned(self) -> Stack:
        if self.stack is None:
            raise RuntimeError("the stack is not started")
        return self.stack

    def task_item(self, task_id: str) -> dict[str, Any] | None:
        """The task's DynamoDB item as plain Python values (what the service stored)."""
        answer = self.aws_client("dynamodb").get_item(
            TableName=self._provisioned().refs["TasksTable"],
            Key={"task_id": {"S": task_id}},
            ConsistentRead=True,
        )
        return plain_item(answer["Item"]) if "Item" in answer else None

    def bus_events(self) -> list[dict[str, Any]]:
        """Every event published on the stack's event bus (source sora-relay) so far, oldest
        first, as EventBridge delivers them to an SQS target ({"id", "detail-type", "source",
        "time", "region", "resources", "detail"}). moto delivers while put_events runs: an event
        published before this call is in the answer."""
        if not self.event_tap_url:
            raise RuntimeError("the stack is not started")
        with self._tap_lock:
            self._bus_events += [
                json.loads(m["Body"]) for m in drain_queue(self.aws_client("sqs"), self.event_tap_url)
            ]
            return list(self._bus_events)

    def queue_url(self, logical_id: str) -> str:
        """The URL of one of the template's queues, by logical id (e.g. "TaskEventsDeadLetterQueue")."""
        return self._provisioned().refs[logical_id]

    def queue_messages(self, logical_id: str) -> list[dict[str, Any]]:
        """The messages on one of the template's queues now, as boto3 returns them, left there
        (each look counts as a receive: peek at dead-letter queues, not at queues a redrive
        policy watches)."""
        return peek_queue(self.aws_client("sqs"), self.queue_url(logical_id))

    def event_source(self, function_id: str, kind: str | None = None) -> EventSource:
        """The running event source of a function ("sqs", "dynamodb" or "schedule")."""
        for source in self.event_sources:
            if source.function_id == function_id and kind in (None, source.kind):
                return source
        raise LookupError(f"no {kind or ''} event source runs {function_id}")

    # -- lifecycle --

    def provider_parameters(self) -> dict[str, str]:
        """The template's provider parameters: every family enabled, each pointed at its simulator
        dialect (its routes under the family's prefix, shared/providers/*.md)."""
        sim = self.simulator
        assert sim is not None
        return {
            "AceDataApiKey": self.provider_api_key,
            "AceDataBaseUrl": sim.base_url("acedata"),
            "FalApiKey": self.fal_key,
            "FalUserId": sim.config.fal_user_id,
            "FalQueueBaseUrl": sim.base_url("fal"),
            "FalJwksUrl": sim.base_url("fal") + "/.well-known/jwks.json",
            "ReplicateApiToken": self.replicate_token,
            "ReplicateBaseUrl": sim.base_url("replicate"),
        }

    def start(self) -> DevStack:
        if self._started:
            raise RuntimeError("the stack is already started")
        self._started = True
        atexit.register(self.stop)  # belt and braces for an interpreter exit without stop()
        try:
            if self.log_dir is not None:
                self.log_dir.mkdir(parents=True, exist_ok=True)
                self._moto_log = (self.log_dir / "moto.log").open("wb")
            self._moto, self.moto_url = start_moto(
                self.moto_port, log=self._moto_log, profile=self.moto_profile, timeout_s=STARTUP_TIMEOUT_S
            )
            self.moto_port = int(self.moto_url.rsplit(":", 1)[1])
            if self.aws_faults:
                self._start_chaos()
            config = SimulatorConfig(
                api_token=self.provider_api_key,
                fal_key=self.fal_key,
                replicate_token=self.replicate_token,
                callback_delay_s=self.callback_delay,
                late_delay_s=self.late_callback_delay,
                host=HOST,
                port=free_port(self.simulator_port) if self.simulator_port else 0,
            )
            self.simulator = ProviderSimulator(config).start()
            with aws_environment(self.moto_url):
                self.stack = provision(self.prefix, {**self.provider_parameters(), **self.parameters})
                self.webhook_secret = "whsec_" + secret_value(self.stack, "WebhookSigningSecret")
            self._start_tenants()
            buses = [
                self.stack.refs[n]
                for n, r in self.stack.template["Resources"].items()
                if r["Type"] == "AWS::Events::EventBus"
            ]
            sqs, events = self.aws_client("sqs"), self.aws_client("events")
            if self.queue_visibility_timeout_s is not None:
                self._shorten_visibility(sqs, self.queue_visibility_timeout_s)
            self.event_tap_url = tap_event_buses(
                sqs, events, buses, f"{self.prefix}-event-tap", EVENT_TAP_PATTERN
            )
            self._start_gateway()
            self.event_sources = build_event_sources(
                self.stack,
                self.gateway,  # type: ignore[arg-type]
                lambda service: self.aws_client(service, label="event-sources"),
                default_concurrency=self.workers,
                schedule_interval_s=self.schedule_interval_s,
            )
            for source in self.event_sources:
                source.start()
        except BaseException:
            self.stop()
            raise
        return self

    # -- tenants --

    def tenant_admin(self) -> TenantAdmin:
        """The operator's commands on this stack's tenants (what scripts/tenants.py runs)."""
        stack = self._provisioned()
        return TenantAdmin(
            TenantStore(self.aws_client("dynamodb", label="operator"), stack.refs["TenantsTable"]),
            TenantSecrets(
                self.aws_client("secretsmanager", label="operator"), self.outputs()["TenantSecretPrefix"]
            ),
            UsagePlanKeys(self.aws_client("apigateway", label="operator"), stack.refs["RestApiUsagePlan"]),
            model_ids=[entry.id for entry in catalogue.default().models],
        )

    def outputs(self) -> dict[str, str]:
        """The template's Outputs that mean something locally (those whose values resolve here)."""
        stack = self._provisioned()
        found = {}
        for name, output in stack.template.get("Outputs", {}).items():
            try:
                found[name] = str(stack.resolve(output["Value"]))
            except (KeyError, ValueError):
                continue
        return found

    def _start_tenants(self) -> None:
        """The usage plan SAM makes for the API (its throttle and quota from the parameters), then
        two tenants with a key each; the outputs file for `make tenants`."""
        stack = self._provisioned()
        parameters = stack.parameters
        plan = self.aws_client("apigateway", label="operator").create_usage_plan(
            name=f"{self.prefix}-usage-plan",
            throttle={
                "rateLimit": float(parameters["ThrottleRateLimit"]),
                "burstLimit": int(parameters["ThrottleBurstLimit"]),
            },
            quota={"limit": int(parameters["QuotaLimit"]), "period": parameters["QuotaPeriod"]},
        )
        stack.refs["RestApiUsagePlan"] = plan["id"]
        admin = self.tenant_admin()
        self.tenants = [admin.create("local tenant A"), admin.create("local tenant B")]
        first, second = self.tenants
        self.api_key, self.api_key_id = first.key.api_key, first.key.record.key_id
        self.tenant_id = first.tenant.tenant_id
        self.other_api_key, self.other_api_key_id = second.key.api_key, second.key.record.key_id
        self.other_tenant_id = second.tenant.tenant_id
        if self.log_dir == DEFAULT_LOG_DIR:  # `make run` and `make demo` only; tests log elsewhere
            OUTPUTS_FILE.parent.mkdir(parents=True, exist_ok=True)
            OUTPUTS_FILE.write_text(
                json.dumps({"Endpoint": self.moto_url, "Outputs": self.outputs()}, indent=2)
            )

    def usage_key_id(self, value: str) -> str | None:
        """The id of the usage plan's enabled API key with this value (the gateway's key check),
        from a copy of moto's keys at most USAGE_KEYS_MAX_AGE_S old (an unknown value reads again)."""
        with self._usage_keys_lock:
            fresh = time.monotonic() - self._usage_keys_read < USAGE_KEYS_MAX_AGE_S
            if fresh and value in self._usage_keys:
                return self._usage_keys[value]
            client = self.aws_client("apigateway", label="gateway")
            plan = self._provisioned().refs["RestApiUsagePlan"]
            on_plan = {key["id"] for key in client.get_usage_plan_keys(usagePlanId=plan).get("items", [])}
            keys = client.get_api_keys(includeValues=True).get("items", [])
            self._usage_keys = {k["value"]: k["id"] for k in keys if k.get("enabled") and k["id"] in on_plan}
            self._usage_keys_read = time.monotonic()
            return self._usage_keys.get(value)

    def _shorten_visibility(self, sqs: Any, limit: int) -> None:
        stack = self._provisioned()
        for name, resource in stack.template["Resources"].items():
            if resource["Type"] != "AWS::SQS::Queue":
                continue
            visibility = int(stack.resolve(resource.get("Properties", {}).get("VisibilityTimeout", 30)))
            if visibility > limit:
                sqs.set_queue_attributes(
                    QueueUrl=stack.refs[name], Attributes={"VisibilityTimeout": str(limit)}
                )

    def _start_chaos(self) -> None:
        self.chaos = Chaos().start()
        half = self.aws_fault_rate / 2
        for number, service in enumerate(("dynamodb", "s3")):
            seed = 11 + 2 * number  # fixed: a run fails the same share of calls every time
            if half > 0:
                self.chaos.add_fault(service, rate=half, kind="server_error", seed=seed)
                self.chaos.add_fault(service, rate=half, kind="throttle", seed=seed + 1)

    def _start_gateway(self) -> None:
        assert self.stack is not None
        environment = {
            **FAKE_AWS,
            "AWS_ENDPOINT_URL": self.moto_url,
            **(self.chaos.environment if self.chaos is not None else {}),
            "ALLOW_LOOPBACK_URLS": "true",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_METRICS_NAMESPACE": "SoraRelayLocal",
            **self.function_env,
        }
        self.gateway = LocalApiGateway(
            self.stack,
            self.usage_key_id,
            port=free_port(self.gateway_port) if self.gateway_port else 0,
            environment=environment,
            pool_size=self.workers,
            log_dir=None if self.console_logs else self.log_dir,  # None: the console
            acquire_timeout_s=self.acquire_timeout_s,
        )
        if not self.parameters.get("PublicBaseUrl"):
            # The port is bound now, so the template's PublicBaseUrl can be the local API's URL
            # (the functions' PUBLIC_BASE_URL, which IntakeFunction's callback links need).
            self.stack.parameters["PublicBaseUrl"] = self.gateway.url
        if not self.gateway.start().wait_ready(STARTUP_TIMEOUT_S):
            raise RuntimeError("the function workers did not start (see the function logs)")

    def stop(self) -> None:
        """Stop what start() started: event sources (queue and stream pollers, schedules) and
        simulator timers first (what they have in flight still reaches the gateway), then the
        gateway and its workers, then moto. Safe to call twice."""
        atexit.unregister(self.stop)
        for source in self.event_sources:
            source.request_stop()  # all at once, then wait for each
        for source in self.event_sources:
            source.stop()
        self.event_sources = []
        for part in (self.simulator, self.gateway, self.chaos):
            if part is not None:
                part.stop()
        self.simulator = self.gateway = self.chaos = None
        if self._moto is not None:
            stop_process(self._moto)
            self._moto = None
        if self._moto_log is not None:
            self._moto_log.close()
            self._moto_log = None

    def __enter__(self) -> DevStack:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
