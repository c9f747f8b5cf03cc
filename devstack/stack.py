"""The whole local stack in one object: moto's server, the provider simulator, the gateway (dev-only).

    with DevStack() as stack:
        print(stack.api_url, stack.api_key)

`start()` starts moto's server as a child process, the AceDataCloud simulator in a thread,
provisions template.yaml's tables, bucket, queues, event bus and secrets into moto, serves the API
on the local gateway, whose function workers talk to moto (AWS_ENDPOINT_URL) and to the
simulator, and runs the template's other event sources (devstack.event_sources): SQS queues and
the DynamoDB stream polled into their functions, schedules on timers. `stop()` stops everything
it started, by process id. Nothing leaves 127.0.0.1 and no real AWS credential is read: every
process gets fake credentials and no AWS config file.

What the functions publish on the event bus is visible to tests: an "event tap" rule on each bus
sends every `source: sora-relay` event to the SQS queue `{prefix}-event-tap`, and `bus_events()`
reads it. `queue_messages()` looks into any of the template's queues (a dead-letter queue, say).
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import functools
import json
import os
import secrets
import socket
import string
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import boto3
from boto3.dynamodb.types import TypeDeserializer

from devstack.chaos import Chaos
from devstack.event_sources import (
    EventSource,
    SqsEventSource,
    build_event_sources,
    sqs_event_sources,
)
from devstack.functions import ACQUIRE_TIMEOUT_S
from devstack.gateway import LocalApiGateway
from devstack.processes import stop_process
from devstack.simulator import ProviderSimulator, SimulatorConfig
from devstack.template import REGION, ROOT, Stack, provision, secret_value

__all__ = ["FAKE_AWS", "DevStack", "SqsEventSource", "aws_environment", "free_port", "sqs_event_sources"]

# What the event tap lets through: every event the service publishes.
EVENT_TAP_PATTERN = {"source": ["sora-relay"]}

DEFAULT_LOG_DIR = ROOT / ".devstack" / "logs"
HOST = "127.0.0.1"

# What every process of the stack sees of AWS: moto, fake credentials, no profile or config file.
FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",  # moto accepts any credentials
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
}

# moto's server, plus a watchdog: if this process dies without stopping it (SIGKILL, a crash),
# the server notices it has a new parent and exits instead of holding the port.
_MOTO_BOOT = """
import os, sys, threading, time
parent = int(os.environ["DEVSTACK_PARENT_PID"])
def watch():
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)
threading.Thread(target=watch, daemon=True).start()
if os.environ.get("DEVSTACK_MOTO_PROFILE"):
    exec(os.environ["DEVSTACK_MOTO_PROFILE_BOOT"])
from moto.server import main
main(sys.argv[1:])
"""

# With DevStack(moto_profile=path): every request moto's server handles runs under cProfile (one
# profiler per connection thread, timing that thread's CPU), and when it exits (SIGTERM: stop) the
# merged profile is written to `path`.
_MOTO_PROFILE_BOOT = """
import atexit, cProfile, pstats
from werkzeug.serving import WSGIRequestHandler
_profilers, _lock, _state = [], threading.Lock(), {"active": 0, "stopping": False}
_local = threading.local()
_run_wsgi = WSGIRequestHandler.run_wsgi
def _profiled_run_wsgi(self):
    with _lock:
        if _state["stopping"]:
            return _run_wsgi(self)
        profiler = getattr(_local, "profiler", None)
        if profiler is None:
            profiler = _local.profiler = cProfile.Profile(time.thread_time)
            _profilers.append(profiler)
        _state["active"] += 1
    profiler.enable()
    try:
        return _run_wsgi(self)
    finally:
        profiler.disable()
        with _lock:
            _state["active"] -= 1
WSGIRequestHandler.run_wsgi = _profiled_run_wsgi
def _dump():
    with _lock:
        _state["stopping"] = True
    deadline = time.monotonic() + 2
    while _state["active"] and time.monotonic() < deadline:
        time.sleep(0.01)
    stats = None
    for profiler in list(_profilers):
        stats = pstats.Stats(profiler) if stats is None else stats.add(profiler)
    if stats is not None:
        stats.dump_stats(os.environ["DEVSTACK_MOTO_PROFILE"])
