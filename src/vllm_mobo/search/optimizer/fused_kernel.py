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

BoTorch compiles the kernel with ``-march=native``, and ninja rebuilds on changed sources or flags, not on another
CPU: in a build directory shared by nodes of different CPUs (a home directory on a SLURM cluster) a kernel built on
a newer node would be loaded on an older one and die of an illegal instruction. So the kernel is built in a
sub-folder named for the CPU (:func:`cpu_tag`) of torch's extensions directory, with the environment's own ninja.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import platform
import sysconfig
import time
import warnings
from pathlib import Path

EXTENSION = "logei_fused_ext"  # BoTorch's name for it (botorch/acquisition/multi_objective/logei.py)
STALE_AFTER_S = 300.0  # a torch build lock older than this, with no vllm-mobo process loading, is a leftover
POLL_S = 0.5


class StaleBuildLock(UserWarning):
    """A torch extension build lock left by a killed process was removed."""


# /proc/cpuinfo fields that decide what -march=native emits (x86: vendor, family, model, flags; Arm: implementer,
# part, features); clock speeds, core ids and bogomips vary between the cores of one machine and are left out
ISA_FIELDS = ("vendor_id", "cpu family", "model", "model name", "flags", "CPU implementer", "CPU architecture",
              "CPU variant", "CPU part", "Features")


def cpu_tag(cpuinfo: str | None = None) -> str:
    """``cpu-`` and 10 hex digits naming this CPU's model and instruction set, from the first processor of
    ``/proc/cpuinfo`` (or ``cpuinfo``, its text); from :mod:`platform` where there is no ``/proc/cpuinfo``."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = f"machine: {platform.machine()}\nmodel name: {platform.processor()}"
    first = cpuinfo.strip().split("\n\n", 1)[0]
    fields = [(key.strip(), value.strip()) for key, _, value in (line.partition(":") for line in first.splitlines())]
    isa = "\n".join(f"{k}: {v}" for k, v in fields if k in ISA_FIELDS or k == "machine")
    return "cpu-" + hashlib.sha1(isa.encode()).hexdigest()[:10]


def build_directory() -> Path:
    """Where torch builds BoTorch's kernel on this CPU: ``<extensions root>/<cpu tag>/logei_fused_ext``, the root
    being ``TORCH_EXTENSIONS_DIR`` or torch's cache default (created if missing)."""
    from torch.utils.cpp_extension import _get_build_directory

    return Path(_get_build_directory(os.path.join(cpu_tag(), EXTENSION), False))


@contextlib.contextmanager
def _build_environment(root: Path):
    """While BoTorch's loader runs: ``TORCH_EXTENSIONS_DIR`` set to ``root``, and this Python environment's own
    ``ninja`` (pip's, beside its ``python``) first on ``PATH``; both as they were afterwards. torch runs the first
    ``ninja`` on ``PATH``, and ninja versions cannot read each other's build logs (1.11 and 1.13 write logs v5 and
    v7), so with a system ninja on one ``PATH`` and the environment's on another the kernel would be built again
    (~40 s) whenever the ``PATH`` changed."""
    changes = {"TORCH_EXTENSIONS_DIR": str(root)}
    scripts = sysconfig.get_path("scripts")
    if (Path(scripts) / "ninja").exists():
        changes["PATH"] = os.pathsep.join([scripts, os.environ.get("PATH", "")])
    before = {key: os.environ.get(key) for key in changes}
    os.environ.update(changes)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


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
    with open(directory / "vllm_mobo.flock", "a") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        try:
            clear_stale_lock(directory)
            with _build_environment(directory.parent):
                loader()
        finally:
            fcntl.flock(guard, fcntl.LOCK_UN)
