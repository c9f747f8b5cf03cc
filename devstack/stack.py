"""The whole local stack in one object: moto's server, the provider simulator, the gateway (dev-only).

    with LocalStack() as stack:
        print(stack.api_url, stack.api_key)

`start()` starts moto's server as a child process, the AceDataCloud simulator in a thread,
provisions template.yaml's tables, bucket, queues and secrets into moto, serves the API on the
local gateway, whose function workers talk to moto (AWS_ENDPOINT_URL) and to the simulator, and
polls the template's SQS event sources into their functions. `stop()`
stops everything it started, by process id. Nothing leaves 127.0.0.1 and no real AWS credential
is read: every process gets fake credentials and no AWS config file.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import json
import os
import secrets
import socket
import string
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import boto3
from boto3.dynamodb.types import TypeDeserializer

from devstack.gateway import InvocationFailed, LocalApiGateway
from devstack.processes import stop_process
from devstack.simulator import ProviderSimulator, SimulatorConfig
from devstack.template import REGION, ROOT, Stack, provision, secret_value

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
from moto.server import main
main(sys.argv[1:])
"""


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


class SqsEventSource:
    """Lambda's SQS event source mapping, locally: polls a moto queue and invokes the function.

    Like the real one: batches of up to BatchSize, at most MaximumConcurrency invocations at
    once, every message of a successful invocation deleted except those the function lists in
    `batchItemFailures` (with ReportBatchItemFailures), and nothing deleted when it fails, so
    those messages come back after their visibility timeout (or the one the function set), and
    the queue's redrive policy moves them to the dead-letter queue in the end.
    """

    def __init__(
        self,
        *,
        function_id: str,
        queue_url: str,
        queue_arn: str,
        invoke: Callable[[dict[str, Any]], Any],
        client: Any,
        batch_size: int = 10,
        concurrency: int = 2,
        report_failures: bool = False,
        idle_poll_s: float = 0.1,
    ) -> None:
        self.function_id = function_id
        self.queue_url = queue_url
        self.queue_arn = queue_arn
        self._invoke = invoke
        self._client = client
        self._batch_size = max(1, min(batch_size, 10))  # one ReceiveMessage returns at most 10
        self._slots = threading.BoundedSemaphore(max(1, concurrency))
        self._report_failures = report_failures
        self._idle_poll_s = idle_poll_s
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._running: set[threading.Thread] = set()
        self._lock = threading.Lock()

    def start(self) -> SqsEventSource:
        self._thread = threading.Thread(target=self._poll, name=f"sqs-{self.function_id}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop polling and wait (bounded) for the invocations in flight."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)
        with self._lock:
            running = list(self._running)
        for thread in running:
            thread.join(timeout=timeout_s)

    def _poll(self) -> None:
        while not self._stopping.is_set():
            if not self._slots.acquire(timeout=self._idle_poll_s):
                continue
            try:
                messages = self._client.receive_message(
                    QueueUrl=self.queue_url,
                    MaxNumberOfMessages=self._batch_size,
                    AttributeNames=["All"],
                    MessageAttributeNames=["All"],
                ).get("Messages", [])
            except Exception as error:  # moto going away at shutdown, or a hiccup: poll again
                self._slots.release()
                if not self._stopping.is_set():
                    print(f"[sqs] {self.function_id}: receive failed: {error}", file=sys.stderr)
                self._stopping.wait(1.0)
                continue
            if not messages:
                self._slots.release()
                self._stopping.wait(self._idle_poll_s)
                continue
            worker = threading.Thread(target=self._deliver, args=(messages,), daemon=True)
            with self._lock:
                self._running.add(worker)
            worker.start()

    def _deliver(self, messages: list[dict[str, Any]]) -> None:
        try:
            failed = self._failed_ids(messages)
            done = [message for message in messages if message["MessageId"] not in failed]
            if done:
                self._client.delete_message_batch(
                    QueueUrl=self.queue_url,
                    Entries=[
                        {"Id": str(number), "ReceiptHandle": message["ReceiptHandle"]}
                        for number, message in enumerate(done)
                    ],
                )
        except Exception as error:  # a failed delete only means a redelivery, as on AWS
            print(f"[sqs] {self.function_id}: delete failed: {error}", file=sys.stderr)
        finally:
            with self._lock:
                self._running.discard(threading.current_thread())
            self._slots.release()

    def _failed_ids(self, messages: list[dict[str, Any]]) -> set[str]:
        """The ids to leave on the queue: all of them if the invocation failed."""
        ids = {message["MessageId"] for message in messages}
        try:
            result = self._invoke({"Records": [self._record(message) for message in messages]})
        except InvocationFailed:
            return ids
        if not self._report_failures or not isinstance(result, dict):
            return set()
        reported = {
            str(item.get("itemIdentifier"))
            for item in result.get("batchItemFailures") or []
            if isinstance(item, dict)
        }
        # An identifier that is not in the batch makes Lambda treat the whole batch as failed.
        return reported if reported <= ids else ids

    def _record(self, message: dict[str, Any]) -> dict[str, Any]:
        """One record of Lambda's SQS event."""
        attributes = {
            name: {
                "stringValue": value.get("StringValue"),
                "binaryValue": value.get("BinaryValue"),
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": value.get("DataType"),
            }
            for name, value in (message.get("MessageAttributes") or {}).items()
        }
        return {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": message.get("Attributes", {}),
            "messageAttributes": attributes,
            "md5OfBody": message.get("MD5OfBody"),
            "eventSource": "aws:sqs",
            "eventSourceARN": self.queue_arn,
            "awsRegion": REGION,
        }


