"""Load and fault runs against the local stack (dev-only): many tasks at once, faults switched on.

    python -m devstack load --tasks 1000 --concurrency 300

Every task is submitted through the local gateway with its own Idempotency-Key and retried with
that key on 429, 5xx, 409 and connection errors, as a careful client would. Prompts carry the
simulator's fault markers in a fixed mix, callback URLs ask the webhook receiver to refuse each
event a few times first, and the stack may fail the functions' DynamoDB and S3 calls with AWS
errors (devstack.chaos). Then it waits until every accepted task is terminal and checks, from the
table, the bucket and the receiver:

- lost: accepted tasks that never reached `completed` or `failed` (must be 0);
- duplicates: tasks made twice for one submission by a retried submit (must be 0);
- outcomes that differ from what the task's fault should give;
- every stored MP4 against its recorded size and sha256;
- every terminal event of a task with a callback_url delivered (a 2xx), every repeat of an event
  carrying the same webhook-id.
"""

from __future__ import annotations

import hashlib
import math
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx

from devstack.processes import local_http
from devstack.receiver import WebhookReceiver
from devstack.stack import DevStack, plain_item

TERMINAL = ("completed", "failed")

# Every wait of the service shortened so a fault run settles in seconds, not the production hours:
# provider, dispatch and archive backoff, the webhook schedule (production: 5 s ... 8 h), and the reconciler
# (production: every 5 min, tasks older than 15 min, deadline 6 h).
FAST_FUNCTION_ENV = {
    "PROVIDER_RETRY_BASE_DELAY_SECONDS": "0.1",
    "DISPATCH_BASE_DELAY_SECONDS": "0.2",
    "ARCHIVE_BASE_DELAY_SECONDS": "0.2",
    "WEBHOOK_RETRY_SCHEDULE": "0.5,1,1,2,2,3,3",
    "RECONCILE_STALE_AFTER_SECONDS": "4",
    # A recorded result's copy is queued again at most this often (production: 15 min, as stale).
    "RECONCILE_COPY_REQUEUE_AFTER_SECONDS": "4",
    # Well past the longest dispatch backoff and a few 60 s visibility timeouts, as production's
    # 6 h is past its ~30 min of dispatch attempts: otherwise a task the provider never accepts
    # may time out before dispatch gives up on it (still terminal, but for the other reason). And
    # well inside the load run's wait (600 s): a task whose start was never recorded (an injected
    # fault) and whose push was lost can only end here.
    "RECONCILE_DEADLINE_SECONDS": "300",
    # The authorizer's lookup cache (60 s deployed): a revoked key or a disabled tenant is refused
    # a second after the change.
    "AUTHORIZER_CACHE_SECONDS": "1",
    # A crashed archive attempt's claim lapses as its message comes back (FAST_VISIBILITY_SECONDS),
    # as production's 960 s lease matches its queue's 960 s visibility timeout.
    "ARCHIVE_LEASE_SECONDS": "15",
    # The same for a dispatch delivery's claim on a task's start (production: 60 s, its queue's).
    "DISPATCH_LEASE_SECONDS": "15",
}
# `make load` keeps a backlog in the archive queue for minutes (4 archive instances behind
# hundreds of copies): a copy waiting its turn there is not queued again every 4 s (that doubled
# the queue every few runs), only after 2 min, which still replaces a message a crashed callback
# never sent long before the run ends.
LOAD_FUNCTION_ENV = {**FAST_FUNCTION_ENV, "RECONCILE_COPY_REQUEUE_AFTER_SECONDS": "120"}
FAST_PARAMETERS = {"DispatchMaxAttempts": "3"}
# The queues' VisibilityTimeout locally (production: 60 s, 960 s for the archive queue): how long
# the message of a crashed or timed-out invocation stays hidden before it is delivered again.
FAST_VISIBILITY_SECONDS = 15
FAST_SCHEDULE_SECONDS = 1.0
# A submit is retried at least this often and this long. The local gateway answers 500 when none
# of a function's few instances frees up within 30 s (Lambda would scale out): with 1,000 tasks
# and 300 at once a submit can meet that many times over, and a client that must get its videos
# made keeps trying for minutes, as a batch job would. 45 s left 121 of 1,000 never accepted.
SUBMIT_ATTEMPTS, SUBMIT_RETRY_S = 8, 600.0


