"""One source's energy over a measured window (:class:`EnergyReading`) and the summary a metrics record stores."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ...records import ESTIMATED, MEASURED, provenance_summary

__all__ = ["ESTIMATED", "MEASURED", "EnergyReading", "summarize"]


@dataclass
class EnergyReading:
    """Joules one source used during the window, and how that number was obtained."""

    source: str  # "gpu", "cpu" or "ram"
    joules: float
    provenance: str  # "measured" or "estimated"
    method: str  # one human-readable line
    detail: dict = field(default_factory=dict)  # machine-readable extras

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def summarize(readings: list[EnergyReading]) -> dict:
    """Total joules, overall provenance (:func:`vllm_mobo.records.provenance_summary`) and every reading as a
    dict: the ``energy`` block of a metrics record."""
    if not readings:
        raise ValueError("summarize() needs at least one reading")
    out = {
        "total_j": float(sum(r.joules for r in readings)),
        "provenance": provenance_summary(r.provenance for r in readings),
        "idle_subtracted": any("idle_baseline" in r.detail for r in readings),
        "sources": [r.to_dict() for r in readings],
    }
    if out["idle_subtracted"]:
        out["gross_total_j"] = float(sum(r.detail.get("gross_joules", r.joules) for r in readings))
    return out
