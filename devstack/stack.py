"""The whole local stack in one object (dev-only), on 127.0.0.1 with fake credentials only:
moto's server, the provider simulator, template.yaml provisioned, two tenants, the local gateway
with its function workers and the template's other event sources (`with DevStack() as stack:`)."""

from __future__ import annotations

import atexit
import functools
import json
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from devstack.chaos import Chaos
from devstack.event_sources import EventSource, build_event_sources
from devstack.event_sources.sqs import read_queue, tap_event_buses
from devstack.fake_aws import FAKE_AWS, HOST, aws_environment, free_port, moto_client, start_moto
from devstack.fake_aws import moto_server as moto_server  # tests and bench import it here
from devstack.fake_aws import wait_listening as wait_listening
from devstack.functions import ACQUIRE_TIMEOUT_S
from devstack.gateway import LocalApiGateway
from devstack.processes import stop_process
from devstack.simulator import ProviderSimulator, SimulatorConfig
from devstack.template import ROOT, Stack, provision, secret_value, token
from sora_relay.adapters.dynamodb_items import from_attrs
from sora_relay.adapters.tenant_secrets import TenantSecrets
from sora_relay.adapters.tenants import TenantStore
from sora_relay.adapters.usage_plan_keys import UsagePlanKeys
from sora_relay.domain import catalogue
from sora_relay.usecases.manage_tenants import CreatedTenant, TenantAdmin

DEFAULT_LOG_DIR = ROOT / ".devstack" / "logs"
STARTUP_TIMEOUT_S = 60.0
PREFIX = "sora-relay-local"  # the physical names' prefix and AWS::StackName
EVENT_TAP_PATTERN = {"source": ["sora-relay"]}  # every event the service publishes
OUTPUTS_FILE = ROOT / ".devstack" / "outputs.json"  # how `make tenants` reaches a `make run` stack
USAGE_KEYS_MAX_AGE_S = 1.0  # how stale the gateway's copy of the usage plan's keys may be


def _port(preferred: int) -> int:
    return free_port(preferred) if preferred else 0  # 0: the server picks any free port


