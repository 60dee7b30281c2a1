"""Cumulative GPU energy counters, read through Zeus where it can, else through NVML: :func:`gpu_counters`.

Zeus (``zeus.device.gpu``, the ML.ENERGY project's GPU layer: NVML on NVIDIA, amdsmi on AMD) reads the same
total-energy counter as NVML (0.00% apart on an H200, docs/gpu/2026-12-01-h200-zeus-meter-check). It numbers GPUs
as CUDA does, within ``CUDA_VISIBLE_DEVICES``, while this project meters NVML indices (``energy.gpu_scope: node``
meters GPUs the candidate's process cannot see), so Zeus reads the counters only where every metered GPU is
visible to the process and has the counter; otherwise NVML does, and each reading names its reader.

Zeus's CPU layer is not used: it counts RAPL's ``psys`` domain as a CPU package (the platform's energy, packages
included, added twice) and leaves a polling process per RAPL file alive after ``os._exit``, which ends every vLLM
worker (:mod:`.rapl` reads RAPL instead).
"""

from __future__ import annotations

import contextlib
import logging
import os
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


def visible_to_zeus(indices: list[int], cuda_visible_devices: str | None) -> dict[int, int] | str:
    """NVML index -> Zeus's index for every GPU of ``indices``, or why Zeus cannot see them all.

    Zeus takes ``CUDA_VISIBLE_DEVICES`` (integers only) as the NVML indices of its GPUs 0, 1, ...; unset, its GPU
    ``i`` is NVML's ``i``."""
    if cuda_visible_devices is None:
        return {i: i for i in indices}
    try:
        visible = [int(v) for v in cuda_visible_devices.split(",") if v.strip()]
    except ValueError:
        return f"CUDA_VISIBLE_DEVICES={cuda_visible_devices!r} is not a list of indices"
    missing = [i for i in indices if i not in visible]
    if missing:
        return f"GPUs {missing} are outside CUDA_VISIBLE_DEVICES={cuda_visible_devices}"
    return {i: visible.index(i) for i in indices}


def _zeus_gpus():
    """Zeus's GPU layer (its process-wide singleton); amdsmi's complaint on machines without ROCm goes to stderr."""
    with contextlib.redirect_stdout(sys.stderr):
        from zeus.device.gpu import get_gpus
    return get_gpus()


def zeus_counters(indices: list[int]) -> GpuCounters | str:
    """Counters through Zeus, or why not (not installed, GPUs not visible, no counter, an error)."""
    mapping = visible_to_zeus(indices, os.environ.get("CUDA_VISIBLE_DEVICES"))
    if isinstance(mapping, str):
        return mapping
    try:
        gpus = _zeus_gpus()
    except ImportError:
        return "Zeus is not installed"
    except Exception as exc:  # ZeusGPUInitError and the errors of the libraries below it
        return f"Zeus's GPU layer did not start: {type(exc).__name__}: {exc}"
    try:
        lacking = [i for i, z in mapping.items() if not gpus.supports_get_total_energy_consumption(z)]
    except Exception as exc:
        return f"Zeus could not query GPUs {indices}: {type(exc).__name__}: {exc}"
    if lacking:
        return f"GPUs {lacking} have no total-energy counter"
    return GpuCounters({i: (lambda z=z: gpus.get_total_energy_consumption(z) / 1000.0) for i, z in mapping.items()},
                       ZEUS)


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
    log.info("GPU energy through NVML: %s", zeus)
    return GpuCounters({i: (lambda h=h: nvml.nvmlDeviceGetTotalEnergyConsumption(h) / 1000.0)
                        for i, h in with_counter.items()}, NVML, note=zeus)
