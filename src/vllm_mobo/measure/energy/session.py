"""Energy of one measured benchmark window, per source, each number labelled with how it was obtained.

:class:`EnergySession` brackets the timed window (``start()`` ... ``stop()``) and returns one
:class:`EnergyReading` per source:

- ``gpu`` (only when GPUs are measured): NVML's total-energy counter (millijoules since the driver loaded, Volta
  and newer) summed over the given GPUs. A GPU without that counter has its power draw sampled every 50 ms in a
  background thread and integrated with the trapezoid rule. Both are ``measured``.
- ``cpu``: RAPL under ``/sys/class/powercap``: the sum of the top-level package domains ``intel-rapl:N`` (AMD
  exposes its packages under the same names). ``core``/``uncore`` are nested inside a package and ``psys`` covers
  the whole platform, so neither is added, which would count the same joules twice. RAPL measures the whole
  machine, not just the benchmark. Where RAPL cannot be read (no domains, or ``energy_uj`` readable only by root,
  as on Linux >= 5.10), the reading is ``estimated``: busy CPU seconds of the benchmark's process tree times a
  per-core wattage.
- ``ram``: RAPL DRAM subdomains (``intel-rapl:N:M`` named ``dram``) when every one of them is readable
  (``measured``), else CodeCarbon v2's model: resident GB of the process tree x 0.375 W/GB x window seconds
  (``estimated``).

Options (``energy`` section of the config, see :meth:`EnergySession.from_config`): an idle baseline measured by
the same meters just before the window and subtracted from it (``subtract_idle``; every reading then keeps its
``gross_joules`` and the baseline in ``detail``); the GPUs metered are the caller's choice (the runner passes the
candidate's GPUs or, with ``gpu_scope: node``, every GPU NVML sees). For each GPU the reading records model, UUID,
driver, power limit, and SM/memory clocks, temperature, power draw and P-state at the window's start and end.

Process-tree CPU time is the tree's cumulative counter read at ``start()`` and at ``stop()``: for the root and
every live descendant, user + system time plus the time of its children that have already exited and been reaped
(``children_user``/``children_system``). A child that appears during the window therefore counts from zero, and
one that exits during the window keeps its share through its parent once the parent has waited for it. A process
that leaves the tree without being reaped inside it (orphaned and re-parented to init) is missing from the
``stop()`` sum and takes all its CPU time with it; the total is clamped at zero so such a departure cannot make
it negative. Resident memory is the sum of RSS over the tree,
which counts pages shared between forked workers once per worker.
"""


from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import psutil

from .nvml import NvmlMeter, join_ids
from .process_tree import TreeSample, sample_tree
from .rapl import RaplMeter, RaplUnreadable, discover_rapl
from .readings import ESTIMATED, MEASURED, EnergyReading

log = logging.getLogger(__name__)

_BYTES_PER_GB = 1e9


# ------------------------------------------------------------------------------------------------------ session


