"""Thermal state of a run's measured windows: which windows started much hotter than the first one.

Every metrics.json with a GPU energy reading holds, per metered GPU, NVML's temperature and clocks at the window's
start and end (``energy.sources[gpu].detail.gpus[*].start/end``, written by
:mod:`vllm_mobo.measure.energy.nvml`). A window whose GPU starts more than ``benchmark.thermal_warn_c`` °C hotter
than that GPU's first window of the run is warned about: a hotter chip leaks more power and may clock lower, so
its energy and speed are not comparable with the others'. GPUs are told apart by UUID (by NVML index where the
UUID is missing), so a run resumed on other GPUs compares each GPU with its own first window.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from ..records import Record


@dataclass(frozen=True)
class WindowTemperature:
    """One GPU's state at the start and end of one measured window."""

    iteration: int
    candidate: str
    gpu: str  # "GPU 0 (GPU-uuid)", or "GPU 0" without a UUID
    key: str  # what identifies the GPU across windows: its UUID, else its NVML index
    start_c: float
    end_c: float | None
    start_sm_mhz: float | None
    end_sm_mhz: float | None


def _run_order(records: list[Record]) -> list[Record]:
    """The records in the order their windows ran: by the window's start time where every record has one
    (``timing.window_started_at``), else by iteration and then as given."""
    started = [r.timing.get("window_started_at") for r in records]
    if all(isinstance(t, (int, float)) for t in started):
        return [r for _, _, r in sorted(zip(started, range(len(records)), records), key=lambda x: x[:2])]
    return sorted(records, key=lambda r: r.iteration)  # stable: the given order within an iteration


def window_temperatures(records: Iterable[Record]) -> list[WindowTemperature]:
    """Every GPU of every measured window that recorded a start temperature, in the order the windows ran."""
    out = []
    for r in _run_order([r for r in records if r.ok and r.energy]):
        gpu = r.energy.source("gpu")
        for g in (gpu.detail.get("gpus") or []) if gpu else []:
            start, end = g.get("start") or {}, g.get("end") or {}
            if start.get("temperature_c") is None:
                continue
            uuid, index = g.get("uuid"), g.get("index")
            label = f"GPU {index}" + (f" ({uuid})" if uuid else "")
            out.append(WindowTemperature(r.iteration, r.candidate, label, uuid or f"index {index}",
                                         float(start["temperature_c"]), end.get("temperature_c"),
                                         start.get("sm_clock_mhz"), end.get("sm_clock_mhz")))
    return out


def _mhz(value) -> str:
    return "?" if value is None else f"{value:g}"


def thermal_warnings(records: Iterable[Record], threshold_c: float) -> list[str]:
    """One line per GPU window that started more than ``threshold_c`` °C hotter than that GPU's first window of the
    run (the reference), naming the candidate, the temperatures and the SM clocks at the two windows' starts."""
    first: dict[str, WindowTemperature] = {}
    lines = []
    for w in window_temperatures(records):
        ref = first.setdefault(w.key, w)
        rise = w.start_c - ref.start_c
        if rise > threshold_c:
            lines.append(f"thermal: {w.candidate} (iteration {w.iteration}) started its window at {w.start_c:g} °C "
                         f"on {w.gpu}, {rise:g} °C hotter than that GPU's first window of the run ({ref.candidate}, "
                         f"iteration {ref.iteration}, {ref.start_c:g} °C; warning above {threshold_c:g} °C); SM clock "
                         f"at the start {_mhz(w.start_sm_mhz)} MHz against {_mhz(ref.start_sm_mhz)} MHz")
    return lines


def thermal_summary(records: Iterable[Record], threshold_c: float) -> list[str]:
    """The lines of ``thermal_warnings.txt``: the warnings of :func:`thermal_warnings`, or one line saying that no
    window started too hot, or that no GPU temperature was recorded (a CPU run)."""
    records = list(records)
    warnings = thermal_warnings(records, threshold_c)
    if warnings:
        return warnings
    temps = window_temperatures(records)
    if not temps:
        measured = sum(1 for r in records if r.ok)
        return [f"thermal: no GPU temperatures recorded ({measured} measured windows; no GPU metered)"]
    starts = [w.start_c for w in temps]
    return [f"thermal: no window started more than {threshold_c:g} °C hotter than its GPU's first window of the run "
            f"({len(temps)} GPU windows on {len({w.key for w in temps})} GPU(s), starting at "
            f"{min(starts):g}-{max(starts):g} °C)"]
