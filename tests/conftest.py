"""Shared by every test level: the repo's paths, the events and handlers, a Lambda context, and
moto in process with template.yaml provisioned once per session (tests/integration's `stack`)."""

from __future__ import annotations

import copy
import functools
import importlib.util
import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import botocore.session
import pytest

# Powertools reads these when Logger/Metrics/Tracer are created (at import, as in Lambda, where the
# environment exists before any import): set them before anything imports sora_relay.
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "sora-relay")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "SoraRelayTest")
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")

# Every botocore session a test process makes (scripts/tenants.py's per command, devstack's per
# client, moto's) reads the service models through one loader, as one session's clients do: each
# new session parsed them again (500 JSON files, about 8 s of the in-process worker's CPU).
botocore.session.create_loader = functools.cache(botocore.session.create_loader)  # type: ignore[attr-defined]

ROOT = Path(__file__).resolve().parent.parent
PROVIDER_TOKEN = "provider-test-token"  # the provider API key the in-process stack is provisioned with
EVENTS = ROOT / "events"


@dataclass
class LambdaContext:
    function_name: str = "sora-relay-test"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:sora-relay-test"
    aws_request_id: str = "00000000-0000-4000-8000-000000000000"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def load_event(name: str) -> dict[str, Any]:
    """One of events/*.json, the same file `sam local invoke -e` takes."""
    return copy.deepcopy(json.loads((EVENTS / f"{name}.json").read_text()))


def probe_json(script: str, *args: str, env: dict[str, str]) -> Any:
    """Run `script` in a fresh interpreter (a function's init, away from this process's imports)
    and return the JSON it prints last; a failing probe fails the test with its stderr."""
    answer = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )
    assert answer.returncode == 0, answer.stderr
    return json.loads(answer.stdout.strip().splitlines()[-1])


