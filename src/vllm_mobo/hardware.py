"""Where candidates run: device kind, device count, and a description of the machine and its software."""

from __future__ import annotations

import os
import platform as py_platform
from importlib import metadata

import psutil


def gpu_uuids() -> list[str]:
    """UUIDs of every GPU NVML sees, by NVML index (PCI bus order); empty without NVML or GPUs. NVML ignores
    CUDA_VISIBLE_DEVICES."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:
        return []
    try:
        uuids = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            u = pynvml.nvmlDeviceGetUUID(pynvml.nvmlDeviceGetHandleByIndex(i))
            uuids.append(u.decode() if isinstance(u, bytes) else str(u))
        return uuids
    finally:
        pynvml.nvmlShutdown()


def parse_visible_devices(visible: str | None, uuids: list[str]) -> list[int]:
    """NVML indices named by a CUDA_VISIBLE_DEVICES value (integers, as NVML/PCI indices, or GPU UUIDs, also
    abbreviated as CUDA allows); None: every GPU. Entries that name no GPU are dropped (CUDA stops at the first
    invalid entry: so do we)."""
    if visible is None:
        return list(range(len(uuids)))
    indices = []
    for item in visible.split(","):
        item = item.strip()
        if item.isdigit() and int(item) < len(uuids):
            indices.append(int(item))
        elif item.startswith("GPU-") and (match := [i for i, u in enumerate(uuids) if u.startswith(item)]):
            indices.append(match[0])
        else:
            break
    return indices


def visible_gpu_indices() -> list[int]:
    """NVML indices of the GPUs this process may use: those CUDA_VISIBLE_DEVICES names (e.g. set by SLURM), or
    every GPU NVML sees. Empty without NVML or GPUs."""
    return parse_visible_devices(os.environ.get("CUDA_VISIBLE_DEVICES"), gpu_uuids())


def choose_gpus(n: int, visible: list[int] | None = None) -> list[int]:
    """The GPUs a candidate of ``n`` = TP x PP ranks is pinned to: the first ``n`` of the GPUs visible to the job.

    Snakemake run locally sets no CUDA_VISIBLE_DEVICES and no per-job GPU list, so this is the whole scheme: it is
    correct while one benchmark runs at a time on a node (``benchmark_slots: 1`` in profiles/default; two
    concurrent benchmarks would get the same GPUs). Under SLURM each job's CUDA_VISIBLE_DEVICES already names the
    GPUs allocated to it, and the first ``n`` of those are the job's."""
    visible = visible_gpu_indices() if visible is None else visible
    if n > len(visible):
        raise ValueError(f"the candidate needs {n} GPUs (TP x PP); only {len(visible)} visible: {visible}")
    return visible[:n]


def cuda_visible_devices(indices: list[int], uuids: list[str] | None = None) -> str:
    """CUDA_VISIBLE_DEVICES for NVML indices: their UUIDs (unambiguous whatever CUDA_DEVICE_ORDER is), or the
    indices themselves where UUIDs are unknown (then CUDA_DEVICE_ORDER=PCI_BUS_ID must be set, as the runner
    does, for CUDA's numbering to match NVML's)."""
    uuids = gpu_uuids() if uuids is None else uuids
    return ",".join(uuids[i] if i < len(uuids) else str(i) for i in indices)


def cpu_ranks() -> int:
    """CPU cores this process may use: on vLLM's CPU build each TP/PP rank is bound to its own cores."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def resolve_device(requested: str) -> str:
    """``auto`` -> ``cuda`` when an NVIDIA GPU is visible, else ``cpu``."""
    if requested != "auto":
        return requested
    return "cuda" if visible_gpu_indices() else "cpu"


def resolve_num_devices(requested, device: str) -> int:
    if requested != "auto":
        return int(requested)
    return len(visible_gpu_indices()) if device == "cuda" else cpu_ranks()


def cpu_bind_groups(ranks: int, cores: list[int] | None = None) -> str:
    """``VLLM_CPU_OMP_THREADS_BIND`` for ``ranks`` ranks: the cores split into contiguous groups, ``'0|1'``."""
    cores = sorted(cores if cores is not None else os.sched_getaffinity(0))
    per = max(1, len(cores) // ranks)
    groups = []
    for r in range(ranks):
        chunk = cores[r * per:(r + 1) * per] or cores[-1:]
        groups.append(f"{chunk[0]}-{chunk[-1]}" if len(chunk) > 1 else str(chunk[0]))
    return "|".join(groups)


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def software_versions() -> dict:
    """vLLM (the CUDA build ``vllm`` or the CPU build ``vllm-cpu``), torch, Python."""
    vllm_dist = "vllm" if _version("vllm") else ("vllm-cpu" if _version("vllm-cpu") else None)
    return {
        "vllm": _version(vllm_dist) if vllm_dist else None,
        "vllm_distribution": vllm_dist,
        "torch": _version("torch"),
        "python": py_platform.python_version(),
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return py_platform.processor() or py_platform.machine()


def gpu_descriptions(indices: list[int]) -> list[dict]:
    if not indices:
        return []
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:
        return []
    try:
        driver = pynvml.nvmlSystemGetDriverVersion()
        out = []
        for i in indices:
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            mem = pynvml.nvmlDeviceGetMemoryInfo(h)
            uuid = pynvml.nvmlDeviceGetUUID(h)
            out.append({"index": i, "name": pynvml.nvmlDeviceGetName(h), "driver": driver,
                        "uuid": uuid.decode() if isinstance(uuid, bytes) else str(uuid),
                        "memory_gib": round(mem.total / 2**30, 1)})
        return out
    finally:
        pynvml.nvmlShutdown()


def describe_hardware(gpu_indices: list[int] | None = None) -> dict:
    return {
        "hostname": py_platform.node(),
        "machine": py_platform.machine(),
        "os": f"{py_platform.system()} {py_platform.release()}",
        "cpu_model": _cpu_model(),
        "cpu_cores_usable": cpu_ranks(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "gpus": gpu_descriptions(gpu_indices or []),
    }
