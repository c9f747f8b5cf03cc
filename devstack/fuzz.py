"""Fuzz the local stack's API with schemathesis and docs/openapi.yaml (dev-only).

    python -m devstack.fuzz --requests 1000

Starts a DevStack on free ports of 127.0.0.1, loads the OpenAPI document with schemathesis and
sends at least `--requests` generated requests, spread over every operation: schemathesis's
coverage cases (boundary values, missing and wrong-typed fields, unexpected methods) and then
Hypothesis-generated cases from each operation's strategy, positive (valid per the document) and
negative (invalid) in equal parts. Requests carry the stack's API key, except a few that carry
none or a wrong one; some reads name real videos (completed, failed, in progress, another
owner's, and those the run created) and some provider callbacks carry a valid token for a task
that does not exist, so the body is parsed. Then it counts:

- requests, by status class and by operation;
- 5xx answers (must be 0);
- 4xx answers not in the error shape {"error": {"code": str, "message": str, "param": str|null}}
  (must be 0);
- answers that do not conform to the document (status code, content type, headers, body schema);
- for information: invalid data the API accepted, valid data it refused (per the document).

It exits 1 when there is a 5xx, a malformed 4xx or a request that got no answer (`--strict`: also
when an answer does not conform), and prints a curl reproducer for each such finding.

Nothing leaves 127.0.0.1. The URLs the service would call later (`callback_url`, `image_urls`,
`input_reference`) are generated as https://127.0.0.1/... in the run's copy of the document,
and any other value the service would accept (checked with the service's own validation) is
replaced by one on 127.0.0.1 before it is sent. The simulator calls back only after an hour, so
no task the run creates is finished, copied or webhooked while it runs; a valid callback token is
only given for task ids that cannot exist.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import ipaddress
import json
import random
import re
import secrets
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from devstack.load import FAST_FUNCTION_ENV, FAST_PARAMETERS
from devstack.processes import eventually
from devstack.stack import DevStack, aws_environment
from devstack.template import ROOT, secret_value

OPENAPI = ROOT / "docs" / "openapi.yaml"
LOG_DIR = ROOT / ".devstack" / "fuzz-logs"

# The run's copy of the document generates outbound URLs on this machine only.
LOOPBACK_URL_PATTERN = r"^https://127\.0\.0\.1(:[1-9][0-9]{0,3})?/[A-Za-z0-9_-]{0,24}$"
# What a URL the service would accept becomes when it names anything but a loopback address.
# Nothing listens on the discard port; the run never lets a task finish anyway.
SAFE_URL = "https://127.0.0.1:9/fuzz"
OUTBOUND_URL_FIELDS = ("callback_url", "input_reference")
# A valid callback token is made only for task ids that cannot be a task's (tasks are
# video_ and 32 hex digits) and that travel unencoded, so the id the service reads from the path
# is the one the token was made for.
TASK_ID = re.compile(r"video_[0-9a-f]{32}")
UNENCODED = re.compile(r"[A-Za-z0-9._~-]+")
# The methods the local gateway serves (devstack.gateway); its HTTP server answers any other one
# (TRACE, QUERY, ...) with its own HTML 501 before the API is involved, which is not what API
# Gateway does, so coverage cases with those methods are left out.
GATEWAY_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
# Valid input may still be refused for these: an Idempotency-Key reused with another body or in flight.
IDEMPOTENCY_CODES = frozenset({"idempotency_key_reused", "idempotency_key_in_use"})
SEED_DELAY_S = 0.3  # the simulator's callback delay while the seed videos are made
FUZZ_DELAY_S = 3600.0  # ... and while the run fuzzes: no task finishes, nothing is fetched

# How the generated requests (the budget after the coverage cases) are shared by the operations,
# each half positive, half negative. Creating is where most of the input is.
OPERATION_WEIGHTS = {
    "POST /v1/videos": 4,
    "GET /v1/videos": 2,
    "GET /v1/videos/{video_id}": 2,
    "GET /v1/videos/{video_id}/content": 2,
    "POST /v1/callbacks/{provider}/{task_id}": 3,
}
COVERAGE_SHARE = 0.4  # at most this share of the budget goes to schemathesis's coverage cases
NO_KEY_SHARE = 0.04
WRONG_KEY_SHARE = 0.02
KNOWN_ID_SHARE = 0.35  # reads that name a real video instead of a generated id
SIGNED_CALLBACK_SHARE = 0.4  # callbacks with a valid token (for a task id that cannot exist)


# -- the document -----------------------------------------------------------------------------------


def load_document(path: Path = OPENAPI) -> dict[str, Any]:
    with path.open() as handle:
        document: dict[str, Any] = yaml.safe_load(handle)
    return document


def fuzz_document(document: dict[str, Any]) -> dict[str, Any]:
    """The document with every outbound URL field generated on 127.0.0.1 (see the module doc)."""
    fuzzed = copy.deepcopy(document)
    request = fuzzed["components"]["schemas"]["CreateVideoRequest"]["properties"]
    for name in (*OUTBOUND_URL_FIELDS, "image_urls"):
        schema = request[name]["items"] if name == "image_urls" else request[name]
        schema.pop("format", None)
        schema["pattern"] = LOOPBACK_URL_PATTERN
    return fuzzed


def is_error_shape(body: Any) -> bool:
    """{"error": {"code": str (not empty), "message": str, "param": str | null}} and nothing else."""
    if not isinstance(body, dict) or set(body) != {"error"}:
        return False
    error = body["error"]
    return (
        isinstance(error, dict)
        and set(error) == {"code", "message", "param"}
        and isinstance(error["code"], str)
        and bool(error["code"])
        and isinstance(error["message"], str)
        and (error["param"] is None or isinstance(error["param"], str))
    )


# -- keeping every outbound URL on this machine ---------------------------------------------------------


def _is_loopback_literal(host: str) -> bool:
    from sora_relay.domain.outbound_url import _unmapped

    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return _unmapped(address).is_loopback


def _accepted_urls(body: dict[str, Any]) -> dict[str, list[int | None]] | None:
    """The URL fields of `body` the service would accept and later call, by field (list index for
    image_urls), when they name anything but a loopback address; None if the service refuses the
    body before looking at its URLs. Uses the service's own validation, so the two cannot differ."""
    from pydantic import ValidationError

    from sora_relay.domain.errors import UnsafeUrl
    from sora_relay.domain.models import CreateVideoRequest
    from sora_relay.domain.outbound_url import parse_outbound_url

    try:
        request = CreateVideoRequest.model_validate(json.loads(json.dumps(body)))
    except (ValidationError, ValueError, TypeError):
        return None
    outside: dict[str, list[int | None]] = {}
    values: list[tuple[str, int | None, str | None]] = [
        ("callback_url", None, request.callback_url),
        ("input_reference", None, request.input_reference),
        *(("image_urls", index, url) for index, url in enumerate(request.image_urls or [])),
    ]
    for name, index, url in values:
        if url is None:
            continue
        try:
            parsed = parse_outbound_url(url, field=name, allow_loopback=True)
        except UnsafeUrl:
            continue  # the service refuses it too
        if not _is_loopback_literal(parsed.host):
            outside.setdefault(name, []).append(index)
    return outside


