"""GPU energy counters through Zeus (``zeus.device.gpu``): Zeus's real GPU layer over pynvml whose device calls
answer as H100s would (there is no GPU here; the real path ran on an H200, docs/gpu/), by NVML index whatever
CUDA_VISIBLE_DEVICES says, and the fall-backs to NVML, each with its reason."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pynvml
import pytest

from vllm_mobo.measure.energy.gpu_counters import NVML, ZEUS, gpu_counters
from vllm_mobo.measure.energy.nvml import NvmlMeter
from vllm_mobo.measure.energy.timeline import TimelineSampler



@pytest.fixture
def gpus(monkeypatch):
    """Three GPUs' counters (mJ) behind pynvml's device calls, which Zeus's NVIDIAGPU objects read."""
    counters = {0: 1_000_000, 1: 2_000_000, 2: 3_000_000}
    arch = {0: pynvml.NVML_DEVICE_ARCH_HOPPER, 1: pynvml.NVML_DEVICE_ARCH_HOPPER, 2: pynvml.NVML_DEVICE_ARCH_HOPPER}

    def not_supported(*_):
        raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)

    for name, fn in {"nvmlInit": lambda: None, "nvmlShutdown": lambda: None, "nvmlDeviceGetCount": lambda: 3,
                     "nvmlDeviceGetHandleByIndex": lambda i: i, "nvmlDeviceGetC2cModeInfoV": not_supported,
                     "nvmlDeviceGetArchitecture": lambda h: arch[h],
                     "nvmlDeviceGetTotalEnergyConsumption": lambda h: counters[h],
                     "nvmlSystemGetDriverVersion": lambda: "580.159.04", "nvmlDeviceGetName": lambda h: "Fake H100",
                     "nvmlDeviceGetPowerUsage": lambda h: 300_000}.items():
        monkeypatch.setattr(pynvml, name, fn)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return SimpleNamespace(mj=counters, arch=arch)


def test_zeus_reads_the_counters_of_visible_gpus(gpus):
    c = gpu_counters(pynvml, {0: 0, 1: 1})
    assert (c.reader, c.note) == (ZEUS, "") and c.method == "Zeus total-energy counter (zeus.device.gpu)"
    assert c.joules[0]() == 1000.0 and c.joules[1]() == 2000.0
    gpus.mj[1] += 5_000
    assert c.joules[1]() == 2005.0


@pytest.mark.parametrize("visible", ["GPU-8f2a0c1e-1111-2222-3333-444455556666", "2,0", "1"])
def test_zeus_reads_nvml_indices_whatever_cuda_visible_devices_says(gpus, monkeypatch, visible):
    # a candidate pinned by UUID (as the pipeline pins), by indices in another order, or metered node-wide
    # (energy.gpu_scope: node) beyond the one GPU its process sees: Zeus reads each GPU by its NVML index
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    c = gpu_counters(pynvml, {0: 0, 1: 1, 2: 2})
    assert (c.reader, c.note) == (ZEUS, "")
    assert {i: read() for i, read in c.joules.items()} == {0: 1000.0, 1: 2000.0, 2: 3000.0}


def test_without_zeus_or_a_counter_nvml_reads_and_says_why(gpus, monkeypatch, caplog):
    gpus.arch[1] = pynvml.NVML_DEVICE_ARCH_PASCAL  # Zeus: no counter before Volta
    c = gpu_counters(pynvml, {0: 0, 1: 1})
    assert c.reader == NVML and c.note == "GPUs [1] have no total-energy counter"
    assert [r.levelname for r in caplog.records if "not Zeus" in r.getMessage()] == ["WARNING"]  # in the job's log
    for module in ("zeus", "zeus.device", "zeus.device.gpu", "zeus.device.gpu.nvidia"):  # not installed
        monkeypatch.setitem(sys.modules, module, None)
    c = gpu_counters(pynvml, {0: 0})
    assert c.reader == NVML and c.note == "Zeus is not installed" and c.joules[0]() == 1000.0


def test_the_window_meter_and_the_timeline_read_through_zeus(gpus, monkeypatch, tmp_path):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-8f2a0c1e-1111-2222-3333-444455556666,GPU-77c1")
    meter = NvmlMeter(pynvml, [0, 1])
    gpus.mj[0] += 40_000
    gpus.mj[1] += 60_000
    reading = meter.stop(window_s=1.0)
    assert reading.joules == pytest.approx(100.0)
    assert reading.method == "Zeus total-energy counter (zeus.device.gpu), GPUs 0,1"
    assert [g["reader"] for g in reading.detail["gpus"]] == [ZEUS, ZEUS] and "zeus_not_used" not in reading.detail
    sampler = TimelineSampler.open(interval_s=0.05, root_pid=1, gpu_indices=[0, 1], rapl_root=tmp_path / "none")
    assert [c.method for c in sampler.channels[:2]] == [f"Zeus total-energy counter (zeus.device.gpu) of GPU {i}"
                                                        for i in (0, 1)]
