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
import re
import threading
import time
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import psutil

log = logging.getLogger(__name__)

MEASURED = "measured"
ESTIMATED = "estimated"
POWER_SAMPLE_INTERVAL_S = 0.05
_BYTES_PER_GB = 1e9

_TOP_DOMAIN = re.compile(r"intel-rapl:\d+")
_SUB_DOMAIN = re.compile(r"intel-rapl:\d+:\d+")


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


# --------------------------------------------------------------------------------------------------------- RAPL


class _RaplUnreadable(Exception):
    """RAPL cannot be used; the message is the reason, recorded as ``fallback_reason``."""


@dataclass(frozen=True)
class _RaplDomain:
    id: str  # directory name, e.g. "intel-rapl:0" or "intel-rapl:0:2"
    name: str  # contents of its ``name`` file, e.g. "package-0" or "dram"
    path: Path


def _read_text(path: Path) -> str:
    try:
        return path.read_text().strip()
    except PermissionError:
        raise _RaplUnreadable(f"permission denied reading {path}") from None
    except OSError as exc:
        raise _RaplUnreadable(f"cannot read {path}: {exc.strerror or exc}") from None


def _read_uj(path: Path) -> int:
    text = _read_text(path)
    try:
        return int(text)
    except ValueError:
        raise _RaplUnreadable(f"unexpected content in {path}: {text[:40]!r}") from None


def _domain_order(path: Path) -> tuple[int, ...]:
    return tuple(int(n) for n in path.name.split(":")[1:])


def _discover_rapl(root: Path) -> tuple[list[_RaplDomain], list[_RaplDomain]]:
    """The package domains and their DRAM subdomains under ``root``.

    Subdomains are looked for both inside their package's directory and flat under ``root`` (sysfs has both, as
    links to the same directory); ``intel-rapl-mmio:*`` duplicates of the packages do not match the names.
    Raises :class:`_RaplUnreadable` when there is no package domain."""
    pattern = f"{root}/intel-rapl:*"
    if not root.is_dir():
        raise _RaplUnreadable(f"no {pattern} domains ({root} does not exist)")
    try:
        flat = list(root.iterdir())
        tops = sorted((p for p in flat if _TOP_DOMAIN.fullmatch(p.name)), key=_domain_order)
        if not tops:
            raise _RaplUnreadable(f"no {pattern} domains")
        packages, drams, others = [], [], []
        for top in tops:
            name = _read_text(top / "name")
            if not name.startswith("package"):
                others.append(name)  # psys spans the whole platform, packages included
                continue
            packages.append(_RaplDomain(top.name, name, top))
            subs = {p.name: p for p in [*flat, *top.iterdir()]
                    if _SUB_DOMAIN.fullmatch(p.name) and p.name.startswith(top.name + ":")}
            for sub in sorted(subs.values(), key=_domain_order):
                if _read_text(sub / "name") == "dram":  # core and uncore are part of the package's count
                    drams.append(_RaplDomain(sub.name, "dram", sub))
    except OSError as exc:  # listing a directory failed
        raise _RaplUnreadable(f"cannot list {exc.filename or root}: {exc.strerror or exc}") from None
    if not packages:
        raise _RaplUnreadable(f"no package domains among {pattern} (found: {', '.join(others)})")
    return packages, drams


class _RaplCounters:
    """Energy counters of a set of domains over the window; every domain must be readable at start and stop.

    ``energy_uj`` wraps to zero after ``max_energy_range_uj``: a negative difference adds the range once, so a
    window must be shorter than one wrap period (minutes to hours, depending on the power draw)."""

    def __init__(self, domains: list[_RaplDomain]):
        self.domains = domains
        self._range_uj = {d.id: _read_uj(d.path / "max_energy_range_uj") for d in domains}
        self._start_uj = {d.id: _read_uj(d.path / "energy_uj") for d in domains}

    def stop(self) -> dict[str, dict]:
        """Per domain id: ``{"name", "joules", "wrapped"}``."""
        out = {}
        for d in self.domains:
            delta = _read_uj(d.path / "energy_uj") - self._start_uj[d.id]
            wrapped = delta < 0
            if wrapped:
                delta += self._range_uj[d.id]
            out[d.id] = {"name": d.name, "joules": delta / 1e6, "wrapped": wrapped}
        return out


@dataclass
class _RaplMeter:
    """Counters for one source (packages or DRAM), or the reason there are none; a failed read at ``stop()``
    turns into a reason as well."""

    counters: _RaplCounters | None
    reason: str | None = None

    @classmethod
    def open(cls, domains: list[_RaplDomain]) -> _RaplMeter:
        try:
            return cls(_RaplCounters(domains))
        except _RaplUnreadable as exc:
            return cls(None, str(exc))

    def stop(self) -> dict[str, dict] | None:
        """Per-domain readings, or None with :attr:`reason` set."""
        if self.counters is None:
            return None
        try:
            return self.counters.stop()
        except _RaplUnreadable as exc:
            self.reason = str(exc)
            return None


