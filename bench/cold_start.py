"""Benchmark 1, cold start: each function's first event in a fresh interpreter, against a baseline.

    .venv/bin/python -m bench.cold_start [--repeats N] [--functions SubmitFunction,...]

For each function, a fresh python3.12 imports its handler module (app.py) and serves its first
event, against moto's server and the provider simulator over real HTTP. The baseline is a fresh
python3.12 that imports boto3 and httpx and makes the same AWS and HTTP calls, with no framework,
in the same run. The figure is their ratio, per function (target: at most 1.5 for those a caller
waits on; for the SnapStart functions, on the restored figure of step 5).

The layout is the one Lambda runs: `make build`'s `.aws-sam/build-x86_64/<LogicalId>` (the
function's code) + `CommonLayer/python` (the layer) + `.aws-sam/build-x86_64-runtime` (boto3 and
snapshot_restore_py, as the runtime provides them), on PYTHONPATH of `python3.12 -S` (no
site-packages: nothing else can answer an import), with the function's environment from events/env.json, its resource names and
endpoints pointed at this run's moto, simulator and receiver. Both children use that same
interpreter and path, with fake AWS credentials and AWS_ENDPOINT_URL at moto. Bytecode is cached
(PYTHONPYCACHEPREFIX, a temporary directory; the warm-up round fills it) for both alike, so the
figure is import and run time, not compile time.

How one round runs, per function (handler and baseline alternate, so drift hits both alike):
1. moto is reset and the template provisioned again (devstack.template.provision); the state the
   event needs is seeded: e.g. an `in_progress` task whose provider task exists at the simulator
   and has finished (for the callback and the reconciler: the MP4 is real, rendered by
   devstack.mp4 and served by the simulator), a `queued` task (dispatch), a `completed` task
   (status, webhook), a tenant and its API key (the authorizer). Each event does real work: submit and intake get a fresh Idempotency-Key,
   the callback has a valid token and copies the MP4 into S3, the webhook is POSTed to a local
   receiver, the authorizer looks its key up in TenantsTable and answers an Allow policy, and so
   on.
2. The handler child: `import app`, then `app.lambda_handler(event)`. The time is from spawning
   the interpreter to the end of the first event (the child writes a byte on a pipe; its stdout,
   where Powertools logs and metrics go, is /dev/null). The child records every AWS and HTTP call
   (bench/replay.py: botocore patched at the lowest level, and httpx once the handler imports it,
   so a handler that never imports httpx does not carry its import) and how many boto3 and httpx clients it created.
3. moto is reset and the same state seeded again; the baseline child imports boto3 and httpx and
   replays that exact list: the same boto3 clients, created on first use, the same operations
   and parameters, the same httpx requests. Values the backend makes anew (an UploadId, the
   provider's task id) are carried over from the replay's own answers. Every outcome that differs
   from the recording (success vs an error code) is counted and reported ("replay mismatches").
   A third child, "libraries alone", imports every module the handler had imported by the end of
   its first event, sora_relay's and app's left out (the same libraries, in the same order), then
   replays the same calls. handler / libraries-alone is our code's own cost; libraries-alone /
   baseline is what the libraries (pydantic, Powertools) cost before any of our code runs.
4. After the first event each child is told to go on with a second event (seeded anew while it
   waits): a warm call, timed inside the child. Its peak RSS is read after each event.

5. For a function template.yaml deploys with SnapStart (the three API functions), two more
   children: SnapStart's way, the init runs (a handler's with AWS_LAMBDA_INITIALIZATION_TYPE=
   snap-start, which imports every adapter and builds the deferred models) and a fork of it plays
   the restored instance, whose first event is timed from the fork; its baseline is the baseline
   child restored the same way (boto3 and httpx imported, a fork, the same calls), and a third
   child restores a snapshot of the same libraries (the modules the handler's init imported, ours
   left out) and replays them: the cost of the work on the caller's path alone (recorded). Before
   each fork the before-snapshot hooks run, as the runtime runs them: the handler's (registered
   through snapshot_restore_py) collect and freeze its heap, and the other two children's heaps
   are frozen the same way. In AWS a restored instance never runs the init: it is run when a
   version is published (docs.aws.amazon.com/lambda/latest/dg/snapstart-monitoring.html: the
   REPORT of a restored instance has a Restore Duration and no Init Duration). The restore itself
   is not modelled; it is paid by both alike, so leaving it out only raises the ratio. The target
   of these functions is on this restored figure; their fresh-interpreter figure is recorded.

A warm-up round is run first and discarded. Figures: per function, the cold ratio
handler/baseline (median, min, max over the rounds). Also saved, for bench/cost.py, under
`functions.<LogicalId>`: absolute medians in ms (cold handler, cold baseline, warm handler, warm
baseline), the peak RSS in MB after the first and second events, and the calls made.
Deferring imports into the first call gains nothing here: the clock stops after the first event.
"""

from __future__ import annotations

import argparse
import base64
import functools
import hashlib
import json
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bench import harness

ROOT = harness.ROOT
BUILD = ROOT / ".aws-sam" / "build-x86_64"
RUNTIME = ROOT / ".aws-sam" / "build-x86_64-runtime"
EVENTS = ROOT / "events"
BENCH = "cold_start"
BENCH_MODEL = "seedance-1.5-pro"  # a live catalogue model (AceData), the seed's 4 s at 720x1280
LIMIT = 1.5
# The target holds for the functions a caller waits on (the API); the queue, stream and schedule
# consumers are reported without one: no caller waits on their cold start.
TARGETED = frozenset({"SubmitFunction", "CallbackFunction", "StatusFunction", "AuthorizerFunction"})
PROVIDER_TOKEN = "bench-provider-token"
OWNER = "ten_SampleTenantId000001"  # the sample events' tenant (requestContext.authorizer)
CHILD_TIMEOUT_S = 120.0

