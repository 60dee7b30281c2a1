"""The power timeline of a benchmark (the ``power_timeline`` block of ``metrics.json``): :class:`PowerTimeline`."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass


@dataclass(frozen=True)
class PowerTimeline:
    """Power over time of every metered source around a benchmark's measured windows, written by
    :class:`vllm_mobo.measure.energy.timeline.TimelineSampler`.

    ``t_s`` (n + 1): sample times in seconds since the timeline started (``t_s[0]``: the first read);
    ``watts[channel]`` (n): the mean power of each interval ``(t_s[k], t_s[k + 1]]``. ``channels``: name, source,
    provenance and method of each curve. ``phases``: ``{"phase": "warmup" | "cooldown" | "window", "label",
    "start_s", "end_s"}``."""

    interval_s: float
    started_at: float
    channels: tuple[dict, ...]
    t_s: tuple[float, ...]
    watts: dict
    phases: tuple[dict, ...]
    error: str | None = None

    @classmethod
    def from_dict(cls, d: dict | None) -> PowerTimeline | None:
        if not d:
            return None
        return cls(float(d.get("interval_s", 0.0)), float(d.get("started_at", 0.0)), tuple(d.get("channels") or ()),
                   tuple(float(t) for t in d.get("t_s") or ()),
                   {k: tuple(float(w) for w in v) for k, v in (d.get("watts") or {}).items()},
                   tuple(d.get("phases") or ()), d.get("error"))

    @property
    def windows(self) -> list[dict]:
        """The measured windows, in order."""
        return [p for p in self.phases if p.get("phase") == "window"]

    def total_watts(self) -> list[float]:
        """The sum of every channel per interval."""
        return [sum(ws) for ws in zip(*self.watts.values())] if self.watts else []

    def window_power(self, window: dict) -> dict:
        """How steady ``window`` was: the count of the intervals inside it, and the mean, the standard deviation
        and the coefficient of variation (sd / mean) of the total power over them."""
        inside = [w for w, t0, t1 in zip(self.total_watts(), self.t_s, self.t_s[1:])
                  if t0 >= window["start_s"] - 1e-9 and t1 <= window["end_s"] + 1e-9]
        mean = statistics.fmean(inside) if inside else math.nan
        sd = statistics.stdev(inside) if len(inside) > 1 else math.nan
        return {"intervals": len(inside), "mean_w": mean, "sd_w": sd, "cv": sd / mean if mean > 0 else math.nan}

    def joules(self, start_s: float, end_s: float, channels: list[str] | None = None) -> float:
        """The energy of ``channels`` (default: all) from ``start_s`` to ``end_s``: each interval's mean power times
        its overlap with that span, so that partial intervals at both ends count for the part inside it."""
        names = list(self.watts) if channels is None else channels
        missing = [n for n in names if n not in self.watts]
        if missing:
            raise KeyError(f"power timeline has no channel {missing}; it has {sorted(self.watts)}")
        total = 0.0
        for k, (t0, t1) in enumerate(zip(self.t_s, self.t_s[1:])):
            overlap = min(t1, end_s) - max(t0, start_s)
            if overlap > 0:
                total += overlap * sum(self.watts[n][k] for n in names)
        return total