# ------------------------------------------------------------------------------------------------- process tree


@dataclass(frozen=True)
class _TreeSample:
    cpu_s: float  # user + system, including reaped children, summed over the live tree
    rss_bytes: int
    processes: int


def _sample_tree(root_pid: int) -> _TreeSample:
    """CPU seconds and resident bytes of ``root_pid`` and all its descendants alive now (zero if the root is gone)."""
    try:
        root = psutil.Process(root_pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return _TreeSample(0.0, 0, 0)
    cpu_s, rss, count = 0.0, 0, 0
    for proc in procs:
        try:
            with proc.oneshot():
                t = proc.cpu_times()
                rss += proc.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):  # ended since it was listed, or not ours to read
            continue
        cpu_s += t.user + t.system + t.children_user + t.children_system
        count += 1
    return _TreeSample(cpu_s, rss, count)


# --------------------------------------------------------------------------------------------------------- NVML


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class _PowerSampler:
    """Samples the power draw of some GPUs every ``interval_s`` in a daemon thread; integrates it at ``stop()``."""

    def __init__(self, nvml, handles: dict[int, object], interval_s: float = POWER_SAMPLE_INTERVAL_S):
        self._nvml = nvml
        self._handles = handles
        self._interval_s = interval_s
        self._samples: dict[int, list[tuple[float, float]]] = {i: [] for i in handles}  # (perf_counter, watts)
        self._error: Exception | None = None
        self._done = threading.Event()
        self._sample()  # the first sample marks the window start
        self._thread = threading.Thread(target=self._run, name="nvml-power-sampler", daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        for index, handle in self._handles.items():
            watts = self._nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0
            self._samples[index].append((time.perf_counter(), watts))

    def _run(self) -> None:
        try:
            while not self._done.wait(self._interval_s):
                self._sample()
        except Exception as exc:  # re-raised by stop(): a gap in the samples would under-count silently
            self._error = exc

    def stop(self) -> dict[int, tuple[float, int]]:
        """Per GPU index: (joules, number of samples)."""
        self._done.set()
        self._thread.join()
        if self._error is not None:
            raise self._error
        self._sample()  # the last sample marks the window end
        return {i: (_trapezoid(s), len(s)) for i, s in self._samples.items()}


def _trapezoid(samples: list[tuple[float, float]]) -> float:
    return sum((t1 - t0) * (w0 + w1) / 2 for (t0, w0), (t1, w1) in pairwise(samples))


class _NvmlMeter:
    """GPU energy over the window; holds NVML initialised from construction to :meth:`stop`."""

    def __init__(self, nvml, indices: list[int]):
        self._nvml = nvml
        self.indices = list(indices)
        self._handles = {i: nvml.nvmlDeviceGetHandleByIndex(i) for i in self.indices}
        self._driver = _text(nvml.nvmlSystemGetDriverVersion())
        self._names = {i: _text(nvml.nvmlDeviceGetName(h)) for i, h in self._handles.items()}
        self._static = {i: self._static_info(h) for i, h in self._handles.items()}
        self._state_start = {i: self._state(h) for i, h in self._handles.items()}
        self._counter_start_mj: dict[int, int] = {}
        unsupported = {}
        for i, h in self._handles.items():
            try:
                self._counter_start_mj[i] = nvml.nvmlDeviceGetTotalEnergyConsumption(h)
            except nvml.NVMLError_NotSupported:
                unsupported[i] = h
        self._sampler = _PowerSampler(nvml, unsupported) if unsupported else None

    @classmethod
    def open(cls, indices: list[int] | None) -> _NvmlMeter | None:
        """A running meter, or None without GPUs to measure, without pynvml or when NVML does not initialise."""
        if not indices:
            return None
        try:
            import pynvml
        except ImportError:
            log.warning("pynvml (nvidia-ml-py) is not installed: GPU energy of GPUs %s not measured", indices)
            return None
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            log.warning("NVML did not initialise (%s): GPU energy of GPUs %s not measured", exc, indices)
            return None
        try:
            return cls(pynvml, indices)
        except BaseException:
            pynvml.nvmlShutdown()
            raise

    def _static_info(self, handle) -> dict:
        """UUID and power limit; None where the GPU does not report them."""
        out = {}
        for key, fn in (("uuid", "nvmlDeviceGetUUID"), ("power_limit_mw", "nvmlDeviceGetEnforcedPowerLimit")):
            try:
                value = getattr(self._nvml, fn)(handle)
            except (self._nvml.NVMLError, AttributeError):
                value = None
            out[key] = _text(value) if isinstance(value, bytes) else value
        return {"uuid": out["uuid"],
                "power_limit_w": out["power_limit_mw"] / 1000.0 if out["power_limit_mw"] is not None else None}

    def _state(self, handle) -> dict:
        """SM clock and temperature now; None where the GPU does not report them."""

        def optional(fn, *args):
            try:
                return fn(handle, *args)
            except self._nvml.NVMLError:
                return None

        power_mw = optional(self._nvml.nvmlDeviceGetPowerUsage)
        return {"sm_clock_mhz": optional(self._nvml.nvmlDeviceGetClockInfo, self._nvml.NVML_CLOCK_SM),
                "mem_clock_mhz": optional(self._nvml.nvmlDeviceGetClockInfo, self._nvml.NVML_CLOCK_MEM),
                "temperature_c": optional(self._nvml.nvmlDeviceGetTemperature, self._nvml.NVML_TEMPERATURE_GPU),
                "power_w": power_mw / 1000.0 if power_mw is not None else None,
                "pstate": optional(self._nvml.nvmlDeviceGetPerformanceState)}

    def stop(self, window_s: float) -> EnergyReading:
        """Reads the counters, ends sampling, and shuts NVML down (also when a read fails)."""
        try:
            counter_j = {i: (self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handles[i]) - start) / 1000.0
                         for i, start in self._counter_start_mj.items()}
            sampled = self._sampler.stop() if self._sampler else {}
            state_end = {i: self._state(h) for i, h in self._handles.items()}
        finally:
            self._nvml.nvmlShutdown()
        gpus = []
        for i in self.indices:
            gpu = {"index": i, "name": self._names[i], **self._static[i]}
            if i in counter_j:
                gpu.update(joules=counter_j[i], method="energy_counter")
            else:
                gpu.update(joules=sampled[i][0], method="power_sampling", power_samples=sampled[i][1])
            gpus.append({**gpu, "start": self._state_start[i], "end": state_end[i]})
        methods = []
        if counter_j:
            methods.append(f"NVML total-energy counter, GPUs {_join(counter_j)}")
        if sampled:
            methods.append(f"NVML power sampled every {POWER_SAMPLE_INTERVAL_S * 1000:g} ms and trapezoid-integrated "
                           f"(total-energy counter not supported), GPUs {_join(sampled)}")
        return EnergyReading(
            source="gpu",
            joules=sum(g["joules"] for g in gpus),
            provenance=MEASURED,
            method="; ".join(methods),
            detail={"window_s": window_s, "driver_version": self._driver, "gpus": gpus},
        )


