"""The benchmarks' arithmetic: spreads, verdicts against targets, and the cost model's sums.

No timing here: the figures themselves come from `make bench`, never from a test.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bench import cost, harness
from bench.harness import Figure, Spread
from tests.conftest import ROOT, probe_json


def test_spread_is_median_min_max() -> None:
    spread = Spread.of([3.0, 1.0, 2.0, 10.0])
    assert (spread.median, spread.min, spread.max, spread.n) == (2.5, 1.0, 10.0, 4)
    with pytest.raises(ValueError):
        Spread.of([])


def test_figures_meet_or_miss_their_targets_on_the_median() -> None:
    at_most = Figure("b", "ratio", Spread.of([1.2, 1.4, 1.9]), "x", limit=1.5)
    at_least = Figure("b", "throughput", Spread.of([0.85, 0.95, 0.99]), "x", limit=0.9, at_least=True)
    missed = Figure("b", "ratio", Spread.of([1.6, 1.7]), "x", limit=1.5)
    recorded = Figure("b", "size", Spread.of([4.0]), " MB")
    assert (at_most.ok, at_least.ok, missed.ok, recorded.ok) == (True, True, False, None)
    assert "[MISS]" in missed.line() and "target ≤ 1.5x" in missed.line()
    assert harness.exit_code([at_most, at_least, recorded]) == 0
    assert harness.exit_code([at_most, missed]) == 1


def test_ratios_pair_runs_made_side_by_side() -> None:
    assert harness.ratios([2.0, 3.0], [1.0, 2.0]) == [2.0, 1.5]
    with pytest.raises(ValueError):
        harness.ratios([1.0], [1.0, 2.0])
    calls: list[str] = []
    runs = {"a": lambda: calls.append("a") or 1.0, "b": lambda: calls.append("b") or 2.0}
    results = harness.interleaved(runs, repeats=2, warmup=1)
    assert calls == ["a", "b"] * 3 and results == {"a": [1.0, 1.0], "b": [2.0, 2.0]}
    calls.clear()
    results = harness.interleaved(runs, repeats=3, warmup=0, alternate=True)
    assert calls == ["a", "b", "b", "a", "a", "b"] and results == {"a": [1.0] * 3, "b": [2.0] * 3}


def test_the_callback_benchmark_pushes_what_the_provider_sends() -> None:
    from bench import callback
    from sora_relay.adapters.providers.acedata import AceDataVideo

    provider = AceDataVideo(lambda: None, base_url="https://provider.test", api_key=lambda: "", timeout=1)  # type: ignore[arg-type]
    url = "http://127.0.0.1:8000/1073741824.mp4"
    push = provider.read_push({}, callback.push_body("prov-1", url).encode())
    assert (push.provider_task_id, push.result) == ("prov-1", None)  # unsigned: a cue to look up
    event = callback.push_event("video_abc", "tok", "{}")
    assert event["pathParameters"] == {"provider": "acedata", "task_id": "video_abc"}
    assert event["queryStringParameters"] == {"token": "tok"} and event["body"] == "{}"
    assert event["path"] == "/v1/callbacks/acedata/video_abc"
    assert (callback.size_text(callback.MIB), callback.size_text(1024 * callback.MIB)) == ("1 MiB", "1 GiB")


def test_the_padded_video_has_the_exact_size_and_one_free_box() -> None:
    from bench.archive import video_pieces

    head = b"\x00\x00\x00\x10ftypisom\x00\x00\x00\x00"
    for size in (len(head) + 16, 3 * harness.MIB + 5):
        pieces = list(video_pieces(head, size))
        assert sum(len(piece) for piece in pieces) == size
        assert bytes(pieces[0][len(head) : len(head) + 8]) == (size - len(head)).to_bytes(4, "big") + b"free"
    big = 5 * 1024 * harness.MIB  # a 64-bit box: size field 1, then the 8-byte size
    first = next(video_pieces(head, big))
    assert first[len(head) :] == (1).to_bytes(4, "big") + b"free" + (big - len(head)).to_bytes(8, "big")
    with pytest.raises(ValueError):
        next(video_pieces(head, len(head) + 15))


def _write(out: Path, name: str, payload: dict) -> None:
    (out / f"{name}.json").write_text(json.dumps(payload))


def _timing(ms: float) -> dict:
    return {"median": ms, "min": ms, "max": ms, "n": 1}


@pytest.fixture
def measured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(harness, "OUT", tmp_path)
    functions = {
        name: {"invocations_per_task": 1.0, "duration_ms_median": 100.0} for name in cost.PER_VIDEO_FUNCTIONS
    }
    _write(
        tmp_path,
        "throughput",
        {
            "cost": {
                "functions": functions,
                "function_aws_calls_per_task": {"sqs:SendMessage": 1.0, "events:PutEvents": 1.0},
                "dynamodb_per_task": {"reads": 2.0, "writes": 7.0},
                "api_requests_per_task": 2.0,
            }
        },
    )
    cold = {
        name: {"cold_handler_ms": _timing(600.0), "warm_handler_ms": _timing(100.0)}
        for name in [*cost.PER_VIDEO_FUNCTIONS, "StatusFunction", "ReconcileFunction"]
    }
    _write(tmp_path, "cold_start", {"functions": cold})
    _write(tmp_path, "archive", {"cost_model": {"ours_median_mib_s": 100.0}})
    return tmp_path


def _assume(**changes: float) -> cost.Assumptions:
    base = {
        "videos": 1000,
        "video_mb": 8.0,
        "status_reads_per_video": 2.0,
        "provider_latency_s": 0.0,
        "cold_share": 0.0,
        "retention_days": 30.0,
        "wru_per_write": 2,
        "log_kb_per_invocation": 2.0,
    }
    return cost.Assumptions(**{**base, **changes})


def _usd(lines: list[cost.Line], service: str, item: str = "") -> float:
    return sum(line.usd for line in lines if line.service == service and item in line.item)


def test_cost_model_prices_what_was_measured(measured: Path) -> None:
    lines, fixed, inputs = cost.price(_assume())
    # API Gateway: a submit and a callback per video + 2 client reads, for 1,000 videos.
    assert _usd(lines, "API Gateway") == pytest.approx(4000 * cost.PRICES["apigw_rest_request"])
    # DynamoDB: 7 writes x 2 WRU, and 2 + 2 reads, per video.
    assert _usd(lines, "DynamoDB", "write") == pytest.approx(
        14_000 * cost.PRICES["dynamodb_write_request_unit"]
    )
    assert _usd(lines, "DynamoDB", "read") == pytest.approx(4000 * cost.PRICES["dynamodb_read_request_unit"])
    # The archive function copies 8 MB at the measured 100 MiB/s on top of its measured warm 100 ms,
    # at 1024 MB; the callback only records (its warm 100 ms).
    copy_ms = 8e6 / (100 * harness.MIB) * 1000
    assert inputs["durations_ms"]["ArchiveFunction"] == pytest.approx(100.0 + copy_ms)
    assert inputs["durations_ms"]["CallbackFunction"] == pytest.approx(100.0)
    memory = inputs["memory_mb"]["ArchiveFunction"] / 1024
    expected = 1000 * (100.0 + copy_ms) / 1000 * memory * cost.PRICES["lambda_gb_second_arm64"]
    assert _usd(lines, "Lambda", "ArchiveFunction") == pytest.approx(expected)
    # Downloads: 8 GB out to the internet.
    assert _usd(lines, "Data transfer") == pytest.approx(8 * cost.PRICES["data_transfer_out_gb"])
    assert {line.service for line in fixed} == {"Lambda", "SQS", "Secrets Manager"}


def test_cold_starts_and_bigger_videos_cost_more(measured: Path) -> None:
    warm = sum(line.usd for line in cost.price(_assume())[0])
    cold = sum(line.usd for line in cost.price(_assume(cold_share=1.0))[0])
    bigger = sum(line.usd for line in cost.price(_assume(video_mb=16.0))[0])
    assert warm < cold and warm < bigger


def _live(seconds: int | None = None) -> dict[str, int]:
    """Each live catalogue model and the length it is priced at (None: its own default)."""
    from sora_relay.domain.catalogue import default

    return {
        entry.id: entry.default_seconds if seconds is None else seconds
        for entry in default().live()
        if seconds is None or seconds in entry.seconds
    }


def _list_price(model_id: str, seconds: int, videos: int = 1000) -> float:
    from sora_relay.domain.catalogue import default

    return default().require(model_id).price_per_second_usd * seconds * videos


def test_every_live_model_is_priced_from_the_catalogue_with_its_source() -> None:
    from sora_relay.domain.catalogue import default

    models = default()
    priced, skipped = cost.provider_prices(models, 1000)
    assert skipped == []
    assert {item.model: item.seconds for item in priced} == _live()
    assert "sora-2" not in {item.model for item in priced}  # retired: nobody can order it
    for item in priced:
        entry = models.require(item.model)
        assert item.usd == pytest.approx(_list_price(item.model, entry.default_seconds))
        assert item.provider == entry.provider
        assert (item.price_read, item.price_source) == (entry.price_read.isoformat(), entry.price_source)
    # --seconds 4: only the models that offer 4 s are priced; the others are named.
    priced, skipped = cost.provider_prices(models, 1000, 4)
    assert {item.model: item.seconds for item in priced} == _live(4)
    assert {entry.id for entry in skipped} == set(_live()) - set(_live(4))
    assert all(4 not in entry.seconds for entry in skipped)


def test_the_mix_shares_the_videos_by_weight() -> None:
    from sora_relay.domain.catalogue import default

    models = default()
    mix = cost.parse_mix("fal-veo-3.1, replicate-seedance-1.5-pro=3", models)
    assert mix == {"fal-veo-3.1": 1.0, "replicate-seedance-1.5-pro": 3.0}
    usd, priced = cost.price_mix(mix, models, 1000)
    expected = (_list_price("fal-veo-3.1", 8) + 3 * _list_price("replicate-seedance-1.5-pro", 5)) / 4
    assert usd == pytest.approx(expected)
    assert [(item.model, item.seconds) for item in priced] == [
        ("fal-veo-3.1", 8),
        ("replicate-seedance-1.5-pro", 5),
    ]
    usd, _ = cost.price_mix(mix, models, 1000, seconds=4)
    assert usd == pytest.approx(
        (_list_price("fal-veo-3.1", 4) + 3 * _list_price("replicate-seedance-1.5-pro", 4)) / 4
    )
    with pytest.raises(ValueError, match=r"veo-3\.1-fast offers 8 seconds, not 4"):
        cost.price_mix({"veo-3.1-fast": 1.0}, models, 1000, seconds=4)
    for text, message in [
        ("no-such-model", "not a live catalogue model"),
        ("sora-2", "not a live catalogue model"),
        ("fal-veo-3.1=0", "positive"),
        ("fal-veo-3.1=two", "number"),
        (" , ", "at least one model"),
    ]:
        with pytest.raises(ValueError, match=message):
            cost.parse_mix(text, models)


def test_the_default_mix_is_make_load_s_one_model_per_provider_family() -> None:
    from devstack.load import MODELS
    from sora_relay.domain.catalogue import PROVIDERS, default

    assert cost.DEFAULT_MIX == MODELS
    assert sorted(default().require(model_id).provider for model_id in cost.DEFAULT_MIX) == sorted(PROVIDERS)


def _figure(result: dict, name: str) -> dict:
    return next(figure for figure in result["figures"] if figure["name"].startswith(name))


def test_the_relay_s_share_is_aws_over_the_total_and_the_cheapest_model_carries_the_target(
    measured: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cost.main([]) == 0
    result = harness.load("cost")
    aws = _figure(result, "AWS cost per 1,000 videos")["spread"]["median"]
    assert aws == pytest.approx(sum(line["usd"] for line in result["lines"]))
    prices = {model_id: _list_price(model_id, seconds) for model_id, seconds in _live().items()}
    cheapest = min(prices, key=lambda model_id: (prices[model_id], model_id))
    mix = sum(_list_price(model_id, _live()[model_id]) for model_id in cost.DEFAULT_MIX) / 3

    share = _figure(result, "the relay's share of the total, cheapest")
    assert cheapest in share["name"]
    assert share["spread"]["median"] == pytest.approx(100 * aws / (aws + prices[cheapest]))
    assert (share["limit"], share["at_least"], share["target"]) == (1.0, False, "target ≤ 1%")
    assert share["ok"] is (share["spread"]["median"] <= 1.0)
    mix_share = _figure(result, "the relay's share of the total, that mix")
    assert mix_share["spread"]["median"] == pytest.approx(100 * aws / (aws + mix))
    assert mix_share["limit"] is None  # recorded: the worst case carries the target
    assert _figure(result, "provider list price per 1,000 videos, mix")["spread"]["median"] == pytest.approx(
        mix
    )
    assert result["providers"]["cheapest"]["model"] == cheapest
    printed = capsys.readouterr().out
    for model_id in prices:  # every model, with its read date and source
        entry_line = next(line for line in printed.splitlines() if line.strip().startswith(model_id + " "))
        assert "read 20" in entry_line
    assert printed.count("source: ") == len(prices)


def test_a_share_over_1_percent_misses(measured: Path) -> None:
    # 1 GB videos: the downloads alone cost $90 per 1,000, far over 1% of the cheapest model's price.
    assert cost.main(["--video-mb", "1000"]) == 1
    share = _figure(harness.load("cost"), "the relay's share of the total, cheapest")
    assert share["ok"] is False and share["spread"]["median"] > 1.0


def test_without_the_other_benchmarks_it_exits_naming_the_missing_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(harness, "OUT", tmp_path)
    with pytest.raises(SystemExit, match=r"throughput\.json is missing"):
        cost.main([])
    assert not (tmp_path / "cost.json").exists()


def test_a_bad_mix_or_length_is_refused_naming_the_flag(
    measured: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv, flag in [(["--mix", "nope"], "--mix"), (["--seconds", "59"], "--seconds")]:
        with pytest.raises(SystemExit) as exit_info:
            cost.main(argv)
        assert exit_info.value.code == 2
        assert flag in capsys.readouterr().err
    assert not (measured / "cost.json").exists()


def test_every_cold_start_function_has_its_event_its_calls_and_a_template_resource() -> None:
    from bench import cold_start
    from devstack.template import load_template

    resources = load_template()["Resources"]
    assert set(cold_start.EXPECTED_CALLS) == set(cold_start.FUNCTIONS)
    assert cold_start.TARGETED.issubset(cold_start.FUNCTIONS)
    for logical_id, event in cold_start.FUNCTIONS.items():
        assert resources[logical_id]["Type"] == "AWS::Serverless::Function"
        assert (cold_start.EVENTS / f"{event}.json").is_file()
    # Issue 16: the authorizer runs before every protected request, so it keeps the 1.5x target.
    assert "AuthorizerFunction" in cold_start.TARGETED


def test_the_snapstart_functions_are_those_the_template_deploys_with_it() -> None:
    """Their target is on the restored figure; the authorizer, without SnapStart, keeps the spawn one."""
    from bench.cold_start import TARGETED, snapstart_functions

    found = snapstart_functions()
    assert {"SubmitFunction", "StatusFunction", "CallbackFunction"} <= found
    assert "AuthorizerFunction" not in found
    assert TARGETED - found == {"AuthorizerFunction"}


def test_the_authorizer_benchmark_counts_only_an_allow_for_the_key_s_tenant() -> None:
    from bench.cold_start import authorizer_problem
    from sora_relay.domain.tenant import TENANT_ACTIVE, Refusal, Tenant, issue_key
    from sora_relay.runtime.authorizer import answer
    from sora_relay.usecases.authorize import Grant

    tenant = Tenant("ten_" + "a" * 20, "bench", TENANT_ACTIVE, "usage", "usage-key", "secret", 0)
    granted = answer(
        Grant(tenant, issue_key(tenant.tenant_id, 0).record), "arn:aws:execute-api:r:1:api/live/GET/x"
    )
    denied = answer(Refusal(403, "disabled"), "arn:aws:execute-api:r:1:api/live/GET/x")
    assert authorizer_problem(granted) is None
    assert "Deny" in (authorizer_problem(denied) or "")
    assert authorizer_problem({"principalId": "x"}) is not None
    assert authorizer_problem(None) is not None


def test_a_saved_file_outside_the_repository_is_shown_whole(tmp_path):
    """BENCH_OUT may point anywhere: the 'saved ...' line must not crash on relative_to."""
    inside = harness.ROOT / "bench" / "out" / "warm.json"
    outside = tmp_path / "warm.json"
    assert harness.shown(inside) == "bench/out/warm.json"
    assert harness.shown(outside) == str(outside)


def test_recording_does_not_import_httpx_into_a_handler_that_never_does() -> None:
    """A function that uses no httpx (status, the stream consumer, the authorizer) must not carry
    httpx's import in its measured cold start; a handler that imports it later is still recorded."""
    script = """
import json, sys
from bench.replay import Recorder
recorder = Recorder().install()
before = "httpx" in sys.modules
import httpx
def answer(request):
    return httpx.Response(200, json={"ok": True})
with httpx.Client(transport=httpx.MockTransport(answer)) as client:
    client.get("http://127.0.0.1:9/probe")
recorder.uninstall()
print(json.dumps({"before": before, "calls": recorder.summary(recorder.calls), "clients": recorder.http_clients}))
"""
    outcome = probe_json(script, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert outcome == {"before": False, "calls": ["http GET http://127.0.0.1:9/probe"], "clients": 1}


def test_the_libraries_alone_child_imports_what_the_handler_did_but_our_code(tmp_path: Path) -> None:
    """The cold-start benchmark's third child: the handler's modules, app and sora_relay left out,
    imported in a fresh interpreter, give it every library module and none of ours."""
    (tmp_path / "sora_relay").mkdir()
    (tmp_path / "sora_relay" / "__init__.py").write_text("import libx\nimport fractions\n")
    (tmp_path / "libx.py").write_text("import decimal\n")
    (tmp_path / "app.py").write_text("import sora_relay\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path)])}
    recorded = probe_json(
        "import json, sys\nfrom bench.replay import imported_since\n"
        "present = set(sys.modules)\nimport app\nprint(json.dumps(imported_since(present)))",
        env=env,
    )
    assert {"libx", "fractions", "decimal"} <= set(recorded)
    assert not {"app", "sora_relay"} & set(recorded)
    outcome = probe_json(
        "import json, sys\nfrom bench.replay import import_all\n"
        f"unimportable = import_all({recorded!r})\n"
        "print(json.dumps({'unimportable': unimportable, 'missing': [n for n in "
        f"{recorded!r} if n not in sys.modules], 'ours': [n for n in ('app', 'sora_relay') if n in sys.modules]}}))",
        env=env,
    )
    assert outcome == {"unimportable": [], "missing": [], "ours": []}