# LogicalId -> the sample event it starts from.
FUNCTIONS = {
    "SubmitFunction": "submit",
    "CallbackFunction": "callback-success",
    "ArchiveFunction": "archive",
    "StatusFunction": "get",
    "DispatchFunction": "dispatch",
    "TaskEventsFunction": "task-completed-stream",
    "WebhookFunction": "webhook",
    "IntakeFunction": "intake",
    "ReconcileFunction": "reconcile",
    "AuthorizerFunction": "authorizer",
}
# What each function's first event must have done (its recorded calls), so no run is a no-op.
EXPECTED_CALLS = {
    "SubmitFunction": ["http POST", "aws UpdateItem"],
    "CallbackFunction": ["aws UpdateItem", "aws SendMessage"],
    "ArchiveFunction": ["aws GetItem", "aws UpdateItem", "http GET", "aws CompleteMultipartUpload"],
    "StatusFunction": ["aws GetItem", "presign get_object"],
    "DispatchFunction": ["aws GetItem", "http POST", "aws UpdateItem"],
    "TaskEventsFunction": ["aws SendMessage", "aws PutEvents"],
    "WebhookFunction": ["aws GetItem", "http POST", "aws UpdateItem"],
    "IntakeFunction": ["http POST", "aws PutEvents"],
    "ReconcileFunction": ["aws Query", "http POST", "aws UpdateItem", "aws SendMessage"],
    "AuthorizerFunction": ["aws GetItem"],  # the key by its sha256, then its tenant
}

CHILD_MAIN = r"""

def _child_main():
    import os, sys, time

    mode, workdir, marker = sys.argv[1], sys.argv[2], int(sys.argv[3])

    class Context:
        function_name = "sora-relay-bench"
        memory_limit_in_mb = 512
        invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:sora-relay-bench"
        aws_request_id = "00000000-0000-4000-8000-000000000000"

        def get_remaining_time_in_millis(self):
            return 30_000

    def rss_mb():
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec, from the forking parent.
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def read(name):
        with open(os.path.join(workdir, name)) as handle:
            return json.load(handle)

    result = {}
    present = set(sys.modules)  # the child's own imports, before the timed part
    profile = os.environ.get("BENCH_PROFILE")  # a diagnostic: cProfile of the first event
    if profile:
        import cProfile
        profiler = cProfile.Profile()
        profiler.enable()
    began = time.perf_counter()
    if mode == "handler":
        recorder = Recorder().install()
        import app
        imported = time.perf_counter()
    else:
        script = read("script.json")
        if mode == "libraries":
            result["unimportable"] = import_all(script["modules"])
        replayer = Replayer(script["clients"], script["http_clients"])
        imported = time.perf_counter()
    restored = imported
    if os.environ.get("BENCH_RESTORE"):
        # SnapStart: what ran so far is the init in the snapshot; a fork of it is a restored
        # instance, timed from the fork (its CPU counters start there too). Before the snapshot
        # the runtime runs the hooks the init registered, the last registered first: the
        # handler's freeze its heap (sora_relay/runtime/snapshot.py); the other two children's
        # heaps are frozen the same way, so no child's first event walks its init's objects.
        if mode == "handler":
            from snapshot_restore_py import get_before_snapshot
            for hook, args, kwargs in reversed(get_before_snapshot()):
                hook(*args, **kwargs)
        else:
            import gc
            gc.collect()
            gc.freeze()
        pid = os.fork()
        if pid:
            os._exit(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
        if mode == "handler":  # what the snapshot holds imported: its baseline imports the same
            result["init_modules"] = imported_since(present)
        restored = time.perf_counter()
    if mode == "handler":
        answer = app.lambda_handler(read("event1.json"), Context())
        first = recorder.mark()
        result["modules"] = imported_since(present)  # the libraries child imports these
    else:
        replayer.run(script["calls1"])
    result["import_s"] = imported - began
    result["first_event_s"] = time.perf_counter() - restored
    if profile:
        profiler.disable()
        profiler.dump_stats(f"{profile}.{mode}")
    result["rss1_mb"] = rss_mb()
    result["cpu_s"] = time.process_time()  # this process's CPU since it started, interpreter included
    os.write(marker, b"1")  # the end of the first event: the parent stops its clock

    sys.stdin.readline()  # the parent seeds the second event's state, then says go
    started = time.perf_counter()
    if mode == "handler":
        answer2 = app.lambda_handler(read("event2.json"), Context())
    else:
        replayer.run(script["calls2"])
    result["warm_s"] = time.perf_counter() - started
    result["rss2_mb"] = rss_mb()
    if mode == "handler":
        recorder.uninstall()
        whole = recorder.script()
        result["answers"] = [answer, answer2]
        result["script"] = {
            "clients": whole["clients"],
            "http_clients": whole["http_clients"],
            "calls1": whole["calls"][:first],
            "calls2": whole["calls"][first:],
        }
    else:
        result["mismatches"] = replayer.mismatches
    with open(os.path.join(workdir, "result.json"), "w") as handle:
        json.dump(result, handle, default=str)
    os.write(marker, b"2")


_child_main()
"""