@dataclass(frozen=True)
class Fault:
    """One kind of task in the mix: a prompt marker, the outcome it must end in, its weight."""

    name: str
    marker: str
    status: str  # the terminal status the task must reach
    # For failed tasks, the reasons it may record (each provider family words a failed generation
    # its own way: AceData's error code, fal's and Replicate's generation_failed).
    error_code: tuple[str, ...] = ()
    weight: int = 1  # in the default mix


# The simulator's faults and what the relay must make of each.
FAULTS = {
    fault.name: fault
    for fault in (
        Fault("clean", "", "completed", weight=10),
        Fault("fail", "[sim:fail]", "failed", ("api_error", "generation_failed"), weight=2),
        Fault("no-callback", "[sim:no-callback]", "completed", weight=2),  # found by the reconciler
        Fault("double-callback", "[sim:double-callback]", "completed", weight=2),
        Fault("late-callback", "[sim:late-callback]", "completed", weight=2),
        Fault("video-404", "[sim:video-404]", "failed", ("video_fetch_failed",)),
        Fault("video-503", "[sim:video-503]", "completed"),  # the archive queue copies it on a retry
        Fault("429x2", "[sim:429x2]", "completed", weight=2),  # rate limited twice, then accepted
        # A 5xx on create: the provider may have started it, so it is never resent (it could bill twice).
        Fault("500", "[sim:500]", "failed", ("provider_outcome_unknown",)),
    )
}
DEFAULT_MIX = {name: fault.weight for name, fault in FAULTS.items()}
# One model of each provider family, each asked for 4 s at 1280x720 (small renders for the simulator).
MODELS = ("seedance-1.5-pro", "fal-veo-3.1", "replicate-seedance-1.5-pro")


# Where `make load` kills a function's worker mid-invocation (devstack.chaos crash rules), each
# after some of the invocation's side effects: (function, service, operation, request text, how
# many times the run's rate). Dispatch starts only the mix's `[sim:429x2]` tasks (about 1 in 12),
# so its point is tried ten times as often: at 0.02 a 1,000-task run could end with no crash there.
CRASH_POINTS = (
    ("CallbackFunction", "sqs", "SendMessage", None, 1),  # result recorded, copy not queued
    ("ArchiveFunction", "dynamodb", "UpdateItem", "video_sha256", 1),  # copy in S3, not recorded
    ("DispatchFunction", "dynamodb", "UpdateItem", "provider_task_id", 10),  # provider has it, not recorded
    ("WebhookFunction", "dynamodb", "UpdateItem", "delivered", 1),  # POST accepted, not recorded
    ("TaskEventsFunction", "events", "PutEvents", None, 1),  # webhook queued, bus event not published
)


def add_crashes(stack: DevStack, rate: float, *, most: int = 10, seed: int = 31) -> None:
    """Crash each CRASH_POINTS call with probability `rate` (times the point's factor, seeded), at
    most `most` times each."""
    assert stack.chaos is not None, "crashes need the stack's fault hook (aws_faults)"
    for number, (function, service, operation, text, factor) in enumerate(CRASH_POINTS):
        stack.chaos.add_crash(
            function,
            service,
            operation,
            body_contains=text,
            rate=min(1.0, rate * factor),
            count=most,
            seed=seed + number,
        )


