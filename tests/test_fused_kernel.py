"""BoTorch's fused qLogEHVI kernel loads past a torch build lock left by a killed process, instead of waiting for it
forever (pytorch/pytorch#189245), and is built per CPU (it is compiled with -march=native). Real files, a real torch
extension build in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest

from vllm_mobo.search.optimizer import fused_kernel
from vllm_mobo.search.optimizer.fused_kernel import StaleBuildLock, clear_stale_lock, cpu_tag

# one x86 machine's /proc/cpuinfo (shortened): two processors whose clock and core id differ
PROCESSOR = """processor\t: {i}
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 143
model name\t: Intel(R) Xeon(R) Platinum 8480+
cpu MHz\t\t: {mhz}
core id\t\t: {i}
flags\t\t: fpu sse2 avx2 avx512f amx_tile
bogomips\t: 4000.00
"""
CPUINFO = "\n".join(PROCESSOR.format(i=i, mhz=mhz) for i, mhz in ((0, "2000.000"), (1, "3800.000")))


def test_the_cpu_tag_follows_the_instruction_set_not_the_clock_or_the_core():
    tag = cpu_tag(CPUINFO)
    assert tag.startswith("cpu-") and len(tag) == 14
    assert cpu_tag(PROCESSOR.format(i=1, mhz="3800.000")) == tag  # another core of the machine
    # an older node of the same vendor: fewer instruction-set extensions
    assert cpu_tag(CPUINFO.replace("avx512f amx_tile", "")) != tag
    assert cpu_tag(CPUINFO.replace("model\t\t: 143", "model\t\t: 106")) != tag
    arm = "processor\t: 0\nFeatures\t: fp asimd sve\nCPU implementer\t: 0x41\nCPU part\t: 0xd40\n"
    assert cpu_tag(arm) != cpu_tag(arm.replace(" sve", ""))


def test_the_kernel_is_built_in_a_folder_of_this_cpu(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    assert fused_kernel.build_directory() == tmp_path / cpu_tag() / fused_kernel.EXTENSION


def test_no_lock_returns_at_once(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert clear_stale_lock(tmp_path, stale_after_s=60) is False


def test_a_young_lock_is_waited_for_then_removed_as_stale(tmp_path):
    (tmp_path / "lock").touch()
    start = time.monotonic()
    with pytest.warns(StaleBuildLock, match="lock"):
        assert clear_stale_lock(tmp_path, stale_after_s=1.0) is True
    assert time.monotonic() - start >= 0.9
    assert not (tmp_path / "lock").exists()


def test_a_lock_released_by_its_builder_is_not_reported(tmp_path):
    lock = tmp_path / "lock"
    lock.touch()
    threading.Timer(0.3, lock.unlink).start()  # another process finishes its build
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert clear_stale_lock(tmp_path, stale_after_s=30) is False


@pytest.mark.slow
def test_a_proposal_process_loads_past_a_stale_build_lock(tmp_path):
    """A lock an hour old in the kernel's build directory (as a killed load leaves it): the load removes it, says
    so, and returns; BoTorch's own loader would wait on it forever. Builds the kernel (~40 s on 2 cores) in this
    CPU's folder and leaves TORCH_EXTENSIONS_DIR as it found it; a second process with another PATH does not build
    it again."""
    bin_folder = Path(sys.executable).parent  # the environment's: its ninja first, as under `make test`
    env = {**os.environ, "TORCH_EXTENSIONS_DIR": str(tmp_path),
           "PATH": os.pathsep.join([str(bin_folder), os.environ["PATH"]])}
    directory = tmp_path / cpu_tag() / fused_kernel.EXTENSION
    directory.mkdir(parents=True)
    (directory / "lock").touch()
    old = time.time() - 3600
    os.utime(directory / "lock", (old, old))
    code = ("from vllm_mobo.search.optimizer import fused_kernel; fused_kernel.load(); "
            "import os; from botorch.acquisition.multi_objective import logei; "
            "print('loaded', logei._load_attempted, logei._C is not None, os.environ['TORCH_EXTENSIONS_DIR'])")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert f"loaded True True {tmp_path}" in proc.stdout
    assert "StaleBuildLock" in proc.stderr and str(directory / "lock") in proc.stderr
    assert not (directory / "lock").exists()
    [built] = directory.glob(f"{fused_kernel.EXTENSION}*.so")
    # loaded again from a PATH without this environment's bin folder (a system ninja, if any, comes first there):
    # the environment's ninja still runs, so the kernel is not built again
    mtime = built.stat().st_mtime_ns
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if Path(p) != bin_folder)
    proc = subprocess.run([sys.executable, "-c", code], env={**env, "PATH": path}, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert f"loaded True True {tmp_path}" in proc.stdout
    assert built.stat().st_mtime_ns == mtime
