"""Benchmark 6: what 1,000 videos cost in AWS, priced from what the other benchmarks measured.

    python -m bench.cost [--videos 1000] [--video-mb 8] [--cold-share 1.0] [--seconds 8] [--mix a,b=2] ...

Measured inputs (bench/out/*.json, from the same `make bench` run):
- throughput.json: invocations per task of the batched functions (stream, queues), AWS calls per
  task (DynamoDB reads/writes, S3, SQS, EventBridge, Secrets Manager), API requests;
- cold_start.json: each function's warm call (the billed duration) and its first event in a fresh
  interpreter (the extra is the billed init), in ms;
- archive.json: the archive function's copy rate into S3 (MiB/s), which prices a real-sized video's copy.
Assumptions are flags, printed with the result: the video's size (the simulator's clips are a few
KB), how often a client reads the task, the real provider's answer time, the share of cold
invocations. List prices: us-east-1, arm64, on-demand, free tiers ignored (PRICES below: edit them
when AWS changes them).

The providers' charge for the same videos comes from the model catalogue (sora_relay's
catalogue.json, read through its domain loader: each live model's `price_per_second_usd`, with the
`price_source` and `price_read` it cites), never from a copy here. It is priced per live model at its
default length (or `--seconds`), and for a mix of models (`--mix`; by default the three that
`make load` runs, one per provider family). The relay's share is AWS / (AWS + provider) per video:
the target (≤ 1%) is carried by the cheapest model, the worst case, so every dearer one meets it
too; the mix's share is recorded beside it. The fixed monthly AWS cost is not in the share.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from bench.harness import MIB, Figure, Spread, exit_code, load, print_figures, save

if TYPE_CHECKING:
    from sora_relay.domain.catalogue import Catalogue, ModelEntry

# us-east-1 list prices (USD), as published on the AWS pricing pages for each service.
PRICES = {
    "lambda_gb_second_arm64": 0.0000133334,
    "lambda_request": 0.20 / 1e6,
    "apigw_rest_request": 3.50 / 1e6,
    "dynamodb_write_request_unit": 0.625 / 1e6,  # on-demand
    "dynamodb_read_request_unit": 0.125 / 1e6,
    "s3_put_request": 0.005 / 1000,  # PUT, COPY, POST, LIST
    "s3_get_request": 0.0004 / 1000,
    "s3_gb_month": 0.023,  # Standard, first 50 TB
    "data_transfer_out_gb": 0.09,  # to the internet, first 10 TB
    "sqs_request": 0.40 / 1e6,  # standard queue, per 64 KB chunk
    "eventbridge_custom_event": 1.00 / 1e6,
    "secrets_api_call": 0.05 / 10_000,
    "secret_month": 0.40,
    "logs_ingested_gb": 0.50,
    "xray_trace_recorded": 5.00 / 1e6,
}
# The functions the API and the pipeline invoke per video, and the ones that run on a schedule.
PER_VIDEO_FUNCTIONS = [
    "SubmitFunction",
    "CallbackFunction",
    "ArchiveFunction",
    "TaskEventsFunction",
    "WebhookFunction",
]
API_FUNCTIONS = {"SubmitFunction", "CallbackFunction"}
SCHEDULE_INVOCATIONS_PER_MONTH = 30 * 24 * 12  # ReconcileFunction: rate(5 minutes)
# Lambda polls each SQS event source with 5 long polls (20 s) at a time, messages or not.
SQS_EVENT_SOURCES = 4  # DispatchQueue, ArchiveQueue, WebhookQueue, SubmitQueue
SQS_IDLE_REQUESTS_PER_MONTH = SQS_EVENT_SOURCES * 5 * 3 * 60 * 24 * 30
SECRETS = 3
PART_BYTES = 8 * MIB  # settings.video_part_bytes' default
# The providers' default mix: the models `make load` runs (devstack.load.MODELS, one per provider
# family), in equal shares. A unit test keeps the two alike; importing devstack.load here would
# start half the local stack's imports for three ids.
DEFAULT_MIX = ("seedance-1.5-pro", "fal-veo-3.1", "replicate-seedance-1.5-pro")
SHARE_TARGET_PERCENT = 1.0  # issue 16: the relay's share of the total, under 1%


@dataclass(frozen=True)
class Assumptions:
    videos: int
    video_mb: float
    status_reads_per_video: float
    provider_latency_s: float
    cold_share: float
    retention_days: float
    wru_per_write: int
    log_kb_per_invocation: float


@dataclass(frozen=True)
class Line:
    service: str
    item: str
    quantity: float
    unit: str
    usd: float


def function_memory_mb() -> dict[str, int]:
    from devstack.template import TEMPLATE, load_template

    template = load_template(TEMPLATE)
    default = template["Globals"]["Function"]["MemorySize"]
    return {
        name: int(resource["Properties"].get("MemorySize", default))
        for name, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    }


def _require(name: str) -> dict[str, Any]:
    result = load(name)
    if result is None:
        sys.exit(f"bench/out/{name}.json is missing: run `python -m bench.{name}` (or `make bench`) first")
    return result


def price(assume: Assumptions) -> tuple[list[Line], list[Line], dict[str, Any]]:
    """(lines per `videos` videos, fixed monthly lines, the measured inputs used)."""
    throughput = _require("throughput")["cost"]
    cold = _require("cold_start")["functions"]
    archive = _require("archive")["cost_model"]
    memory = function_memory_mb()
    n = assume.videos
    video_bytes = assume.video_mb * 1e6
    copy_rate = archive["ours_median_mib_s"] * MIB  # bytes/s into S3, measured
    calls = throughput["function_aws_calls_per_task"]

    def init_ms(function: str) -> float:
        # The init phase is billed (since August 2025): a cold invocation's extra time over a warm one.
        timing = cold.get(function)
        if not timing:
            return 0.0
        return max(timing["cold_handler_ms"]["median"] - timing["warm_handler_ms"]["median"], 0.0)

    durations: dict[str, tuple[float, float]] = {}  # function -> (invocations per video, ms each)
    for function in PER_VIDEO_FUNCTIONS:
        measured = throughput["functions"].get(function, {"invocations_per_task": 0, "duration_ms_median": 0})
        # How often: the stream and queue functions batch, as measured. The API functions run once
        # per request: the local stack's extra submits were retries of its 30 s instance wait.
        per_video = 1.0 if function in API_FUNCTIONS else measured["invocations_per_task"]
        # How long: the warm call in the Lambda layout on a quiet machine (bench 1), not the local
        # stack's durations, which 200 tasks on 2 saturated cores stretch several times over.
        timing = cold.get(function)
        ms = timing["warm_handler_ms"]["median"] if timing else measured["duration_ms_median"]
        if function == "SubmitFunction":
            ms += assume.provider_latency_s * 1000  # the simulator answers in ms; a provider does not
        if function == "ArchiveFunction":
            ms += video_bytes / copy_rate * 1000  # the local clip is a few KB; a real one is not
        durations[function] = (per_video, ms)
    status_ms = cold["StatusFunction"]["warm_handler_ms"]["median"] if "StatusFunction" in cold else 50.0
    durations["StatusFunction"] = (assume.status_reads_per_video, status_ms)

    lines: list[Line] = []
    invocations = 0.0
    for function, (per_video, ms) in durations.items():
        count = per_video * n
        invocations += count
        billed_ms = ms + assume.cold_share * init_ms(function)
        gb_s = count * billed_ms / 1000 * memory[function] / 1024
        lines.append(
            Line(
                "Lambda",
                f"{function} ({memory[function]} MB, {billed_ms:.0f} ms x {per_video:g}/video)",
                gb_s,
                "GB-s",
                gb_s * PRICES["lambda_gb_second_arm64"],
            )
        )
    lines.append(Line("Lambda", "requests", invocations, "req", invocations * PRICES["lambda_request"]))

    # One submit and one provider callback per video (the local stack's retries are not Lambda's).
    api_requests = (len(API_FUNCTIONS) + assume.status_reads_per_video) * n
    lines.append(
        Line("API Gateway", "REST requests", api_requests, "req", api_requests * PRICES["apigw_rest_request"])
    )

    dynamo = throughput["dynamodb_per_task"]
    reads = (dynamo["reads"] + assume.status_reads_per_video) * n
    wru = dynamo["writes"] * assume.wru_per_write * n
    lines.append(
        Line("DynamoDB", "write request units", wru, "WRU", wru * PRICES["dynamodb_write_request_unit"])
    )
    lines.append(
        Line("DynamoDB", "read request units", reads, "RRU", reads * PRICES["dynamodb_read_request_unit"])
    )

    s3_puts = (2 + math.ceil(video_bytes / PART_BYTES)) * n  # create, parts, complete
    gb = video_bytes * n / 1e9
    lines += [
        Line("S3", "PUT-class requests (multipart)", s3_puts, "req", s3_puts * PRICES["s3_put_request"]),
        Line("S3", "GET (one download per video)", n, "req", n * PRICES["s3_get_request"]),
        Line(
            "S3",
            f"storage, {assume.retention_days:g} days (the lifecycle rule)",
            gb * assume.retention_days / 30,
            "GB-month",
            gb * assume.retention_days / 30 * PRICES["s3_gb_month"],
        ),
        Line(
            "Data transfer",
            "videos downloaded to the internet",
            gb,
            "GB",
            gb * PRICES["data_transfer_out_gb"],
        ),
    ]

    # Each webhook message is sent once, then received and deleted by the event source mapping.
    sqs = calls.get("sqs:SendMessage", 0) * 3 * n
    lines.append(
        Line("SQS", "webhook messages (send, receive, delete)", sqs, "req", sqs * PRICES["sqs_request"])
    )
    events = calls.get("events:PutEvents", 0) * n
    lines.append(
        Line("EventBridge", "custom events", events, "event", events * PRICES["eventbridge_custom_event"])
    )
    secret_calls = calls.get("secretsmanager:GetSecretValue", 0) * n
    lines.append(
        Line(
            "Secrets Manager",
            "GetSecretValue (cached 5 min)",
            secret_calls,
            "call",
            secret_calls * PRICES["secrets_api_call"],
        )
    )
    log_gb = invocations * assume.log_kb_per_invocation / 1e6
    lines.append(Line("CloudWatch Logs", "ingestion", log_gb, "GB", log_gb * PRICES["logs_ingested_gb"]))
    lines.append(
        Line(
            "X-Ray",
            "traces (every invocation sampled)",
            invocations,
            "trace",
            invocations * PRICES["xray_trace_recorded"],
        )
    )

    reconcile_ms = (
        cold["ReconcileFunction"]["warm_handler_ms"]["median"] if "ReconcileFunction" in cold else 100.0
    )
    reconcile_gb_s = SCHEDULE_INVOCATIONS_PER_MONTH * reconcile_ms / 1000 * memory["ReconcileFunction"] / 1024
    fixed = [
        Line(
            "Lambda",
            f"ReconcileFunction every 5 min ({reconcile_ms:.0f} ms)",
            reconcile_gb_s,
            "GB-s",
            reconcile_gb_s * PRICES["lambda_gb_second_arm64"]
            + SCHEDULE_INVOCATIONS_PER_MONTH * PRICES["lambda_request"],
        ),
        Line(
            "SQS",
            f"idle long polls of {SQS_EVENT_SOURCES} event sources",
            SQS_IDLE_REQUESTS_PER_MONTH,
            "req",
            SQS_IDLE_REQUESTS_PER_MONTH * PRICES["sqs_request"],
        ),
        Line("Secrets Manager", f"{SECRETS} secrets", SECRETS, "secret", SECRETS * PRICES["secret_month"]),
    ]
    inputs = {
        "copy_rate_mib_s": archive["ours_median_mib_s"],
        "durations_ms": {f: ms for f, (_, ms) in durations.items()},
        "init_ms": {f: init_ms(f) for f in durations},
        "memory_mb": memory,
        "dynamodb_per_task": dynamo,
        "api_requests_per_task": throughput["api_requests_per_task"],
    }
    return lines, fixed, inputs


@dataclass(frozen=True)
class ModelPrice:
    """One catalogue model's list price for `videos` videos of `seconds`, with where it was read."""

    model: str
    provider: str
    seconds: int
    price_per_second_usd: float
    usd: float
    price_read: str
    price_source: str


