"""GPU energy over a window: the total-energy counter (since the driver loaded, Volta and newer; read through Zeus
where it can, else NVML, see :mod:`.gpu_counters`), or, for a GPU without it, its NVML power draw sampled every
50 ms in a background thread and integrated with the trapezoid rule; with each GPU's identity and state (UUID,
power limit, clocks, temperature, P-state: NVML, which Zeus's GPU layer does not report)."""

from __future__ import annotations

import logging
import threading
import time
from itertools import pairwise

from .gpu_counters import gpu_counters
from .readings import MEASURED, EnergyReading

log = logging.getLogger(__name__)

POWER_SAMPLE_INTERVAL_S = 0.05


def join_ids(items) -> str:
    """``0,1,3``: GPU indices or domain ids for a method line."""
    return ",".join(str(i) for i in items)


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class PowerSampler:
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


class NvmlMeter:
    """GPU energy over the window; holds NVML initialised from construction to :meth:`stop`."""

    def __init__(self, nvml, indices: list[int]):
        self._nvml = nvml
        self.indices = list(indices)
        self._handles = {i: nvml.nvmlDeviceGetHandleByIndex(i) for i in self.indices}
        self._driver = _text(nvml.nvmlSystemGetDriverVersion())
        self._names = {i: _text(nvml.nvmlDeviceGetName(h)) for i, h in self._handles.items()}
        self._static = {i: self._static_info(h) for i, h in self._handles.items()}
        self._state_start = {i: self._state(h) for i, h in self._handles.items()}
        self._counters = gpu_counters(nvml, self._handles)
        unsupported = {i: h for i, h in self._handles.items() if i not in self._counters.joules}
        self._counter_start_j = {i: read() for i, read in self._counters.joules.items()}
        self._sampler = PowerSampler(nvml, unsupported) if unsupported else None

    @classmethod
    def open(cls, indices: list[int] | None) -> NvmlMeter | None:
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
            counter_j = {i: self._counters.joules[i]() - start for i, start in self._counter_start_j.items()}
            sampled = self._sampler.stop() if self._sampler else {}
            state_end = {i: self._state(h) for i, h in self._handles.items()}
        finally:
            self._nvml.nvmlShutdown()
        gpus = []
        for i in self.indices:
            gpu = {"index": i, "name": self._names[i], **self._static[i]}
            if i in counter_j:
                gpu.update(joules=counter_j[i], method="energy_counter", reader=self._counters.reader)
            else:
                gpu.update(joules=sampled[i][0], method="power_sampling", power_samples=sampled[i][1])
            gpus.append({**gpu, "start": self._state_start[i], "end": state_end[i]})
        methods = []
        if counter_j:
            methods.append(f"{self._counters.method}, GPUs {join_ids(counter_j)}")
        if sampled:
            methods.append(f"NVML power sampled every {POWER_SAMPLE_INTERVAL_S * 1000:g} ms and trapezoid-integrated "
                           f"(total-energy counter not supported), GPUs {join_ids(sampled)}")
        return EnergyReading(
            source="gpu",
            joules=sum(g["joules"] for g in gpus),
            provenance=MEASURED,
            method="; ".join(methods),
            detail={"window_s": window_s, "driver_version": self._driver, "gpus": gpus,
                    **({"zeus_not_used": self._counters.note} if self._counters.note else {})},
        )
