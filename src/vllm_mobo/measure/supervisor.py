"""Process groups of benchmark workers and API servers: start, tie to the parent, stop the whole group."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

STOP_GRACE_S = 10.0


def group_alive(pgid: int) -> bool:
    """Whether a live (not zombie) process is still in process group ``pgid``."""
    import psutil

    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                return True
        except (ProcessLookupError, psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return False


def kill_group(pgid: int, grace_s: float = STOP_GRACE_S, reap=None) -> None:
    """SIGTERM the process group ``pgid``, wait up to ``grace_s`` for its processes to end, then SIGKILL what is
    left. ``reap`` (e.g. ``Popen.poll`` of the leader) is called while waiting, so that our own child does not
    linger as a zombie. Process groups are addressed by the leader's PID only, never by name."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if reap:
            reap()
        if not group_alive(pgid):
            return
        time.sleep(0.2)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def terminate_with_parent() -> None:
    """In the server, before exec: receive SIGTERM when the worker dies (e.g. killed by its runner's
    PR_SET_PDEATHSIG without a chance to clean up); the API server then shuts its engine processes down."""
    try:
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:  # not Linux: the runner's clean-up by the recorded PID still applies
        pass


def die_with_parent() -> None:
    """In the worker, before exec: be killed if the runner dies (e.g. SIGKILL of the Snakemake job), so no engine
    is left running; vLLM's own engine processes exit when their parent does."""
    try:
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:  # not Linux: the signal handlers below still clean up on SIGTERM/SIGINT
        pass


def kill_recorded_group(pid_file: Path) -> None:
    """Stop the API server's process group if the online worker left it running (the worker was killed before
    its own clean-up): by the PID the worker recorded, never by name. The group is signalled only while its
    leader's group id is still that PID."""
    try:
        pgid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return
    try:
        if os.getpgid(pgid) != pgid:
            return  # the PID now belongs to an unrelated process
    except ProcessLookupError:
        pass  # the leader is gone; group members may remain: killpg below finds them or raises
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