def catalogue() -> Catalogue:
    """The layer's catalogue, validated by its domain loader (imported here, not at the top, like the
    other benchmarks' sora_relay imports)."""
    from sora_relay.domain import catalogue as module

    return module.default()


def price_model(entry: ModelEntry, seconds: int, videos: int) -> ModelPrice:
    """The entry's own arithmetic (`price_microusd`, whole millionths of a dollar per video), times
    the number of videos."""
    return ModelPrice(
        model=entry.id,
        provider=entry.provider,
        seconds=seconds,
        price_per_second_usd=entry.price_per_second_usd,
        usd=entry.price_microusd(seconds) * videos / 1_000_000,
        price_read=entry.price_read.isoformat(),
        price_source=entry.price_source,
    )


def provider_prices(
    models: Catalogue, videos: int, seconds: int | None = None
) -> tuple[list[ModelPrice], list[ModelEntry]]:
    """(every live model priced at `seconds`, or at its own default length when None; the live
    models that do not offer `seconds`). Retired models are left out: nobody can order them."""
    priced, skipped = [], []
    for entry in models.live():
        length = entry.default_seconds if seconds is None else seconds
        if length in entry.seconds:
            priced.append(price_model(entry, length, videos))
        else:
            skipped.append(entry)
    return priced, skipped