def pin_outbound_urls(body: Any) -> bool:
    """Replace, in place, every URL of a create body that the service would accept and that names
    anything but a loopback address (a DNS name included) with SAFE_URL. True if it changed."""
    if not isinstance(body, dict):
        return False
    changed = False
    for _ in range(3):
        outside = _accepted_urls(body)
        if not outside:
            return changed
        for name, indexes in outside.items():
            if name == "image_urls":
                for index in indexes:
                    assert index is not None
                    body["image_urls"][index] = SAFE_URL
            else:
                body[name] = SAFE_URL
        changed = True
    raise RuntimeError(f"could not make the body's URLs safe: {body!r}")  # pragma: no cover


_CURL_SKIPPED_HEADERS = frozenset(
    {"content-length", "user-agent", "accept-encoding", "accept", "connection", "x-schemathesis-testcaseid"}
)


def curl_command(request: Any, api_key: str) -> str:
    """A curl command for a sent request (requests.PreparedRequest); the API key as a variable."""

    def quote(value: str | bytes) -> str:
        raw = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
        if all(32 <= byte < 127 and byte != 39 for byte in raw):
            return "'" + raw.decode() + "'"
        special = {39: "\\'", 92: "\\\\"}
        escaped = "".join(
            special.get(byte, chr(byte)) if 32 <= byte < 127 else f"\\x{byte:02x}" for byte in raw
        )
        return f"$'{escaped}'"

    parts = ["curl", "-sS", "-i", "-X", request.method]
    for name, value in request.headers.items():
        if name.lower() in _CURL_SKIPPED_HEADERS:
            continue
        if name.lower() == "x-api-key" and value == api_key:
            parts += ["-H", '"x-api-key: $SORA_RELAY_API_KEY"']
            continue
        parts += ["-H", quote(f"{name}: {value}")]
    if request.body:
        parts += ["--data-binary", quote(request.body)]
    parts.append(quote(request.url))
    return " ".join(parts)