@dataclass
class Submission:
    fault: Fault
    prompt: str
    key: str
    callback_url: str | None
    model: str = "seedance-1.5-pro"
    attempts: int = 0
    answers: list[int] = field(default_factory=list)
    task_id: str | None = None
    sent_at: float | None = None  # epoch seconds of the first attempt
    accepted_at: float | None = None  # epoch seconds of the 202
    answer_seconds: float | None = None  # how long the accepted attempt took to answer 202
    # The reason the 202 gave when the create stored its task and it failed at once (a provider 5xx
    # on create: `provider_outcome_unknown`, not resent); the stored task must end with the same.
    answered_error: str | None = None


@dataclass
class LoadReport:
    submitted: int = 0
    accepted: int = 0
    rejected: int = 0  # submissions never accepted after every retry
    completed: int = 0
    failed: int = 0
    failed_reasons: dict[str, int] = field(default_factory=dict)
    lost: int = 0
    duplicates: int = 0
    unexpected: list[str] = field(default_factory=list)
    sha256_checked: int = 0
    sha256_mismatches: list[str] = field(default_factory=list)
    webhook_events: int = 0
    webhook_undelivered: list[str] = field(default_factory=list)
    webhook_deliveries: int = 0
    webhook_repeats: int = 0  # deliveries beyond the first of an event (refused, or retried)
    webhook_id_mismatches: list[str] = field(default_factory=list)
    submit_retries: int = 0
    submit_answers: dict[str, int] = field(default_factory=dict)  # every answer a submit got, by status
    submit_seconds: float = 0.0
    settle_seconds: float = 0.0
    aws_faults: dict[str, int] = field(default_factory=dict)
    crashes: dict[str, int] = field(default_factory=dict)  # worker crashes, by function and call
    # Seconds per stage, one value per task (or per push, for the callback): see stage_latencies().
    latencies: dict[str, list[float]] = field(default_factory=dict)

    @property
    def throughput(self) -> float:
        """Terminal tasks per second, from the first submit to the last task settling."""
        return (self.completed + self.failed) / self.settle_seconds if self.settle_seconds else 0.0

    def latency_lines(self) -> list[str]:
        return _latency_lines(self.latencies) if self.latencies else []

    @property
    def ok(self) -> bool:
        lists = (
            self.unexpected + self.sha256_mismatches + self.webhook_undelivered + self.webhook_id_mismatches
        )
        return not (self.lost or self.duplicates or self.rejected or lists)

    def lines(self) -> list[str]:
        reasons = ", ".join(f"{code} {count}" for code, count in sorted(self.failed_reasons.items())) or "-"
        faults = ", ".join(f"{name} {count}" for name, count in sorted(self.aws_faults.items())) or "none"
        return [
            f"submitted          {self.submitted} (accepted {self.accepted}, never accepted {self.rejected};"
            f" {self.submit_retries} submit retries with the same Idempotency-Key)",
            "submit answers     "
            + ", ".join(f"{code} x{count}" for code, count in sorted(self.submit_answers.items())),
            f"completed          {self.completed}",
            f"failed             {self.failed} ({reasons})",
            f"lost               {self.lost}",
            f"duplicate tasks    {self.duplicates}",
            f"unexpected outcome {len(self.unexpected)}"
            + (f": {self.unexpected[:5]}" if self.unexpected else ""),
            f"mp4 sha256 checked {self.sha256_checked}, mismatches {len(self.sha256_mismatches)}",
            f"webhook events     {self.webhook_events}, undelivered {len(self.webhook_undelivered)},"
            f" deliveries {self.webhook_deliveries} ({self.webhook_repeats} repeats),"
            f" webhook-id mismatches {len(self.webhook_id_mismatches)}",
            *(f"  mismatch: {line}" for line in self.webhook_id_mismatches[:5]),
            f"injected AWS faults {faults}",
            "worker crashes     "
            + (", ".join(f"{name} {count}" for name, count in sorted(self.crashes.items())) or "none"),
            *self.latency_lines(),
            f"submit phase       {self.submit_seconds:.1f} s ({self.submitted / max(self.submit_seconds, 1e-9):.1f}"
            " submits/s)",
            f"throughput         {self.throughput:.2f} tasks/s end to end ({self.settle_seconds:.1f} s in all)",
            "result             " + ("OK" if self.ok else "PROBLEMS"),
        ]


