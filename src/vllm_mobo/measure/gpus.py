"""GPUs held by one benchmark on a machine without a scheduler: one ``flock`` per GPU, all or nothing."""

from __future__ import annotations

import fcntl
import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path


def gpu_lock_dir() -> Path:
    """Machine-wide folder of the per-GPU lock files (``VLLM_MOBO_GPU_LOCK_DIR`` overrides)."""
    return Path(os.environ.get("VLLM_MOBO_GPU_LOCK_DIR") or Path(tempfile.gettempdir()) / "vllm-mobo-gpu-locks")


@contextmanager
def claim_gpus(count: int, gpus: list[int], lock_dir: Path | str | None = None, timeout_s: float = 3600,
               poll_s: float = 1.0):
    """Hold ``count`` of the GPUs ``gpus`` (NVML indices) for the duration of the block and yield their indices,
    for ``CUDA_VISIBLE_DEVICES``. Each GPU is an exclusive ``flock`` on ``lock_dir/gpu<index>.lock``, released when
    the block ends or the process dies however it dies, so concurrent local benchmarks (of any run on the machine)
    get disjoint GPUs. Waits while fewer are free; TimeoutError after ``timeout_s``.

    Snakemake's ``gpu`` resource (capped at the GPUs present, :func:`local_gpu_cap`) already keeps the sum of
    the running jobs' requests within the GPUs, so within one run the wait is short; inside a SLURM job, SLURM
    sets ``CUDA_VISIBLE_DEVICES`` and nothing needs claiming."""
    if count > len(gpus):
        raise ValueError(f"{count} GPU(s) wanted but only {len(gpus)} exist here: {gpus}")
    folder = Path(lock_dir) if lock_dir is not None else gpu_lock_dir()
    folder.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    held: list[tuple[int, int]] = []
    try:
        while True:
            for index in gpus:
                if len(held) == count:
                    break
                fd = os.open(folder / f"gpu{index}.lock", os.O_RDWR | os.O_CREAT, 0o666)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    continue
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                held.append((index, fd))
            if len(held) == count:
                break
            for _, fd in held:  # all or nothing: two jobs holding half each would wait for ever
                os.close(fd)
            held = []
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{count} of GPUs {gpus} were not free within {timeout_s:g} s (locks in {folder})")
            time.sleep(poll_s)
        yield [index for index, _ in held]
    finally:
        for _, fd in held:
            os.close(fd)
