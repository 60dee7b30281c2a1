"""Power over time of every metered source around a benchmark's measured windows: :class:`TimelineSampler`.

A daemon thread reads each source's *cumulative* counter every ``interval_s`` and stores the mean power of each
interval (joules difference / seconds), so that over whole intervals the curve integrates to the counter's joules
(the figure the window's meters report) within the milliseconds the reads take:

- ``gpu<i>``: the total-energy counter of GPU ``i`` (``measured``; through Zeus or NVML, as the window's meter
  reads it, :mod:`.gpu_counters`); a GPU without the counter has its NVML power draw read at each sample instead
  (``measured``, NVML's own averaging);
- ``cpu``, ``ram``: RAPL package and DRAM domains (``measured``, whole machine), each wrap of a counter added once;
  where RAPL is unreadable, ``cpu`` is the busy CPU seconds of the benchmark's process tree x the configured
  watts per core (``estimated``, as the window's CPU reading) and ``ram`` is left out (its estimate is constant
  by construction).

The caller marks phases (:meth:`TimelineSampler.phase`: ``warmup``, ``cooldown``, ``window`` with a label), so a
figure can shade the measured windows and mark warm-up and idle. :meth:`TimelineSampler.stop` returns the
``power_timeline`` block of a metrics record (read by :class:`vllm_mobo.records.PowerTimeline`). A failing read ends
the sampling and is recorded in the block (``error``); it never fails the benchmark, whose energy comes from the
window's own meters.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .gpu_counters import gpu_counters
from .process_tree import sample_tree
from .rapl import RaplCounters, RaplUnreadable, discover_rapl
from .readings import ESTIMATED, MEASURED

log = logging.getLogger(__name__)

#: Default sampling interval (``energy.timeline_interval_s``): NVML's counter updates every 20-100 ms, so one
#: interval of 0.5 s holds 5-25 updates and its mean power is off by at most one update's share (4-20%).
DEFAULT_INTERVAL_S = 0.5
#: Seconds sampled after the last window, so that a figure shows the power fall back.
TIMELINE_TAIL_S = 1.0


@dataclass
class Channel:
    """One curve: a name (``gpu0``, ``cpu``, ``ram``), its source, provenance and method, and how to read it:
    ``read()`` returns cumulative joules (``kind="energy"``) or watts now (``kind="power"``)."""

    name: str
    source: str
    provenance: str
    method: str
    read: Callable[[], float]
    kind: str = "energy"

    def describe(self) -> dict:
        return {"name": self.name, "source": self.source, "provenance": self.provenance, "method": self.method}


def rapl_channels(rapl_root: Path, root_pid: int, cpu_watts_per_core: float) -> list[Channel]:
    """``cpu`` (RAPL packages, else the process-tree estimate) and ``ram`` (RAPL DRAM, where every domain reads)."""
    try:
        packages, drams = discover_rapl(rapl_root)
        cpu = Channel("cpu", "cpu", MEASURED, "RAPL package domains (whole machine)",
                      RaplCounters(packages).joules)
    except RaplUnreadable as exc:
        reason = str(exc)
        return [Channel("cpu", "cpu", ESTIMATED,
                        f"estimated: busy CPU-seconds of the benchmark process tree x {cpu_watts_per_core:g} W per "
                        f"core (RAPL unreadable: {reason})",
                        lambda: sample_tree(root_pid).cpu_s * cpu_watts_per_core)]
    channels = [cpu]
    if drams:
        try:
            channels.append(Channel("ram", "ram", MEASURED, "RAPL DRAM domains (whole machine)",
                                    RaplCounters(drams).joules))
        except RaplUnreadable as exc:
            log.info("power timeline without RAM: %s", exc)
    return channels


def gpu_channels(nvml, indices: list[int]) -> list[Channel]:
    """One channel per GPU: its total-energy counter (through Zeus or NVML, as the window's meter reads it), or
    its NVML power draw where the counter is not supported."""
    handles = {i: nvml.nvmlDeviceGetHandleByIndex(i) for i in indices}
    counters = gpu_counters(nvml, handles)
    channels = []
    for i, handle in handles.items():
        if i in counters.joules:
            channels.append(Channel(f"gpu{i}", "gpu", MEASURED, f"{counters.method} of GPU {i}", counters.joules[i]))
        else:
            channels.append(Channel(f"gpu{i}", "gpu", MEASURED, f"NVML power draw of GPU {i}",
                                    lambda h=handle: nvml.nvmlDeviceGetPowerUsage(h) / 1000.0, kind="power"))
    return channels


class TimelineSampler:
    """Samples the power of ``channels`` every ``interval_s`` from :meth:`start` to :meth:`stop`: only the sampling
    thread writes the samples until :meth:`stop` has joined it.

    Build one with :meth:`open` (the benchmark's sources: GPU counters, CPU/RAM through RAPL or the estimate);
    ``interval_s <= 0`` gives a timeline that records nothing and returns None."""

    def __init__(self, channels: list[Channel], interval_s: float = DEFAULT_INTERVAL_S, on_stop=None):
        self.channels = channels
        self.interval_s = float(interval_s)
        self._on_stop = on_stop
        self._t: list[float] = []
        self._watts: dict[str, list[float]] = {c.name: [] for c in channels}
        self._last: dict[str, tuple[float, float]] = {}  # channel -> (value, time) of the last read
        self._phases: list[dict] = []
        self._error: str | None = None
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0
        self._started_at = 0.0

    @property
    def enabled(self) -> bool:
        return self.interval_s > 0 and bool(self.channels)

    @classmethod
    def open(cls, *, interval_s: float, root_pid: int, gpu_indices: list[int] | None = None,
             cpu_watts_per_core: float = 7.5, rapl_root: str | Path = "/sys/class/powercap",
             use_nvml: bool = True) -> TimelineSampler:
        """The benchmark's sources; a source that cannot be opened is left out with a log line."""
        if interval_s <= 0:
            return cls([], 0.0)
        channels, nvml = [], None
        if gpu_indices and use_nvml:
            try:
                import pynvml
                pynvml.nvmlInit()
                nvml = pynvml
                channels += gpu_channels(pynvml, list(gpu_indices))
            except Exception as exc:  # no pynvml, no driver: the window's meters say the same in their reading
                log.warning("power timeline without GPUs %s: %s", gpu_indices, exc)
        channels += rapl_channels(Path(rapl_root), root_pid, cpu_watts_per_core)
        return cls(channels, interval_s, on_stop=nvml.nvmlShutdown if nvml else None)

    @classmethod
    def from_config(cls, energy: dict, *, root_pid: int, gpu_indices: list[int] | None = None,
                    **kwargs) -> TimelineSampler:
        """The timeline of a benchmark from the ``energy`` section of the config (``timeline_interval_s``, the
        CPU estimate's watts per core); the GPUs are the caller's, as for the window's meters."""
        return cls.open(interval_s=float(energy.get("timeline_interval_s", DEFAULT_INTERVAL_S)), root_pid=root_pid,
                        gpu_indices=gpu_indices, cpu_watts_per_core=energy.get("cpu_watts_per_core", 7.5), **kwargs)

    def start(self) -> TimelineSampler:
        """Begins sampling (a first read marks ``t = 0``); a source that fails its first read disables the timeline
        with a log line, since the benchmark's energy does not depend on it."""
        if not self.enabled or self._thread is not None:
            return self
        self._t0 = time.perf_counter()
        self._started_at = time.time()
        try:
            self._read(first=True)
        except Exception as exc:
            log.warning("no power timeline: %s: %s", type(exc).__name__, exc)
            self.channels = []
            if self._on_stop is not None:
                with contextlib.suppress(Exception):
                    self._on_stop()
            return self
        self._thread = threading.Thread(target=self._run, name="power-timeline", daemon=True)
        self._thread.start()
        return self

    def _read(self, first: bool = False) -> None:
        """One sample: each channel read, then stamped, so that a thread delayed before a read (the GIL, a busy
        core) does not put the joules of the delay into the wrong interval; the sample's time is the mean stamp."""
        values, stamps = {}, {}
        for c in self.channels:
            values[c.name] = c.read()
            stamps[c.name] = time.perf_counter() - self._t0
        if not first:
            for c in self.channels:
                if c.kind == "power":
                    watts = values[c.name]
                else:
                    last_value, last_stamp = self._last[c.name]
                    watts = max(values[c.name] - last_value, 0.0) / max(stamps[c.name] - last_stamp, 1e-9)
                self._watts[c.name].append(watts)
        self._t.append(sum(stamps.values()) / len(stamps))  # t_s[0]: the start; intervals end at t_s[1:]
        self._last = {name: (values[name], stamps[name]) for name in values}

    def _merge_short_last_interval(self) -> None:
        """Joins the last interval to the one before when it is shorter than half an interval (the read at
        :meth:`stop` often comes just after the thread's last one): a counter update inside a few milliseconds
        would read as a spike of several kilowatts. The joined interval keeps both intervals' joules."""
        t = self._t
        if len(t) < 3 or t[-1] - t[-2] >= self.interval_s / 2:
            return
        d1, d2 = t[-2] - t[-3], t[-1] - t[-2]
        for ws in self._watts.values():
            ws[-2:] = [(ws[-2] * d1 + ws[-1] * d2) / (d1 + d2)]
        del t[-2]

    def _run(self) -> None:
        try:
            while not self._done.wait(self.interval_s):
                self._read()
        except Exception as exc:  # ends the curve; the window's meters still give the energy
            self._error = f"{type(exc).__name__}: {exc}"
            log.warning("power timeline stopped: %s", self._error)

    @contextlib.contextmanager
    def phase(self, name: str, label: str | None = None):
        """Marks ``name`` (``warmup``, ``cooldown``, ``window``) from entry to exit."""
        start = time.perf_counter() - self._t0 if self._thread else None
        try:
            yield
        finally:
            if start is not None:
                self._phases.append({"phase": name, "label": label, "start_s": start,
                                     "end_s": time.perf_counter() - self._t0})

    def stop(self, tail_s: float = 0.0) -> dict | None:
        """Samples ``tail_s`` more seconds, ends the sampling after a last read and returns the ``power_timeline``
        block (:class:`vllm_mobo.records.PowerTimeline`), or None when disabled."""
        if self._thread is None:
            return None
        if tail_s > 0:
            time.sleep(tail_s)
        self._done.set()
        self._thread.join()
        self._thread = None
        if self._error is None:
            try:
                self._read()
                self._merge_short_last_interval()
            except Exception as exc:
                self._error = f"{type(exc).__name__}: {exc}"
        if self._on_stop is not None:
            with contextlib.suppress(Exception):
                self._on_stop()
        block = {"interval_s": self.interval_s, "started_at": self._started_at,
                 "channels": [c.describe() for c in self.channels],
                 "t_s": [round(t, 4) for t in self._t],
                 "watts": {name: [round(w, 3) for w in ws] for name, ws in self._watts.items()},
                 "phases": self._phases}
        if self._error:
            block["error"] = self._error
        return block
