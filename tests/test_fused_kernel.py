"""BoTorch's fused qLogEHVI kernel loads past a torch build lock left by a killed process, instead of waiting for it
forever (pytorch/pytorch#189245). Real files, a real torch extension build in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import warnings

import pytest

from vllm_mobo.search.optimizer import fused_kernel
from vllm_mobo.search.optimizer.fused_kernel import StaleBuildLock, clear_stale_lock


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
    so, and returns; BoTorch's own loader would wait on it forever. Builds the kernel (~40 s on 2 cores)."""
    env = {**os.environ, "TORCH_EXTENSIONS_DIR": str(tmp_path)}
    directory = tmp_path / fused_kernel.EXTENSION
    directory.mkdir()
    (directory / "lock").touch()
    old = time.time() - 3600
    os.utime(directory / "lock", (old, old))
    code = ("from vllm_mobo.search.optimizer import fused_kernel; fused_kernel.load(); "
            "from botorch.acquisition.multi_objective import logei; print('loaded', logei._load_attempted)")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "loaded True" in proc.stdout
    assert "StaleBuildLock" in proc.stderr and str(directory / "lock") in proc.stderr
    assert not (directory / "lock").exists()
