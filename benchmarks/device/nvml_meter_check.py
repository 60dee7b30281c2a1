"""Check the NVML energy meter on a real GPU under a known load.

A bf16 matmul loop runs for a fixed time on GPU 0. Over the same window, vllm_mobo's EnergySession reads NVML's
total-energy counter while a separate thread samples NVML power every 20 ms and integrates it (trapezoid). The
two should agree within a few percent. Prints one JSON object (and writes it to argv[1] if given).

Run on the device machine: python benchmarks/device/nvml_meter_check.py $OUT/nvml_check.json
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time

import pynvml
import torch

from vllm_mobo.measure.energy import EnergySession, summarize


def power_integral(handle, stop: threading.Event, out: dict, interval: float = 0.02) -> None:
    samples = []
    while not stop.is_set():
        samples.append((time.perf_counter(), pynvml.nvmlDeviceGetPowerUsage(handle) / 1000.0))
        time.sleep(interval)
    samples.append((time.perf_counter(), pynvml.nvmlDeviceGetPowerUsage(handle) / 1000.0))
    joules = sum((t1 - t0) * (p0 + p1) / 2 for (t0, p0), (t1, p1) in zip(samples, samples[1:]))
    out.update(joules=joules, samples=len(samples), mean_w=joules / (samples[-1][0] - samples[0][0]),
               max_w=max(p for _, p in samples))


def main() -> None:
    seconds = float(os.environ.get("LOAD_SECONDS", "20"))
    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    for _ in range(20):  # warm-up
        a @ b
    torch.cuda.synchronize()
    session = EnergySession(root_pid=os.getpid(), gpu_indices=[0])
    sampled: dict = {}
    stop = threading.Event()
    sampler = threading.Thread(target=power_integral, args=(handle, stop, sampled))
    session.start()
    sampler.start()
    t0 = time.perf_counter()
    n = 0
    while time.perf_counter() - t0 < seconds:
        for _ in range(50):
            a @ b
        torch.cuda.synchronize()
        n += 50
    elapsed = time.perf_counter() - t0
    readings = session.stop()
    stop.set()
    sampler.join()
    gpu = next(r for r in readings if r.source == "gpu")
    tflops = 2 * 8192**3 * n / elapsed / 1e12
    result = {
        "gpu": pynvml.nvmlDeviceGetName(handle),
        "driver": pynvml.nvmlSystemGetDriverVersion(),
        "load": f"bf16 matmul 8192^3 x {n} in {elapsed:.1f} s ({tflops:.0f} TFLOP/s)",
        "counter_joules": gpu.joules,
        "counter_method": gpu.method,
        "sampled_joules": sampled["joules"],
        "sampled_mean_w": sampled["mean_w"],
        "sampled_max_w": sampled["max_w"],
        "power_samples": sampled["samples"],
        "counter_over_sampled": gpu.joules / sampled["joules"],
        "energy_summary": summarize(readings),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    pynvml.nvmlShutdown()
    text = json.dumps(result, indent=2, default=str)
    print(text)
    if len(sys.argv) > 1:
        with open(sys.argv[1], "w") as fh:
            fh.write(text)


if __name__ == "__main__":
    main()
