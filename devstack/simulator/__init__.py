"""A local simulator of the video providers sora-relay speaks (shared/providers/*.md).

One server speaks each family's wire format under its own prefix (AceDataCloud at the root, fal
under /fal, Replicate under /replicate), serves a real MP4 per finished job and injects the
failures the relay must survive (core.FAULTS). Alone: `python -m devstack.simulator`; embedded:
`with ProviderSimulator(SimulatorConfig(api_token=...)) as sim: ...`.
"""

from devstack.simulator.core import FAILURE_MESSAGE, FAULTS, ProviderSimulator, SimulatorConfig

__all__ = ["FAILURE_MESSAGE", "FAULTS", "ProviderSimulator", "SimulatorConfig"]