def load_handler(function: str) -> ModuleType:
    """Import functions/<function>/app.py under a unique name, as Lambda would import app.py."""
    path = ROOT / "functions" / function / "app.py"
    spec = importlib.util.spec_from_file_location(f"{function}_app", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def lambda_context() -> LambdaContext:
    return LambdaContext()


@pytest.fixture
def service_logs() -> Iterator[io.StringIO]:
    """What the service's Powertools logger writes (its JSON lines), captured at its handler."""
    handler = next(
        h for h in logging.getLogger("sora-relay").handlers if isinstance(h, logging.StreamHandler)
    )
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    try:
        yield buffer
    finally:
        handler.setStream(previous)


def log_lines(logs: io.StringIO) -> list[dict[str, Any]]:
    """The JSON lines `service_logs` captured so far."""
    return [json.loads(line) for line in logs.getvalue().splitlines() if line.strip()]


def failure_lines(logs: io.StringIO) -> list[dict[str, Any]]:
    """The captured lines at warning level or above."""
    return [line for line in log_lines(logs) if line["level"] in ("WARNING", "ERROR", "CRITICAL")]


# -- AWS in process, provisioned once per session --------------------------------------------------


@dataclass
class SharedAws:
    """moto in process with the template provisioned once: each test that needs it borrows it
    (tests/integration's `stack`), and devstack.template.reset() first puts back what the tests
    before it changed (Changes records those calls). The mock is on only while such tests run:
    it is paused (its state kept) before any other test, so nothing else meets moto's botocore
    patch, and starting it again is cheap."""

    parameters: dict[str, str]
    session: boto3.session.Session
    changes: Any  # devstack.template.Changes
    clients: Any  # devstack.template.AwsClients
    # Credentials come from the tests' environment, and boto3's session stays (its service models
    # loaded once, not per test).
    mock: Any = field(
        default_factory=lambda: _mock_aws(
            config={"core": {"mock_credentials": False, "reset_boto3_session": False}}
        )
    )
    stack: Any = None  # devstack.template.Stack
    active: bool = False

    def borrow(self) -> Any:
        from devstack.template import ResetImpossible, provision, reset

        if not self.active:
            self.mock.start(reset=False)
            self.active = True
        if self.stack is not None:
            try:
                reset(self.stack, self.changes.take(), clients=self.clients)
            except ResetImpossible:  # a test deleted something, or another mock reset moto
                self.stack = None
        if self.stack is None:
            self.mock.stop()  # moto's state goes with the last active mock
            self.mock.start()
            self.stack = provision("test", self.parameters)
        self.changes.take()
        self.changes.recording = True
        return self.stack

    def give_back(self) -> None:
        self.changes.recording = False

    def pause(self) -> None:
        if self.active:
            self.mock.stop(remove_data=False)
            self.active = False


def _mock_aws(**kwargs: Any) -> Any:
    from moto import mock_aws

    return mock_aws(**kwargs)


_SHARED_AWS = pytest.StashKey[SharedAws]()


@pytest.fixture(scope="session")
def shared_aws(request: pytest.FixtureRequest) -> Iterator[SharedAws]:
    """The one SharedAws of the session (defined here only: a fixture imported into two conftests
    would be two fixtures, two mocks)."""
    from devstack.template import AwsClients, Changes

    changes = Changes().install()
    # Made after install(): its clients record (and moto's patch is among its handlers).
    shared = SharedAws({"AceDataApiKey": PROVIDER_TOKEN}, boto3.session.Session(), changes, AwsClients())
    request.config.stash[_SHARED_AWS] = shared
    try:
        yield shared
    finally:
        shared.pause()
        del request.config.stash[_SHARED_AWS]


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test that does not borrow the shared AWS runs with moto's mock off."""
    shared = item.config.stash.get(_SHARED_AWS, None)
    if shared is not None and "shared_aws" not in item.fixturenames:  # type: ignore[attr-defined]
        shared.pause()


# tests/e2e files that start no DevStack (a gateway on a template of their own; a profiled moto
# server): scheduled like any file. Listed wrongly, a file only costs a second stack on the other worker.
_NO_LOCAL_STACK = frozenset({"tests/e2e/test_local_gateway.py", "tests/e2e/test_profiling.py"})
# The e2e files that wait longest (visibility timeouts, leases, a 48-task fault run): a stack of
# their own on a second worker, so their waits overlap the other e2e tests' instead of following them.
# The two groups take about as long as each other (2026-12-02, -n 3: 170 s and 163 s of test time).
# With test_provider_faults here too they were 201 s and 116 s; a third stack on another worker was
# no faster: the three stacks' CPU slowed the fault suite by as much as the split gained. The later
# runs (-n 3, 4 and 5 compared in one sitting) are in docs/performance.md §9.
_FAULT_FILES = frozenset({"tests/e2e/test_fault_suite.py", "tests/e2e/test_dlq_replay.py"})


def e2e_group(path: str) -> str | None:
    """Which local stack an e2e file runs on under pytest-xdist ("tests/e2e" or the fault files'
    "tests/e2e#faults"), None for a file that starts none (or is not e2e)."""
    if not path.startswith("tests/e2e/") or path in _NO_LOCAL_STACK:
        return None
    return "tests/e2e#faults" if path in _FAULT_FILES else "tests/e2e"


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under pytest-xdist (`-n 4`, the Makefile's): each file's tests on one worker (module fixtures
    made once), and tests/e2e in two groups, each on one worker with one local stack, first: they
    take the longest, mostly waiting, while the other workers run the in-process tests and take
    what is left as the others finish. A scheduler of our own because `--dist loadgroup` does not
    group on pytest 9.2 (pytest-xdist#1386)."""
    from xdist.scheduler import LoadScopeScheduling

    config.option.loadscopereorder = False  # units in collection order: the e2e groups (the longest) first

    class FilesAndE2e(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return e2e_group(path) or path

    return FilesAndE2e(config, log)
