"""Benchmark 3, warm handler overhead: submit and status per call, against a minimal handler.

    .venv/bin/python -m bench.warm [--repeats N] [--calls N]

The submit and status handlers (functions/*/app.py, as the tests load them) are invoked in
process, warm, against moto in process (mock_aws) and the provider simulator over real HTTP.
The baseline is a minimal handler: a plain function that takes the same API Gateway event, makes
the same AWS and HTTP calls with plain boto3 clients and an httpx client kept across calls (as a
warm Lambda keeps them), and returns a dict answer; no Powertools, no pydantic. The figure is
their ratio per call (target: at most 1.5).

"The same calls" by record and replay (bench/replay.py): every handler call is recorded (the
recording hooks stay installed for the minimal handler's calls too, so both pay for them), and
the minimal handler replays that exact list: same operations, same parameters, same request.
Each round runs a block of handler calls, then a block of minimal calls, alternately, timed
per block; the ratio is per round, reported as median, min and max over the rounds.

- submit: a fresh Idempotency-Key each call, so each one does the real work (idempotency record,
  task item, the provider's POST, two updates). Between the blocks, the items the handler's calls
  created are deleted (not timed), so the replay's conditional writes find the same state and
  succeed as the handler's did; the provider's new task id is carried over from its answer.
- status get: one completed video (its item read, a presigned download link signed).
- status list: the caller's tasks (a query on the owner index), ten per page.

Powertools' Logger and Metrics write JSON to stdout: stdout (file descriptor 1) goes to /dev/null
during both blocks alike; their work stays part of the handler's overhead. Also saved, for
bench/cost.py: the absolute per-call medians in ms of the handler and the minimal handler.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import statistics
import sys
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict
from types import ModuleType
from typing import Any

from bench import harness
from bench.replay import Recorder, Replayer
from bench.replay import _plain as to_json

ROOT = harness.ROOT
EVENTS = ROOT / "events"
BENCH = "warm"
LIMIT = 1.5
PROVIDER_TOKEN = "bench-provider-token"
OWNER = "ten_SampleTenantId000001"  # the sample events' tenant (requestContext.authorizer)
LISTED_TASKS = 12


class Context:
    function_name = "sora-relay-bench"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:sora-relay-bench"
    aws_request_id = "00000000-0000-4000-8000-000000000000"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def load_event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / f"{name}.json").read_text())


def load_handler(function: str) -> ModuleType:
    """functions/<function>/app.py under a unique name, as the tests (and Lambda) import it."""
    spec = importlib.util.spec_from_file_location(
        f"bench_{function}_app", ROOT / "functions" / function / "app.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def quiet_stdout() -> Iterator[None]:
    """File descriptor 1 to /dev/null (Powertools' log and metric lines), restored after."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def minimal_handler(replayer: Replayer) -> Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]:
    """The baseline: reads the event, makes the recorded calls, answers a dict."""

    def handle(event: dict[str, Any], script: dict[str, Any]) -> dict[str, Any]:
        headers = {name.lower(): value for name, value in (event.get("headers") or {}).items()}
        body = json.loads(event["body"]) if event.get("body") else None
        replayer.run(script["calls"])
        answer = {
            "owner": event["requestContext"]["authorizer"]["tenant_id"],
            "key": headers.get("idempotency-key"),
            "request": body,
        }
        return {
            "statusCode": 202 if event["httpMethod"] == "POST" else 200,
            "headers": {"Content-Type": "application/json"},
            "body": json.dumps(answer),
            "isBase64Encoded": False,
        }

    return handle


class Workload:
    """Builds each call's event and checks the handler's answer; `cleanup` undoes created items."""

    def __init__(self, name: str, handler: ModuleType, make_event: Callable[[], dict[str, Any]], status: int):
        self.name = name
        self.handler = handler
        self.make_event = make_event
        self.status = status

    def check(self, answer: dict[str, Any]) -> None:
        if answer.get("statusCode") != self.status:
            raise RuntimeError(f"{self.name}: answered {answer.get('statusCode')}: {answer.get('body')}")


def submit_event() -> dict[str, Any]:
    event = load_event("submit")
    key = f"bench-{uuid.uuid4()}"
    event["headers"]["Idempotency-Key"] = key
    event["multiValueHeaders"]["Idempotency-Key"] = [key]
    return event


def delete_created_items(dynamodb: Any, scripts: list[dict[str, Any]], keys: dict[str, list[str]]) -> None:
    """Delete every item the recorded calls put, so a replay finds the state the handler found."""
    for script in scripts:
        for call in script["calls"]:
            if call["kind"] == "aws" and call["op"] == "PutItem" and "error" not in call:
                table = call["params"]["TableName"]
                if table not in keys:
                    schema = dynamodb.describe_table(TableName=table)["Table"]["KeySchema"]
                    keys[table] = [part["AttributeName"] for part in schema]
                item = call["params"]["Item"]
                dynamodb.delete_item(TableName=table, Key={name: item[name] for name in keys[table]})


def measure(
    workload: Workload,
    recorder: Recorder,
    minimal: Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]],
    replayer: Replayer,
    dynamodb: Any,
    *,
    calls: int,
    rounds: int,
    warmup: int,
) -> tuple[list[float], list[float]]:
    """Per-call seconds of the handler and of the minimal handler, one value per round each."""
    handler_times: list[float] = []
    minimal_times: list[float] = []
    table_keys: dict[str, list[str]] = {}
    for round_number in range(warmup + rounds):
        events = [workload.make_event() for _ in range(calls)]
        scripts = []
        answers = []
        with quiet_stdout():
            started = time.perf_counter()
            for event in events:
                mark = recorder.mark()
                answers.append(workload.handler.lambda_handler(event, Context()))
                scripts.append({"calls": recorder.calls[mark:]})
            handler_s = time.perf_counter() - started
        for answer in answers:
            workload.check(answer)
        plain = [{"calls": [to_json(call) for call in script["calls"]]} for script in scripts]
        delete_created_items(dynamodb, plain, table_keys)
        mismatches_before = len(replayer.mismatches)
        with quiet_stdout():
            started = time.perf_counter()
            for event, script in zip(events, plain, strict=True):
                minimal(event, script)
            minimal_s = time.perf_counter() - started
        if len(replayer.mismatches) != mismatches_before:
            raise RuntimeError(
                f"{workload.name}: the replay differed: {replayer.mismatches[mismatches_before:]}"
            )
        del recorder.calls[:]  # keep the recording small; client indexes stay
        if round_number >= warmup:
            handler_times.append(handler_s / calls)
            minimal_times.append(minimal_s / calls)
        print(f" {handler_s / minimal_s:.2f}", end="", flush=True)
    return handler_times, minimal_times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=9, help="measured rounds per workload (default 9)")
    parser.add_argument("--warmup", type=int, default=1, help="discarded rounds first (default 1)")
    parser.add_argument("--calls", type=int, default=30, help="calls per block (default 30)")
    args = parser.parse_args(argv)
    # Metrics warns on a call that added no metric (status): once, to stderr; not a result.
    warnings.filterwarnings("ignore", message="No application metrics to publish")

    import boto3
    from moto import mock_aws

    from devstack.simulator import ProviderSimulator, SimulatorConfig
    from devstack.template import provision

    harness.fake_aws_in_process()
    config = SimulatorConfig(api_token=PROVIDER_TOKEN, callback_delay_s=0.1, fault="no-callback")
    started = time.monotonic()
    with mock_aws(), ProviderSimulator(config) as simulator:
        stack = provision("bench", {"AceDataApiKey": PROVIDER_TOKEN})
        for function_id in ("SubmitFunction", "StatusFunction"):
            os.environ.update(stack.function_environment(function_id))
        os.environ.update(ACEDATA_BASE_URL=simulator.url, PUBLIC_BASE_URL="", ALLOW_LOOPBACK_URLS="true")
        recorder = Recorder().install()
        from sora_relay.adapters.aws import reset_clients
        from sora_relay.runtime import container

        reset_clients()
        container.install(None)  # the handlers' next current() is built from this environment
        submit = load_handler("submit")
        status = load_handler("status")
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        completed = _seed_tasks(stack, dynamodb)

        def get_event() -> dict[str, Any]:
            event = load_event("get")
            event["path"] = f"/v1/videos/{completed}"
            event["requestContext"]["path"] = f"/live/v1/videos/{completed}"
            event["pathParameters"] = {"video_id": completed}
            return event

        workloads = [
            Workload("submit", submit, submit_event, 202),
            Workload("status get", status, get_event, 200),
            Workload("status list", status, lambda: load_event("list"), 200),
        ]
        replayer = Replayer(recorder.clients, 0)
        minimal = minimal_handler(replayer)
        results: dict[str, tuple[list[float], list[float]]] = {}
        for workload in workloads:
            print(f"{workload.name} (handler/minimal per round):", end="", flush=True)
            results[workload.name] = measure(
                workload,
                recorder,
                minimal,
                replayer,
                dynamodb,
                calls=args.calls,
                rounds=args.repeats,
                warmup=args.warmup,
            )
            print(flush=True)
        calls_made = {
            workload.name: Recorder.summary([to_json(call) for call in _one_call(workload, recorder)])
            for workload in workloads
        }
        recorder.uninstall()
    elapsed = time.monotonic() - started

    figures = []
    extra: dict[str, Any] = {}
    for name, (handler_times, minimal_times) in results.items():
        ratio = harness.ratios(handler_times, minimal_times)
        figures.append(
            harness.Figure(
                BENCH,
                f"{name}: handler / minimal handler, per call",
                harness.Spread.of(ratio),
                "x",
                limit=LIMIT,
                note=(
                    f"{statistics.median(handler_times) * 1000:.2f} ms vs "
                    f"{statistics.median(minimal_times) * 1000:.2f} ms per call"
                ),
            )
        )
        extra[name] = {
            "ratio": asdict(harness.Spread.of(ratio)),
            "handler_ms_per_call": asdict(harness.Spread.of([t * 1000 for t in handler_times])),
            "minimal_ms_per_call": asdict(harness.Spread.of([t * 1000 for t in minimal_times])),
            "calls": calls_made[name],
        }
    harness.print_figures("Benchmark 3: warm handler overhead against a minimal handler", figures)
    path = harness.save(
        BENCH,
        figures,
        method="in process, moto mock_aws + provider simulator over HTTP; the minimal handler replays "
        "each handler call's recorded AWS/HTTP calls with plain boto3 + httpx (bench/replay.py)",
        repeats=args.repeats,
        warmup=args.warmup,
        calls_per_block=args.calls,
        elapsed_s=round(elapsed, 1),
        workloads=extra,
    )
    print(f"\n  saved {harness.shown(path)} ({elapsed:.0f} s)")
    return harness.exit_code(figures)


