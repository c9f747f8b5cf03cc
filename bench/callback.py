"""Benchmark 7: the callback's warm answer time does not grow with the video.

    .venv/bin/python -m bench.callback [--repeats 15] [--warmup 2] [--small-mib 1] [--large-mib 1024]

The real CallbackFunction handler (functions/callback/app.py, loaded as bench/warm.py loads it) is
invoked warm, in process, with API Gateway proxy events shaped like events/callback-success.json,
against moto in process (mock_aws; the template provisioned by devstack.template.provision) with
CallbackFunction's own environment from the template. Each measured invocation is one provider
push for a fresh task: every task is submitted beforehand (not timed) through the real
SubmitFunction handler against the provider simulator, and its push carries the task's own
callback token (sora_relay.domain.tokens.callback_token under the CallbackTokenSecret's value, checked
against the token the provider was given) and names a real video URL: a 1 MiB or a 1 GiB MP4 on
a local HTTP server (bench/archive.py's VideoServer: devstack.mp4 padded with a `free` box).

Rounds interleave the two sizes (harness.interleaved; which one goes first alternates too). Each
round times `--calls` pushes of each size, one by one, and takes each size's median: the figure
is the 1 GiB median over the 1 MiB one, round by round, reported as median, min and max over the
rounds (target: at most 1.2). Each size's answer time over every measured push is recorded too. The reason it holds is
checked, not assumed: the video server must see no request at all (no connection, no request
line) while the callbacks run, since the callback only records the URL and queues the copy; the
archive queue must then hold one message per push. Both URLs are checked to serve an MP4 of their
size before the run (headers and first bytes only), so the URLs are real. Powertools' log and
metric lines go to /dev/null during the timed calls (their work is still timed).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
import warnings
from dataclasses import asdict
from typing import Any
from urllib.parse import parse_qs, urlsplit

from bench import harness
from bench.archive import VideoServer, render_head
from bench.harness import MIB, Figure, Spread
from bench.warm import Context, load_event, load_handler, quiet_stdout, submit_event

BENCH = "callback"
LIMIT = 1.2
PROVIDER_TOKEN = "bench-provider-token"


def size_text(size: int) -> str:
    gib = 1024 * MIB
    return f"{size // gib} GiB" if size >= gib and size % gib == 0 else f"{size / MIB:g} MiB"


def push_body(provider_task_id: str, video_url: str) -> str:
    """What AceDataCloud POSTs when a video is ready (events/callback-success.json's body)."""
    return json.dumps(
        {
            "success": True,
            "task_id": provider_task_id,
            "trace_id": str(uuid.uuid4()),
            "data": [{"id": "sora-2:bench", "video_url": video_url, "state": "succeeded"}],
        }
    )


def push_event(task_id: str, token: str, body: str) -> dict[str, Any]:
    """The API Gateway proxy event of one provider push for `task_id`."""
    event = load_event("callback-success")
    path = f"/v1/callbacks/acedata/{task_id}"
    event["path"] = path
    event["requestContext"]["path"] = f"/{event['requestContext']['stage']}{path}"
    event["pathParameters"] = {"provider": "acedata", "task_id": task_id}
    event["queryStringParameters"] = {"token": token}
    event["multiValueQueryStringParameters"] = {"token": [token]}
    event["body"] = body
    return event


def check_video_url(url: str, size: int) -> None:
    """The URL answers 200 with an MP4 of `size` bytes (headers and first bytes only)."""
    import httpx

    with httpx.stream("GET", url, timeout=30) as response:
        first = next(response.iter_raw(64), b"")
        length = int(response.headers.get("content-length", -1))
        if response.status_code != 200 or length != size or first[4:8] != b"ftyp":
            raise RuntimeError(f"{url}: HTTP {response.status_code}, {length} bytes, starts {first[:8]!r}")


def use_function_env(stack: Any, function_id: str, applied: set[str], **extra: str) -> set[str]:
    """Exactly `function_id`'s environment from the template (plus `extra`): what a previous call
    set and this function does not have is removed; every cached service and setting is reset."""
    wanted = {**stack.function_environment(function_id), **extra}
    for name in applied - wanted.keys():
        os.environ.pop(name, None)
    os.environ.update(wanted)
    # Imported after: Powertools reads its environment when sora_relay.observability is imported.
    from sora_relay.adapters import secrets
    from sora_relay.adapters.aws import reset_clients
    from sora_relay.runtime import container

    reset_clients()
    container.install(None)  # the handlers' next current() is built from this environment
    secrets.clear_cache()
    return set(wanted)


def submit_tasks(stack: Any, simulator: Any, count: int, key: str) -> list[tuple[str, str, str]]:
    """Submit `count` tasks through SubmitFunction; returns (task_id, provider_task_id, token) each."""
    import boto3

    from sora_relay.domain.tokens import callback_token

    submit = load_handler("submit")
    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    tasks = []
    for _ in range(count):
        with quiet_stdout():
            answer = submit.lambda_handler(submit_event(), Context())
        if answer["statusCode"] != 202:
            raise RuntimeError(f"submit answered {answer['statusCode']}: {answer.get('body')}")
        task_id = json.loads(answer["body"])["id"]
        item = dynamodb.get_item(TableName=stack.refs["TasksTable"], Key={"task_id": {"S": task_id}})["Item"]
        provider_task_id = item["provider_task_id"]["S"]
        given = simulator.record(provider_task_id)["request"]["callback_url"]
        token = callback_token(task_id, key)
        if parse_qs(urlsplit(given).query)["token"] != [token]:
            raise RuntimeError(f"{task_id}: the provider was given another token than callback_token's")
        tasks.append((task_id, provider_task_id, token))
    return tasks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.callback", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=15, help="measured rounds (default 15)")
    parser.add_argument("--warmup", type=int, default=2, help="discarded rounds first (default 2)")
    parser.add_argument("--calls", type=int, default=5, help="pushes per size per round (default 5)")
    parser.add_argument("--small-mib", type=float, default=1, help="the small video (default 1 MiB)")
    parser.add_argument("--large-mib", type=float, default=1024, help="the large video (default 1 GiB)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message="No application metrics to publish")

    import boto3
    from moto import mock_aws

    from devstack.simulator import ProviderSimulator, SimulatorConfig
    from devstack.template import provision, secret_value

    harness.fake_aws_in_process()
    small, large = int(args.small_mib * MIB), int(args.large_mib * MIB)
    names = {small: size_text(small), large: size_text(large)}
    rounds = args.warmup + args.repeats
    pushes = 2 * rounds * args.calls
    config = SimulatorConfig(api_token=PROVIDER_TOKEN, callback_delay_s=0.1, fault="no-callback")
    started = time.monotonic()
    with VideoServer(render_head()) as videos, mock_aws(), ProviderSimulator(config) as simulator:
        urls = {size: f"{videos.url}/{size}.mp4" for size in (small, large)}
        for size, url in urls.items():
            check_video_url(url, size)
        stack = provision("bench", {"AceDataApiKey": PROVIDER_TOKEN})
        key = secret_value(stack, "CallbackTokenSecret")

        # Not timed: every task submitted, every push event built.
        applied = use_function_env(
            stack, "SubmitFunction", set(), ACEDATA_BASE_URL=simulator.url, PUBLIC_BASE_URL=""
        )
        pending: dict[int, list[dict[str, Any]]] = {}
        for size in (small, large):
            pending[size] = [
                push_event(task_id, token, push_body(provider_task_id, urls[size]))
                for task_id, provider_task_id, token in submit_tasks(
                    stack, simulator, rounds * args.calls, key
                )
            ]
        print(
            f"submitted {pushes} tasks; {args.repeats} rounds (+{args.warmup} warm-up) of "
            f"{args.calls} pushes per size, interleaved (ms per push; the round's median in brackets)"
        )

        # The callback looks an AceData push up at the provider (AceData signs nothing): the same
        # simulator, as in the deployed function's environment.
        use_function_env(stack, "CallbackFunction", applied, ACEDATA_BASE_URL=simulator.url)
        callback = load_handler("callback")
        seen = (videos.count.connections, videos.count.requests)

        blocks: dict[int, list[list[float]]] = {small: [], large: []}

        def push(size: int) -> float:
            """One push for a fresh task, timed alone; returns ms."""
            event = pending[size].pop(0)
            with quiet_stdout():
                began = time.perf_counter()
                answer = callback.lambda_handler(event, Context())
                seconds = time.perf_counter() - began
            body = json.loads(answer.get("body") or "{}")
            if answer.get("statusCode") != 200 or body != {
                "received": True,
                "changed": True,
                "status": "in_progress",
            }:
                raise RuntimeError(f"the callback answered {answer.get('statusCode')}: {answer.get('body')}")
            return seconds * 1000

        def block(size: int) -> float:
            """`--calls` pushes of one size; the round's value is their median (one slow call,
            a neighbour's burst on this shared machine, moves it little)."""
            block_ms = [push(size) for _ in range(args.calls)]
            blocks[size].append(block_ms)
            print(
                f"  {names[size]:>8} "
                + " ".join(f"{ms:6.1f}" for ms in block_ms)
                + f"  [{statistics.median(block_ms):6.1f}]",
                flush=True,
            )
            return statistics.median(block_ms)

        times = harness.interleaved(
            {"small": lambda: block(small), "large": lambda: block(large)},
            args.repeats,
            args.warmup,
            alternate=True,  # small first, then large first: neither always pays for going first
        )
        during = (videos.count.connections - seen[0], videos.count.requests - seen[1])
        sqs = boto3.client("sqs", region_name="us-east-1")
        queued = int(
            sqs.get_queue_attributes(
                QueueUrl=stack.refs["ArchiveQueue"], AttributeNames=["ApproximateNumberOfMessages"]
            )["Attributes"]["ApproximateNumberOfMessages"]
        )
    elapsed = time.monotonic() - started

    ratio = harness.ratios(times["large"], times["small"])
    # Every measured push (the warm-up rounds' blocks dropped), for each size's median answer time.
    each = {size: [ms for calls in blocks[size][args.warmup :] for ms in calls] for size in (small, large)}
    small_ms, large_ms = statistics.median(each[small]), statistics.median(each[large])
    figures = [
        Figure(
            BENCH,
            f"callback answer {names[large]} / {names[small]} video, per round",
            Spread.of(ratio),
            "x",
            limit=LIMIT,
            note=f"rounds' medians; over every push {large_ms:.2f} ms vs {small_ms:.2f} ms "
            f"(ratio {large_ms / small_ms:.2f})",
        ),
        Figure(BENCH, f"callback answer ({names[small]} video), per push", Spread.of(each[small]), " ms"),
        Figure(BENCH, f"callback answer ({names[large]} video), per push", Spread.of(each[large]), " ms"),
        Figure(
            BENCH,
            "video server requests during the callbacks",
            Spread.of([float(during[1])]),
            "",
            limit=0,
            note=f"{during[0]} connections; archive queue holds {queued} messages for {pushes} pushes",
        ),
    ]
    harness.print_figures("Benchmark 7: the callback's warm answer time against the video's size", figures)
    path = harness.save(
        BENCH,
        figures,
        method="in process: CallbackFunction's handler, warm, moto mock_aws, tasks submitted beforehand "
        "through SubmitFunction against the provider simulator; pushes name a local 1 MiB or 1 GiB MP4",
        repeats=args.repeats,
        warmup=args.warmup,
        calls_per_round=args.calls,
        sizes={"small": small, "large": large},
        answer_ms_per_push={"small": asdict(Spread.of(each[small])), "large": asdict(Spread.of(each[large]))},
        round_median_ms={"small": times["small"], "large": times["large"]},
        ratio=asdict(Spread.of(ratio)),
        video_server_during_callbacks={"connections": during[0], "requests": during[1]},
        archive_messages_queued=queued,
        elapsed_s=round(elapsed, 1),
    )
    print(f"\n  saved {harness.shown(path)}")
    # Why the ratio holds: the callback never touches the video. If it did, the figure means nothing.
    if during != (0, 0):
        print(f"FAILED: the video server saw {during[0]} connections, {during[1]} requests", file=sys.stderr)
        return 1
    if queued != pushes:
        print(f"FAILED: {queued} archive messages queued for {pushes} pushes", file=sys.stderr)
        return 1
    return harness.exit_code(figures)


if __name__ == "__main__":
    sys.exit(main())