atexit.register(_dump)  # moto's server exits on SIGTERM (sys.exit in its own handler)
"""


def wait_listening(port: int, process: subprocess.Popen[bytes], deadline: float) -> bool:
    """Whether `process` listens on 127.0.0.1:`port` before `deadline` (False if it exits)."""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.settimeout(0.5)
            if probe.connect_ex((HOST, port)) == 0:
                return True
        time.sleep(0.05)
    return False


def moto_environment(profile: Path | None = None) -> dict[str, str]:
    """The environment moto's server runs in: ours without AWS/MOTO settings, fake credentials,
    our pid (it exits with us), and with `profile`, cProfile over every request it serves."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(("AWS_", "MOTO_"))}
    env.update(FAKE_AWS)
    env["DEVSTACK_PARENT_PID"] = str(os.getpid())
    if profile is not None:
        env["DEVSTACK_MOTO_PROFILE"] = str(profile)
        env["DEVSTACK_MOTO_PROFILE_BOOT"] = _MOTO_PROFILE_BOOT
    return env


@contextlib.contextmanager
def moto_server(timeout_s: float = 30.0, *, profile: Path | None = None) -> Iterator[str]:
    """moto's server alone, in a child process on a free 127.0.0.1 port with fake credentials
    (for tests that need AWS over HTTP without the rest of the stack); yields its URL. With
    `profile`, the server writes its merged profile there when it is stopped."""
    env = moto_environment(profile)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", _MOTO_BOOT, "-H", HOST, "-p", str(port)],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        if not wait_listening(port, server, time.monotonic() + timeout_s):
            raise RuntimeError("moto's server did not start")
        yield f"http://{HOST}:{port}"
    finally:
        stop_process(server)


def free_port(preferred: int = 0, host: str = HOST) -> int:
    """`preferred` if nothing listens there (0: any), else a port the OS picks."""
    for candidate in (preferred, 0) if preferred else (0,):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, candidate))
            except OSError as error:
                if error.errno != errno.EADDRINUSE:
                    raise
                continue
            return int(probe.getsockname()[1])
    raise OSError("no free port")  # pragma: no cover


def _token(length: int) -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))


def _key_id() -> str:
    # Shaped like API Gateway key ids ("a1b2c3d4e5").
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(10))


@contextlib.contextmanager
def aws_environment(endpoint_url: str) -> Iterator[None]:
    """Point this process's boto3 at moto for the duration (provisioning), then restore it."""
    values = {**FAKE_AWS, "AWS_ENDPOINT_URL": endpoint_url}
    saved = {name: os.environ.get(name) for name in [*values, "AWS_PROFILE"]}
    saved_session = boto3.DEFAULT_SESSION
    os.environ.update(values)
    os.environ.pop("AWS_PROFILE", None)
    boto3.DEFAULT_SESSION = None  # a session made before would keep its own credentials
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        boto3.DEFAULT_SESSION = saved_session