def _one_call(workload: Workload, recorder: Recorder) -> list[dict[str, Any]]:
    """The calls of one more handler call (for the record of what was measured)."""
    mark = recorder.mark()
    with quiet_stdout():
        workload.handler.lambda_handler(workload.make_event(), Context())
    return recorder.calls[mark:]


def _seed_tasks(stack: Any, dynamodb: Any) -> str:
    """A completed task (for get) among the owner's tasks (for list); returns its id."""
    from boto3.dynamodb.types import TypeSerializer

    from sora_relay.domain.task import Task, now_millis

    serializer = TypeSerializer()
    now = now_millis()
    completed = ""
    for number in range(LISTED_TASKS):
        task_id = f"video_{uuid.uuid4().hex}"
        done = number == 0
        task = Task(
            task_id=task_id,
            owner=OWNER,
            status="completed" if done else "in_progress",
            version=3 if done else 2,
            model="seedance-1.5-pro",  # a live catalogue model served by AceData
            prompt="A paper boat drifting down a rainy street",
            seconds=4,
            size="1280x720",
            provider="acedata",
            provider_task_id=str(uuid.uuid4()),
            created_ms=now - number * 1000,
            updated_ms=now,
            expires_at=now // 1000 + 30 * 86400,
            completed_ms=now if done else None,
            video_key=f"videos/{task_id}.mp4" if done else None,
            video_bytes=6793 if done else None,
            video_sha256="0" * 64 if done else None,
        )
        dynamodb.put_item(
            TableName=stack.refs["TasksTable"],
            Item={key: serializer.serialize(value) for key, value in task.to_item().items()},
        )
        if done:
            completed = task_id
    return completed


if __name__ == "__main__":
    sys.exit(main())