def child_source() -> str:
    return (Path(__file__).parent / "replay.py").read_text() + CHILD_MAIN


# --- the backends ---------------------------------------------------------------------------------


class _Receiver(BaseHTTPRequestHandler):
    """Answers 204 to anything: client webhooks and stray provider callbacks."""

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        self.send_response(204)
        self.send_header("content-length", "0")
        self.end_headers()

    do_POST = do_GET = do_PUT = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def receiver() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Backends:
    """moto's server (reset and provisioned again before each run), the simulator, a receiver."""

    endpoint: str
    simulator: Any
    receiver_url: str
    stack: Any = None
    callback_key: str = ""
    # Makes this run's bench API keys (seed_tenant): fixed within the run, so the baseline's
    # replayed GetItems find the items the handler's found; no key is written in this file.
    key_salt: str = field(default_factory=lambda: secrets.token_hex(16))
    _finished_task: str | None = None
    _clients: dict[str, Any] = field(default_factory=dict)

    def client(self, service: str) -> Any:
        import boto3

        if service not in self._clients:
            self._clients[service] = boto3.client(service, region_name="us-east-1")
        return self._clients[service]

    def reset(self) -> None:
        import httpx

        from devstack.template import provision, secret_value

        httpx.post(f"{self.endpoint}/moto-api/reset", timeout=30).raise_for_status()
        self.stack = provision("bench", {"AceDataApiKey": PROVIDER_TOKEN})
        self.callback_key = secret_value(self.stack, "CallbackTokenSecret")
        # The seeded tasks' owner is a tenant, whose webhooks are signed with its own secret (a
        # tenant without one gets no webhook signed with the shared secret: the message comes back).
        from sora_relay.adapters.tenant_secrets import TenantSecrets

        prefix = self.function_env("WebhookFunction")["TENANT_SECRET_PREFIX"]
        TenantSecrets(self.client("secretsmanager"), prefix).create(OWNER)

    def function_env(self, logical_id: str) -> dict[str, str]:
        """events/env.json's variables, with this run's resource names, endpoints and secrets."""
        env = dict(json.loads((EVENTS / "env.json").read_text())[logical_id])
        provisioned = self.stack.function_environment(logical_id)
        secret_names = {
            arn: f"bench/{name}"
            for name, arn in self.stack.refs.items()
            if isinstance(arn, str) and arn.startswith("arn:aws:secretsmanager:")
        }
        for name in env:
            if name in provisioned:
                env[name] = secret_names.get(provisioned[name], provisioned[name])
        env.update(
            ACEDATA_BASE_URL=self.simulator.url,
            PUBLIC_BASE_URL=self.receiver_url,
            ALLOW_LOOPBACK_URLS="true",
        )
        return env

    def seed_tenant(self, *parts: object) -> tuple[str, str]:
        """An active tenant and one API key of it in TenantsTable, written by the operator's
        TenantStore (adapters/tenants.py, what TenantAdmin stores with), the same for the same
        `parts` within a run; returns (tenant_id, api_key). Not TenantAdmin.create itself: it
        draws random ids and a random key, and makes a usage-plan key and a secret the authorizer
        never reads."""
        from sora_relay.adapters.tenants import TenantStore
        from sora_relay.domain.tenant import (
            API_KEY_PREFIX,
            KEY_ID_PREFIX,
            KEY_LISTING_PREFIX_LENGTH,
            TENANT_ACTIVE,
            TENANT_ID_PREFIX,
            ApiKey,
            Tenant,
            hash_key,
        )

        def token(label: str, size: int) -> str:
            seed = ":".join(map(str, (self.key_salt, label, *parts))).encode()
            return base64.urlsafe_b64encode(hashlib.sha256(seed).digest()[:size]).decode()

        # The same lengths as domain/tenant.py's new_tenant_id, new_key_id and new_api_key.
        tenant_id, key_id = TENANT_ID_PREFIX + token("tenant", 15), KEY_ID_PREFIX + token("key", 9)
        api_key = API_KEY_PREFIX + token("api-key", 30)
        now = int(time.time())
        store = TenantStore(self.client("dynamodb"), self.stack.refs["TenantsTable"])
        store.create_tenant(
            Tenant(
                tenant_id=tenant_id,
                name="bench",
                status=TENANT_ACTIVE,
                usage_identifier=token("usage", 30),
                usage_key_id=token("usage-key", 6),
                webhook_secret_id=f"bench/tenants/{tenant_id}/webhook",
                created_at=now,
                monthly_budget_microusd=50_000_000,
                models=(BENCH_MODEL,),
            )
        )
        store.add_key(
            ApiKey(
                key_hash=hash_key(api_key),
                tenant_id=tenant_id,
                key_id=key_id,
                prefix=api_key[:KEY_LISTING_PREFIX_LENGTH],
                created_at=now,
            )
        )
        return tenant_id, api_key

    def finished_provider_task(self) -> str:
        """A task the simulator has finished, its MP4 rendered (one for the whole run)."""
        if self._finished_task is None:
            import httpx

            from sora_relay.adapters.providers.acedata import AceDataVideo
            from sora_relay.domain import catalogue
            from sora_relay.domain.provider import GenerationRequest

            # A task the simulator knows, made the way the relay makes one (AceData's seedance service).
            provider = AceDataVideo(
                httpx.Client(), base_url=self.simulator.url, api_key=lambda: PROVIDER_TOKEN, timeout=10
            )
            task_id = provider.submit(
                GenerationRequest(
                    prompt="A paper boat drifting down a rainy street",
                    model=catalogue.default().require(BENCH_MODEL),
                    seconds=4,
                    size="720x1280",
                ),
                callback_url=f"{self.receiver_url}/provider-callback",
            )
            deadline = time.monotonic() + 30
            while "response" not in (self.simulator.record(task_id) or {}):
                if time.monotonic() > deadline:
                    raise RuntimeError("the simulator did not finish its task")
                time.sleep(0.05)
            video = httpx.get(f"{self.simulator.url}/files/{task_id}.mp4")
            video.raise_for_status()
            self._finished_task = task_id
        return self._finished_task

    def provider_result(self) -> dict[str, Any]:
        return self.simulator.record(self.finished_provider_task())["response"]