def _join(items) -> str:
    return ",".join(str(i) for i in items)


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
        self._tree_start = _sample_tree(self.root_pid)
        try:
            packages, drams = _discover_rapl(self.rapl_root)
        except _RaplUnreadable as exc:
            self._cpu = self._ram = _RaplMeter(None, str(exc))
        else:
            self._cpu = _RaplMeter.open(packages)
            self._ram = _RaplMeter.open(drams) if drams else _RaplMeter(None, "no RAPL DRAM domains")
        self._gpu = _NvmlMeter.open(self.gpu_indices) if self.use_nvml else None
        self._t0 = time.perf_counter()

    def _close(self) -> list[EnergyReading]:
        window_s = time.perf_counter() - self._t0
        self._t0 = None
        readings = [self._gpu.stop(window_s)] if self._gpu else []
        package_j = self._cpu.stop()
        dram_j = self._ram.stop()
        tree_end = _sample_tree(self.root_pid)
        busy_s = max(0.0, tree_end.cpu_s - self._tree_start.cpu_s)
        if package_j is not None:
            readings.append(_rapl_reading("cpu", "package", package_j, window_s, {"process_tree_busy_cpu_s": busy_s}))
        else:
            readings.append(self._cpu_estimate(busy_s, window_s, tree_end))
        if dram_j is not None:
            readings.append(_rapl_reading("ram", "DRAM", dram_j, window_s, {}))
        else:
            readings.append(self._ram_estimate(window_s, tree_end))
        return readings

    def _cpu_estimate(self, busy_s: float, window_s: float, tree_end: _TreeSample) -> EnergyReading:
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

    def _ram_estimate(self, window_s: float, tree_end: _TreeSample) -> EnergyReading:
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


def _rapl_reading(source: str, kind: str, domains: dict[str, dict], window_s: float, extra: dict) -> EnergyReading:
    return EnergyReading(
        source=source,
        joules=sum(d["joules"] for d in domains.values()),
        provenance=MEASURED,
        method=f"RAPL {kind} domains {_join(domains)} (whole machine)",
        detail={"window_s": window_s, "domains": domains, **extra},
    )