class DevStack:
    """moto + simulator + gateway + event sources on 127.0.0.1; a context manager.

    Ports: 4566 (moto), 8701 (simulator) and 3000 (gateway) by default; a default that is taken
    is replaced by a free port, and 0 always means "any free port".

    `schedule_interval_s` runs every Schedule/ScheduleV2 event at that interval instead of its
    rate() (None: the template's; the first tick comes one interval after start).
    `stream_retry_delay_s` is the pause before a DynamoDB stream batch is retried.
    PUBLIC_BASE_URL is the gateway's stage URL (`api_url`) unless `parameters` give PublicBaseUrl.
    `workers` instances per function at most; a request finding all busy waits up to
    `acquire_timeout_s` (and the function's Timeout) for one, then is answered 500.
    """

    def __init__(
        self,
        *,
        moto_port: int = 4566,
        simulator_port: int = 8701,
        gateway_port: int = 3000,
        callback_delay: float = 1.0,
        late_callback_delay: float = 6.0,
        workers: int = 4,
        warm_workers: int = 1,
        log_dir: Path | None = DEFAULT_LOG_DIR,
        console_logs: bool = False,
        function_env: Mapping[str, str] | None = None,
        parameters: Mapping[str, str] | None = None,
        prefix: str = "sora-relay-local",
        startup_timeout: float = 60.0,
        schedule_interval_s: float | None = None,
        stream_retry_delay_s: float = 0.5,
        aws_faults: bool = False,
        aws_fault_rate: float = 0.0,
        aws_fault_seed: int = 11,
        moto_profile: Path | None = None,
        acquire_timeout_s: float = ACQUIRE_TIMEOUT_S,
    ) -> None:
        self.moto_port = moto_port
        self.simulator_port = simulator_port
        self.gateway_port = gateway_port
        self.callback_delay = callback_delay
        self.late_callback_delay = late_callback_delay
        self.workers = workers
        self.warm_workers = warm_workers
        self.log_dir = log_dir
        self.console_logs = console_logs
        self.function_env = dict(function_env or {})  # overrides on top of the template's
        self.parameters = dict(parameters or {})  # template parameter values
        self.prefix = prefix
        self.startup_timeout = startup_timeout
        self.schedule_interval_s = schedule_interval_s
        self.stream_retry_delay_s = stream_retry_delay_s
        # With aws_faults (or a rate above 0) the function workers install devstack.chaos's
        # botocore hook, whose rules are `chaos`: tests add rules to it, and a rate fails that
        # share of their DynamoDB and S3 calls from the start (half server errors, half throttling).
        self.aws_faults = aws_faults or aws_fault_rate > 0
        self.aws_fault_rate = aws_fault_rate
        self.aws_fault_seed = aws_fault_seed
        self.chaos: Chaos | None = None
        # Measuring (bench/throughput.py): moto's server under cProfile, its profile written to
        # this path when the stack stops; and every AWS call this process makes through
        # aws_client(), counted by (label, service, operation).
        self.moto_profile = moto_profile
        self.acquire_timeout_s = acquire_timeout_s
        self.api_calls: Counter[tuple[str, str, str]] = Counter()

        self.api_key = _token(40)
        self.api_key_id = _key_id()
        self.other_api_key = _token(40)
        self.other_api_key_id = _key_id()
        self.provider_api_key = _token(48)

        self._moto: subprocess.Popen[bytes] | None = None
        self._moto_log: IO[bytes] | None = None
        self._access_log: IO[str] | None = None
        self._access_lock = threading.Lock()
        self.moto_url = ""
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
    def api_keys(self) -> dict[str, str]:
        return {self.api_key: self.api_key_id, self.other_api_key: self.other_api_key_id}

    def aws_client(self, service: str, *, label: str = "local") -> Any:
        """A boto3 client for moto (fake credentials, explicit endpoint: no global state). Its
        calls are counted in `api_calls` under `label` ("event-sources" for the stack's pollers)."""
        session = boto3.session.Session(
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # noqa: S106
            region_name=REGION,
        )
        client = session.client(service, endpoint_url=self.moto_url)
        client.meta.events.register("before-call", functools.partial(self._count_call, label))
        return client

    def _count_call(self, label: str, model: Any = None, **_: Any) -> None:
        if model is not None:
            self.api_calls[(label, model.service_model.service_name, model.name)] += 1

    @property
    def moto_pid(self) -> int | None:
        """The process id of moto's server (None when it is not running)."""
        return self._moto.pid if self._moto is not None else None

    def task_item(self, task_id: str) -> dict[str, Any] | None:
        """The task's DynamoDB item as plain Python values (what the service stored)."""
        if self.stack is None:
            raise RuntimeError("the stack is not started")
        answer = self.aws_client("dynamodb").get_item(
            TableName=self.stack.refs["TasksTable"], Key={"task_id": {"S": task_id}}, ConsistentRead=True
        )
        item = answer.get("Item")
        if item is None:
            return None
        deserializer = TypeDeserializer()
        return {name: deserializer.deserialize(value) for name, value in item.items()}

    def bus_events(self, wait_s: float = 0) -> list[dict[str, Any]]:
        """Every event published on the stack's event bus (source sora-relay) so far, oldest
        first, as EventBridge delivers them to an SQS target ({"id", "detail-type", "source",
        "time", "region", "resources", "detail"}). With `wait_s`, waits up to that long for one
        more than there were when called."""
        if not self.event_tap_url:
            raise RuntimeError("the stack is not started")
        client = self.aws_client("sqs")
        deadline = time.monotonic() + wait_s
        with self._tap_lock:
            known = len(self._bus_events)
            while True:
                for message in self._drain(client, self.event_tap_url):
                    self._bus_events.append(json.loads(message["Body"]))
                if len(self._bus_events) > known or time.monotonic() >= deadline:
                    return list(self._bus_events)
                time.sleep(0.05)

    def queue_url(self, logical_id: str) -> str:
        """The URL of one of the template's queues, by logical id (e.g. "TaskEventsDeadLetterQueue")."""
        if self.stack is None:
            raise RuntimeError("the stack is not started")
        return self.stack.refs[logical_id]

    def queue_messages(self, logical_id: str, *, drain: bool = False) -> list[dict[str, Any]]:
        """The messages on one of the template's queues now, as boto3 returns them ("Body",
        "MessageId", "Attributes", ...). A peek leaves them there (each look counts as a receive,
        so peek at dead-letter queues, not at queues a redrive policy watches); `drain` deletes them."""
        client = self.aws_client("sqs")
        url = self.queue_url(logical_id)
        if drain:
            return self._drain(client, url)
        seen: dict[str, dict[str, Any]] = {}
        for _ in range(100):
            messages = client.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0, AttributeNames=["All"]
            ).get("Messages", [])
            fresh = [message for message in messages if message["MessageId"] not in seen]
            if not fresh:
                break
            seen.update((message["MessageId"], message) for message in fresh)
        return list(seen.values())

    @staticmethod
    def _drain(client: Any, url: str) -> list[dict[str, Any]]:
        drained: list[dict[str, Any]] = []
        while True:
            messages = client.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"]
            ).get("Messages", [])
            if not messages:
                return drained
            client.delete_message_batch(
                QueueUrl=url,
                Entries=[{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(messages)],
            )
            drained += messages

    # -- lifecycle --

    def start(self) -> DevStack:
        if self._started:
            raise RuntimeError("the stack is already started")
        self._started = True
        atexit.register(self.stop)  # belt and braces for an interpreter exit without stop()
        try:
            if self.log_dir is not None:
                self.log_dir.mkdir(parents=True, exist_ok=True)
            self._start_moto()
            self._start_chaos()
            self._start_simulator()
            self._provision()
            self._start_gateway()
            self._start_event_sources()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_moto(self) -> None:
        env = moto_environment(self.moto_profile)
        if self.log_dir is not None:
            self._moto_log = (self.log_dir / "moto.log").open("wb")
        deadline = time.monotonic() + self.startup_timeout
        preferred = self.moto_port
        for _ in range(3):  # another process may take the probed port before moto binds it
            port = free_port(preferred)
            self._moto = subprocess.Popen(
                [sys.executable, "-c", _MOTO_BOOT, "-H", HOST, "-p", str(port)],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=self._moto_log or subprocess.DEVNULL,
                stderr=subprocess.STDOUT if self._moto_log else subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C reaches us; we stop it in order
            )
            if wait_listening(port, self._moto, deadline):
                self.moto_port = port
                self.moto_url = f"http://{HOST}:{port}"
                return
            stop_process(self._moto)
            self._moto = None
            preferred = 0
        raise RuntimeError("moto's server did not start (see .devstack/logs/moto.log)")

    def _start_simulator(self) -> None:
        last_error: OSError | None = None
        for port in (self.simulator_port, 0) if self.simulator_port else (0,):
            simulator = ProviderSimulator(
                SimulatorConfig(
                    api_token=self.provider_api_key,
                    callback_delay_s=self.callback_delay,
                    late_delay_s=self.late_callback_delay,
                    host=HOST,
                    port=port,
                )
            )
            try:
                self.simulator = simulator.start()
                return
            except OSError as error:  # the default port is taken: any free one will do
                last_error = error
                simulator.stop()
        raise RuntimeError(f"the simulator could not start: {last_error}")

    def _provision(self) -> None:
        assert self.simulator is not None
        with aws_environment(self.moto_url):
            self.stack = provision(
                self.prefix,
                {
                    **self.parameters,
                    # The template's per-provider parameters (the catalogue's AceData models).
                    "AceDataApiKey": self.provider_api_key,
                    "AceDataBaseUrl": self.simulator.url,
                },
            )
            self.webhook_secret = "whsec_" + secret_value(self.stack, "WebhookSigningSecret")
        self._start_event_tap()

    def _start_event_tap(self) -> None:
        """A rule on each of the template's event buses sending the service's events to one queue."""
        assert self.stack is not None
        sqs = self.aws_client("sqs")
        events = self.aws_client("events")
        self.event_tap_url = sqs.create_queue(QueueName=f"{self.prefix}-event-tap")["QueueUrl"]
        tap_arn = sqs.get_queue_attributes(QueueUrl=self.event_tap_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        for name, resource in self.stack.template["Resources"].items():
            if resource["Type"] != "AWS::Events::EventBus":
                continue
            bus = self.stack.refs[name]
            rule = f"{self.prefix}-event-tap"
            events.put_rule(Name=rule, EventBusName=bus, EventPattern=json.dumps(EVENT_TAP_PATTERN))
            events.put_targets(Rule=rule, EventBusName=bus, Targets=[{"Id": "event-tap", "Arn": tap_arn}])

    def _start_chaos(self) -> None:
        if not self.aws_faults:
            return
        self.chaos = Chaos().start()
        half = self.aws_fault_rate / 2
        for number, service in enumerate(("dynamodb", "s3")):
            if half > 0:
                seed = self.aws_fault_seed + 2 * number
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
        if self.log_dir is not None and not self.console_logs:
            self._access_log = (self.log_dir / "api-access.log").open("w")
        last_error: OSError | None = None
        for port in (self.gateway_port, 0) if self.gateway_port else (0,):
            try:
                self.gateway = LocalApiGateway(
                    self.stack,
                    self.api_keys,
                    host=HOST,
                    port=port,
                    environment=environment,
                    pool_size=self.workers,
                    warm=self.warm_workers,
                    log_dir=self.log_dir,
                    console_logs=self.console_logs,
                    access_log=self._log_access,
                    acquire_timeout_s=self.acquire_timeout_s,
                )
                break
            except OSError as error:
                last_error = error
        if self.gateway is None:
            raise RuntimeError(f"the gateway could not start: {last_error}")
        if not self.parameters.get("PublicBaseUrl"):
            # The port is bound now, so the template's PublicBaseUrl can be the local API's URL
            # (IntakeFunction's callback links need it; the gateway gives it to every function).
            self.stack.parameters["PublicBaseUrl"] = self.gateway.url
        self.gateway.start()
        if not self.gateway.wait_ready(self.startup_timeout):
            raise RuntimeError("the function workers did not start (see the function logs)")

    def _start_event_sources(self) -> None:
        assert self.stack is not None and self.gateway is not None
        self.event_sources = build_event_sources(
            self.stack,
            self.gateway,
            lambda service: self.aws_client(service, label="event-sources"),
            default_concurrency=self.workers,
            schedule_interval_s=self.schedule_interval_s,
            stream_retry_delay_s=self.stream_retry_delay_s,
        )
        for source in self.event_sources:
            source.start()

    def event_source(self, function_id: str, kind: str | None = None) -> EventSource:
        """The running event source of a function ("sqs", "dynamodb" or "schedule")."""
        for source in self.event_sources:
            if source.function_id == function_id and kind in (None, source.kind):
                return source
        raise LookupError(f"no {kind or ''} event source runs {function_id}")

    def _log_access(self, record: dict[str, Any]) -> None:
        line = json.dumps(record)
        with self._access_lock:
            if self._access_log is not None:
                self._access_log.write(line + "\n")
                self._access_log.flush()
            elif self.console_logs:
                print(f"[api] {line}", file=sys.stderr, flush=True)

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
        if self.simulator is not None:
            self.simulator.stop()
            self.simulator = None
        if self.gateway is not None:
            self.gateway.stop()
            self.gateway = None
        if self.chaos is not None:
            self.chaos.stop()
            self.chaos = None
        if self._moto is not None:
            stop_process(self._moto)
            self._moto = None
        for log in (self._moto_log, self._access_log):
            if log is not None:
                log.close()
        self._moto_log = self._access_log = None

    def __enter__(self) -> DevStack:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
