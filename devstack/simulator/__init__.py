"""A local simulator of the video providers sora-relay speaks (shared/providers/*.md); see core.py."""

from devstack.simulator.core import FAILURE_MESSAGE, FAULTS, ProviderSimulator, SimulatorConfig

__all__ = ["FAILURE_MESSAGE", "FAULTS", "ProviderSimulator", "SimulatorConfig"]
