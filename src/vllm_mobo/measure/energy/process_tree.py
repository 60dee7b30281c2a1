"""CPU time and resident memory of a process tree: what the CPU and RAM estimates are computed from."""

from __future__ import annotations

from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class TreeSample:
    cpu_s: float  # user + system, including reaped children, summed over the live tree
    rss_bytes: int
    processes: int


def sample_tree(root_pid: int) -> TreeSample:
    """CPU seconds and resident bytes of ``root_pid`` and all its descendants alive now (zero if the root is gone)."""
    try:
        root = psutil.Process(root_pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return TreeSample(0.0, 0, 0)
    cpu_s, rss, count = 0.0, 0, 0
    for proc in procs:
        try:
            with proc.oneshot():
                t = proc.cpu_times()
                rss += proc.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):  # ended since it was listed, or not ours to read
            continue
        cpu_s += t.user + t.system + t.children_user + t.children_system
        count += 1
    return TreeSample(cpu_s, rss, count)
