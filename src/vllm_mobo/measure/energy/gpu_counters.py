"""Cumulative GPU energy counters, read through Zeus where it can, else through NVML: :func:`gpu_counters`.

Zeus's GPU layer (``zeus.device.gpu``, the ML.ENERGY project's) reads the same total-energy counter as NVML
(0.00% apart on an H200, docs/gpu/2026-12-02-h200-zeus-pipeline). This project meters GPUs by NVML index (a
candidate is pinned by UUID, and ``energy.gpu_scope: node`` meters GPUs its process cannot see), so each GPU is
Zeus's :class:`zeus.device.gpu.nvidia.NVIDIAGPU` of that NVML index. Zeus's process-wide ``get_gpus()`` is not
used: it numbers GPUs within ``CUDA_VISIBLE_DEVICES`` and accepts only integers there, so a UUID-pinned candidate
would fall back to NVML. Where Zeus cannot read every counter, NVML does, and each reading names its reader.

Zeus's CPU layer is not used: it counts RAPL's ``psys`` domain as a CPU package (the platform's energy, packages
included, added twice) and leaves a polling process per RAPL file alive after ``os._exit``, which ends every vLLM
worker (:mod:`.rapl` reads RAPL instead).
"""

from __future__ import annotations

import contextlib
import logging
import sys
from dataclasses import dataclass
from typing import Callable

log = logging.getLogger(__name__)

ZEUS, NVML = "Zeus", "NVML"


@dataclass
class GpuCounters:
    """Per NVML index, a function returning the GPU's energy counter in joules (since the driver loaded), and
    the reader (:data:`ZEUS` or :data:`NVML`); ``note`` says why Zeus was not used, where it was not."""

    joules: dict[int, Callable[[], float]]
    reader: str
    note: str = ""

    @property
    def method(self) -> str:
        """``Zeus total-energy counter (zeus.device.gpu)`` or ``NVML total-energy counter``."""
        return f"{self.reader} total-energy counter" + (" (zeus.device.gpu)" if self.reader == ZEUS else "")


def _zeus_gpu(index: int):
    """Zeus's NVIDIA GPU of NVML index ``index``; amdsmi's complaint on machines without ROCm goes to stderr."""
    with contextlib.redirect_stdout(sys.stderr):
        from zeus.device.gpu.nvidia import NVIDIAGPU
    return NVIDIAGPU(index)


def zeus_counters(indices: list[int]) -> GpuCounters | str:
    """Counters through Zeus, or why not (not installed, no counter, an error)."""
    try:
        gpus = {i: _zeus_gpu(i) for i in indices}
    except ImportError:
        return "Zeus is not installed"
    except Exception as exc:  # ZeusGPUInitError and the other errors Zeus maps NVML's to
        return f"Zeus's GPU layer did not start: {type(exc).__name__}: {exc}"
    try:
        lacking = [i for i, gpu in gpus.items() if not gpu.supports_get_total_energy_consumption()]
    except Exception as exc:
        return f"Zeus could not query GPUs {indices}: {type(exc).__name__}: {exc}"
    if lacking:
        return f"GPUs {lacking} have no total-energy counter"
    return GpuCounters({i: (lambda g=g: g.get_total_energy_consumption() / 1000.0) for i, g in gpus.items()}, ZEUS)


def gpu_counters(nvml, handles: dict[int, object]) -> GpuCounters:
    """Counters for the GPUs of ``handles`` (NVML index -> NVML handle) that have one: Zeus's when it can read
    them all, else NVML's. GPUs without the counter are left out (the caller samples their power)."""
    with_counter = {}
    for i, h in handles.items():
        try:
            nvml.nvmlDeviceGetTotalEnergyConsumption(h)
        except nvml.NVMLError_NotSupported:
            continue
        with_counter[i] = h
    if not with_counter:
        return GpuCounters({}, NVML)
    zeus = zeus_counters(list(with_counter))
    if isinstance(zeus, GpuCounters):
        return zeus
    log.warning("GPU energy through NVML, not Zeus: %s", zeus)
    return GpuCounters({i: (lambda h=h: nvml.nvmlDeviceGetTotalEnergyConsumption(h) / 1000.0)
                        for i, h in with_counter.items()}, NVML, note=zeus)
