"""A local simulator of the video providers sora-relay speaks (shared/providers/*.md).

One server speaks each family's wire format under its own prefix (AceDataCloud at the root, fal
under /fal, Replicate under /replicate), serves a real MP4 per finished job and injects the
failures the relay must survive (core.FAULTS). Run it alone with
`python -m devstack.simulator --port 8701 --token TOKEN`; embed it with
`with ProviderSimulator(SimulatorConfig(api_token=...)) as sim: ...`.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from devstack.simulator.core import (
    FAILURE_MESSAGE,
    FAULTS,
    Dialect,
    FaultMode,
    Job,
    ProviderSimulator,
    SimulatorConfig,
    resolve_fault,
)

__all__ = [
    "FAILURE_MESSAGE",
    "FAULTS",
    "FaultMode",
    "Job",
    "ProviderSimulator",
    "SimulatorConfig",
    "default_dialects",
    "main",
    "resolve_fault",
]


def default_dialects(sim: ProviderSimulator) -> list[Dialect]:
    """Every provider family, mounted at its prefix."""
    from devstack.simulator.acedata import AceData
    from devstack.simulator.fal import Fal
    from devstack.simulator.replicate import Replicate

    return [AceData(sim), Fal(sim), Replicate(sim)]


def main(argv: list[str] | None = None) -> None:
    """Run the simulator in the foreground until Ctrl-C."""
    parser = argparse.ArgumentParser(description="Video provider simulator (AceDataCloud, fal, Replicate)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8701)
    parser.add_argument("--token", required=True, help="the Bearer token clients must send")
    parser.add_argument("--delay", type=float, default=1.0, help="seconds until a job finishes")
    parser.add_argument("--late-delay", type=float, default=6.0, help="seconds for late-callback")
    parser.add_argument("--fps", type=int, default=4)
    parser.add_argument("--fault", default=None, help=f"default fault mode: {', '.join(FAULTS)}")
    parser.add_argument("--video-dir", type=Path, default=None)
    parser.add_argument("--public-url", default=None, help="base URL used in video URLs")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    config = SimulatorConfig(
        api_token=args.token,
        callback_delay_s=args.delay,
        late_delay_s=args.late_delay,
        render_fps=args.fps,
        fault=args.fault,
        host=args.host,
        port=args.port,
        video_dir=args.video_dir,
        public_url=args.public_url,
    )
    try:
        simulator = ProviderSimulator(config)
    except ValueError as error:
        parser.error(str(error))
    with simulator:
        print(f"provider simulator listening on {simulator.url}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            print("stopping", flush=True)