@dataclass(kw_only=True, eq=False)
class DevStack:
    """moto + simulator + gateway + event sources on 127.0.0.1; a context manager.

    Ports: a default that is taken is replaced by a free port; 0 means any free port.
    `schedule_interval_s`: every schedule at that interval (None: the template's rate()).
    `workers` instances per function; a request finding all busy waits `acquire_timeout_s`.
    `aws_faults` (or `aws_fault_rate` > 0): the workers run devstack.chaos's hook with `chaos`'s
    rules; a rate fails that share of their DynamoDB and S3 calls (half 5xx, half throttling).
    `moto_profile`: moto's server runs under cProfile; `api_calls` counts aws_client()'s calls.
    `queue_visibility_timeout_s`: every queue's at most this (how soon a crashed message returns).
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
    schedule_interval_s: float | None = None
    aws_faults: bool = False
    aws_fault_rate: float = 0.0
    moto_profile: Path | None = None
    acquire_timeout_s: float = ACQUIRE_TIMEOUT_S
    queue_visibility_timeout_s: int | None = None

    def __post_init__(self) -> None:
        self.function_env, self.parameters = dict(self.function_env), dict(self.parameters)
        self.aws_faults = self.aws_faults or self.aws_fault_rate > 0
        self.api_calls: Counter[tuple[str, str, str]] = Counter()  # (label, service, operation)
        # The two tenants' first keys (sr_...), their key ids and the tenants (set by start()).
        self.api_key = self.api_key_id = self.tenant_id = ""
        self.other_api_key = self.other_api_key_id = self.other_tenant_id = ""
        self.tenants: list[CreatedTenant] = []
        self._usage_keys: dict[str, str] = {}  # value -> id of the usage plan's enabled keys
        self._usage_keys_read = 0.0
        self._usage_keys_lock, self._tap_lock = threading.Lock(), threading.Lock()
        self._clients: dict[tuple[str, str, str], Any] = {}  # aws_client()'s, by service, label, endpoint
        self._clients_lock = threading.Lock()
        # One key per provider family, each in its own secret, as a deployment with all three has.
        self.provider_api_key, self.fal_key, self.replicate_token = token(48), token(40), "r8_" + token(37)
        self._moto: subprocess.Popen[bytes] | None = None
        self._moto_log: IO[bytes] | None = None
        self.moto_url = self.webhook_secret = self.event_tap_url = ""
        self.chaos: Chaos | None = None
        self.simulator: ProviderSimulator | None = None
        self.gateway: LocalApiGateway | None = None
        self.event_sources: list[EventSource] = []
        self.stack: Stack | None = None
        self._bus_events: list[dict[str, Any]] = []
        self._started = False

    # -- what callers use --

    @property
    def api_url(self) -> str:
        if self.gateway is None:
            raise RuntimeError("the stack is not started")
        return self.gateway.url

    @property
    def moto_pid(self) -> int | None:
        return self._moto.pid if self._moto is not None else None

    def aws_client(self, service: str, *, label: str = "local") -> Any:
        """A boto3 client for moto, its calls counted in `api_calls` under `label`: one per service
        and label, made once (botocore clients are thread-safe; making one parses the service's
        model, which was half the CPU of an e2e worker when every look at a task made its own)."""
        key = (service, label, self.moto_url)
        with self._clients_lock:
            if (client := self._clients.get(key)) is None:
                client = self._clients[key] = moto_client(service, self.moto_url)
                client.meta.events.register("before-call", functools.partial(self._count_call, label))
        return client

    def _count_call(self, label: str, model: Any, **_: Any) -> None:
        self.api_calls[(label, model.service_model.service_name, model.name)] += 1

    def _provisioned(self) -> Stack:
        if self.stack is None:
            raise RuntimeError("the stack is not started")
        return self.stack

    def ref(self, logical_id: str) -> str:
        """What `!Ref` of one of the template's resources is here (a queue's URL, a table's name)."""
        return self._provisioned().refs[logical_id]

    queue_url = ref  # e.g. queue_url("TaskEventsDeadLetterQueue")

    def task_item(self, task_id: str) -> dict[str, Any] | None:
        """The task's DynamoDB item as plain Python values (what the service stored)."""
        answer = self.aws_client("dynamodb").get_item(
            TableName=self.ref("TasksTable"), Key={"task_id": {"S": task_id}}, ConsistentRead=True
        )
        return from_attrs(answer["Item"]) if "Item" in answer else None

    def bus_events(self) -> list[dict[str, Any]]:
        """Every event the stack's bus got so far, oldest first, as EventBridge delivers them to an
        SQS target ({"id", "detail-type", "source", "detail", ...})."""
        if not self.event_tap_url:
            raise RuntimeError("the stack is not started")
        with self._tap_lock:
            messages = read_queue(self.aws_client("sqs"), self.event_tap_url, delete=True)
            self._bus_events += [json.loads(m["Body"]) for m in messages]
            return list(self._bus_events)

    def queue_messages(self, logical_id: str) -> list[dict[str, Any]]:
        """The messages on one of the template's queues, left there (each look counts as a receive:
        peek at dead-letter queues, not at queues a redrive policy watches)."""
        return read_queue(self.aws_client("sqs"), self.ref(logical_id), delete=False)

    def event_source(self, function_id: str, kind: str | None = None) -> EventSource:
        """The running event source of a function ("sqs", "dynamodb" or "schedule")."""
        for source in self.event_sources:
            if source.function_id == function_id and kind in (None, source.kind):
                return source
        raise LookupError(f"no {kind or ''} event source runs {function_id}")

    def tenant_admin(self) -> TenantAdmin:
        """The operator's commands on this stack's tenants (what scripts/tenants.py runs)."""
        client = functools.partial(self.aws_client, label="operator")
        return TenantAdmin(
            TenantStore(client("dynamodb"), self.ref("TenantsTable")),
            TenantSecrets(client("secretsmanager"), self.outputs()["TenantSecretPrefix"]),
            UsagePlanKeys(client("apigateway"), self.ref("RestApiUsagePlan")),
            model_ids=[entry.id for entry in catalogue.default().models],
        )

    def outputs(self) -> dict[str, str]:
        """The template's Outputs whose values resolve locally."""
        stack, found = self._provisioned(), {}
        for name, output in stack.template.get("Outputs", {}).items():
            try:
                found[name] = str(stack.resolve(output["Value"]))
            except (KeyError, ValueError):
                continue
        return found

    def usage_key_id(self, value: str) -> str | None:
        """The id of the usage plan's enabled API key with this value (the gateway's key check),
        from a copy of moto's keys at most USAGE_KEYS_MAX_AGE_S old (an unknown value reads again)."""
        with self._usage_keys_lock:
            fresh = time.monotonic() - self._usage_keys_read < USAGE_KEYS_MAX_AGE_S
            if fresh and value in self._usage_keys:
                return self._usage_keys[value]
            client = self.aws_client("apigateway", label="gateway")
            on_plan = client.get_usage_plan_keys(usagePlanId=self.ref("RestApiUsagePlan")).get("items", [])
            ids = {key["id"] for key in on_plan}
            keys = client.get_api_keys(includeValues=True).get("items", [])
            self._usage_keys = {k["value"]: k["id"] for k in keys if k.get("enabled") and k["id"] in ids}
            self._usage_keys_read = time.monotonic()
            return self._usage_keys.get(value)

    # -- lifecycle --

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
            self.simulator = sim = ProviderSimulator(
                SimulatorConfig(
                    api_token=self.provider_api_key,
                    fal_key=self.fal_key,
                    replicate_token=self.replicate_token,
                    callback_delay_s=self.callback_delay,
                    late_delay_s=self.late_callback_delay,
                    host=HOST,
                    port=_port(self.simulator_port),
                )
            ).start()
            providers = {  # every provider family enabled, each pointed at its simulator dialect
                "AceDataApiKey": self.provider_api_key,
                "AceDataBaseUrl": sim.base_url("acedata"),
                "FalApiKey": self.fal_key,
                "FalUserId": sim.config.fal_user_id,
                "FalQueueBaseUrl": sim.base_url("fal"),
                "FalJwksUrl": sim.base_url("fal") + "/.well-known/jwks.json",
                "ReplicateApiToken": self.replicate_token,
                "ReplicateBaseUrl": sim.base_url("replicate"),
            }
            with aws_environment(self.moto_url):
                self.stack = stack = provision(PREFIX, {**providers, **self.parameters})
                self.webhook_secret = "whsec_" + secret_value(stack, "WebhookSigningSecret")
            self._start_tenants()
            sqs = self.aws_client("sqs")
            for name, resource in stack.of_type("AWS::SQS::Queue").items():
                timeout = int(stack.resolve(resource.get("Properties", {}).get("VisibilityTimeout", 30)))
                if self.queue_visibility_timeout_s is not None and timeout > self.queue_visibility_timeout_s:
                    attributes = {"VisibilityTimeout": str(self.queue_visibility_timeout_s)}
                    sqs.set_queue_attributes(QueueUrl=stack.refs[name], Attributes=attributes)
            buses = [stack.refs[name] for name in stack.of_type("AWS::Events::EventBus")]
            self.event_tap_url = tap_event_buses(
                sqs, self.aws_client("events"), buses, f"{PREFIX}-event-tap", EVENT_TAP_PATTERN
            )
            self._start_gateway()
            self.event_sources = build_event_sources(
                stack,
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

    def _start_tenants(self) -> None:
        """The usage plan SAM makes for the API (throttle and quota from the parameters), two
        tenants with a key each, and the outputs file for `make tenants`."""
        stack = self._provisioned()
        values = stack.parameters
        plan = self.aws_client("apigateway", label="operator").create_usage_plan(
            name=f"{PREFIX}-usage-plan",
            throttle={
                "rateLimit": float(values["ThrottleRateLimit"]),
                "burstLimit": int(values["ThrottleBurstLimit"]),
            },
            quota={"limit": int(values["QuotaLimit"]), "period": values["QuotaPeriod"]},
        )
        stack.refs["RestApiUsagePlan"] = plan["id"]
        admin = self.tenant_admin()
        self.tenants = [admin.create("local tenant A"), admin.create("local tenant B")]
        first, second = self.tenants
        self.api_key, self.api_key_id, self.tenant_id = (
            first.key.api_key,
            first.key.record.key_id,
            first.tenant.tenant_id,
        )
        self.other_api_key, self.other_api_key_id = second.key.api_key, second.key.record.key_id
        self.other_tenant_id = second.tenant.tenant_id
        if self.log_dir == DEFAULT_LOG_DIR:  # `make run` and `make demo` only; tests log elsewhere
            OUTPUTS_FILE.parent.mkdir(parents=True, exist_ok=True)
            OUTPUTS_FILE.write_text(
                json.dumps({"Endpoint": self.moto_url, "Outputs": self.outputs()}, indent=2)
            )

    def _start_chaos(self) -> None:
        self.chaos = Chaos().start()
        half = self.aws_fault_rate / 2
        for seed, service in ((11, "dynamodb"), (13, "s3")) if half > 0 else ():  # seeded: the same each run
            self.chaos.add_fault(service, rate=half, kind="server_error", seed=seed)
            self.chaos.add_fault(service, rate=half, kind="throttle", seed=seed + 1)

    def _start_gateway(self) -> None:
        stack = self._provisioned()
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
            stack,
            self.usage_key_id,
            port=_port(self.gateway_port),
            environment=environment,
            pool_size=self.workers,
            log_dir=None if self.console_logs else self.log_dir,  # None: the console
            acquire_timeout_s=self.acquire_timeout_s,
        )
        if not self.parameters.get("PublicBaseUrl"):  # the functions' PUBLIC_BASE_URL: the bound port's URL
            stack.parameters["PublicBaseUrl"] = self.gateway.url
        self.gateway.start()  # each function's first event starts its first instance

    def stop(self) -> None:
        """Stop what start() started: event sources and simulator first (what they have in flight
        still reaches the gateway), then the gateway and its workers, then moto. Idempotent."""
        atexit.unregister(self.stop)
        for source in self.event_sources:
            source.request_stop()  # all at once, then wait for each
        for source in self.event_sources:
            source.stop()
        for part in (self.simulator, self.gateway, self.chaos):
            if part is not None:
                part.stop()
        self.event_sources, self.simulator, self.gateway, self.chaos = [], None, None, None
        if self._moto is not None:
            stop_process(self._moto)
        if self._moto_log is not None:
            self._moto_log.close()
        self._moto = self._moto_log = None
        self._clients.clear()

    def __enter__(self) -> DevStack:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