def parse_mix(text: str, models: Catalogue) -> dict[str, float]:
    """`a,b=2`: live model ids, each with a weight (1 when not given). Raises ValueError naming the
    model or the weight that is wrong."""
    mix: dict[str, float] = {}
    for part in filter(None, (piece.strip() for piece in text.split(","))):
        model_id, sep, weight_text = (item.strip() for item in part.partition("="))
        entry = models.get(model_id)
        if entry is None or not entry.live:
            offered = ", ".join(item.id for item in models.live())
            raise ValueError(f"{model_id!r} is not a live catalogue model (live: {offered})")
        try:
            weight = float(weight_text) if sep else 1.0
        except ValueError:
            raise ValueError(f"{part!r}: the weight after = is a number") from None
        if not weight > 0 or math.isinf(weight):
            raise ValueError(f"{part!r}: the weight is a positive number")
        mix[model_id] = mix.get(model_id, 0.0) + weight
    if not mix:
        raise ValueError("name at least one model")
    return mix


def price_mix(
    mix: dict[str, float], models: Catalogue, videos: int, seconds: int | None = None
) -> tuple[float, list[ModelPrice]]:
    """(USD for `videos` videos shared out by weight, each model's price for all `videos`). Each
    model runs at `seconds`, or at its own default length; a model that does not offer `seconds`
    raises ValueError naming it and what it offers."""
    total_weight = sum(mix.values())
    usd, priced = 0.0, []
    for model_id, weight in mix.items():
        entry = models.require(model_id)
        length = entry.default_seconds if seconds is None else seconds
        if length not in entry.seconds:
            offered = ", ".join(map(str, entry.seconds))
            raise ValueError(f"{model_id} offers {offered} seconds, not {length}")
        price = price_model(entry, length, videos)
        priced.append(price)
        usd += price.usd * weight / total_weight
    return usd, priced