class EnergySession:
    """Meters for one measured window: ``start()`` right before it, ``stop()`` right after it.

    ``root_pid`` is the benchmark process; its process tree is what the CPU and RAM estimates attribute.
    ``gpu_indices`` are NVML indices (None or empty: no GPU reading). A session can be started again after
    ``stop()``. If the benchmark fails between the two calls, NVML stays initialised (and a power-sampling
    thread, a daemon, keeps running) until the process exits: candidates run in their own process."""

    def __init__(self, *, root_pid: int, gpu_indices: list[int] | None = None, cpu_watts_per_core: float = 7.5,
                 ram_watts_per_gb: float = 0.375, rapl_root: str = "/sys/class/powercap", use_nvml: bool = True,
                 idle_baseline_s: float = 0.0):
        self.root_pid = root_pid
        self.gpu_indices = list(gpu_indices) if gpu_indices else []
        self.cpu_watts_per_core = cpu_watts_per_core
        self.ram_watts_per_gb = ram_watts_per_gb
        self.rapl_root = Path(rapl_root)
        self.use_nvml = use_nvml
        self.idle_baseline_s = float(idle_baseline_s or 0.0)
        self._t0: float | None = None
        self._idle: dict[str, tuple[float, EnergyReading]] | None = None

    @classmethod
    def from_config(cls, energy: dict, *, root_pid: int, gpu_indices: list[int] | None = None, **kwargs) -> EnergySession:
        """A session from the ``energy`` section of the config: the estimate constants, and the idle baseline
        (``subtract_idle``, ``idle_baseline_s``). Which GPUs to meter (``gpu_scope``) is the caller's choice."""
        idle_s = float(energy.get("idle_baseline_s", 10.0)) if energy.get("subtract_idle") else 0.0
        return cls(root_pid=root_pid, gpu_indices=gpu_indices,
                   cpu_watts_per_core=energy.get("cpu_watts_per_core", 7.5),
                   ram_watts_per_gb=energy.get("ram_watts_per_gb", 0.375), idle_baseline_s=idle_s, **kwargs)

    def start(self) -> None:
        """Begin the window: snapshot the process tree, the RAPL counters and the GPU counters, in that order.

        With ``idle_baseline_s`` > 0, first measure an idle baseline: the same meters over ``idle_baseline_s``
        seconds of sleep (this call blocks that long; the system must be idle then: nothing runs the load yet).
        :meth:`stop` then subtracts each source's idle power x the window's length from its joules."""
        if self._t0 is not None:
            raise RuntimeError("EnergySession.start() called twice without stop()")
        psutil.Process(self.root_pid)  # raises NoSuchProcess for a wrong root_pid
        self._idle = None
        if self.idle_baseline_s > 0:
            self._open()
            time.sleep(self.idle_baseline_s)
            idle = self._close()
            self._idle = {r.source: (r.joules / max(r.detail["window_s"], 1e-9), r) for r in idle}
        self._open()

    def stop(self) -> list[EnergyReading]:
        """End the window: one reading for the GPUs (if measured), one for the CPU, one for RAM."""
        if self._t0 is None:
            raise RuntimeError("EnergySession.stop() called before start()")
        readings = self._close()
        if self._idle:
            readings = [self._subtract_idle(r) for r in readings]
        return readings

    def _subtract_idle(self, r: EnergyReading) -> EnergyReading:
        """The reading net of the idle baseline of its source; clamped at zero (flagged) when noise makes the
        net negative."""
        if r.source not in self._idle:
            return r
        watts, idle = self._idle[r.source]
        window_s = r.detail["window_s"]
        idle_j = watts * window_s
        net = r.joules - idle_j
        detail = {**r.detail, "gross_joules": r.joules, "net_clamped_at_zero": net < 0,
                  "idle_baseline": {"watts": watts, "window_s": idle.detail["window_s"], "joules_subtracted": idle_j,
                                    "provenance": idle.provenance, "method": idle.method}}
        return dataclasses.replace(
            r, joules=max(net, 0.0), detail=detail,
            method=(f"{r.method}; minus an idle baseline of {watts:.2f} W x {window_s:.2f} s (the same meter over "
                    f"{idle.detail['window_s']:.1f} s of idle just before the window)"))

    def _open(self) -> None:
        self._tree_start = sample_tree(self.root_pid)
        try:
            packages, drams = discover_rapl(self.rapl_root)
        except RaplUnreadable as exc:
            self._cpu = self._ram = RaplMeter(None, str(exc))
        else:
            self._cpu = RaplMeter.open(packages)
            self._ram = RaplMeter.open(drams) if drams else RaplMeter(None, "no RAPL DRAM domains")
        self._gpu = NvmlMeter.open(self.gpu_indices) if self.use_nvml else None
        self._t0 = time.perf_counter()

    def _close(self) -> list[EnergyReading]:
        window_s = time.perf_counter() - self._t0
        self._t0 = None
        readings = [self._gpu.stop(window_s)] if self._gpu else []
        package_j = self._cpu.stop()
        dram_j = self._ram.stop()
        tree_end = sample_tree(self.root_pid)
        busy_s = max(0.0, tree_end.cpu_s - self._tree_start.cpu_s)
        if package_j is not None:
            readings.append(rapl_reading("cpu", "package", package_j, window_s, {"process_tree_busy_cpu_s": busy_s}))
        else:
            readings.append(self._cpu_estimate(busy_s, window_s, tree_end))
        if dram_j is not None:
            readings.append(rapl_reading("ram", "DRAM", dram_j, window_s, {}))
        else:
            readings.append(self._ram_estimate(window_s, tree_end))
        return readings

    def _cpu_estimate(self, busy_s: float, window_s: float, tree_end: TreeSample) -> EnergyReading:
        return EnergyReading(
            source="cpu",
            joules=busy_s * self.cpu_watts_per_core,
            provenance=ESTIMATED,
            method=(f"estimated: {busy_s:.2f} busy CPU-seconds of the benchmark process tree x "
                    f"{self.cpu_watts_per_core:g} W per core (RAPL unreadable: {self._cpu.reason})"),
            detail={"window_s": window_s, "busy_cpu_s": busy_s, "watts_per_core": self.cpu_watts_per_core,
                    "processes_at_start": self._tree_start.processes, "processes_at_stop": tree_end.processes,
                    "fallback_reason": self._cpu.reason},
        )

    def _ram_estimate(self, window_s: float, tree_end: TreeSample) -> EnergyReading:
        """CodeCarbon v2: the larger of the tree's resident GB at start and stop x W/GB x window seconds."""
        rss_gb = max(self._tree_start.rss_bytes, tree_end.rss_bytes) / _BYTES_PER_GB
        return EnergyReading(
            source="ram",
            joules=rss_gb * self.ram_watts_per_gb * window_s,
            provenance=ESTIMATED,
            method=(f"estimated: {rss_gb:.2f} GB resident x {self.ram_watts_per_gb:g} W/GB x {window_s:.2f} s "
                    f"(CodeCarbon v2 RAM model)"),
            detail={"window_s": window_s, "rss_gb": rss_gb, "rss_gb_start": self._tree_start.rss_bytes / _BYTES_PER_GB,
                    "rss_gb_stop": tree_end.rss_bytes / _BYTES_PER_GB, "watts_per_gb": self.ram_watts_per_gb,
                    "fallback_reason": self._ram.reason},
        )


def rapl_reading(source: str, kind: str, domains: dict[str, dict], window_s: float, extra: dict) -> EnergyReading:
    return EnergyReading(
        source=source,
        joules=sum(d["joules"] for d in domains.values()),
        provenance=MEASURED,
        method=f"RAPL {kind} domains {join_ids(domains)} (whole machine)",
        detail={"window_s": window_s, "domains": domains, **extra},
    )
