"""BoTorch's fused qLogEHVI kernel, loaded so that a load killed half-way cannot hang later proposals.

BoTorch builds the kernel with :func:`torch.utils.cpp_extension.load` the first time a process constructs
qLogEHVI or qLogNEHVI (a C++ extension in ``~/.cache/torch_extensions/<python>_<device>/logei_fused_ext``; later
loads run ninja, a no-op when nothing changed). torch guards that step with a lock *file* (``FileBaton``): a
process killed while it holds it (Ctrl-C on Snakemake, a cancelled SLURM job, the OOM killer) leaves the file
behind, and every later load waits for it forever, printing nothing (pytorch/pytorch#189245; the torch that
vLLM's CPU build pins still does). Each proposal is its own process, so one killed ``propose`` job would hang every
later one.

:func:`load` runs BoTorch's own loader under an OS lock (:func:`fcntl.flock` on a file beside torch's, released by
the kernel when its holder dies), so vllm-mobo processes load one at a time. Holding it, a torch lock file is
either another program's build in progress or a leftover: it is waited for until it is :data:`STALE_AFTER_S`
old (a build here takes well under a minute), then removed with a warning naming it. Where BoTorch has no fused
kernel (older versions) or the build fails, BoTorch's pure-Python path is used, as BoTorch itself does.
"""

from __future__ import annotations

import fcntl
import time
import warnings
from pathlib import Path

EXTENSION = "logei_fused_ext"  # BoTorch's name for it (botorch/acquisition/multi_objective/logei.py)
STALE_AFTER_S = 300.0  # a torch build lock older than this, with no vllm-mobo process loading, is a leftover
POLL_S = 0.5


class StaleBuildLock(UserWarning):
    """A torch extension build lock left by a killed process was removed."""


def build_directory() -> Path:
    """Where torch builds BoTorch's kernel (``TORCH_EXTENSIONS_DIR`` or torch's cache default)."""
    from torch.utils.cpp_extension import _get_build_directory

    return Path(_get_build_directory(EXTENSION, False))


def clear_stale_lock(directory: Path, stale_after_s: float = STALE_AFTER_S) -> bool:
    """Wait while torch's lock file in ``directory`` is younger than ``stale_after_s``; remove it once older.
    Call only while holding the :func:`load` lock. True if a lock was removed."""
    lock = directory / "lock"
    while True:
        try:
            age = time.time() - lock.stat().st_mtime
        except FileNotFoundError:
            return False
        if age >= stale_after_s:
            lock.unlink(missing_ok=True)
            warnings.warn(f"removed {lock}, {age:.0f} s old: a torch extension build lock left by a process killed "
                          "while it loaded BoTorch's fused qLogEHVI kernel (pytorch/pytorch#189245); the kernel "
                          "is loaded again", StaleBuildLock, stacklevel=3)
            return True
        time.sleep(POLL_S)


def load() -> None:
    """Load BoTorch's fused kernel under the OS lock (see the module docstring); a no-op once BoTorch has tried."""
    from botorch.acquisition.multi_objective import logei

    loader = getattr(logei, "_try_load_fused_kernel", None)
    if loader is None or getattr(logei, "_load_attempted", False):
        return
    try:
        directory = build_directory()
    except ImportError:  # a torch without this private helper: BoTorch's loader as it is
        loader()
        return
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "vllm_mobo.flock", "a") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        try:
            clear_stale_lock(directory)
            loader()
        finally:
            fcntl.flock(guard, fcntl.LOCK_UN)