def share_percent(aws_usd: float, provider_usd: float) -> float:
    """The relay's share of what the videos cost in all: AWS / (AWS + provider), in percent."""
    return 100 * aws_usd / (aws_usd + provider_usd)


def provider_figures(
    aws_usd: float, mix: dict[str, float], models: Catalogue, videos: int, seconds: int | None
) -> tuple[list[Figure], dict[str, Any]]:
    """Print the providers' list prices for `videos` videos and the relay's share of the total;
    return the figures and what the JSON records about them."""
    priced, skipped = provider_prices(models, videos, seconds)
    mix_usd, mix_priced = price_mix(mix, models, videos, seconds)
    cheapest = min(priced, key=lambda item: (item.usd, item.model))
    length = "each model's default length" if seconds is None else f"{seconds} s"
    print(f"\n== providers' list prices for {videos:,} videos ({length}; the catalogue, catalogue.json)")
    for item in sorted(priced, key=lambda item: (item.usd, item.model)):
        rate = f"${item.price_per_second_usd:g}/s"
        print(
            f"  {item.model:<32} {item.provider:<10} {item.seconds:>3} s x {rate:<8} ${item.usd:>10,.2f}"
            f"  relay {share_percent(aws_usd, item.usd):5.2f}%  read {item.price_read}"
        )
        print(f"      source: {item.price_source}")
    if skipped:
        offered = ", ".join(f"{entry.id} ({'/'.join(map(str, entry.seconds))} s)" for entry in skipped)
        print(f"  not offered at {seconds} s: {offered}")
    total_weight = sum(mix.values())
    shares = ", ".join(f"{model_id} {weight / total_weight:.0%}" for model_id, weight in mix.items())
    print(f"  mix ({length}): {shares}: ${mix_usd:,.2f}")
    mix_name = " + ".join(f"{item.model} {item.seconds} s" for item in mix_priced)
    cheap_name = f"{cheapest.model} {cheapest.seconds} s"
    figures = [
        Figure(
            "cost", f"provider list price per {videos:,} videos, mix {mix_name}", Spread.of([mix_usd]), " USD"
        ),
        Figure(
            "cost",
            "the relay's share of the total, that mix",
            Spread.of([share_percent(aws_usd, mix_usd)]),
            "%",
            note="the cheapest model carries the target",
        ),
        Figure(
            "cost",
            f"provider list price per {videos:,} videos, cheapest {cheap_name}",
            Spread.of([cheapest.usd]),
            " USD",
        ),
        Figure(
            "cost",
            f"the relay's share of the total, cheapest model ({cheap_name}, the worst case)",
            Spread.of([share_percent(aws_usd, cheapest.usd)]),
            "%",
            limit=SHARE_TARGET_PERCENT,
            note="issue 16; the fixed monthly AWS cost is not in it",
        ),
    ]
    recorded = {
        "videos": videos,
        "seconds": seconds,
        "aws_usd": aws_usd,
        "models": [asdict(item) for item in priced],
        "not_offered": [entry.id for entry in skipped],
        "mix": {"weights": mix, "usd": mix_usd, "models": [asdict(item) for item in mix_priced]},
        "cheapest": asdict(cheapest),
    }
    return figures, recorded


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=1000)
    parser.add_argument("--video-mb", type=float, default=8.0, help="assumed size of one video (MB)")
    parser.add_argument("--status-reads", type=float, default=2.0, help="GETs per video (status + content)")
    parser.add_argument("--provider-latency-s", type=float, default=1.0, help="the provider's create call")
    parser.add_argument(
        "--cold-share", type=float, default=1.0, help="invocations that start cold (1.0: spread over a month)"
    )
    parser.add_argument("--retention-days", type=float, default=30.0)
    parser.add_argument("--wru-per-write", type=int, default=2, help="task items are 1-2 KB")
    parser.add_argument("--log-kb", type=float, default=2.0, help="log bytes per invocation (KB)")
    parser.add_argument(
        "--seconds",
        type=int,
        default=None,
        help="every video this long (default: each model's default length); the AWS part keeps --video-mb",
    )
    parser.add_argument(
        "--mix",
        default=",".join(DEFAULT_MIX),
        help="catalogue models sharing the videos, model[=weight],... (default: make load's, equal shares)",
    )
    args = parser.parse_args(argv)
    models = catalogue()
    try:
        mix = parse_mix(args.mix, models)
        price_mix(mix, models, args.videos, args.seconds)
    except ValueError as error:
        parser.error(f"--mix: {error}")
    if not provider_prices(models, args.videos, args.seconds)[0]:
        parser.error(f"--seconds: no live model offers {args.seconds} seconds")
    assume = Assumptions(
        videos=args.videos,
        video_mb=args.video_mb,
        status_reads_per_video=args.status_reads,
        provider_latency_s=args.provider_latency_s,
        cold_share=args.cold_share,
        retention_days=args.retention_days,
        wru_per_write=args.wru_per_write,
        log_kb_per_invocation=args.log_kb,
    )
    lines, fixed, inputs = price(assume)
    total = sum(line.usd for line in lines)
    warm_lines, _, _ = price(Assumptions(**{**asdict(assume), "cold_share": 0.0}))
    warm_total = sum(line.usd for line in warm_lines)
    bigger, _, _ = price(Assumptions(**{**asdict(assume), "video_mb": assume.video_mb + 1}))
    per_mb = sum(line.usd for line in bigger) - total

    print(f"\n== 6. AWS cost of {assume.videos:,} videos (USD, us-east-1 list prices)")
    print(f"  assumptions: {asdict(assume)}")
    for line in sorted(lines, key=lambda line: line.usd, reverse=True):
        print(f"  {line.service:<16} {line.item:<58} {line.quantity:>14,.2f} {line.unit:<8} ${line.usd:9.4f}")
    print(f"  {'total':<75} {'':>23} ${total:9.4f}")
    print("  fixed per month, whatever the volume:")
    for line in fixed:
        print(f"  {line.service:<16} {line.item:<58} {line.quantity:>14,.0f} {line.unit:<8} ${line.usd:9.4f}")
    share_figures, providers = provider_figures(total, mix, models, assume.videos, args.seconds)
    figures = [
        Figure(
            "cost",
            f"AWS cost per {assume.videos:,} videos ({assume.video_mb:g} MB each)",
            Spread.of([total]),
            " USD",
        ),
        Figure("cost", "the same, every invocation warm", Spread.of([warm_total]), " USD"),
        Figure("cost", "each extra MB of video adds", Spread.of([per_mb]), " USD"),
        Figure("cost", "fixed per month", Spread.of([sum(line.usd for line in fixed)]), " USD"),
        *share_figures,
    ]
    print_figures("6. cost model", figures)
    save(
        "cost",
        figures,
        assumptions=asdict(assume),
        prices=PRICES,
        lines=[asdict(line) for line in lines],
        fixed=[asdict(line) for line in fixed],
        inputs=inputs,
        providers=providers,
    )
    return exit_code(figures)


if __name__ == "__main__":
    sys.exit(main())