def sqs_event_sources(
    stack: Stack, gateway: LocalApiGateway, client: Any, *, default_concurrency: int
) -> list[SqsEventSource]:
    """One SqsEventSource per enabled `Type: SQS` event of the template's running functions."""
    sources = []
    for function_id, function in stack.functions().items():
        if function_id not in gateway.pools:
            continue
        for event in function.get("Properties", {}).get("Events", {}).values():
            props = event.get("Properties", {})
            if event.get("Type") != "SQS" or props.get("Enabled", True) is False:
                continue
            queue_arn = str(stack.resolve(props["Queue"]))
            queue_url = client.get_queue_url(QueueName=queue_arn.rsplit(":", 1)[-1])["QueueUrl"]
            scaling = props.get("ScalingConfig", {})
            concurrency = scaling.get("MaximumConcurrency")
            sources.append(
                SqsEventSource(
                    function_id=function_id,
                    queue_url=queue_url,
                    queue_arn=queue_arn,
                    invoke=lambda record, target=function_id: gateway.invoke(target, record),
                    client=client,
                    batch_size=int(stack.resolve(props.get("BatchSize", 10))),
                    concurrency=int(stack.resolve(concurrency)) if concurrency else default_concurrency,
                    report_failures="ReportBatchItemFailures" in props.get("FunctionResponseTypes", []),
                )
            )
    return sources


class LocalStack:
    """moto + simulator + gateway on 127.0.0.1; a context manager.

    Ports: 4566 (moto), 8701 (simulator) and 3000 (gateway) by default; a default that is taken
    is replaced by a free port, and 0 always means "any free port".
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
        self.event_sources: list[SqsEventSource] = []
        self.stack: Stack | None = None
        self.webhook_secret = ""
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

    def aws_client(self, service: str) -> Any:
        """A boto3 client for moto (fake credentials, explicit endpoint: no global state)."""
        session = boto3.session.Session(
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # noqa: S106
            region_name=REGION,
        )
        return session.client(service, endpoint_url=self.moto_url)

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

    # -- lifecycle --

    def start(self) -> LocalStack:
        if self._started:
            raise RuntimeError("the stack is already started")
        self._started = True
        atexit.register(self.stop)  # belt and braces for an interpreter exit without stop()
        try:
            if self.log_dir is not None:
                self.log_dir.mkdir(parents=True, exist_ok=True)
            self._start_moto()
            self._start_simulator()
            self._provision()
            self._start_gateway()
            self._start_event_sources()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_moto(self) -> None:
        env = {name: value for name, value in os.environ.items() if not name.startswith(("AWS_", "MOTO_"))}
        env.update(FAKE_AWS)
        env["DEVSTACK_PARENT_PID"] = str(os.getpid())
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
            if self._wait_listening(port, self._moto, deadline):
                self.moto_port = port
                self.moto_url = f"http://{HOST}:{port}"
                return
            stop_process(self._moto)
            self._moto = None
            preferred = 0
        raise RuntimeError("moto's server did not start (see .devstack/logs/moto.log)")

    @staticmethod
    def _wait_listening(port: int, process: subprocess.Popen[bytes], deadline: float) -> bool:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return False
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                probe.settimeout(0.5)
                if probe.connect_ex((HOST, port)) == 0:
                    return True
            time.sleep(0.05)
        return False

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
                    "ProviderApiKey": self.provider_api_key,
                    "ProviderBaseUrl": self.simulator.url,
                },
            )
            self.webhook_secret = "whsec_" + secret_value(self.stack, "WebhookSigningSecret")

    def _start_gateway(self) -> None:
        assert self.stack is not None
        environment = {
            **FAKE_AWS,
            "AWS_ENDPOINT_URL": self.moto_url,
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
                )
                break
            except OSError as error:
                last_error = error
        if self.gateway is None:
            raise RuntimeError(f"the gateway could not start: {last_error}")
        self.gateway.start()
        if not self.gateway.wait_ready(self.startup_timeout):
            raise RuntimeError("the function workers did not start (see the function logs)")

    def _start_event_sources(self) -> None:
        assert self.stack is not None and self.gateway is not None
        self.event_sources = sqs_event_sources(
            self.stack, self.gateway, self.aws_client("sqs"), default_concurrency=self.workers
        )
        for source in self.event_sources:
            source.start()

    def _log_access(self, record: dict[str, Any]) -> None:
        line = json.dumps(record)
        with self._access_lock:
            if self._access_log is not None:
                self._access_log.write(line + "\n")
                self._access_log.flush()
            elif self.console_logs:
                print(f"[api] {line}", file=sys.stderr, flush=True)

    def stop(self) -> None:
        """Stop what start() started: queue pollers and simulator timers first (what they have in
        flight still reaches the gateway), then the gateway and its workers, then moto. Safe to
        call twice."""
        atexit.unregister(self.stop)
        for source in self.event_sources:
            source.stop()
        self.event_sources = []
        if self.simulator is not None:
            self.simulator.stop()
            self.simulator = None
        if self.gateway is not None:
            self.gateway.stop()
            self.gateway = None
        if self._moto is not None:
            stop_process(self._moto)
            self._moto = None
        for log in (self._moto_log, self._access_log):
            if log is not None:
                log.close()
        self._moto_log = self._access_log = None

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