@contextmanager
def backends() -> Iterator[Backends]:
    from devstack.simulator import ProviderSimulator, SimulatorConfig
    from devstack.stack import aws_environment, moto_server

    # No provider callbacks while children run (the callback function's events are built here).
    config = SimulatorConfig(api_token=PROVIDER_TOKEN, callback_delay_s=0.1, fault="no-callback")
    with (
        moto_server() as endpoint,
        aws_environment(endpoint),
        ProviderSimulator(config) as sim,
        receiver() as receiver_url,
    ):
        yield Backends(endpoint, sim, receiver_url)


# --- the events and the state they need -----------------------------------------------------------


def _event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / f"{name}.json").read_text())


def _task_id(*parts: object) -> str:
    return "video_" + hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()[:32]


def put_task(backends: Backends, task_id: str, status: str, **fields: Any) -> dict[str, Any]:
    """Store a task as submit and the callback would have left it; returns its item."""
    from boto3.dynamodb.types import TypeSerializer

    from sora_relay.adapters.dynamodb import open_shard
    from sora_relay.domain.task import Task, now_millis

    now = now_millis()
    created = fields.pop("created_ms", now)
    task = Task(
        task_id=task_id,
        owner=OWNER,
        status=status,
        version=2 if status != "queued" else 1,
        model=BENCH_MODEL,
        prompt="A paper boat drifting down a rainy street",
        seconds=4,
        size="720x1280",
        provider="acedata",
        created_ms=created,
        updated_ms=created,
        expires_at=created // 1000 + 30 * 86400,
        **fields,
    )
    item = task.to_item()
    if not task.status.is_terminal:  # the open index's key, as TaskStore writes it with the task
        item["open_shard"] = open_shard(task_id, task.status)
    serializer = TypeSerializer()
    backends.client("dynamodb").put_item(
        TableName=backends.stack.refs["TasksTable"],
        Item={key: serializer.serialize(value) for key, value in item.items()},
    )
    return item


def _api_event(name: str, path: str, path_parameters: dict[str, str] | None) -> dict[str, Any]:
    event = _event(name)
    event["path"] = path
    event["requestContext"]["path"] = f"/live{path}"
    event["pathParameters"] = path_parameters
    return event


def prepare(backends: Backends, logical_id: str, round_number: int, phase: int) -> dict[str, Any]:
    """Seed the state the event needs in the freshly provisioned moto; return the event."""
    from sora_relay.domain.task import now_millis
    from sora_relay.domain.tokens import callback_token

    task_id = _task_id(logical_id, round_number, phase)
    receiver_hooks = f"{backends.receiver_url}/hooks"
    if logical_id == "SubmitFunction":
        event = _event("submit")
        key = f"bench-{uuid.uuid4()}"
        event["headers"]["Idempotency-Key"] = key
        event["multiValueHeaders"]["Idempotency-Key"] = [key]
        return event
    if logical_id == "CallbackFunction":
        provider_task = backends.finished_provider_task()
        put_task(backends, task_id, "in_progress", provider_task_id=provider_task)
        event = _api_event(
            "callback-success",
            f"/v1/callbacks/acedata/{task_id}",
            {"provider": "acedata", "task_id": task_id},
        )
        token = callback_token(task_id, backends.callback_key)
        event["queryStringParameters"] = {"token": token}
        event["multiValueQueryStringParameters"] = {"token": [token]}
        event["body"] = json.dumps(backends.provider_result())
        return event
    if logical_id == "ArchiveFunction":
        provider_task = backends.finished_provider_task()
        result = backends.provider_result()
        put_task(
            backends,
            task_id,
            "in_progress",
            provider_task_id=provider_task,
            # seedance puts it under content (acedata-video.md, "Callback and result body per service")
            provider_video_url=result["data"][0]["content"]["video_url"],
            result_received_ms=now_millis(),
        )
        event = _event("archive")
        event["Records"][0]["body"] = json.dumps({"task_id": task_id, "provider_task_id": provider_task})
        event["Records"][0]["messageId"] = str(uuid.uuid4())
        return event
    if logical_id == "StatusFunction":
        put_task(
            backends,
            task_id,
            "completed",
            provider_task_id=str(uuid.uuid4()),
            completed_ms=now_millis(),
            video_key=f"videos/{task_id}.mp4",
            video_bytes=6793,
            video_sha256="0" * 64,
        )
        return _api_event("get", f"/v1/videos/{task_id}", {"video_id": task_id})
    if logical_id == "DispatchFunction":
        put_task(backends, task_id, "queued")
        event = _event("dispatch")
        event["Records"][0]["body"] = json.dumps(
            {"task_id": task_id, "public_base_url": backends.receiver_url}
        )
        event["Records"][0]["messageId"] = str(uuid.uuid4())
        return event
    if logical_id == "TaskEventsFunction":
        event = _event("task-completed-stream")
        record = event["Records"][0]["dynamodb"]
        for image in (record["Keys"], record["NewImage"], record["OldImage"]):
            image["task_id"] = {"S": task_id}
        record["NewImage"]["callback_url"] = {"S": receiver_hooks}
        return event
    if logical_id == "WebhookFunction":
        put_task(
            backends,
            task_id,
            "completed",
            provider_task_id=str(uuid.uuid4()),
            callback_url=receiver_hooks,
            completed_ms=now_millis(),
            video_key=f"videos/{task_id}.mp4",
            video_bytes=6793,
            video_sha256="0" * 64,
        )
        event = _event("webhook")
        event["Records"][0]["body"] = json.dumps(
            {"task_id": task_id, "event_id": f"evt_{task_id[6:]}_completed", "type": "video.completed"}
        )
        return event
    if logical_id == "IntakeFunction":
        event = _event("intake")
        record = event["Records"][0]
        record["messageId"] = str(uuid.uuid4())
        record["messageAttributes"]["idempotency_key"]["stringValue"] = f"bench-{uuid.uuid4()}"
        record["eventSourceARN"] = backends.stack.attributes[("SubmitQueue", "Arn")]
        return event
    if logical_id == "ReconcileFunction":
        put_task(
            backends,
            task_id,
            "in_progress",
            provider_task_id=backends.finished_provider_task(),
            created_ms=now_millis() - 3600 * 1000,
        )
        return _event("reconcile")
    if logical_id == "AuthorizerFunction":
        # A key of its own per event: the second is not answered from the instance's cache.
        _, api_key = backends.seed_tenant(round_number, phase)
        event = _event("authorizer")
        event["headers"]["Authorization"] = f"Bearer {api_key}"
        event["multiValueHeaders"]["Authorization"] = [f"Bearer {api_key}"]
        return event
    raise ValueError(logical_id)


