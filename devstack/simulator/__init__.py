"""A local simulator of the video providers sora-relay speaks (shared/providers/*.md): AceDataCloud
at the root, fal under /fal, Replicate under /replicate, real MP4s, and the faults of core.FAULTS."""

from devstack.simulator.core import FAILURE_MESSAGE, FAULTS, ProviderSimulator, SimulatorConfig

__all__ = ["FAILURE_MESSAGE", "FAULTS", "ProviderSimulator", "SimulatorConfig"]
