"""The search for a server's capacity under its SLOs: the highest request rate at which they hold.

Pure logic over a function ``measure(rate) -> dict`` that loads the server at one rate and returns that step's
metrics with ``slo_met``; the online worker (:mod:`.online`) passes one that runs a timed window on the running
server. The search (``benchmark.online.capacity``):

1. **Ramp**: ``start_rate``, ``start_rate x growth``, ``x growth`` again, ... until a rate violates the SLOs.
   If ``start_rate`` already does, the capacity is 0.
2. **Bisection** between the highest rate that met the SLOs (``low``) and the lowest that violated them
   (``high``), at their geometric mean (rates span orders of magnitude; the bracket is relative), until
   ``high / low - 1 <= tolerance``.

It stops early, keeping the bracket reached, after ``max_steps`` measured rates or when the next step would end
after ``max_time_s`` (predicted from the last step's duration, scaled by the rate: a window holds ``rate x
min_window_s`` requests). The capacity is ``low``: a rate that was measured and met the SLOs. Bisection assumes
that latency grows with load; it only measures inside the bracket, so ``low < high`` always holds.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

#: How a search ended (``capacity_end`` in metrics.json).
ENDS = {
    "tolerance": "converged: the bracket is within the tolerance",
    "start_rate": "start_rate already violates the SLOs: capacity 0",
    "max_steps": "stopped at max_steps before the bracket reached the tolerance",
    "max_time_s": "stopped: the next step would have ended after max_time_s",
}


@dataclass(frozen=True)
class Settings:
    """``benchmark.online.capacity`` (see the schema for each key's default and why)."""

    start_rate: float
    growth: float
    tolerance: float
    max_steps: int
    max_time_s: float

    @classmethod
    def from_config(cls, capacity: dict) -> Settings:
        """From the validated config block (its defaults filled in), ignoring ``enabled``."""
        return cls(**{k: capacity[k] for k in cls.__dataclass_fields__})


@dataclass
class Outcome:
    """The steps measured (in order, each with ``rate``, ``phase``, ``slo_met``, ``step_s`` and what
    ``measure`` returned), the bracket reached and how the search ended."""

    steps: list[dict] = field(default_factory=list)
    low: float | None = None  # highest rate measured that met the SLOs
    high: float | None = None  # lowest rate measured that violated them
    end: str = ""
    time_s: float = 0.0

    @property
    def capacity(self) -> float:
        """Requests/s the server sustains within the SLOs: ``low``, or 0 when no rate met them."""
        return self.low if self.low is not None else 0.0

    @property
    def converged(self) -> bool:
        return self.end == "tolerance"

    @property
    def best(self) -> dict | None:
        """The step measured at the capacity (None when no rate met the SLOs)."""
        return next((s for s in reversed(self.steps) if s["slo_met"] and s["rate"] == self.low), None)

    def summary(self) -> dict:
        """The bracket and the ending, for metrics.json."""
        return {"capacity_bracket_low_per_s": self.low, "capacity_bracket_high_per_s": self.high,
                "capacity_bracket_width": bracket_width(self.low, self.high), "capacity_end": self.end,
                "capacity_end_reason": ENDS[self.end], "capacity_converged": self.converged,
                "capacity_steps_run": len(self.steps), "capacity_search_s": self.time_s}


def bracket_width(low: float | None, high: float | None) -> float:
    """Relative width ``high / low - 1`` of a bracket (inf while either end is unknown)."""
    if low is None or high is None or low <= 0:
        return math.inf
    return high / low - 1.0


def next_rate(low: float | None, high: float | None, settings: Settings) -> float:
    """The rate to measure next: ``start_rate`` first, ``low x growth`` while ramping, the geometric mean of the
    bracket once a rate has failed."""
    if low is None and high is None:
        return float(settings.start_rate)
    if high is None:
        return low * settings.growth
    return math.sqrt(low * high)


def search(measure: Callable[[float], dict], settings: Settings,
           clock: Callable[[], float] = time.monotonic) -> Outcome:
    """Run the ramp and the bisection with ``measure`` (see the module docstring); never raises for an SLO
    violation (``measure``'s own exceptions pass through)."""
    out = Outcome()
    t0 = clock()
    while True:
        if out.low is None and out.high is not None:
            out.end = "start_rate"
            break
        if bracket_width(out.low, out.high) <= settings.tolerance:
            out.end = "tolerance"
            break
        if len(out.steps) >= settings.max_steps:
            out.end = "max_steps"
            break
        rate = next_rate(out.low, out.high, settings)
        if out.steps:
            last = out.steps[-1]
            predicted = last["step_s"] * max(1.0, rate / last["rate"])
            if clock() - t0 + predicted > settings.max_time_s:
                out.end = "max_time_s"
                break
        phase = "ramp" if out.high is None else "bisect"
        t_step = clock()
        metrics = measure(rate)
        step = {"step": len(out.steps), "rate": rate, "phase": phase, **metrics, "slo_met": bool(metrics["slo_met"]),
                "step_s": clock() - t_step}
        out.steps.append(step)
        if step["slo_met"]:
            out.low = rate if out.low is None else max(out.low, rate)
        else:
            out.high = rate if out.high is None else min(out.high, rate)
    out.time_s = clock() - t0
    return out


# ------------------------------------------------------------------------------------------------ rates


def rate_label(rate: float):
    """A rate as metrics.json writes it: a number, or ``"inf"`` (all at once)."""
    return "inf" if math.isinf(rate) else rate


def sorted_rates(rates: list) -> list[float]:
    return sorted({float(r) for r in rates})  # float("inf") sorts last; "inf" and .inf are one rate


# ------------------------------------------------------------------------------------------ the metrics


def capacity_metrics(out: Outcome, devices_used: int) -> dict:
    """The named capacity metrics (0 requests/s and tokens/s, NaN J/token, when no rate met the SLOs) with the
    bracket and the ending. Tokens/s are those measured in the window at the capacity; per device divides by the
    candidate's devices (TP x PP: GPUs, or CPU ranks on the CPU build)."""
    best = out.best
    tokens = float(best["output_tokens_per_s"]) if best else 0.0
    return {"capacity_requests_per_s": out.capacity, "capacity_output_tokens_per_s": tokens,
            "capacity_output_tokens_per_s_per_device": tokens / max(1, devices_used),
            "joules_per_output_token_at_capacity": float(best["joules_per_output_token"]) if best else math.nan,
            **out.summary()}


def measure_targets(measure: Callable[[float], dict], rates: list) -> tuple[list[dict], list]:
    """Each target rate from low to high (``measure(rate)``), until one violates the SLOs; the rates above it are
    entered as not sustainable, unmeasured (latency grows with load, as the bisection assumes). The online worker
    runs them on the fresh server, before the capacity search. Returns (entries, labels of the rates not
    measured); every entry has ``measured`` and ``sustainable``."""
    entries, not_run, failed = [], [], None
    for rate in sorted_rates(rates):
        if failed is not None:
            not_run.append(rate_label(rate))
            entries.append({"request_rate": rate_label(rate), "measured": False, "sustainable": False,
                            "slo_met": False, "slo_violations": [f"above the target rate {rate_label(failed)} "
                                                                 f"requests/s, which violated the SLOs"]})
            continue
        m = measure(rate)
        entries.append({**m, "measured": True, "sustainable": bool(m["slo_met"])})
        if not m["slo_met"]:
            failed = rate
    return entries, not_run


#: The first target rate's figures, as named metrics: name -> the rate's metric.
AT_TARGET = {"joules_per_output_token_at_target": "joules_per_output_token",
             "ttft_ms_p99_at_target": "ttft_ms_p99", "tpot_ms_p99_at_target": "tpot_ms_p99"}


def at_target_metrics(entries: list[dict], first_rate) -> dict:
    """The figures of ``first_rate`` (the first of ``benchmark.online.request_rates``) as :data:`AT_TARGET`, when
    that rate met the SLOs; NaN otherwise (a configuration that cannot serve the target within the SLOs has no
    figure there, and an objective naming one makes it infeasible)."""
    label = rate_label(float(first_rate))
    entry = next(e for e in entries if e["request_rate"] == label)
    met = bool(entry["slo_met"])
    return {"target_rate": label, "slo_met_at_target": met,
            **{name: float(entry[key]) if met else math.nan for name, key in AT_TARGET.items()}}
