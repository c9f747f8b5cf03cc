"""`python -m devstack.simulator --port 8701 --token TOKEN`: the simulator alone, until Ctrl-C."""

import argparse
import logging
import time
from pathlib import Path

from devstack.simulator.core import FAULTS, ProviderSimulator, SimulatorConfig

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
args = parser.parse_args()
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
settings = {"api_token": args.token, "callback_delay_s": args.delay, "late_delay_s": args.late_delay}
settings |= {"render_fps": args.fps, "fault": args.fault, "host": args.host, "port": args.port}
try:
    simulator = ProviderSimulator(
        SimulatorConfig(**settings, video_dir=args.video_dir, public_url=args.public_url)
    )
except ValueError as error:
    parser.error(str(error))
with simulator:
    print(f"provider simulator listening on {simulator.url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("stopping", flush=True)
