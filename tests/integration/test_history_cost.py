"""The table's lookups cost the same with 2,000 completed tasks as without (bench/history.py runs
the same with 100,000): the reconciler's lookup, one tenant's list page, a status read.

2,000 is 25 times the working set (78 tasks): a lookup that read even 1% of the history would
read 20 more items than its 24 and miss the 1.1 target, and the old index's control grows 26-fold
(it must double). 10,000 only made moto work longer: it checks each item's size attribute by
attribute when it is written and walks the whole table for each index query (36 s of CPU here).

Counts are what moto's answers report (ScannedCount, Count) and read units priced from the bytes
of the items read; moto's own ConsumedCapacity is a constant per call, so it is recorded but
proves nothing. The control is the old status index on the same items: it must grow.
"""

from __future__ import annotations

import pytest

from bench import history

TASKS = 2_000
TENANTS = 100
OPEN_TASKS = 48  # bench.history.working_set: 12 each of stale, fresh, overdue-queued, fresh-queued


@pytest.fixture(scope="module")
def reads() -> dict[str, dict[str, history.Reads]]:
    with pytest.MonkeyPatch.context() as env:
        env.delenv("AWS_ENDPOINT_URL", raising=False)
        env.delenv("AWS_PROFILE", raising=False)
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }.items():
            env.setenv(name, value)
        return history.run(TASKS, TENANTS)


@pytest.mark.parametrize("operation", ["reconciler lookup", "tenant list page", "status read"])
def test_a_lookup_costs_the_same_on_a_table_full_of_history(reads, operation):
    empty, seeded = reads["empty"][operation], reads["seeded"][operation]
    assert empty.items_read > 0 and empty.read_units > 0  # it read something to compare
    ratio = seeded.ratio(empty)
    assert ratio["items_read"] <= history.TARGET, (empty, seeded)
    assert ratio["read_units"] <= history.TARGET, (empty, seeded)
    assert seeded.calls == empty.calls


def test_what_each_lookup_reads(reads):
    # A page is the page size plus the one that says more remain; the reconciler reads the open
    # tasks past its two cut-offs (12 stale in progress, 12 queued past the deadline), nothing else.
    seeded = reads["seeded"]
    assert seeded["tenant list page"].items_read == history.PAGE + 1
    assert seeded["status read"].items_read == 1
    assert seeded["reconciler lookup"].items_read == 24


def test_the_open_index_holds_only_the_open_tasks(reads):
    assert reads["empty"]["open index holds"].items_read == OPEN_TASKS
    assert reads["seeded"]["open index holds"].items_read == OPEN_TASKS


def test_the_control_the_old_status_index_grows_with_every_finished_task(reads):
    # The old index kept every terminal task (under `completed` or `failed`): the meter sees it.
    empty, seeded = reads["empty"]["old: status index holds"], reads["seeded"]["old: status index holds"]
    assert seeded.items_read == empty.items_read + TASKS
    assert seeded.ratio(empty)["items_read"] >= history.CONTROL_GROWTH
    # Its reconciler queries read only the open statuses' keys, so they did not grow either: what
    # the old design paid for history was the index's storage and writes, and one hot key per status.
    old = reads["seeded"]["old: reconciler lookup on the status index"]
    assert old.items_read == reads["empty"]["old: reconciler lookup on the status index"].items_read == 24


def test_the_figures_hold_their_targets(reads):
    figures = history.figures(reads, TASKS)
    assert figures and all(figure.ok is not False for figure in figures)
    assert {figure.ok for figure in figures} == {True, None}