# -- the run ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    kind: str  # 5xx | malformed-4xx | nonconformant | no-answer | negative-accepted | positive-rejected
    operation: str
    status: int | None
    detail: str
    reproducer: str
    answer: str


@dataclass
class FuzzReport:
    requested: int = 0
    sent: int = 0
    by_class: Counter[str] = field(default_factory=Counter)
    by_status: Counter[int] = field(default_factory=Counter)
    by_operation: Counter[str] = field(default_factory=Counter)
    by_operation_status: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    by_source: Counter[str] = field(default_factory=Counter)
    not_sent: int = 0  # generated requests the HTTP client could not send (e.g. a header it refuses)
    findings: list[Finding] = field(default_factory=list)
    elapsed_s: float = 0.0

    def count(self, kind: str) -> int:
        return sum(1 for finding in self.findings if finding.kind == kind)

    @property
    def failed(self) -> bool:
        return any(self.count(kind) for kind in ("5xx", "malformed-4xx", "no-answer"))


@dataclass
class Planned:
    """One request to send: a schemathesis case and what to do to it just before sending."""

    case: Any
    operation: str
    source: str  # coverage | positive | negative
    auth: str = "key"  # key | none | wrong
    known_id: bool = False
    signed: bool = False


@dataclass
class Seeds:
    """Real videos the run can name: by state, another owner's, and the ones it created."""

    completed: str
    failed: str
    in_progress: str
    other_owner: str
    created: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def pick(self, rng: random.Random) -> str:
        with self.lock:
            created = self.created[-50:]
        if created and rng.random() < 0.4:
            return rng.choice(created)
        # The completed one twice: it is the only one whose content answers 302.
        return rng.choice([self.completed, self.completed, self.failed, self.in_progress, self.other_owner])

    def add(self, video_id: str) -> None:
        with self.lock:
            self.created.append(video_id)


def _wait_for(probe: Callable[[], bool], timeout_s: float, what: str) -> None:
    eventually(probe, timeout=timeout_s, what=what)


def make_seeds(stack: DevStack) -> Seeds:
    """A completed, a failed and an in-progress video of the first key, and one of the second."""

    def create(client: httpx.Client, prompt: str) -> str:
        answer = client.post("/v1/videos", json={"prompt": prompt})
        if answer.status_code != 202:
            raise RuntimeError(f"seed video not accepted: {answer.status_code} {answer.text}")
        return str(answer.json()["id"])

    def status(client: httpx.Client, video_id: str) -> str:
        return str(client.get(f"/v1/videos/{video_id}").json()["status"])

    with (
        httpx.Client(base_url=stack.api_url, headers={"x-api-key": stack.api_key}, timeout=30) as mine,
        httpx.Client(base_url=stack.api_url, headers={"x-api-key": stack.other_api_key}, timeout=30) as other,
    ):
        completed = create(mine, "fuzz seed: a completed video")
        failed = create(mine, "fuzz seed: a failed video [sim:fail]")
        in_progress = create(mine, "fuzz seed: a lost callback [sim:no-callback]")
        other_owner = create(other, "fuzz seed: another owner's video")
        _wait_for(lambda: status(mine, completed) == "completed", 60, "the completed seed video")
        _wait_for(lambda: status(mine, failed) == "failed", 60, "the failed seed video")
    return Seeds(completed, failed, in_progress, other_owner)


def _operations(schema: Any) -> list[Any]:
    operations = []
    for result in schema.get_all_operations():
        operations.append(result.ok())
    return operations