# --- one child ------------------------------------------------------------------------------------


@dataclass
class Run:
    cold_s: float
    warm_s: float
    rss1_mb: float
    rss2_mb: float
    detail: dict[str, Any]


class ChildFailed(RuntimeError):
    pass


def run_child(
    mode: str,
    logical_id: str,
    round_number: int,
    backends: Backends,
    python: str,
    pycache: Path,
    workdir: Path,
    script: dict[str, Any] | None = None,
    *,
    restore: bool = False,
) -> Run:
    """One fresh interpreter: `handler` (import app, two events), `baseline` (replay `script`) or
    `libraries` (import what the handler imported, ours left out, then replay `script`). With
    `restore`, SnapStart's way: the init (a handler's with AWS_LAMBDA_INITIALIZATION_TYPE=snap-start)
    then a fork of it, which serves the events (its first event is timed from the fork)."""
    for stale in workdir.iterdir():
        stale.unlink()
    backends.reset()
    event = prepare(backends, logical_id, round_number, 1)
    if mode == "handler":
        (workdir / "event1.json").write_text(json.dumps(event))
    else:
        (workdir / "script.json").write_text(json.dumps(script))
    function_dir = BUILD / logical_id
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": os.pathsep.join(map(str, [function_dir, BUILD / "CommonLayer" / "python", RUNTIME])),
        "PYTHONNOUSERSITE": "1",
        "PYTHONPYCACHEPREFIX": str(pycache),
        **({"BENCH_PROFILE": os.environ["BENCH_PROFILE"]} if os.environ.get("BENCH_PROFILE") else {}),
        **_fake_aws(backends.endpoint),
        **backends.function_env(logical_id),
        **({"BENCH_RESTORE": "1", "AWS_LAMBDA_INITIALIZATION_TYPE": "snap-start"} if restore else {}),
    }
    read_end, write_end = os.pipe()
    stderr = (workdir / "stderr.txt").open("wb")
    try:
        started = time.perf_counter()
        child = subprocess.Popen(
            [python, "-S", "-c", child_source(), mode, str(workdir), str(write_end)],
            pass_fds=(write_end,),
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=env,
            cwd=function_dir,
        )
        os.close(write_end)
        first = os.read(read_end, 1)
        cold_s = time.perf_counter() - started
        if first != b"1":
            child.wait(timeout=CHILD_TIMEOUT_S)
            raise ChildFailed(_failure(mode, logical_id, workdir))
        event2 = prepare(backends, logical_id, round_number, 2)
        (workdir / "event2.json").write_text(json.dumps(event2))
        assert child.stdin is not None
        child.stdin.write(b"go\n")
        child.stdin.close()
        second = os.read(read_end, 1)
        child.wait(timeout=CHILD_TIMEOUT_S)
        if second != b"2" or child.returncode != 0:
            raise ChildFailed(_failure(mode, logical_id, workdir))
    finally:
        os.close(read_end)
        stderr.close()
    result = json.loads((workdir / "result.json").read_text())
    return Run(cold_s, result["warm_s"], result["rss1_mb"], result["rss2_mb"], result)


def _failure(mode: str, logical_id: str, workdir: Path) -> str:
    text = (workdir / "stderr.txt").read_text(errors="replace")
    return f"{logical_id} {mode} child failed:\n{text[-3000:]}"


