"""One source's energy over a measured window (:class:`EnergyReading`) and the summary a metrics record stores."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

MEASURED = "measured"
ESTIMATED = "estimated"


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
    """Total joules, overall provenance (``measured``, ``estimated`` or ``mixed``) and every reading as a dict."""
    if not readings:
        raise ValueError("summarize() needs at least one reading")
    provenances = {r.provenance for r in readings}
    out = {
        "total_j": float(sum(r.joules for r in readings)),
        "provenance": provenances.pop() if len(provenances) == 1 else "mixed",
        "idle_subtracted": any("idle_baseline" in r.detail for r in readings),
        "sources": [r.to_dict() for r in readings],
    }
    if out["idle_subtracted"]:
        out["gross_total_j"] = float(sum(r.detail.get("gross_joules", r.joules) for r in readings))
    return out