def _draw(strategy: Any, count: int, seed: int) -> list[Any]:
    """Up to `count` cases from a Hypothesis strategy, reproducibly for one seed."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hypothesis_seed
    from hypothesis.errors import Unsatisfiable

    cases: list[Any] = []

    @hypothesis_seed(seed)
    @settings(
        max_examples=count,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(case: Any) -> None:
        cases.append(case)

    with contextlib.suppress(Unsatisfiable):  # nothing valid to draw: the caller tops up
        collect()
    return cases[:count]


def _spread(total: int, weights: dict[str, int]) -> dict[str, int]:
    weight_sum = sum(weights.values())
    shares = {name: total * weight // weight_sum for name, weight in weights.items()}
    for name in list(weights)[: total - sum(shares.values())]:
        shares[name] += 1
    return shares


def plan_requests(schema: Any, requests: int, seed: int) -> list[Planned]:
    """The run's requests: coverage cases first (up to COVERAGE_SHARE of the budget, spread over the
    operations), then generated cases, positive and negative, by OPERATION_WEIGHTS."""
    from schemathesis import GenerationMode

    rng = random.Random(seed)
    operations = _operations(schema)
    labels = {operation.label for operation in operations}
    if labels != set(OPERATION_WEIGHTS):
        raise RuntimeError(f"the document's operations changed: {sorted(labels)}")
    modes = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]

    coverage: dict[str, list[Any]] = {}
    for operation in operations:
        coverage[operation.label] = list(
            schema.iter_coverage_cases(
                operation,
                generation_modes=modes,
                generation_config=schema.config.generation_for(operation=operation),
            )
        )
    coverage_budget = min(int(requests * COVERAGE_SHARE), sum(map(len, coverage.values())))
    planned: list[Planned] = []
    # Round-robin over the operations so a small budget still reaches each of them.
    queues = {label: iter(cases) for label, cases in coverage.items()}
    while len(planned) < coverage_budget and queues:
        for label in list(queues):
            case = next(queues[label], None)
            if case is None:
                del queues[label]
                continue
            if case.method.upper() not in GATEWAY_METHODS:
                continue
            planned.append(Planned(case, label, "coverage"))
            if len(planned) >= coverage_budget:
                break

    shares = _spread(requests - len(planned), OPERATION_WEIGHTS)
    for number, operation in enumerate(operations):
        for mode_number, mode in enumerate(modes):
            wanted = shares[operation.label] // 2 + (shares[operation.label] % 2 if mode_number == 0 else 0)
            strategy = operation.as_strategy(generation_mode=mode)
            cases: list[Any] = []
            for attempt in range(8):  # a small input space runs dry: draw again with another seed
                if len(cases) >= wanted:
                    break
                cases += _draw(
                    strategy, wanted - len(cases), seed * 1000 + number * 100 + mode_number * 10 + attempt
                )
            planned += [Planned(case, operation.label, mode.value) for case in cases[:wanted]]

    for item in planned:
        if item.operation.startswith("POST /v1/callbacks"):
            item.signed = rng.random() < SIGNED_CALLBACK_SHARE
            continue
        draw = rng.random()
        item.auth = (
            "none" if draw < NO_KEY_SHARE else "wrong" if draw < NO_KEY_SHARE + WRONG_KEY_SHARE else "key"
        )
        if "{video_id}" in item.operation or item.operation == "GET /v1/videos":
            item.known_id = item.source != "negative" and rng.random() < KNOWN_ID_SHARE
    rng.shuffle(planned)
    return planned


class FuzzRun:
    def __init__(self, stack: DevStack, schema: Any, seeds: Seeds, callback_key: str, *, seed: int) -> None:
        self.stack = stack
        self.schema = schema
        self.seeds = seeds
        self.callback_key = callback_key
        self.report = FuzzReport()
        self._lock = threading.Lock()
        self._local = threading.local()
        self._rng_seed = seed

    def _session(self) -> Any:
        import requests

        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.trust_env = False  # a developer's proxy settings must not reroute 127.0.0.1
            self._local.session = session
            self._local.rng = random.Random(f"{self._rng_seed}-{threading.get_ident()}")
        return session

    def _prepare(self, item: Planned) -> bool:
        """Adjust the case just before it is sent; True if that changed what it tests."""
        from sora_relay.domain.tokens import callback_token

        case = item.case
        rng: random.Random = self._local.rng
        changed = False
        if item.operation == "POST /v1/videos":
            changed |= pin_outbound_urls(case.body)
        if item.operation.startswith("POST /v1/callbacks"):
            task_id = (case.path_parameters or {}).get("task_id")
            signable = (
                isinstance(task_id, str) and UNENCODED.fullmatch(task_id) and not TASK_ID.fullmatch(task_id)
            )
            if item.signed and signable and isinstance(case.query, dict):
                case.query["token"] = callback_token(str(task_id), self.callback_key)
                changed = True
            return changed
        headers = case.headers if case.headers is not None else {}
        if item.auth == "key":
            headers["x-api-key"] = self.stack.api_key
        elif item.auth == "wrong":
            headers["x-api-key"] = secrets.token_urlsafe(30)
        else:
            for name in [name for name in headers if name.lower() == "x-api-key"]:
                del headers[name]
        case.headers = headers
        if item.known_id:
            if "{video_id}" in item.operation and isinstance(case.path_parameters, dict):
                case.path_parameters["video_id"] = self.seeds.pick(rng)
                changed = True
            elif item.operation == "GET /v1/videos" and isinstance(case.query, dict):
                case.query["after"] = self.seeds.pick(rng)
                changed = True
        return changed

    def send(self, item: Planned) -> None:
        import requests
        from schemathesis.core.failures import FailureGroup
        from schemathesis.specs.openapi.checks import (
            content_type_conformance,
            negative_data_rejection,
            positive_data_acceptance,
            response_headers_conformance,
            response_schema_conformance,
            status_code_conformance,
        )

        session = self._session()
        changed = self._prepare(item)
        case = item.case
        unexpected_method = case.method.upper() != case.operation.method.upper()
        try:
            response = case.call(base_url=self.stack.api_url, session=session, timeout=60)
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as error:
            request = getattr(error, "request", None)
            curl = curl_command(request, self.stack.api_key) if request is not None else repr(case)
            self._record(item, None, "no-answer", f"{type(error).__name__}: {error}", curl, "")
            return
        except Exception:  # the client refused the generated request (an invalid header, say)
            with self._lock:
                self.report.not_sent += 1
            return
        status = response.status_code
        curl = curl_command(response.request, self.stack.api_key)
        text = response.content[:2000].decode("utf-8", "replace")
        with self._lock:
            self.report.sent += 1
            self.report.by_class[f"{status // 100}xx"] += 1
            self.report.by_status[status] += 1
            label = "undocumented methods on the paths" if unexpected_method else item.operation
            self.report.by_operation[label] += 1
            self.report.by_operation_status[label][status] += 1
            self.report.by_source[item.source] += 1
        if status == 202 and item.operation == "POST /v1/videos":
            with contextlib.suppress(ValueError, KeyError, TypeError):
                self.seeds.add(str(response.json()["id"]))
        body: Any = None
        try:
            body = json.loads(response.content) if response.content else None
        except ValueError:
            body = None
        if status >= 500:
            self._record(item, status, "5xx", "server error", curl, text)
        elif status >= 400 and case.method.upper() != "HEAD" and not is_error_shape(body):
            self._record(item, status, "malformed-4xx", "not the error shape", curl, text)
        if unexpected_method:
            return  # the operation's document does not describe another method's answer
        conformance = [
            status_code_conformance,
            content_type_conformance,
            response_headers_conformance,
            response_schema_conformance,
        ]
        try:
            case.validate_response(response, checks=conformance)
        except FailureGroup as group:
            titles = "; ".join(sorted({failure.title for failure in group.exceptions}))
            self._record(item, status, "nonconformant", titles, curl, text)
        if changed or item.auth != "key":
            return  # what the case was generated to test is not what was sent
        if is_error_shape(body) and body["error"]["code"] in IDEMPOTENCY_CODES:
            return
        for kind, check in (
            ("negative-accepted", negative_data_rejection),
            ("positive-rejected", positive_data_acceptance),
        ):
            try:
                case.validate_response(response, checks=[check])
            except FailureGroup as group:
                titles = "; ".join(sorted({failure.title for failure in group.exceptions}))
                self._record(item, status, kind, titles, curl, text)

    def _record(
        self, item: Planned, status: int | None, kind: str, detail: str, curl: str, answer: str
    ) -> None:
        with self._lock:
            self.report.findings.append(Finding(kind, item.operation, status, detail, curl, answer))


def run_fuzz(
    stack: DevStack, requests: int, *, seed: int = 1, concurrency: int = 4, progress: bool = True
) -> FuzzReport:
    """Fuzz a started stack; the report of what was sent and answered."""
    import schemathesis

    started = time.monotonic()
    assert stack.simulator is not None and stack.stack is not None
    seeds = make_seeds(stack)
    stack.simulator.config.callback_delay_s = FUZZ_DELAY_S
    with aws_environment(stack.moto_url):
        callback_key = secret_value(stack.stack, "CallbackTokenSecret")
    config = schemathesis.Config()  # explicit: no schemathesis.toml of the developer's is read
    schema = schemathesis.openapi.from_dict(fuzz_document(load_document()), config=config)
    schema.config.update(base_url=stack.api_url)
    # A few generated requests cannot be sent (a header value the HTTP client refuses): plan a margin.
    planned = plan_requests(schema, requests + max(5, requests // 30), seed)
    if progress:
        print(f"  {len(planned)} requests planned in {time.monotonic() - started:.1f} s", flush=True)
    run = FuzzRun(stack, schema, seeds, callback_key, seed=seed)
    run.report.requested = requests
    done = 0
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="fuzz") as pool:
        for _ in pool.map(run.send, planned):
            done += 1
            if progress and done % 250 == 0:
                print(f"  {done} sent ({time.monotonic() - started:.0f} s)", flush=True)
    run.report.elapsed_s = time.monotonic() - started
    return run.report


def _iter_report(report: FuzzReport, *, examples: int) -> Iterator[str]:
    yield f"requests      {report.sent} sent of {report.requested} wanted ({report.not_sent} not sendable)"
    yield "by class      " + ", ".join(f"{name} {count}" for name, count in sorted(report.by_class.items()))
    yield "by status     " + ", ".join(f"{code} {count}" for code, count in sorted(report.by_status.items()))
    yield "by source     " + ", ".join(f"{name} {count}" for name, count in sorted(report.by_source.items()))
    for operation, count in sorted(report.by_operation.items()):
        statuses = ", ".join(
            f"{code} {n}" for code, n in sorted(report.by_operation_status[operation].items())
        )
        yield f"  {operation:<42} {count:>5}  ({statuses})"
    for kind, label in (
        ("5xx", "5xx answers (must be 0)"),
        ("malformed-4xx", "4xx not in the error shape (must be 0)"),
        ("no-answer", "requests without an answer (must be 0)"),
        ("nonconformant", "answers not conforming to the document"),
        ("negative-accepted", "invalid data accepted (information)"),
        ("positive-rejected", "valid data refused (information)"),
    ):
        yield f"{label:<42} {report.count(kind)}"
    grouped: dict[str, list[Finding]] = defaultdict(list)
    for finding in report.findings:
        grouped[finding.kind].append(finding)
    for kind in (
        "5xx",
        "malformed-4xx",
        "no-answer",
        "nonconformant",
        "negative-accepted",
        "positive-rejected",
    ):
        shown = sorted(grouped.get(kind, []), key=lambda finding: len(finding.reproducer))[:examples]
        if not shown:
            continue
        yield ""
        yield f"-- {kind} (the {len(shown)} shortest of {len(grouped[kind])})"
        for finding in shown:
            yield f"{finding.operation} -> {finding.status}: {finding.detail}"
            yield f"  {finding.reproducer}"
            if finding.answer:
                yield f"  answer: {finding.answer[:400]}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.fuzz", description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000, help="requests to send in all (default 1000)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the generated cases (default 1)")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight at once (default 4)")
    parser.add_argument("--examples", type=int, default=5, help="findings shown per kind (default 5)")
    parser.add_argument("--strict", action="store_true", help="also fail on answers that do not conform")
    args = parser.parse_args(argv)
    if args.requests < 1:
        parser.error("--requests must be at least 1")
    started = time.monotonic()
    print(
        f"sora-relay fuzz: schemathesis with {OPENAPI.relative_to(ROOT)} against the local stack", flush=True
    )
    stack = DevStack(
        moto_port=0,
        simulator_port=0,
        gateway_port=0,
        callback_delay=SEED_DELAY_S,
        log_dir=LOG_DIR,
        function_env=FAST_FUNCTION_ENV,
        parameters=FAST_PARAMETERS,
    )
    try:
        stack.start()
        print(f"  stack up in {time.monotonic() - started:.1f} s at {stack.api_url}", flush=True)
        report = run_fuzz(stack, args.requests, seed=args.seed, concurrency=args.concurrency)
    except KeyboardInterrupt:
        print("fuzz interrupted", file=sys.stderr)
        return 130
    finally:
        stack.stop()
    for line in _iter_report(report, examples=args.examples):
        print(line)
    print(f"elapsed       {time.monotonic() - started:.1f} s (fuzzing {report.elapsed_s:.1f} s)")
    print(f"  (function and API logs: {LOG_DIR.relative_to(ROOT)}/)")
    failed = report.failed or report.sent < report.requested
    if args.strict and report.count("nonconformant"):
        failed = True
    print("fuzz FAILED" if failed else "fuzz OK")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
