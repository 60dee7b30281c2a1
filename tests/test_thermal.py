"""Thermal state: the cool-down `benchmark.cooldown_s: auto` resolves to, and the warnings for windows that start
much hotter than the run's first one (vllm_mobo.report.thermal), from metrics files written as the runner writes
them (GPU energy readings with NVML's state at each window's start and end), and through the `observations` rule."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from conftest import REPO, load_test_config, run_snakemake
from vllm_mobo.config import ConfigError, validate_config
from vllm_mobo.records import load_records
from vllm_mobo.report.thermal import thermal_summary, thermal_warnings, window_temperatures


def gpu_state(temperature_c, sm_clock_mhz=1980, power_w=690.0) -> dict:
    return {"sm_clock_mhz": sm_clock_mhz, "mem_clock_mhz": 3201, "temperature_c": temperature_c,
            "power_w": power_w, "pstate": 0}


def metrics_record(iteration: int, candidate: str, gpus: list[tuple[int, str | None, float, float]],
                   started_at: float | None = 1_764_500_000.0, status: str = "ok") -> dict:
    """A metrics.json body as the runner writes it for an offline window on CUDA: ``gpus`` as (NVML index, UUID,
    temperature at the window's start, at its end)."""
    base = {"schema_version": 1, "run": "thermal", "iteration": iteration, "candidate": candidate,
            "config": {"max_num_seqs": 256}, "mode": "offline", "device": "cuda", "status": status}
    if status != "ok":
        return {**base, "failure": {"kind": "oom", "reason": "out of memory", "returncode": -9, "log_tail": ""},
                "metrics": None, "energy": None, "timing": {"wall_s": 80.0}}
    detail_gpus = [{"index": i, "name": "NVIDIA H200", "uuid": uuid, "power_limit_w": 700.0, "joules": 13_800.0,
                    "method": "energy_counter", "start": gpu_state(t0), "end": gpu_state(t1)}
                   for i, uuid, t0, t1 in gpus]
    gpu_j = sum(g["joules"] for g in detail_gpus)
    energy = {"total_j": gpu_j + 900.0, "provenance": "partly estimated", "idle_subtracted": False, "sources": [
        {"source": "gpu", "joules": gpu_j, "provenance": "measured", "method": "NVML total-energy counter",
         "detail": {"window_s": 20.1, "driver_version": "580.159.04", "gpus": detail_gpus}},
        {"source": "cpu", "joules": 750.0, "provenance": "estimated", "method": "estimated", "detail": {"window_s": 20.1}},
        {"source": "ram", "joules": 150.0, "provenance": "estimated", "method": "estimated", "detail": {"window_s": 20.1}},
    ]}
    timing = {"wall_s": 95.0, "engine_init_s": 40.0, "warmup_s": 2.0, "measured_s": 20.0, "cooldown_s": 15.0}
    if started_at is not None:
        timing["window_started_at"] = started_at
    return {**base, "metrics": {"output_tokens_per_s": 11_000.0, "window_s": 20.0, "elapsed_s": 20.0,
                                "num_requests": 2000, "batches": 2, "min_window_s": 10.0, "detokenize": False},
            "energy": energy, "timing": timing, "gpus_pinned": [g[0] for g in gpus], "gpus_metered": [g[0] for g in gpus]}


def write_records(tmp_path: Path, bodies: list[dict]) -> list[Path]:
    paths = []
    for body in bodies:
        path = tmp_path / f"iter_{body['iteration']}" / body["candidate"] / "metrics.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(body, indent=2))
        paths.append(path)
    return paths


def test_a_window_much_hotter_than_the_first_one_on_its_gpu_is_warned_about(tmp_path):
    """GPU A: 34 °C first, then 41 °C (within 10 °C), a failure (no window), 47 °C (13 °C hotter: warned).
    GPU B: its first window starts at 46 °C, which is its own reference: no warning although A started at 34."""
    t = 1_764_500_000.0
    paths = write_records(tmp_path, [
        metrics_record(0, "vllm-default", [(0, "GPU-aaaa", 34, 43)], started_at=t),
        metrics_record(0, "seqs64", [(0, "GPU-aaaa", 41, 46)], started_at=t + 120),
        metrics_record(1, "seqs1024", [], status="failed"),
        metrics_record(1, "seqs256", [(0, "GPU-aaaa", 47, 52)], started_at=t + 240),
        metrics_record(1, "seqs512", [(1, "GPU-bbbb", 46, 51)], started_at=t + 250),
    ])
    records = load_records(paths)
    temps = window_temperatures(records)
    assert [(w.candidate, w.key, w.start_c, w.end_c) for w in temps] == [
        ("vllm-default", "GPU-aaaa", 34, 43), ("seqs64", "GPU-aaaa", 41, 46), ("seqs256", "GPU-aaaa", 47, 52),
        ("seqs512", "GPU-bbbb", 46, 51)]
    warnings = thermal_warnings(records, 10)
    assert warnings == [
        "thermal: seqs256 (iteration 1) started its window at 47 °C on GPU 0 (GPU-aaaa), 13 °C hotter than that "
        "GPU's first window of the run (vllm-default, iteration 0, 34 °C; warning above 10 °C); SM clock at the "
        "start 1980 MHz against 1980 MHz"]
    assert thermal_summary(records, 10) == warnings
    assert len(thermal_warnings(records, 5)) == 2  # 41 °C too, 7 °C above the first
    assert thermal_warnings(records, 13) == []  # "more than" the threshold
    assert thermal_summary(records, 13) == [
        "thermal: no window started more than 13 °C hotter than its GPU's first window of the run (4 GPU windows on "
        "2 GPU(s), starting at 34-47 °C)"]


def test_windows_are_compared_in_the_order_they_ran(tmp_path):
    """The reference is the earliest window by start time, whatever the order the files are given in (records of
    a later stage may carry lower iteration numbers); without start times, by iteration."""
    t = 1_764_500_000.0
    late_hot = metrics_record(0, "confirm-rep", [(0, "GPU-aaaa", 50, 55)], started_at=t + 900)
    early_cool = metrics_record(3, "seqs64", [(0, "GPU-aaaa", 35, 44)], started_at=t)
    records = load_records(write_records(tmp_path, [late_hot, early_cool]))
    [line] = thermal_warnings(records, 10)
    assert line.startswith("thermal: confirm-rep (iteration 0) started its window at 50 °C") and "(seqs64, iteration 3, 35 °C" in line
    del late_hot["timing"]["window_started_at"], early_cool["timing"]["window_started_at"]
    records = load_records(write_records(tmp_path / "old", [early_cool, late_hot]))
    assert [w.candidate for w in window_temperatures(records)] == ["confirm-rep", "seqs64"]
    assert thermal_warnings(records, 10) == []  # by iteration the 50 °C window is the reference; 35 °C is cooler


def test_no_gpu_temperatures_and_missing_fields(tmp_path):
    """A CPU run (no GPU source) says so; a GPU that reported no temperature is left out; a GPU without a UUID is
    named by its index."""
    cpu = metrics_record(0, "vllm-default", [(0, None, 30, 31)])
    cpu["energy"]["sources"] = cpu["energy"]["sources"][1:]
    records = load_records(write_records(tmp_path, [cpu]))
    assert thermal_summary(records, 10) == ["thermal: no GPU temperatures recorded (1 measured windows; no GPU metered)"]
    no_temp = metrics_record(1, "seqs64", [(0, None, 30, 31), (1, None, 33, 40)])
    no_temp["energy"]["sources"][0]["detail"]["gpus"][0]["start"]["temperature_c"] = None
    hot = metrics_record(2, "seqs128", [(1, None, 45, 50)], started_at=1_764_500_500.0)
    records = load_records(write_records(tmp_path / "b", [no_temp, hot]))
    assert [(w.gpu, w.start_c) for w in window_temperatures(records)] == [("GPU 1", 33), ("GPU 1", 45)]
    [line] = thermal_warnings(records, 10)
    assert "on GPU 1, 12 °C hotter" in line


def test_cooldown_auto_resolves_per_device(monkeypatch):
    """auto: 0 on the CPU build, AUTO_COOLDOWN_S['cuda'] (> 0) on CUDA; a number is kept; both reach the worker's
    spec; bad values and a non-positive warning threshold are refused naming the key."""
    from vllm_mobo import hardware
    from vllm_mobo.measure import runner

    raw = load_test_config("tiny.yaml")
    cfg = validate_config(raw)
    assert cfg["benchmark"]["cooldown_s"] == "auto" and cfg["benchmark"]["thermal_warn_c"] == 10
    cand = {"name": "seqs16", "config": {"max_num_seqs": 16}}
    assert runner.build_spec(cfg, cand, "model")["cooldown_s"] == 0.0
    monkeypatch.setattr(hardware, "gpu_uuids", lambda: ["GPU-0", "GPU-1"])
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    cfg["benchmark"]["device"] = "cuda"
    spec = runner.build_spec(cfg, cand, "model")
    assert spec["cooldown_s"] == runner.AUTO_COOLDOWN_S["cuda"] > 0
    assert spec["min_window_s"] == 1 and spec["detokenize"] is False
    cfg["benchmark"]["cooldown_s"] = 3
    assert runner.build_spec(cfg, cand, "model")["cooldown_s"] == 3.0
    for bad in ("warm", -1):
        raw["benchmark"]["cooldown_s"] = bad
        with pytest.raises(ConfigError, match=rf"benchmark\.cooldown_s: {bad!r} is not allowed; use 'auto' or a number"):
            validate_config(raw)
    raw["benchmark"]["cooldown_s"] = "auto"
    raw["benchmark"]["thermal_warn_c"] = 0
    with pytest.raises(ConfigError, match=r"benchmark\.thermal_warn_c: 0 violates exclusiveMinimum 0"):
        validate_config(raw)


@pytest.mark.timeout(300)
def test_observations_rule_writes_and_logs_thermal_warnings(tmp_path):
    """The real `observations` rule on a finished run (tests/fixtures/run_tiny) whose metrics files are replaced
    by GPU windows, the last one 12 °C hotter than the first: thermal_warnings.txt holds the warning, the rule's
    log and Snakemake's console show it."""
    run = tmp_path / "run"
    shutil.copytree(REPO / "tests" / "fixtures" / "run_tiny", run)
    results = run / "results" / "tiny"
    paths = sorted(results.glob("iter_*/*/metrics.json"))
    temps = [(33, 42), (38, 44), (45, 49)]
    for k, (path, (t0, t1)) in enumerate(zip(paths, temps)):
        original = json.loads(path.read_text())
        body = metrics_record(original["iteration"], original["candidate"], [(0, "GPU-aaaa", t0, t1)],
                              started_at=1_764_500_000.0 + 100 * k)
        path.write_text(json.dumps({**original, "energy": body["energy"], "timing": body["timing"]}))
    stamp = 1_764_000_000
    for p in run.rglob("*"):
        os.utime(p, (stamp, stamp))
    (results / "thermal_warnings.txt").unlink()
    res = run_snakemake(run, "results/tiny/thermal_warnings.txt", "--cores", "1")
    [line] = (results / "thermal_warnings.txt").read_text().splitlines()
    candidate = json.loads(paths[2].read_text())["candidate"]
    assert line.startswith(f"thermal: {candidate} (iteration ") and "at 45 °C on GPU 0 (GPU-aaaa), 12 °C hotter" in line
    assert line in (run / "logs" / "tiny" / "observations.log").read_text()
    assert f"WARNING {line}" in res.stderr
