"""Zeus against this project's NVML meter on a real GPU, under a known load (issue 17, item 3).

A bf16 matmul loop runs on GPU 0 for two windows (LOAD_SECONDS, default 20 s, then 5 s), with idle gaps around
them. Over each window four meters read at once:

- ``vllm_mobo``: :class:`vllm_mobo.measure.energy.EnergySession` (the pipeline's path: the total-energy counter
  read through Zeus's GPU layer, ``zeus.device.gpu``, where Zeus sees the GPU; its method line says which);
- ``nvml_counter``: NVML's total-energy counter read here directly (the pipeline's path before Zeus);
- ``timeline``: the pipeline's power timeline (:class:`vllm_mobo.measure.energy.timeline.TimelineSampler`, 0.5 s
  intervals of the same counter), its ``gpu0`` curve integrated over the window (partial intervals at the edges
  counted for their overlap; the timeline's CPU/RAM curves are left out, as the other meters here read the GPU);
- ``zeus_monitor``: Zeus's :class:`zeus.monitor.ZeusMonitor` window (the same counter, read by Zeus);
- ``zeus_power_monitor``: Zeus's :class:`zeus.monitor.power.PowerMonitor` integral over the window
  (``get_energy``), from the power samples it polls in a process of its own;
- ``sampled``: a thread here sampling NVML power every 20 ms, trapezoid (the cross-check of the NVML check).

The PowerMonitor's whole timeline (idle, both windows) is written as CSV for the figure
(``benchmarks/device/zeus_check_figure.py``). Prints one JSON object and writes it, with the timeline, to OUT_DIR.

Run on the device machine: python benchmarks/device/zeus_meter_check.py $OUT
"""

from __future__ import annotations

import csv
import json
import os
import sys
import threading
import time
from pathlib import Path

import pynvml
import torch
from zeus.monitor import ZeusMonitor
from zeus.monitor.power import PowerMonitor

from vllm_mobo.measure.energy import EnergySession
from vllm_mobo.measure.energy.timeline import TimelineSampler
from vllm_mobo.records import PowerTimeline


def sample_power(handle, stop: threading.Event, out: list, interval: float = 0.02) -> None:
    """(time.time(), watts) every ``interval`` seconds until ``stop``."""
    while not stop.is_set():
        out.append((time.time(), pynvml.nvmlDeviceGetPowerUsage(handle) / 1000.0))
        time.sleep(interval)


def trapezoid(samples: list[tuple[float, float]], start: float, end: float) -> float:
    inside = [(t, w) for t, w in samples if start <= t <= end]
    return sum((t1 - t0) * (w0 + w1) / 2 for (t0, w0), (t1, w1) in zip(inside, inside[1:]))


def load(a: torch.Tensor, b: torch.Tensor, seconds: float) -> int:
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(50):
            a @ b
        torch.cuda.synchronize()
        n += 50
    return n


def window(name: str, seconds: float, a, b, zeus: ZeusMonitor, power: PowerMonitor, samples: list,
           timeline: TimelineSampler, handle) -> dict:
    session = EnergySession(root_pid=os.getpid(), gpu_indices=[0])
    start = time.time()
    session.start()
    counter_mj = pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
    zeus.begin_window(name)
    with timeline.phase("window", name):
        n = load(a, b, seconds)
    measured = zeus.end_window(name)
    counter_j = (pynvml.nvmlDeviceGetTotalEnergyConsumption(handle) - counter_mj) / 1000.0
    readings = session.stop()
    end = time.time()
    ours = next(r for r in readings if r.source == "gpu")
    time.sleep(1.0)  # the PowerMonitor's queue reaches past the window's end
    zeus_power = (power.get_energy(start, end) or {}).get(0)
    joules = {"vllm_mobo": ours.joules, "nvml_counter": counter_j, "zeus_monitor": measured.gpu_energy[0],
              "zeus_power_monitor": zeus_power, "sampled": trapezoid(samples, start, end),
              "timeline": None}
    return {
        "window": name, "seconds": end - start, "matmuls": n,
        "tflops": 2 * a.shape[0] ** 3 * n / (end - start) / 1e12,
        "joules": joules,
        "relative_to_vllm_mobo_pct": {k: None if v is None else 100 * (v / ours.joules - 1) for k, v in joules.items()},
        "vllm_mobo_method": ours.method,
        "start": start, "end": end,
    }


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    out.mkdir(parents=True, exist_ok=True)
    seconds = float(os.environ.get("LOAD_SECONDS", "20"))
    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    load(a, b, 1.0)  # warm-up
    zeus = ZeusMonitor(gpu_indices=[0])
    power = PowerMonitor(gpu_indices=[0])
    timeline = TimelineSampler.open(interval_s=0.5, root_pid=os.getpid(), gpu_indices=[0]).start()
    samples: list = []
    stop = threading.Event()
    sampler = threading.Thread(target=sample_power, args=(handle, stop, samples), daemon=True)
    sampler.start()
    t_begin = time.time()
    time.sleep(3.0)
    windows = [window("long", seconds, a, b, zeus, power, samples, timeline, handle)]
    time.sleep(5.0)
    windows.append(window("short", 5.0, a, b, zeus, power, samples, timeline, handle))
    time.sleep(3.0)
    stop.set()
    sampler.join()
    block = timeline.stop()
    tl = PowerTimeline.from_dict(block)
    for w, phase in zip(windows, tl.windows):
        w["joules"]["timeline"] = tl.joules(phase["start_s"], phase["end_s"], ["gpu0"])
        w["relative_to_vllm_mobo_pct"]["timeline"] = 100 * (w["joules"]["timeline"] / w["joules"]["vllm_mobo"] - 1)
    (out / "timeline.json").write_text(json.dumps(block))
    timelines = power.get_all_power_timelines()
    power.stop()
    with open(out / "zeus_check_timeline.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["t_s", "domain", "gpu", "watts"])
        for domain, per_gpu in timelines.items():
            for gpu, series in per_gpu.items():
                for t, watts in series:
                    w.writerow([f"{t - t_begin:.4f}", domain, gpu, f"{watts:.2f}"])
        for t, watts in samples:
            w.writerow([f"{t - t_begin:.4f}", "vllm_mobo_sampler_20ms", 0, f"{watts:.2f}"])
    import zeus as zeus_pkg
    result = {
        "gpu": pynvml.nvmlDeviceGetName(handle),
        "driver": pynvml.nvmlSystemGetDriverVersion(),
        "zeus": zeus_pkg.__version__,
        "load": "bf16 matmul 8192^3 on GPU 0",
        "power_monitor_domains": sorted(timelines),
        "windows": [{**w, "start_s": w.pop("start") - t_begin, "end_s": w.pop("end") - t_begin} for w in windows],
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    pynvml.nvmlShutdown()
    text = json.dumps(result, indent=2, default=str)
    print(text)
    (out / "zeus_check.json").write_text(text)


if __name__ == "__main__":
    main()