def _fake_aws(endpoint: str) -> dict[str, str]:
    from devstack.stack import FAKE_AWS

    return {**FAKE_AWS, "AWS_ENDPOINT_URL": endpoint}


def check_handler_run(logical_id: str, run: Run) -> list[str]:
    """The event did what it should: answered well, and made the calls its work needs."""
    from bench.replay import Recorder

    problems = []
    for number, answer in enumerate(run.detail["answers"], start=1):
        if isinstance(answer, dict) and answer.get("statusCode", 200) >= 300:
            problems.append(f"event {number} answered {answer.get('statusCode')}: {answer.get('body')}")
        if isinstance(answer, dict) and answer.get("batchItemFailures"):
            problems.append(f"event {number} reported failures: {answer['batchItemFailures']}")
    script = run.detail["script"]
    for name in ("calls1", "calls2"):
        made = Recorder.summary(script[name])
        missing = [want for want in EXPECTED_CALLS[logical_id] if not any(m.startswith(want) for m in made)]
        if missing:
            problems.append(f"{name} lacks {missing}: {made}")
    if logical_id == "ReconcileFunction" and run.detail["answers"][0] != {"copy_queued": 1}:
        problems.append(f"reconcile answered {run.detail['answers'][0]}")
    if logical_id == "AuthorizerFunction":
        problems += [
            f"event {number}: {problem}"
            for number, answer in enumerate(run.detail["answers"], start=1)
            if (problem := authorizer_problem(answer))
        ]
    return problems


def authorizer_problem(answer: Any) -> str | None:
    """Why an authorizer answer is not the Allow a seeded tenant's key earns (None: it is)."""
    try:
        effect = answer["policyDocument"]["Statement"][0]["Effect"]
        tenant = answer["context"]["tenant_id"]
    except (KeyError, IndexError, TypeError):
        return f"not an Allow policy: {answer}"
    if effect != "Allow" or not tenant or answer.get("principalId") != tenant:
        return f"answered {effect} for principal {answer.get('principalId')}"
    return None


# --- the benchmark --------------------------------------------------------------------------------