STAGES = {
    "submit": "submit answer (POST /v1/videos -> 202)",
    "callback": "callback answer (push -> our answer)",
    "archive": "archive (result recorded -> completed)",
    "webhook": "webhook (completed -> receiver got it)",
    "push_to_webhook": "provider push -> client webhook",
    "bare_copy": "bare copy (httpx GET + S3 put)",
    "overhead": "relay overhead (push->webhook - copy)",
}


def percentile(values: list[float], share: float) -> float:
    """The nearest-rank percentile (0 < share <= 1) of `values`."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(share * len(ordered)) - 1))]


def _latency_lines(latencies: dict[str, list[float]]) -> list[str]:
    lines = [f"{'latency, ms':38} {'p50':>8} {'p90':>8} {'p99':>8} {'n':>6}"]
    for name, label in STAGES.items():
        values = latencies.get(name) or []
        if values:
            p50, p90, p99 = (percentile(values, share) * 1000 for share in (0.5, 0.9, 0.99))
            lines.append(f"  {label:36} {p50:8.0f} {p90:8.0f} {p99:8.0f} {len(values):6}")
    return lines


def plan(
    tasks: int,
    mix: dict[str, int],
    receiver: WebhookReceiver | None,
    *,
    seed: int = 7,
    refuse_webhooks: bool = True,
    all_webhooks: bool = False,
) -> list[Submission]:
    """`tasks` submissions in the mix's proportions, shuffled; most with a callback_url that is
    refused a few times per event first. `refuse_webhooks=False` makes every callback_url accept
    at once; `all_webhooks` gives every task one (by default every tenth has none)."""
    weighted = [FAULTS[name] for name, weight in mix.items() for _ in range(weight)]
    run = uuid.uuid4().hex[:6]
    submissions = []
    for index in range(tasks):
        fault = weighted[index % len(weighted)]
        callback_url = None
        if receiver is not None and (all_webhooks or index % 10 != 9):  # every tenth has none
            refused = index % 4 if refuse_webhooks else 0
            callback_url = receiver.url_failing(refused) if refused else receiver.url
        prompt = f"load {run} #{index} {fault.marker}".strip()
        model = MODELS[index % len(MODELS)]
        submissions.append(Submission(fault, prompt, f"load-{run}-{index}", callback_url, model))
    random.Random(seed).shuffle(submissions)
    return submissions


class LoadRunner:
    def __init__(
        self,
        stack: DevStack,
        receiver: WebhookReceiver | None,
        *,
        concurrency: int = 300,
        settle_timeout: float = 300.0,
        progress: Callable[[str], None] | None = None,
        measure_latency: bool = True,
    ) -> None:
        self.stack = stack
        self.measure_latency = measure_latency
        self.receiver = receiver
        self.concurrency = concurrency
        self.settle_timeout = settle_timeout
        self.progress = progress or (lambda message: None)
        # What the last run() submitted and found in the table at the end (for measuring).
        self.submissions: list[Submission] = []
        self.final_tasks: list[dict[str, Any]] = []
        self._client = local_http(
            stack.api_url,
            headers={"x-api-key": stack.api_key},
            timeout=60,
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        )

    def close(self) -> None:
        self._client.close()

    # -- submitting --

    def _submit(self, submission: Submission, start: threading.Event) -> None:
        start.wait()
        body: dict[str, Any] = {"prompt": submission.prompt, "model": submission.model, "duration": 4}
        if submission.callback_url:
            body["callback_url"] = submission.callback_url
        delay = 0.2
        submission.sent_at = time.time()
        # A submit whose first attempt failed after writing its idempotency record (a 500) answers
        # 409 until that in-progress record expires with the attempt's invocation (up to the
        # function's 30 s timeout): a client keeps retrying at least that long, not a count.
        retry_until = time.monotonic() + SUBMIT_RETRY_S
        while submission.attempts < SUBMIT_ATTEMPTS or time.monotonic() < retry_until:
            submission.attempts += 1
            try:
                response = self._client.post(
                    "/v1/videos", json=body, headers={"Idempotency-Key": submission.key}
                )
            except httpx.HTTPError:
                submission.answers.append(0)  # a connection error
            else:
                submission.answers.append(response.status_code)
                if response.status_code == 202:
                    submission.accepted_at = time.time()
                    submission.answer_seconds = response.elapsed.total_seconds()
                    video = response.json()
                    submission.task_id = video["id"]
                    submission.answered_error = (video.get("error") or {}).get("code")
                    return
                if response.status_code not in (409, 429) and response.status_code < 500:
                    return  # refused for good
            time.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, 3.0)

    def submit_all(self, submissions: list[Submission]) -> float:
        start = threading.Event()
        began = time.monotonic()
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            futures = [pool.submit(self._submit, submission, start) for submission in submissions]
            start.set()  # all at once
            for future in futures:
                future.result()
        return time.monotonic() - began

    # -- watching --

    def tasks(self) -> list[dict[str, Any]]:
        """Every task in the table, read straight from moto (this process injects no faults)."""
        assert self.stack.stack is not None
        pages = self.stack.aws_client("dynamodb", label="load-runner").get_paginator("scan")
        table = self.stack.stack.refs["TasksTable"]
        return [
            plain_item(item)
            for page in pages.paginate(TableName=table, ConsistentRead=True)
            for item in page["Items"]
        ]

    def read_tasks(self, task_ids: list[str]) -> dict[str, dict[str, Any]]:
        """These tasks (those that exist) by id, read straight from moto, 100 per BatchGetItem."""
        assert self.stack.stack is not None
        client = self.stack.aws_client("dynamodb", label="load-runner")
        table = self.stack.stack.refs["TasksTable"]
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(task_ids), 100):
            keys: list[dict[str, Any]] = [{"task_id": {"S": tid}} for tid in task_ids[start : start + 100]]
            while keys:
                answer = client.batch_get_item(RequestItems={table: {"Keys": keys, "ConsistentRead": True}})
                found |= {
                    task["task_id"]: task for task in map(plain_item, answer["Responses"].get(table, []))
                }
                keys = answer.get("UnprocessedKeys", {}).get(table, {}).get("Keys", [])
        return found

    def settle(self, submissions: list[Submission], began: float) -> tuple[list[dict[str, Any]], float]:
        """Wait until every accepted task is terminal and every webhook event delivered.

        Only the tasks still open are read again (BatchGetItem), so watching puts less and less
        load on moto as tasks finish; one scan at the end returns the whole table."""
        wanted = {s.task_id for s in submissions if s.task_id}
        hooks = {s.task_id for s in submissions if s.task_id and s.callback_url}
        deadline = time.monotonic() + self.settle_timeout
        last_note = 0.0
        settled_at = None
        open_ids, undelivered = set(wanted), set(hooks)
        while True:
            tasks = self.read_tasks(sorted(open_ids | undelivered))
            open_ids = {tid for tid in open_ids if tasks.get(tid, {}).get("status") not in TERMINAL}
            if not open_ids and settled_at is None:
                settled_at = time.monotonic()
            undelivered = {tid for tid in undelivered if not self._delivered(tasks.get(tid))}
            if (not open_ids and not undelivered) or time.monotonic() > deadline:
                return self.tasks(), (settled_at or time.monotonic()) - began
            if time.monotonic() - last_note > 5:
                self.progress(
                    f"  {len(wanted) - len(open_ids)}/{len(wanted)} tasks terminal, {len(undelivered)} webhooks pending"
                )
                last_note = time.monotonic()
            time.sleep(0.5)

    @staticmethod
    def _delivered(task: dict[str, Any] | None) -> bool:
        webhook = (task or {}).get("webhook") or {}
        return webhook.get("state") == "delivered"

    # -- checking --

    def check(self, submissions: list[Submission], tasks: list[dict[str, Any]], report: LoadReport) -> None:
        assert self.stack.stack is not None
        by_prompt: dict[str, list[dict[str, Any]]] = {}
        for task in tasks:
            by_prompt.setdefault(task["prompt"], []).append(task)
        by_id = {task["task_id"]: task for task in tasks}
        reasons: Counter[str] = Counter()
        answers: Counter[str] = Counter()
        s3 = self.stack.aws_client("s3", label="load-runner")
        bucket = self.stack.stack.refs["VideosBucket"]
        for submission in submissions:
            made = by_prompt.get(submission.prompt, [])
            report.duplicates += max(0, len(made) - 1)
            report.submit_retries += submission.attempts - 1
            answers.update("conn-error" if code == 0 else str(code) for code in submission.answers)
            if submission.task_id is None:
                report.rejected += 1
                # A submission that was never accepted must not have left an unfinished task behind.
                report.lost += sum(1 for task in made if task["status"] not in TERMINAL)
                continue
            report.accepted += 1
            task = by_id.get(submission.task_id)
            if task is None or task["status"] not in TERMINAL:
                report.lost += 1
                continue
            if task["status"] == "completed":
                report.completed += 1
                self._check_video(s3, bucket, task, report)
            else:
                report.failed += 1
                reasons[str(task.get("error_code"))] += 1
            expected = submission.fault
            if (
                task["status"] != expected.status
                or (expected.error_code and task.get("error_code") not in expected.error_code)
                or (submission.answered_error and task.get("error_code") != submission.answered_error)
            ):
                report.unexpected.append(
                    f"{submission.fault.name}: {task['task_id']} {task['status']} {task.get('error_code')}"
                )
            if submission.callback_url:
                self._check_webhooks(task, report)
        report.failed_reasons = dict(reasons)
        report.submit_answers = dict(answers)

    @staticmethod
    def _check_video(s3: Any, bucket: str, task: dict[str, Any], report: LoadReport) -> None:
        data = s3.get_object(Bucket=bucket, Key=task["video_key"])["Body"].read()
        report.sha256_checked += 1
        if (
            hashlib.sha256(data).hexdigest() != task.get("video_sha256")
            or len(data) != int(task.get("video_bytes", -1))
            or data[4:8] != b"ftyp"
        ):
            report.sha256_mismatches.append(task["task_id"])

    def _check_webhooks(self, task: dict[str, Any], report: LoadReport) -> None:
        assert self.receiver is not None
        report.webhook_events += 1
        deliveries = self.receiver.deliveries_for(task["task_id"])
        report.webhook_deliveries += len(deliveries)
        report.webhook_repeats += max(0, len(deliveries) - 1)
        ids = {delivery.headers.get("webhook-id") for delivery in deliveries}
        expected_id = f"evt_{task['task_id'].removeprefix('video_')}_{task['status']}"
        if ids != {expected_id}:
            report.webhook_id_mismatches.append(f"{task['task_id']}: {sorted(map(str, ids))}")
        accepted = [delivery for delivery in deliveries if delivery.accepted]
        if not accepted:
            report.webhook_undelivered.append(task["task_id"])
            return
        if any(delivery.verified is not True for delivery in accepted):
            # Checked on arrival (the signature's timestamp is good for 5 minutes, a run is longer).
            report.webhook_id_mismatches.append(f"{task['task_id']}: signature did not verify")

    # -- measuring --

    def stage_latencies(
        self, submissions: list[Submission], tasks: list[dict[str, Any]]
    ) -> dict[str, list[float]]:
        """Seconds per stage, from the client's answers, the simulator's pushes, the task items'
        *_ms fields and the receiver's arrival times; and the relay's overhead per completed task
        with a webhook: from the provider's (first final) push to the client's webhook, minus a
        bare copy of the same bytes (an httpx GET from the simulator and one S3 put to moto, made
        now, in this run, one task at a time)."""
        assert self.stack.simulator is not None and self.stack.stack is not None
        by_id = {task["task_id"]: task for task in tasks}
        jobs = {job.id: job for job in self.stack.simulator.jobs()}
        jobs_by_prompt = {job.prompt: job for job in jobs.values()}
        found: dict[str, list[float]] = {name: [] for name in STAGES}
        found["submit"] = [s.answer_seconds for s in submissions if s.answer_seconds is not None]
        found["callback"] = [
            attempt["seconds"]
            for job in jobs.values()
            for attempt in job.callbacks
            if attempt.get("status") is not None and "seconds" in attempt
        ]
        s3 = self.stack.aws_client("s3", label="load-runner")
        bucket = self.stack.stack.refs["VideosBucket"]
        with local_http(timeout=60) as http:
            for submission in submissions:
                task = by_id.get(submission.task_id or "")
                if task is None or task.get("status") != "completed":
                    continue
                if task.get("result_received_ms") and task.get("completed_ms"):
                    found["archive"].append(
                        (int(task["completed_ms"]) - int(task["result_received_ms"])) / 1000
                    )
                delivered = self._first_accepted(task["task_id"])
                if delivered is None or not task.get("completed_ms"):
                    continue
                found["webhook"].append(delivered - int(task["completed_ms"]) / 1000)
                job = jobs.get(str(task.get("provider_task_id"))) or jobs_by_prompt.get(submission.prompt)
                pushes = [a["at"] for a in (job.callbacks if job else []) if a.get("kind") == "final"]
                if not pushes or not task.get("provider_video_url"):
                    continue
                push_to_webhook = delivered - min(pushes)
                copy = self._bare_copy(http, s3, bucket, str(task["provider_video_url"]), task["task_id"])
                found["push_to_webhook"].append(push_to_webhook)
                found["bare_copy"].append(copy)
                found["overhead"].append(push_to_webhook - copy)
        return found

    def _first_accepted(self, task_id: str) -> float | None:
        assert self.receiver is not None
        accepted = [d.received_at for d in self.receiver.deliveries_for(task_id) if d.accepted]
        return min(accepted) if accepted else None

    @staticmethod
    def _bare_copy(http: httpx.Client, s3: Any, bucket: str, url: str, task_id: str) -> float:
        started = time.perf_counter()
        response = http.get(url)
        response.raise_for_status()
        s3.put_object(Bucket=bucket, Key=f"baseline/{task_id}.mp4", Body=response.content)
        return time.perf_counter() - started

    # -- the whole run --

    def run(self, tasks: int) -> LoadReport:
        """`tasks` tasks in the default mix of faults, submitted at once, settled and checked."""
        self.submissions = submissions = plan(tasks, DEFAULT_MIX, self.receiver)
        report = LoadReport(submitted=len(submissions))
        began = time.monotonic()
        self.progress(f"submitting {len(submissions)} tasks, {self.concurrency} at once ...")
        report.submit_seconds = self.submit_all(submissions)
        self.progress(f"submitted in {report.submit_seconds:.1f} s; waiting for every task and webhook ...")
        settled, report.settle_seconds = self.settle(submissions, began)
        self.final_tasks = settled
        self.check(submissions, settled, report)
        if self.stack.chaos is not None:
            report.aws_faults = {
                f"{service}:{operation}": count
                for (service, operation), count in self.stack.chaos.fault_counts().items()
            }
            report.crashes = {
                f"{function} at {service}:{operation}": count
                for (function, service, operation), count in self.stack.chaos.crash_counts().items()
            }
        if self.measure_latency and self.receiver is not None:
            report.latencies = self.stage_latencies(submissions, settled)
        return report
