"""`python -m devstack load` (dev-only): many tasks at once, each retried with its Idempotency-Key,
with fault markers, refusing receivers and AWS faults on; every accepted task must end as its fault
says (lost 0, duplicates 0), its MP4 matching its sha256, its webhooks delivered under one id."""

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
from devstack.stack import DevStack
from sora_relay.adapters.dynamodb_items import from_attrs

TERMINAL = ("completed", "failed")

# Every wait of the service shortened so a fault run settles in seconds, not production's hours.
FAST_FUNCTION_ENV = {
    "PROVIDER_RETRY_BASE_DELAY_SECONDS": "0.1",
    "DISPATCH_BASE_DELAY_SECONDS": "0.2",
    "ARCHIVE_BASE_DELAY_SECONDS": "0.2",
    "WEBHOOK_RETRY_SCHEDULE": "0.5,1,1,2,2,3,3",
    "RECONCILE_STALE_AFTER_SECONDS": "4",
    "RECONCILE_COPY_REQUEUE_AFTER_SECONDS": "4",
    # Past dispatch's longest backoff (a task the provider never accepts fails for that reason, as
    # production's 6 h is past its ~30 min of attempts), inside the run's wait.
    "RECONCILE_DEADLINE_SECONDS": "300",
    "AUTHORIZER_CACHE_SECONDS": "1",  # a revoked key is refused a second later (60 s deployed)
    "ARCHIVE_LEASE_SECONDS": "15",  # lapses as a crashed attempt's message comes back, as deployed
    "DISPATCH_LEASE_SECONDS": "15",  # the same for a dispatch delivery's claim (production: 60 s)
}
# `make load`'s archive backlog lasts minutes: a copy waiting its turn is queued again after 2 min,
# not every 4 s (that doubled the queue every few runs).
LOAD_FUNCTION_ENV = {**FAST_FUNCTION_ENV, "RECONCILE_COPY_REQUEUE_AFTER_SECONDS": "120"}
FAST_PARAMETERS = {"DispatchMaxAttempts": "3"}
FAST_VISIBILITY_SECONDS = 15  # every queue's VisibilityTimeout at most (production: 60 s, 960 s)
FAST_SCHEDULE_SECONDS = 1.0
# A submit is retried at least this often and this long: the local gateway answers 500 when no
# instance frees up within 30 s (Lambda would scale out); 45 s left 121 of 1,000 never accepted.
SUBMIT_ATTEMPTS, SUBMIT_RETRY_S = 8, 600.0


@dataclass(frozen=True)
class Fault:  # one kind of task in the mix: a prompt marker, the outcome it must end in, its weight
    name: str
    marker: str
    status: str  # the terminal status the task must reach
    error_code: tuple[str, ...] = ()  # the reasons a failed task may record (each family's wording)
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


# Where `make load` kills a worker mid-invocation (devstack.chaos): (function, service, operation,
# request text, times the run's rate). Dispatch runs only the [sim:429x2] tasks (1 in 12): 10 times.
CRASH_POINTS = (
    ("CallbackFunction", "sqs", "SendMessage", None, 1),  # result recorded, copy not queued
    ("ArchiveFunction", "dynamodb", "UpdateItem", "video_sha256", 1),  # copy in S3, not recorded
    ("DispatchFunction", "dynamodb", "UpdateItem", "provider_task_id", 10),  # provider has it, not recorded
    ("WebhookFunction", "dynamodb", "UpdateItem", "delivered", 1),  # POST accepted, not recorded
    ("TaskEventsFunction", "events", "PutEvents", None, 1),  # webhook queued, bus event not published
)


