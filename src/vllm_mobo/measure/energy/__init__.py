"""Energy of one measured window, per source (GPU, CPU, RAM), each figure labelled measured or estimated."""

from .readings import ESTIMATED, MEASURED, EnergyReading, summarize
from .session import EnergySession

__all__ = ["ESTIMATED", "MEASURED", "EnergyReading", "EnergySession", "summarize"]