def python312() -> str:
    found = subprocess.run(
        [str(ROOT / "scripts" / "python312.sh")], capture_output=True, text=True, check=False
    ).stdout.strip()
    if not found:
        sys.exit("no python3.12 here (see scripts/python312.sh)")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="measured rounds (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="discarded rounds first (default 1)")
    parser.add_argument("--functions", default=",".join(FUNCTIONS), help="comma-separated LogicalIds")
    args = parser.parse_args(argv)
    functions = [name.strip() for name in args.functions.split(",") if name.strip()]
    unknown = [name for name in functions if name not in FUNCTIONS]
    if unknown:
        parser.error(f"unknown functions: {unknown}")
    missing = [name for name in ["CommonLayer", *functions] if not (BUILD / name).is_dir()]
    runtime = ["boto3", "snapshot_restore_py.py"]  # what Lambda's runtime provides (scripts/check_layer.py)
    missing += [f"runtime {name}" for name in runtime if not (RUNTIME / name).exists()]
    if missing:
        print(
            f"no build at {BUILD} (missing {missing}): run `make build` first",
            file=sys.stderr,
        )
        return 2
    python = python312()
    snapstart = snapstart_functions()

    samples: dict[str, dict[str, list[float]]] = {
        name: {
            key: []
            for key in (
                "handler",
                "baseline",
                "warm_handler",
                "warm_baseline",
                "rss1",
                "rss2",
                "baseline_rss1",
                "import_handler",
                "import_baseline",
                "event_handler",
                "event_baseline",
                "cpu_handler",
                "cpu_baseline",
                "libraries",
                "import_libraries",
                "event_libraries",
                "restored_handler",
                "restored_baseline",
                "restored_libraries",
                "restored_cpu_handler",
                "restored_cpu_baseline",
            )
        }
        for name in functions
    }
    details: dict[str, dict[str, Any]] = {
        name: {"mismatches": [], "calls": None, "unimportable": []} for name in functions
    }
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-cold-") as temp, backends() as running:
        pycache = Path(temp) / "pycache"
        workdir = Path(temp) / "work"
        workdir.mkdir()
        for round_number in range(args.warmup + args.repeats):
            measured = round_number >= args.warmup
            label = f"round {round_number + 1 - args.warmup}" if measured else "warm-up"
            print(f"{label}:", end="", flush=True)
            for name in functions:
                # Every child of this round and function: only the mode, the script and the restore vary.
                child = functools.partial(
                    run_child,
                    logical_id=name,
                    round_number=round_number,
                    backends=running,
                    python=python,
                    pycache=pycache,
                    workdir=workdir,
                )
                handler = child("handler")
                problems = check_handler_run(name, handler)
                if problems:
                    raise ChildFailed(f"{name}: the event did not do its work: {problems}")
                script = handler.detail["script"]
                baseline = child("baseline", script=script)
                libraries = child("libraries", script={**script, "modules": handler.detail["modules"]})
                restored = restored_baseline = restored_libraries = None
                if name in snapstart:
                    restored = child("handler", restore=True)
                    if problems := check_handler_run(name, restored):
                        raise ChildFailed(f"{name} (restored): the event did not do its work: {problems}")
                    restored_script = restored.detail["script"]
                    restored_baseline = child("baseline", script=restored_script, restore=True)
                    # A snapshot of the same libraries (ours left out): after the restore, what
                    # differs from the handler is the work on the caller's path alone.
                    restored_libraries = child(
                        "libraries",
                        script={**restored_script, "modules": restored.detail["init_modules"]},
                        restore=True,
                    )
                if libraries.detail["unimportable"]:
                    details[name]["unimportable"] = libraries.detail["unimportable"]
                ratio = handler.cold_s / baseline.cold_s
                print(f" {name.removesuffix('Function')} {ratio:.2f}", end="", flush=True)
                if not measured:
                    continue
                sample = samples[name]
                sample["handler"].append(handler.cold_s)
                sample["baseline"].append(baseline.cold_s)
                sample["warm_handler"].append(handler.warm_s)
                sample["warm_baseline"].append(baseline.warm_s)
                sample["rss1"].append(handler.rss1_mb)
                sample["rss2"].append(handler.rss2_mb)
                sample["baseline_rss1"].append(baseline.rss1_mb)
                sample["import_handler"].append(handler.detail["import_s"])
                sample["import_baseline"].append(baseline.detail["import_s"])
                sample["event_handler"].append(handler.detail["first_event_s"])
                sample["event_baseline"].append(baseline.detail["first_event_s"])
                sample["cpu_handler"].append(handler.detail["cpu_s"])
                sample["cpu_baseline"].append(baseline.detail["cpu_s"])
                sample["libraries"].append(libraries.cold_s)
                sample["import_libraries"].append(libraries.detail["import_s"])
                sample["event_libraries"].append(libraries.detail["first_event_s"])
                details[name]["mismatches"] += baseline.detail["mismatches"] + libraries.detail["mismatches"]
                if restored and restored_baseline and restored_libraries:
                    sample["restored_handler"].append(restored.detail["first_event_s"])
                    sample["restored_baseline"].append(restored_baseline.detail["first_event_s"])
                    sample["restored_libraries"].append(restored_libraries.detail["first_event_s"])
                    sample["restored_cpu_handler"].append(restored.detail["cpu_s"])
                    sample["restored_cpu_baseline"].append(restored_baseline.detail["cpu_s"])
                    details[name]["mismatches"] += (
                        restored_baseline.detail["mismatches"] + restored_libraries.detail["mismatches"]
                    )
                    details[name]["unimportable"] += restored_libraries.detail["unimportable"]
                if details[name]["calls"] is None:
                    from bench.replay import Recorder

                    details[name]["calls"] = {
                        "first_event": Recorder.summary(script["calls1"]),
                        "second_event": Recorder.summary(script["calls2"]),
                        "boto3_clients": [client["service"] for client in script["clients"]],
                        "httpx_clients": script["http_clients"],
                    }
            print(flush=True)
    elapsed = time.monotonic() - started

    figures = []
    cpu_figures = []  # recorded, no target: the children's own CPU, less sensitive to a busy machine
    library_figures = []  # recorded, no target: how the excess splits between the libraries and us
    per_function: dict[str, Any] = {}
    for name in functions:
        sample = samples[name]
        ratio = functools.partial(_ratio_figure, name, sample)
        median_ms = functools.partial(_median_ms, sample)
        cold = harness.ratios(sample["handler"], sample["baseline"])
        warm = harness.ratios(sample["warm_handler"], sample["warm_baseline"])
        cpu = harness.ratios(sample["cpu_handler"], sample["cpu_baseline"])
        libraries = harness.ratios(sample["libraries"], sample["baseline"])
        own = harness.ratios(sample["handler"], sample["libraries"])
        mismatches = details[name]["mismatches"]
        figures.append(
            ratio(
                "cold start / baseline",
                "handler",
                "baseline",
                f"{median_ms('handler')} vs {median_ms('baseline')}"
                + (f"; {len(mismatches)} replay mismatches" if mismatches else "")
                + (
                    "; on-demand init (deployed with SnapStart: see the restored figure)"
                    if name in snapstart
                    else ""
                ),
                # A SnapStart function's init runs when a version is published, not on a caller's
                # path: its target is on the restored figure below.
                limit=LIMIT if name in TARGETED and name not in snapstart else None,
            )
        )
        if name in snapstart:
            figures.append(
                ratio(
                    "cold start restored from a SnapStart snapshot / baseline's",
                    "restored_handler",
                    "restored_baseline",
                    f"first event from the restore (a fork of the init): {median_ms('restored_handler')} vs "
                    f"{median_ms('restored_baseline')} for boto3+httpx restored the same way; "
                    "the restore itself not counted",
                    limit=LIMIT if name in TARGETED else None,
                )
            )
            library_figures.append(
                ratio(
                    "cold start restored from a SnapStart snapshot / its libraries alone, restored",
                    "restored_handler",
                    "restored_libraries",
                    f"{median_ms('restored_libraries')} for the same calls from a snapshot of the same "
                    "libraries, ours left out",
                )
            )
            cpu_figures.append(
                ratio(
                    "cold start restored from a SnapStart snapshot, CPU time / baseline's",
                    "restored_cpu_handler",
                    "restored_cpu_baseline",
                    f"{median_ms('restored_cpu_handler')} vs {median_ms('restored_cpu_baseline')} of CPU",
                )
            )
        cpu_figures.append(
            ratio(
                "cold start CPU time / baseline",
                "cpu_handler",
                "cpu_baseline",
                f"{median_ms('cpu_handler')} vs {median_ms('cpu_baseline')} of CPU",
            )
        )
        library_figures += [
            ratio(
                "cold start, its libraries alone / baseline",
                "libraries",
                "baseline",
                f"{median_ms('libraries')}: the same calls after importing the handler's modules, ours left out",
            ),
            ratio(
                "cold start / its libraries alone (our code's own cost)",
                "handler",
                "libraries",
                "handler vs the libraries-alone child, in the same round",
            ),
        ]
        per_function[name] = {
            "cold_ratio": harness.Spread.of(cold),
            "libraries_alone_ratio": harness.Spread.of(libraries),
            "own_code_ratio": harness.Spread.of(own),
            "cold_libraries_alone_ms": _ms(sample["libraries"]),
            "import_libraries_alone_ms": _ms(sample["import_libraries"]),
            "first_event_libraries_alone_ms": _ms(sample["event_libraries"]),
            "unimportable_modules": details[name]["unimportable"],
            "cold_cpu_ratio": harness.Spread.of(cpu),
            "cold_cpu_handler_ms": _ms(sample["cpu_handler"]),
            "cold_cpu_baseline_ms": _ms(sample["cpu_baseline"]),
            "warm_ratio": harness.Spread.of(warm),
            "cold_handler_ms": _ms(sample["handler"]),
            "cold_baseline_ms": _ms(sample["baseline"]),
            "warm_handler_ms": _ms(sample["warm_handler"]),
            "warm_baseline_ms": _ms(sample["warm_baseline"]),
            "peak_rss_mb_after_first_event": harness.Spread.of(sample["rss1"]),
            "peak_rss_mb_after_second_event": harness.Spread.of(sample["rss2"]),
            "baseline_peak_rss_mb_after_first_event": harness.Spread.of(sample["baseline_rss1"]),
            # Inside the children: from their first line to the end of the imports, then the event.
            "import_handler_ms": _ms(sample["import_handler"]),
            "import_baseline_ms": _ms(sample["import_baseline"]),
            "first_event_handler_ms": _ms(sample["event_handler"]),
            "first_event_baseline_ms": _ms(sample["event_baseline"]),
            "replay_mismatches": mismatches,
            **(
                {
                    "snapstart": True,
                    "restored_ratio": harness.Spread.of(
                        harness.ratios(sample["restored_handler"], sample["restored_baseline"])
                    ),
                    "restored_first_event_handler_ms": _ms(sample["restored_handler"]),
                    "restored_first_event_baseline_ms": _ms(sample["restored_baseline"]),
                    "restored_first_event_libraries_alone_ms": _ms(sample["restored_libraries"]),
                }
                if name in snapstart
                else {"snapstart": False}
            ),
            **details[name]["calls"],
        }
    figures += cpu_figures + library_figures
    harness.print_figures("Benchmark 1: cold start, handler vs boto3+httpx doing the same calls", figures)
    print(
        "\n  medians, handler / baseline: cold ms (import ms + first event ms), warm call ms; "
        "handler peak RSS MB"
    )
    for name, found in per_function.items():
        print(
            f"  {name:20} {found['cold_handler_ms'].median:5.0f} / {found['cold_baseline_ms'].median:4.0f}"
            f"  ({found['import_handler_ms'].median:4.0f} + {found['first_event_handler_ms'].median:4.0f}"
            f" / {found['import_baseline_ms'].median:4.0f} + {found['first_event_baseline_ms'].median:4.0f})"
            f"  {found['warm_handler_ms'].median:6.1f} / {found['warm_baseline_ms'].median:5.1f}"
            f"  {found['peak_rss_mb_after_first_event'].median:5.1f}"
        )
        if found["snapstart"]:
            print(
                f"  {'':20} restored from SnapStart: first event {found['restored_first_event_handler_ms'].median:4.0f}"
                f" / {found['restored_first_event_baseline_ms'].median:4.0f}"
            )
    path = harness.save(
        BENCH,
        figures,
        method="spawn -> end of first event, python3.12 -S on the sam build layout; baseline replays "
        "the handler's recorded AWS/HTTP calls with plain boto3 + httpx (bench/replay.py)",
        repeats=args.repeats,
        warmup=args.warmup,
        elapsed_s=round(elapsed, 1),
        python312=python,
        functions={
            name: {
                key: asdict(value) if isinstance(value, harness.Spread) else value
                for key, value in found.items()
            }
            for name, found in per_function.items()
        },
    )
    print(f"\n  saved {harness.shown(path)} ({elapsed:.0f} s)")
    return harness.exit_code(figures)


def snapstart_functions() -> frozenset[str]:
    """The functions template.yaml deploys with SnapStart (`ApplyOn: PublishedVersions`)."""
    from devstack.template import load_template

    return frozenset(
        name
        for name, resource in load_template()["Resources"].items()
        if resource.get("Properties", {}).get("SnapStart", {}).get("ApplyOn") == "PublishedVersions"
    )


def _ratio_figure(
    name: str,
    sample: dict[str, list[float]],
    label: str,
    numerator: str,
    denominator: str,
    note: str,
    limit: float | None = None,
) -> harness.Figure:
    """A figure for one function: the spread of the ratios of two of its samples, with its note."""
    spread = harness.Spread.of(harness.ratios(sample[numerator], sample[denominator]))
    return harness.Figure(BENCH, f"{name} {label}", spread, "x", limit=limit, note=note)


def _median_ms(sample: dict[str, list[float]], key: str) -> str:
    return f"{_ms(sample[key]).median:.0f} ms"


def _ms(values: list[float]) -> harness.Spread:
    return harness.Spread.of([value * 1000 for value in values])


if __name__ == "__main__":
    sys.exit(main())
