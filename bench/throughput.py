"""Benchmark 5: throughput of the local stack, end to end, and where the time goes (issue 6).

`--tasks` tasks (200) are submitted at once through the local gateway (devstack.load.LoadRunner,
one thread per task, each with its Idempotency-Key) to a fresh devstack.stack.DevStack, with no
faults: no simulator fault markers, no AWS faults, every callback_url accepting at once. A
task counts when it is done end to end: submit accepted (202), the provider's callback in, the
MP4 in S3 (`completed`) and the signed webhook received by the local receiver. Throughput = tasks /
(the last webhook received - the first submit sent), from the receiver's own timestamps.

Baselines, measured in the same stack right before its 200-task run (the issue asks for ratios
against a baseline of the same run, since this machine is noisy):

- the single-task end-to-end latency (one task alone, same path, median of 3 after a warm-up);
  `concurrency gain` = throughput x that latency = how many single tasks' worth of work the stack
  gets through at once (1.0 = no better than doing them one after another);
- the same run with the provider's generation delay (the simulator's callback delay, 1 s as in
  `make load`) set to 0: `delay ratio` = throughput(1 s) / throughput(0 s). Near 1, the simulated
  provider's time is hidden by concurrency and the pipeline itself is the limit.

Each repeat starts two fresh stacks (delay 1 s, then delay 0, alternating the order between
repeats). The profile comes from one extra run of a quarter as many tasks (not in the throughput
figures: profiling slows what it measures, moto's server about 4x), with the function workers
under cProfile timing CPU (DEVSTACK_PROFILE_DIR, DEVSTACK_PROFILE_CLOCK=cpu; see
devstack/worker.py) and moto's server under cProfile (DevStack(moto_profile=...)).

Where the time goes, from that data:
- per-stage latency per task (median/p95) from the timestamps the stack keeps anyway: the client's
  send and 202, the task's created_ms and completed_ms, the simulator's task record (provider
  accepted, finished) and its callback attempts, the webhook attempt on the task and the
  receiver's arrival time;
- per function: invocations, handler duration (the workers' REPORT lines) and the wait for a free
  instance (the gateway's pool, at most `workers` instances per function);
- CPU per process over the run, from /proc (moto's server, the function workers by function, and
  this process, which runs the gateway, the simulator, the event sources, the receiver and the
  load client, split by thread from /proc/self/task sampled every 0.2 s), against the 2 cores;
- the profiles: own time by package and the top functions, per function and for moto.

    .venv/bin/python -m bench.throughput [--tasks 200] [--repeats 2] [--no-profile] [--profile-tasks N]

Requests wait up to 300 s for a free function instance here (DevStack(acquire_timeout_s=...);
the stack's default is 30 s): with the default, a burst of 200 provider callbacks against 4
CallbackFunction instances gets 500s after 30 s, the simulator does not send a callback twice,
and those tasks wait for the reconciler (15 min), which is a finding, not a throughput figure.
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import re
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench import harness
from bench.harness import Figure, Spread
from devstack.load import MODELS, LoadReport, LoadRunner, plan
from devstack.processes import local_http
from devstack.receiver import WebhookReceiver
from devstack.stack import DevStack

BENCH = "throughput"
PROVIDER_DELAY_S = 1.0  # the simulator's generation time, as `make load` runs it
SINGLE_TASKS = 3  # measured single-task latencies per stack (after one warm-up)
# A request waits this long for a free function instance (the stack's default, 30 s, answers a
# burst of 200 provider callbacks with 500s after 30 s: the simulator does not retry them, so
# those tasks would wait for the reconciler, 15 min; Lambda would start more instances instead).
ACQUIRE_TIMEOUT_S = 300.0
CLOCK_TICK = os.sysconf("SC_CLK_TCK")
CORES = os.cpu_count() or 1
_REPORT = re.compile(r"^REPORT RequestId: (\S+)\tDuration: ([0-9.]+) ms")
_INIT = re.compile(r"^INIT (\S+): ([0-9]+) ms")
DYNAMODB_READS = {"GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems"}
DYNAMODB_WRITES = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) of the values."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "median": round(statistics.median(values), 1),
        "p95": round(pct(values, 95), 1),
        "max": round(max(values), 1),
    }


# ---------------------------------------------------------------------------------------------
# CPU: processes from /proc/<pid>/stat, the threads of this process from /proc/self/task


def cpu_seconds(pid: int | str) -> float:
    """utime + stime of a process (or /proc/self/task/<tid>) in seconds; 0 if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = raw.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK


def machine_busy_seconds() -> float:
    """CPU seconds spent on anything (all cores) since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / CLOCK_TICK


class ThreadSampler:
    """CPU of this process's threads by role, sampled every `interval_s` from /proc/self/task.

    A thread is named by what it runs: a request thread of an HTTP server by the port it serves
    (gateway, simulator, receiver), an event source's poller or delivery thread, a simulator
    timer, the load client's pool. Threads that are not Python's (libx264's, say) are "native".
    CPU of a thread that ended between two samples is lost from the split; the process total
    (from /proc/self/stat) still has it, and the difference is reported as "unattributed".
    """

    def __init__(self, ports: dict[int, str], interval_s: float = 0.2) -> None:
        self.ports = ports
        self.interval_s = interval_s
        self.by_role: Counter[str] = Counter()
        self._last: dict[int, float] = {}
        self._roles: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)

    def role(self, thread: threading.Thread) -> str:
        name = thread.name
        if name == "bench-sampler":
            return "bench sampler"
        if name.startswith(("sqs-", "dynamodb-", "schedule-")) or name.endswith("(_deliver)"):
            return "event sources"
        if name.startswith("ThreadPoolExecutor") or name == "MainThread":
            return "load client"
        if name.endswith("(process_request_thread)"):
            request = (getattr(thread, "_args", None) or (None,))[0]
            try:
                port = request.getsockname()[1]
            except (AttributeError, OSError):
                return "http servers"
            return self.ports.get(port, "http servers")
        if name.endswith("(_start)"):
            return "gateway"  # a pool's starter thread waiting for a cold start
        if isinstance(thread, threading.Timer):
            return "simulator"  # the callbacks the simulator sends
        servers = {
            "local-api-gateway": "gateway",
            "sora-simulator": "simulator",
            "webhook-receiver": "receiver",
        }
        if name in servers:
            return servers[name]
        return "other python"

    def sample(self) -> None:
        threads = {thread.native_id: thread for thread in threading.enumerate()}
        for tid_text in os.listdir("/proc/self/task"):
            tid = int(tid_text)
            now = cpu_seconds(f"self/task/{tid}")
            if tid not in self._roles:
                thread = threads.get(tid)
                self._roles[tid] = self.role(thread) if thread is not None else "native"
            self.by_role[self._roles[tid]] += now - self._last.get(tid, 0.0)
            self._last[tid] = now

    def start(self) -> None:
        self.sample()
        self.by_role.clear()  # only what happens from now on
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


@dataclass
class CpuWindow:
    """CPU of every process of the stack over one window of wall time."""

    wall_s: float = 0.0
    processes: dict[str, float] = field(default_factory=dict)  # role -> CPU seconds
    threads: dict[str, float] = field(default_factory=dict)  # this process's split
    machine_s: float = 0.0  # every process on the machine, ours and everyone else's


class CpuMeter:
    def __init__(self, stack: DevStack, receiver: WebhookReceiver) -> None:
        assert stack.gateway is not None and stack.simulator is not None
        self.stack = stack
        receiver_port = int(receiver.url.split(":")[2].split("/")[0])
        self.sampler = ThreadSampler(
            {stack.gateway.port: "gateway", stack.simulator.port: "simulator", receiver_port: "receiver"}
        )

    def _pids(self) -> dict[int, str]:
        assert self.stack.gateway is not None
        pids = {self.stack.moto_pid or -1: "moto server", os.getpid(): "bench process"}
        for function_id, pool in self.stack.gateway.pools.items():
            for pid in pool.pids():
                pids[pid] = f"worker {function_id}"
        return pids

    def start(self) -> None:
        self._began = time.monotonic()
        self._machine = machine_busy_seconds()
        self._before = {pid: cpu_seconds(pid) for pid in self._pids()}
        self.sampler.start()

    def stop(self) -> CpuWindow:
        self.sampler.stop()
        window = CpuWindow(wall_s=time.monotonic() - self._began)
        window.machine_s = machine_busy_seconds() - self._machine
        totals: Counter[str] = Counter()
        for pid, role in self._pids().items():
            # An instance started during the run counts from 0, cold start included.
            totals[role] += cpu_seconds(pid) - self._before.get(pid, 0.0)
        window.processes = dict(totals)
        threads = dict(self.sampler.by_role)
        threads["unattributed"] = max(0.0, totals["bench process"] - sum(threads.values()))
        window.threads = threads
        return window


# ---------------------------------------------------------------------------------------------
# One run: a fresh stack, the single-task baseline, then the burst


@dataclass
class RunResult:
    delay_s: float
    tasks: int
    ok: bool
    problems: list[str]
    throughput: float  # tasks per second, end to end
    elapsed_s: float
    single_latency_s: float
    single_latencies_s: list[float]
    stages_ms: dict[str, list[float]]
    functions: dict[str, dict[str, Any]]
    cpu: CpuWindow
    api_calls: dict[str, int]  # "service:operation" -> calls, every caller of moto
    api_calls_by_caller: dict[str, dict[str, int]]
    gateway_requests: dict[str, int]
    video_bytes: list[int]
    tasks_in_stack: int  # every task this stack ran (the burst plus the single ones)
    startup_s: float


def single_task(stack: DevStack, receiver: WebhookReceiver, client: httpx.Client, n: int) -> float:
    """Seconds from sending one submit to its webhook arriving, nothing else running."""
    sent = time.time()
    answer = client.post(
        "/v1/videos",
        json={"prompt": f"single task {n}", "model": MODELS[0], "duration": 4, "callback_url": receiver.url},
        headers={"Idempotency-Key": f"single-{n}-{sent}"},
    )
    if answer.status_code != 202:
        raise RuntimeError(f"single task submit answered {answer.status_code}: {answer.text[:200]}")
    delivery = receiver.wait_for_video(answer.json()["id"], timeout=60)
    return delivery.received_at - sent


def read_reports(log_dir: Path, offsets: dict[str, int]) -> dict[str, list[float]]:
    """Handler durations (ms) by function from the workers' REPORT lines after `offsets`."""
    durations: dict[str, list[float]] = defaultdict(list)
    for path in log_dir.glob("*Function.log"):
        with path.open("rb") as handle:
            handle.seek(offsets.get(path.name, 0))
            for line in handle.read().decode(errors="replace").splitlines():
                match = _REPORT.match(line)
                if match:
                    durations[path.stem].append(float(match.group(2)))
    return durations


def log_offsets(log_dir: Path) -> dict[str, int]:
    return {path.name: path.stat().st_size for path in log_dir.glob("*Function.log")}


def stages(
    runner: LoadRunner, stack: DevStack, receiver: WebhookReceiver
) -> tuple[dict[str, list[float]], float, float, int]:
    """Per-stage milliseconds of every task that finished end to end, and the run's window."""
    assert stack.simulator is not None
    simulator = stack.simulator
    tasks = {task["task_id"]: task for task in runner.final_tasks}
    out: dict[str, list[float]] = defaultdict(list)
    first_sent = min(s.sent_at for s in runner.submissions if s.sent_at)
    last_received = first_sent
    done = 0
    for submission in runner.submissions:
        task = tasks.get(submission.task_id or "")
        if task is None or task.get("status") != "completed" or submission.sent_at is None:
            continue
        deliveries = [d for d in receiver.deliveries_for(task["task_id"]) if d.accepted]
        history = ((task.get("webhook") or {}).get("history")) or []
        # The simulator's own job (every dialect has one): when it accepted, finished and pushed.
        job = simulator.job(str(task.get("provider_task_id")))
        if not deliveries or not history or job is None or job.finished_at is None or not job.callbacks:
            continue
        done += 1
        sent = submission.sent_at * 1000
        received = deliveries[0].received_at * 1000
        last_received = max(last_received, deliveries[0].received_at)
        created = float(task["created_ms"])
        accepted_at_provider = job.created_at * 1000
        finished = job.finished_at * 1000
        callback_sent = job.callbacks[0]["at"] * 1000
        completed = float(task["completed_ms"])
        attempt = float(history[0]["at_ms"])
        out["submit: client send -> 202"].append((submission.accepted_at or 0) * 1000 - sent)
        out["submit: send -> task item written"].append(created - sent)
        out["submit: task item -> provider accepted"].append(accepted_at_provider - created)
        out["provider: generating (simulated)"].append(finished - accepted_at_provider)
        out["provider: finished -> callback sent"].append(callback_sent - finished)
        out["callback: sent -> completed (copy to S3)"].append(completed - callback_sent)
        out["events: completed -> webhook attempt"].append(attempt - completed)
        out["webhook: attempt -> received"].append(received - attempt)
        out["end to end"].append(received - sent)
    return dict(out), first_sent, last_received, done


def run_once(tasks: int, delay_s: float, *, profile_dir: Path | None = None, workers: int = 4) -> RunResult:
    with tempfile.TemporaryDirectory(prefix="bench-throughput-") as scratch:
        root = Path(scratch)
        env = {"DEVSTACK_STATS_DIR": str(root / "stats")}
        if profile_dir is not None:
            env["DEVSTACK_PROFILE_DIR"] = str(profile_dir)
            env["DEVSTACK_PROFILE_CLOCK"] = "cpu"
        stack = DevStack(
            moto_port=0,
            simulator_port=0,
            gateway_port=0,
            callback_delay=delay_s,
            workers=workers,
            log_dir=root / "logs",
            function_env=env,
            moto_profile=(profile_dir / "moto.prof") if profile_dir is not None else None,
            acquire_timeout_s=ACQUIRE_TIMEOUT_S,
        )
        began = time.monotonic()
        try:
            stack.start()
            startup_s = time.monotonic() - began
            with WebhookReceiver(stack.tenants[0].webhook_secret) as receiver:
                with local_http(stack.api_url, headers={"x-api-key": stack.api_key}, timeout=60) as client:
                    single_task(stack, receiver, client, 0)  # warm-up: first calls, secrets, clients
                    singles = [single_task(stack, receiver, client, n) for n in range(1, SINGLE_TASKS + 1)]
                assert stack.gateway is not None
                offsets = log_offsets(root / "logs")
                marks = {name: len(pool.invocations) for name, pool in stack.gateway.pools.items()}
                calls_before = Counter(stack.api_calls)
                meter = CpuMeter(stack, receiver)
                runner = LoadRunner(
                    stack, receiver, concurrency=tasks, settle_timeout=600, progress=lambda line: log(line)
                )
                assert stack.simulator is not None
                renders_before = len(stack.simulator.render_seconds)
                submissions = plan(tasks, {"clean": 1}, receiver, refuse_webhooks=False, all_webhooks=True)
                runner.submissions = submissions
                report = LoadReport(submitted=len(submissions))
                meter.start()
                try:  # LoadRunner.run's steps, so the CPU window ends when the last task is done
                    report.submit_seconds = runner.submit_all(submissions)
                    runner.final_tasks, report.settle_seconds = runner.settle(submissions, time.monotonic())
                finally:
                    cpu = meter.stop()
                try:
                    runner.check(submissions, runner.final_tasks, report)
                finally:
                    runner.close()
                stage_ms, first, last, done = stages(runner, stack, receiver)
                stage_ms["simulator: render MP4 (first download)"] = [
                    seconds * 1000 for seconds in list(stack.simulator.render_seconds)[renders_before:]
                ]
                handler_ms = read_reports(root / "logs", offsets)
                functions: dict[str, dict[str, Any]] = {}
                for name, pool in stack.gateway.pools.items():
                    measured = list(pool.invocations)[marks.get(name, 0) :]
                    durations = handler_ms.get(name, [])
                    functions[name] = {
                        "invocations": len(measured),
                        "invocations_per_task": round(len(measured) / max(done, 1), 3),
                        "failed_invocations": sum(1 for *_, ok in measured if not ok),
                        "duration_ms": summary(durations),
                        "instance_wait_ms": summary([wait * 1000 for wait, _, _ in measured]),
                        "gateway_ms": summary([run * 1000 for _, run, _ in measured]),
                        "instances_started": pool.cold_starts,
                    }
                local_calls = Counter(stack.api_calls) - calls_before
                access = (root / "logs" / "api-access.log").read_text().splitlines()
                problems = [] if report.ok else report.lines()
                if done != tasks:
                    problems.append(f"only {done} of {tasks} tasks finished end to end")
                videos = [
                    int(task["video_bytes"])
                    for task in runner.final_tasks
                    if task.get("video_bytes") is not None
                ]
        finally:
            stack.stop()  # the workers write their call counts (and profiles) as they exit
        api_calls: Counter[str] = Counter()
        by_caller: dict[str, Counter[str]] = defaultdict(Counter)
        for path in (root / "stats").glob("*.json"):
            stats = json.loads(path.read_text())
            for key, count in stats["api_calls"].items():
                by_caller[stats["function_id"]][key] += count
                api_calls[key] += count
        for (label, service, operation), count in local_calls.items():
            by_caller[label][f"{service}:{operation}"] += count
            api_calls[f"{service}:{operation}"] += count
        routes: Counter[str] = Counter()
        for line in access:
            record = json.loads(line)
            routes[f"{record['httpMethod']} {record['resourcePath']} {record['status']}"] += 1
        return RunResult(
            delay_s=delay_s,
            tasks=tasks,
            ok=not problems,
            problems=problems,
            throughput=done / max(last - first, 1e-9),
            elapsed_s=last - first,
            single_latency_s=statistics.median(singles),
            single_latencies_s=singles,
            stages_ms=stage_ms,
            functions=functions,
            cpu=cpu,
            api_calls=dict(api_calls),
            api_calls_by_caller={caller: dict(calls) for caller, calls in by_caller.items()},
            gateway_requests=dict(routes),
            video_bytes=videos,
            tasks_in_stack=tasks + SINGLE_TASKS + 1,
            startup_s=startup_s,
        )


# ---------------------------------------------------------------------------------------------
# Profiles


def package_of(filename: str) -> str:
    if filename.startswith("~") or filename == "~":
        return "builtins (C)"
    if "/site-packages/" in filename:
        return filename.split("/site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    if "/layers/common/sora_relay/" in filename:
        return "sora_relay"
    if "/functions/" in filename:
        return "handlers"
    if "/devstack/" in filename:
        return "devstack"
    if "/lib/python3" in filename:
        return "stdlib:" + filename.rsplit("/lib/python3", 1)[1].split("/", 2)[1].removesuffix(".py")
    return filename


def describe(key: tuple[str, int, str]) -> str:
    filename, line, name = key
    if filename == "~":
        return name
    short = filename.split("/site-packages/", 1)[-1].split("/layers/common/", 1)[-1]
    short = short.split(str(harness.ROOT) + "/", 1)[-1]
    return f"{short}:{line}({name})"


def profile_summary(paths: list[Path], top: int = 8) -> dict[str, Any] | None:
    stats: pstats.Stats | None = None
    loaded = 0
    for path in paths:
        try:
            one = pstats.Stats(str(path))
        except (TypeError, OSError, EOFError, ValueError):
            continue  # empty: an instance that never ran an event
        loaded += 1
        stats = one if stats is None else stats.add(one)
    if stats is None:
        return None
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = sum(tt for _, _, tt, _, _ in raw.values())
    by_package: Counter[str] = Counter()
    for key, (_, _, tt, _, _) in raw.items():
        by_package[package_of(key[0])] += tt
    own = sorted(raw.items(), key=lambda item: item[1][2], reverse=True)[:top]
    cumulative = sorted(raw.items(), key=lambda item: item[1][3], reverse=True)
    # Leave out the frames every call goes through (the wrappers), keep where the time splits.
    cumulative = [item for item in cumulative if item[1][3] < 0.9 * total][:top]
    return {
        "processes": loaded,
        "profiled_s": round(total, 3),
        "own_by_package": {
            name: round(seconds / total, 3) for name, seconds in by_package.most_common(8) if total
        },
        "top_own": [
            {"function": describe(key), "own_s": round(tt, 3), "calls": nc, "share": round(tt / total, 3)}
            for key, (_, nc, tt, _, _) in own
        ],
        "top_cumulative": [
            {"function": describe(key), "cum_s": round(ct, 3), "calls": nc, "share": round(ct / total, 3)}
            for key, (_, nc, _, ct, _) in cumulative
        ],
    }


def profile_run(tasks: int, delay_s: float, workers: int) -> tuple[RunResult, dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="bench-throughput-prof-") as scratch:
        profile_dir = Path(scratch)
        result = run_once(tasks, delay_s, profile_dir=profile_dir, workers=workers)
        profiles: dict[str, Any] = {}
        by_function: dict[str, list[Path]] = defaultdict(list)
        for path in profile_dir.glob("*.prof"):
            by_function[path.name.split(".", 1)[0]].append(path)
        for name, paths in sorted(by_function.items()):
            summary_ = profile_summary(paths)
            if summary_ is not None:
                profiles[name] = summary_
        return result, profiles


# ---------------------------------------------------------------------------------------------
# Printing


def print_run_detail(result: RunResult, title: str) -> None:
    print(f"\n== {title}")
    done = max(len(result.stages_ms.get("end to end", [])), 1)
    print(
        f"  {done} tasks in {result.elapsed_s:.1f} s = {result.throughput:.2f} tasks/s; single task"
        f" {result.single_latency_s:.2f} s; stack start {result.startup_s:.1f} s"
    )
    print("  per stage, ms (median / p95 / max):")
    for name, values in result.stages_ms.items():
        s = summary(values)
        print(f"    {name:42s} {s['median']:9.0f} {s['p95']:9.0f} {s['max']:9.0f}")
    print("  per function: invocations (per task), handler ms median/p95, wait for an instance ms median/p95")
    for name, info in sorted(result.functions.items()):
        if not info["invocations"]:
            continue
        d, w = info["duration_ms"], info["instance_wait_ms"]
        print(
            f"    {name:22s} {info['invocations']:5d} ({info['invocations_per_task']:.2f})"
            f"  {d.get('median', 0):7.0f} {d.get('p95', 0):7.0f}   {w['median']:7.0f} {w['p95']:7.0f}"
            f"   instances {info['instances_started']}"
        )
    cpu = result.cpu
    print(
        f"  CPU over the run ({cpu.wall_s:.1f} s wall, {CORES} cores = {cpu.wall_s * CORES:.0f} core-s;"
        f" the whole machine used {cpu.machine_s:.0f} core-s = {cpu.machine_s / cpu.wall_s:.2f} cores):"
    )
    workers = sum(v for k, v in cpu.processes.items() if k.startswith("worker "))
    rows = sorted(cpu.processes.items(), key=lambda item: -item[1])
    ours = sum(cpu.processes.values())
    for role, seconds in rows:
        print(f"    {role:30s} {seconds:7.1f} s  {seconds / cpu.wall_s:5.2f} cores")
    print(f"    {'(all workers)':30s} {workers:7.1f} s  {workers / cpu.wall_s:5.2f} cores")
    print(f"    {'(other load on the machine)':30s} {cpu.machine_s - ours:7.1f} s")
    print("  this process by thread role:")
    for role, seconds in sorted(cpu.threads.items(), key=lambda item: -item[1]):
        print(f"    {role:30s} {seconds:7.1f} s  {seconds / cpu.wall_s:5.2f} cores")
    moto_calls = sum(result.api_calls.values())
    print(f"  AWS (moto) requests: {moto_calls} ({moto_calls / max(done, 1):.1f} per task); by caller:")
    for caller, calls in sorted(result.api_calls_by_caller.items(), key=lambda item: -sum(item[1].values())):
        top = ", ".join(f"{k} {v}" for k, v in sorted(calls.items(), key=lambda item: -item[1])[:6])
        print(f"    {caller:22s} {sum(calls.values()):6d}  {top}")


def print_profiles(profiles: dict[str, Any]) -> None:
    print("\n== profiles (own time by package; top own time; top cumulative below the wrappers)")
    for name, info in profiles.items():
        packages = ", ".join(f"{p} {share:.0%}" for p, share in info["own_by_package"].items())
        print(f"  {name}: {info['profiled_s']:.1f} s profiled in {info['processes']} process(es)")
        print(f"    by package: {packages}")
        for entry in info["top_own"][:6]:
            print(
                f"    own {entry['share']:5.1%} {entry['own_s']:7.2f} s {entry['calls']:8d}x {entry['function']}"
            )
        for entry in info["top_cumulative"][:6]:
            print(
                f"    cum {entry['share']:5.1%} {entry['cum_s']:7.2f} s {entry['calls']:8d}x {entry['function']}"
            )


# ---------------------------------------------------------------------------------------------


def cost_extras(result: RunResult) -> dict[str, Any]:
    """What bench/cost.py can price: per task, from a run without the profiler."""
    per = max(result.tasks_in_stack, 1)
    function_calls: Counter[str] = Counter()
    for caller, calls in result.api_calls_by_caller.items():
        if caller.endswith("Function"):
            function_calls.update(calls)
    fn_dynamodb = {k.split(":", 1)[1]: v for k, v in function_calls.items() if k.startswith("dynamodb:")}
    api = sum(v for k, v in result.gateway_requests.items())
    return {
        "tasks_per_second": round(result.throughput, 3),
        "functions": {
            name: {
                "invocations_per_task": info["invocations_per_task"],
                "duration_ms_median": info["duration_ms"].get("median"),
                "duration_ms_p95": info["duration_ms"].get("p95"),
            }
            for name, info in result.functions.items()
            if info["invocations"]
        },
        "s3_bytes_per_video": round(statistics.median(result.video_bytes)) if result.video_bytes else None,
        # The functions' own calls (what AWS would bill), per task of the stack (burst + single).
        "dynamodb_per_task": {
            "reads": round(sum(v for k, v in fn_dynamodb.items() if k in DYNAMODB_READS) / per, 2),
            "writes": round(sum(v for k, v in fn_dynamodb.items() if k in DYNAMODB_WRITES) / per, 2),
            "by_operation": {k: round(v / per, 2) for k, v in sorted(fn_dynamodb.items())},
        },
        "function_aws_calls_per_task": {k: round(v / per, 2) for k, v in sorted(function_calls.items())},
        "api_requests_per_task": round(api / per, 2),
        "api_requests": result.gateway_requests,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=2, help="runs of each delay (fresh stacks)")
    parser.add_argument("--workers", type=int, default=4, help="instances per function (the stack's default)")
    parser.add_argument("--no-profile", action="store_true", help="skip the profiled run")
    parser.add_argument(
        "--profile-tasks",
        type=int,
        default=None,
        help="tasks in the profiled run (default: a quarter of --tasks)",
    )
    args = parser.parse_args(argv)

    results: dict[float, list[RunResult]] = {PROVIDER_DELAY_S: [], 0.0: []}
    began = time.monotonic()
    for repeat in range(args.repeats):
        order = [PROVIDER_DELAY_S, 0.0] if repeat % 2 == 0 else [0.0, PROVIDER_DELAY_S]
        for delay in order:
            log(
                f"[throughput] repeat {repeat + 1}/{args.repeats}: {args.tasks} tasks, provider delay {delay:g} s"
            )
            result = run_once(args.tasks, delay, workers=args.workers)
            results[delay].append(result)
            log(
                f"[throughput]   {result.throughput:.2f} tasks/s, single task {result.single_latency_s:.2f} s,"
                f" {'OK' if result.ok else 'PROBLEMS'} ({time.monotonic() - began:.0f} s so far)"
            )
            for problem in result.problems:
                log(f"[throughput]   {problem}")
    profiles: dict[str, Any] = {}
    profiled: RunResult | None = None
    if not args.no_profile:
        profile_tasks = args.profile_tasks or max(1, args.tasks // 4)
        log(f"[throughput] profiled run: {profile_tasks} tasks, provider delay {PROVIDER_DELAY_S:g} s")
        profiled, profiles = profile_run(profile_tasks, PROVIDER_DELAY_S, args.workers)
        log(f"[throughput]   {profiled.throughput:.2f} tasks/s under the profiler")

    main_runs, zero_runs = results[PROVIDER_DELAY_S], results[0.0]
    typical = sorted(main_runs, key=lambda r: r.throughput)[len(main_runs) // 2]
    print_run_detail(typical, f"the median run: {args.tasks} tasks, provider delay {PROVIDER_DELAY_S:g} s")
    print_run_detail(
        sorted(zero_runs, key=lambda r: r.throughput)[len(zero_runs) // 2],
        f"the median run: {args.tasks} tasks, provider delay 0",
    )
    if profiled is not None:
        print_run_detail(profiled, "the profiled run (cProfile on: slower, for the split only)")
        print_profiles(profiles)

    detail = {"tasks": args.tasks, "workers": args.workers, "cores": CORES}
    figures = [
        Figure(BENCH, f"tasks/s end to end ({args.tasks} tasks, provider delay {PROVIDER_DELAY_S:g} s)",
               Spread.of(r.throughput for r in main_runs), " tasks/s", detail=detail),
        Figure(BENCH, f"tasks/s end to end ({args.tasks} tasks, provider delay 0)",
               Spread.of(r.throughput for r in zero_runs), " tasks/s", detail=detail),
        Figure(BENCH, "single-task end-to-end latency (baseline, same stacks)",
               Spread.of(r.single_latency_s for r in main_runs), " s"),
        Figure(BENCH, "concurrency gain = throughput x single-task latency",
               Spread.of(r.throughput * r.single_latency_s for r in main_runs), "x",
               note="tasks' worth of work done at once; 1 = no better than one at a time"),
        Figure(BENCH, "delay ratio = throughput(delay 1 s) / throughput(delay 0)",
               Spread.of(harness.ratios([r.throughput for r in main_runs], [r.throughput for r in zero_runs])),
               "x", note="near 1: the provider's time is hidden; the pipeline is the limit"),
    ]  # fmt: skip
    harness.print_figures("5. local stack throughput", figures)
    all_ok = all(r.ok for r in main_runs + zero_runs)
    print(f"  every run checked (0 lost, 0 duplicates, sha256, webhooks): {'OK' if all_ok else 'PROBLEMS'}")

    def run_json(result: RunResult) -> dict[str, Any]:
        return {
            "delay_s": result.delay_s,
            "tasks_per_second": round(result.throughput, 3),
            "elapsed_s": round(result.elapsed_s, 2),
            "single_latency_s": [round(v, 3) for v in result.single_latencies_s],
            "ok": result.ok,
            "problems": result.problems[:20],
            "stages_ms": {name: summary(values) for name, values in result.stages_ms.items()},
            "functions": result.functions,
            "cpu_seconds": {
                "wall_s": round(result.cpu.wall_s, 2),
                "machine_s": round(result.cpu.machine_s, 2),
                "processes": {k: round(v, 2) for k, v in result.cpu.processes.items()},
                "bench_process_threads": {k: round(v, 2) for k, v in result.cpu.threads.items()},
            },
            "aws_calls_by_caller": result.api_calls_by_caller,
            "api_requests": result.gateway_requests,
            "startup_s": round(result.startup_s, 2),
        }

    path = harness.save(
        BENCH,
        figures,
        cost=cost_extras(typical),
        runs=[run_json(r) for r in main_runs + zero_runs],
        profiled_run=run_json(profiled) if profiled is not None else None,
        profiles=profiles,
        all_runs_ok=all_ok,
        wall_s=round(time.monotonic() - began, 1),
    )
    print(f"\nsaved {harness.shown(path)} ({time.monotonic() - began:.0f} s in all)")
    if not all_ok:
        return 2
    return harness.exit_code(figures)


if __name__ == "__main__":
    sys.exit(main())