def add_crashes(stack: DevStack, rate: float) -> None:
    """Crash each CRASH_POINTS call with probability `rate` (times its factor, seeded), 10 times at most."""
    assert stack.chaos is not None, "crashes need the stack's fault hook (aws_faults)"
    for seed, (function, service, operation, text, factor) in enumerate(CRASH_POINTS, start=31):
        rate_here = min(1.0, rate * factor)
        stack.chaos.add_crash(
            function, service, operation, body_contains=text, rate=rate_here, count=10, seed=seed
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
    answered_error: str | None = None  # a 202's failed task's reason: the stored task must end with it


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
    latencies: dict[str, list[float]] = field(default_factory=dict)  # seconds per STAGES entry

    @property
    def throughput(self) -> float:
        """Terminal tasks per second, from the first submit to the last task settling."""
        return (self.completed + self.failed) / self.settle_seconds if self.settle_seconds else 0.0

    @property
    def ok(self) -> bool:
        lists = self.unexpected, self.sha256_mismatches, self.webhook_undelivered, self.webhook_id_mismatches
        return not (self.lost or self.duplicates or self.rejected or any(lists))

    def lines(self) -> list[str]:
        def counts(found: dict[str, int], empty: str, sep: str = " ") -> str:
            return ", ".join(f"{name}{sep}{count}" for name, count in sorted(found.items())) or empty

        return [
            f"submitted          {self.submitted} (accepted {self.accepted}, never accepted {self.rejected};"
            f" {self.submit_retries} submit retries with the same Idempotency-Key)",
            f"submit answers     {counts(self.submit_answers, '', ' x')}",
            f"completed          {self.completed}",
            f"failed             {self.failed} ({counts(self.failed_reasons, '-')})",
            f"lost               {self.lost}",
            f"duplicate tasks    {self.duplicates}",
            f"unexpected outcome {len(self.unexpected)}"
            + (f": {self.unexpected[:5]}" if self.unexpected else ""),
            f"mp4 sha256 checked {self.sha256_checked}, mismatches {len(self.sha256_mismatches)}",
            f"webhook events     {self.webhook_events}, undelivered {len(self.webhook_undelivered)},"
            f" deliveries {self.webhook_deliveries} ({self.webhook_repeats} repeats),"
            f" webhook-id mismatches {len(self.webhook_id_mismatches)}",
            *(f"  mismatch: {line}" for line in self.webhook_id_mismatches[:5]),
            f"injected AWS faults {counts(self.aws_faults, 'none')}",
            f"worker crashes     {counts(self.crashes, 'none')}",
            *_latency_lines(self.latencies),
            f"submit phase       {self.submit_seconds:.1f} s"
            f" ({self.submitted / max(self.submit_seconds, 1e-9):.1f} submits/s)",
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


def _latency_lines(latencies: dict[str, list[float]]) -> list[str]:
    lines = [f"{'latency, ms':38} {'p50':>8} {'p90':>8} {'p99':>8} {'n':>6}"] if latencies else []
    for name, label in STAGES.items():
        if values := sorted(latencies.get(name, [])):  # nearest-rank percentiles
            p50, p90, p99 = (
                values[max(0, math.ceil(share * len(values)) - 1)] * 1000 for share in (0.5, 0.9, 0.99)
            )
            lines.append(f"  {label:36} {p50:8.0f} {p90:8.0f} {p99:8.0f} {len(values):6}")
    return lines


def plan(
    tasks: int,
    mix: dict[str, int],
    receiver: WebhookReceiver | None,
    *,
    refuse_webhooks: bool = True,
    all_webhooks: bool = False,
) -> list[Submission]:
    """`tasks` submissions in the mix's proportions, shuffled (seeded); their callback_urls refuse
    each event a few times (unless not `refuse_webhooks`); every tenth has none (unless `all_webhooks`)."""
    weighted = [FAULTS[name] for name, weight in mix.items() for _ in range(weight)]
    run = uuid.uuid4().hex[:6]
    submissions = []
    for index in range(tasks):
        fault, callback_url = weighted[index % len(weighted)], None
        if receiver is not None and (all_webhooks or index % 10 != 9):
            refused = index % 4 if refuse_webhooks else 0
            callback_url = receiver.url_failing(refused) if refused else receiver.url
        prompt = f"load {run} #{index} {fault.marker}".strip()
        submissions.append(
            Submission(fault, prompt, f"load-{run}-{index}", callback_url, MODELS[index % len(MODELS)])
        )
    random.Random(7).shuffle(submissions)
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
    ) -> None:
        self.stack, self.receiver = stack, receiver
        self.concurrency, self.settle_timeout = concurrency, settle_timeout
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
        self._dynamodb = stack.aws_client("dynamodb", label="load-runner")
        self._s3 = stack.aws_client("s3", label="load-runner")
        self._table, self._bucket = stack.ref("TasksTable"), stack.ref("VideosBucket")

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
        # A submit whose first attempt wrote its idempotency record and failed answers 409 until
        # that record expires with the attempt (up to 30 s): retry for a time, not a count.
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
        start, began = threading.Event(), time.monotonic()
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            futures = [pool.submit(self._submit, submission, start) for submission in submissions]
            start.set()  # all at once
            for future in futures:
                future.result()
        return time.monotonic() - began

    # -- watching --

    def tasks(self) -> list[dict[str, Any]]:
        """Every task in the table, read straight from moto (this process injects no faults)."""
        pages = self._dynamodb.get_paginator("scan").paginate(TableName=self._table, ConsistentRead=True)
        return [from_attrs(item) for page in pages for item in page["Items"]]

    def read_tasks(self, task_ids: list[str]) -> dict[str, dict[str, Any]]:
        """These tasks (those that exist) by id, read straight from moto, 100 per BatchGetItem."""
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(task_ids), 100):
            keys: list[dict[str, Any]] = [{"task_id": {"S": tid}} for tid in task_ids[start : start + 100]]
            while keys:
                answer = self._dynamodb.batch_get_item(
                    RequestItems={self._table: {"Keys": keys, "ConsistentRead": True}}
                )
                found |= {
                    item["task_id"]: item
                    for item in map(from_attrs, answer["Responses"].get(self._table, []))
                }
                keys = answer.get("UnprocessedKeys", {}).get(self._table, {}).get("Keys", [])
        return found

    def settle(self, submissions: list[Submission], began: float) -> tuple[list[dict[str, Any]], float]:
        """Wait until every accepted task is terminal and every webhook event delivered, reading
        again only the tasks still open (less load on moto as they finish); then scan the table."""
        wanted = {s.task_id for s in submissions if s.task_id}
        open_ids, undelivered = set(wanted), {s.task_id for s in submissions if s.task_id and s.callback_url}
        deadline, last_note, settled_at = time.monotonic() + self.settle_timeout, 0.0, None
        while True:
            tasks = self.read_tasks(sorted(open_ids | undelivered))
            open_ids = {tid for tid in open_ids if tasks.get(tid, {}).get("status") not in TERMINAL}
            if not open_ids and settled_at is None:
                settled_at = time.monotonic()
            undelivered = {
                tid
                for tid in undelivered
                if ((tasks.get(tid) or {}).get("webhook") or {}).get("state") != "delivered"
            }
            if (not open_ids and not undelivered) or time.monotonic() > deadline:
                return self.tasks(), (settled_at or time.monotonic()) - began
            if time.monotonic() - last_note > 5:
                done = len(wanted) - len(open_ids)
                self.progress(f"  {done}/{len(wanted)} tasks terminal, {len(undelivered)} webhooks pending")
                last_note = time.monotonic()
            time.sleep(0.5)

    # -- checking --

    def check(self, submissions: list[Submission], tasks: list[dict[str, Any]], report: LoadReport) -> None:
        by_prompt: dict[str, list[dict[str, Any]]] = {}
        for task in tasks:
            by_prompt.setdefault(task["prompt"], []).append(task)
        by_id = {task["task_id"]: task for task in tasks}
        reasons: Counter[str] = Counter()
        answers: Counter[str] = Counter()
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
                self._check_video(task, report)
            else:
                report.failed += 1
                reasons[str(task.get("error_code"))] += 1
            expected, code = submission.fault, task.get("error_code")
            if (
                task["status"] != expected.status
                or (expected.error_code and code not in expected.error_code)
                or (submission.answered_error and code != submission.answered_error)
            ):
                report.unexpected.append(f"{expected.name}: {task['task_id']} {task['status']} {code}")
            if submission.callback_url:
                self._check_webhooks(task, report)
        report.failed_reasons, report.submit_answers = dict(reasons), dict(answers)

    def _check_video(self, task: dict[str, Any], report: LoadReport) -> None:
        data = self._s3.get_object(Bucket=self._bucket, Key=task["video_key"])["Body"].read()
        report.sha256_checked += 1
        digest = hashlib.sha256(data).hexdigest()
        if (
            digest != task.get("video_sha256")
            or len(data) != int(task.get("video_bytes", -1))
            or data[4:8] != b"ftyp"
        ):
            report.sha256_mismatches.append(task["task_id"])

    def _check_webhooks(self, task: dict[str, Any], report: LoadReport) -> None:
        assert self.receiver is not None
        deliveries = self.receiver.deliveries_for(task["task_id"])
        report.webhook_events += 1
        report.webhook_deliveries += len(deliveries)
        report.webhook_repeats += max(0, len(deliveries) - 1)
        ids = {delivery.headers.get("webhook-id") for delivery in deliveries}
        if ids != {f"evt_{task['task_id'].removeprefix('video_')}_{task['status']}"}:
            report.webhook_id_mismatches.append(f"{task['task_id']}: {sorted(map(str, ids))}")
        accepted = [delivery for delivery in deliveries if delivery.accepted]
        if not accepted:
            report.webhook_undelivered.append(task["task_id"])
        elif any(delivery.verified is not True for delivery in accepted):  # checked on arrival
            report.webhook_id_mismatches.append(f"{task['task_id']}: signature did not verify")

    # -- measuring --

    def stage_latencies(
        self, submissions: list[Submission], tasks: list[dict[str, Any]]
    ) -> dict[str, list[float]]:
        """Seconds per stage (STAGES), from the client's answers, the simulator's pushes, the tasks'
        *_ms fields and the receiver's arrivals. The relay's overhead is a completed task's first
        final push to its webhook minus a bare copy of the same bytes (httpx GET, S3 put), made now."""
        assert self.stack.simulator is not None and self.receiver is not None
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
        with local_http(timeout=60) as http:
            for submission in submissions:
                task = by_id.get(submission.task_id or "")
                if task is None or task.get("status") != "completed":
                    continue
                if task.get("result_received_ms") and task.get("completed_ms"):
                    found["archive"].append(
                        (int(task["completed_ms"]) - int(task["result_received_ms"])) / 1000
                    )
                accepted = [
                    d.received_at for d in self.receiver.deliveries_for(task["task_id"]) if d.accepted
                ]
                if not accepted or not task.get("completed_ms"):
                    continue
                found["webhook"].append(min(accepted) - int(task["completed_ms"]) / 1000)
                job = jobs.get(str(task.get("provider_task_id"))) or jobs_by_prompt.get(submission.prompt)
                pushes = [a["at"] for a in (job.callbacks if job else []) if a.get("kind") == "final"]
                if not pushes or not task.get("provider_video_url"):
                    continue
                started = time.perf_counter()
                response = http.get(str(task["provider_video_url"]))
                response.raise_for_status()
                self._s3.put_object(
                    Bucket=self._bucket, Key=f"baseline/{task['task_id']}.mp4", Body=response.content
                )
                copy = time.perf_counter() - started
                found["push_to_webhook"].append(min(accepted) - min(pushes))
                found["bare_copy"].append(copy)
                found["overhead"].append(min(accepted) - min(pushes) - copy)
        return found

    # -- the whole run --

    def run(self, tasks: int) -> LoadReport:
        """`tasks` tasks in the default mix of faults, submitted at once, settled and checked."""
        self.submissions = submissions = plan(tasks, DEFAULT_MIX, self.receiver)
        report = LoadReport(submitted=len(submissions))
        began = time.monotonic()
        self.progress(f"submitting {len(submissions)} tasks, {self.concurrency} at once ...")
        report.submit_seconds = self.submit_all(submissions)
        self.progress(f"submitted in {report.submit_seconds:.1f} s; waiting for every task and webhook ...")
        self.final_tasks, report.settle_seconds = self.settle(submissions, began)
        self.check(submissions, self.final_tasks, report)
        if self.stack.chaos is not None:
            faults, crashes = self.stack.chaos.fault_counts(), self.stack.chaos.crash_counts()
            report.aws_faults = {f"{service}:{operation}": n for (service, operation), n in faults.items()}
            report.crashes = {
                f"{fn} at {service}:{operation}": n for (fn, service, operation), n in crashes.items()
            }
        if self.receiver is not None:
            report.latencies = self.stage_latencies(submissions, self.final_tasks)
        return report
