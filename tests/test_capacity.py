"""Capacity under the SLOs and windows by time in online mode.

The search's logic (ramp, bisection, limits, target rates) runs against a fake ``measure(rate)`` with a known
boundary; the worker runs against the stand-in server of test_online (one request at a time: latency grows with
load) in seconds; one engine test runs a candidate's capacity search on the real vLLM CPU engine's API server.
"""

from __future__ import annotations

import copy
import math
import sys
from pathlib import Path

import pytest
import yaml

from test_online import FAKE_OPENAI_SERVER, api_servers_in, wait_gone
from vllm_mobo.config import ConfigError, validate_config
from vllm_mobo.measure import capacity as cap
from vllm_mobo.measure import load, online
from vllm_mobo.measure.runner import run_candidate

ROOT = Path(__file__).resolve().parents[1]


def settings(**kw) -> cap.Settings:
    return cap.Settings(**{"start_rate": 1.0, "growth": 2.0, "tolerance": 0.1, "max_steps": 20,
                           "max_time_s": 1e9, **kw})


def boundary(limit: float, calls: list | None = None):
    """A server whose SLOs hold up to ``limit`` requests/s: 10 output tokens per request, 1 J per request."""
    def measure(rate: float) -> dict:
        if calls is not None:
            calls.append(rate)
        return {"request_rate": rate, "slo_met": rate <= limit, "output_tokens_per_s": 10 * rate,
                "joules_per_output_token": 0.1, "ttft_ms_p99": rate, "tpot_ms_p99": rate / 10}
    return measure


# ----------------------------------------------------------------------------------------- the search itself


def test_ramp_then_bisection_to_the_tolerance():
    calls = []
    out = cap.search(boundary(13.0, calls), settings())
    assert calls[:5] == [1.0, 2.0, 4.0, 8.0, 16.0]  # the ramp doubles until 16 fails
    assert [s["phase"] for s in out.steps] == ["ramp"] * 5 + ["bisect"] * (len(calls) - 5)
    assert calls[5] == pytest.approx(math.sqrt(8 * 16))  # bisection at the geometric mean
    assert out.end == "tolerance" and out.converged
    assert out.low <= 13.0 < out.high and out.high / out.low - 1 <= 0.1
    assert out.capacity == out.low == out.best["rate"] and out.best["slo_met"]
    assert all(s["slo_met"] == (s["rate"] <= 13.0) for s in out.steps)
    assert len(calls) == 8  # log2(2) / log2(1.1) = 7.3: 3 halvings of the bracket's log width


def test_start_rate_violating_the_slos_gives_capacity_zero():
    out = cap.search(boundary(0.5), settings())
    assert len(out.steps) == 1 and out.end == "start_rate" and out.best is None
    assert out.capacity == 0.0 and out.high == 1.0 and out.low is None
    m = cap.capacity_metrics(out, devices_used=2)
    assert m["capacity_requests_per_s"] == 0 and m["capacity_output_tokens_per_s"] == 0
    assert math.isnan(m["joules_per_output_token_at_capacity"]) and m["capacity_converged"] is False


def test_max_steps_stops_with_the_bracket_reached():
    out = cap.search(boundary(100.0), settings(max_steps=3))
    assert [s["rate"] for s in out.steps] == [1.0, 2.0, 4.0]
    assert out.end == "max_steps" and not out.converged
    assert out.capacity == 4.0 and out.high is None  # no rate failed: capacity is a lower bound
    summary = out.summary()
    assert summary["capacity_bracket_high_per_s"] is None and summary["capacity_bracket_width"] == math.inf
    assert summary["capacity_end_reason"] == cap.ENDS["max_steps"]


def test_max_time_stops_before_a_step_that_would_end_too_late():
    """Each step takes 5 s per request/s of its rate (a fake clock): 1, 2, 4 -> 5, 10, 20 s. The next (8 req/s,
    predicted 20 x 8/4 = 40 s) would end at 75 s > 60 s: not started."""
    now = [0.0]

    def measure(rate):
        now[0] += 5.0 * rate
        return boundary(100.0)(rate)

    out = cap.search(measure, settings(max_time_s=60), clock=lambda: now[0])
    assert [s["rate"] for s in out.steps] == [1.0, 2.0, 4.0]
    assert [s["step_s"] for s in out.steps] == [5.0, 10.0, 20.0]
    assert out.end == "max_time_s" and out.time_s == 35.0 <= 60


def test_capacity_metrics_are_those_of_the_step_at_the_capacity():
    out = cap.search(boundary(13.0), settings())
    m = cap.capacity_metrics(out, devices_used=4)
    assert m["capacity_requests_per_s"] == out.low
    assert m["capacity_output_tokens_per_s"] == 10 * out.low
    assert m["capacity_output_tokens_per_s_per_device"] == 10 * out.low / 4
    assert m["joules_per_output_token_at_capacity"] == 0.1
    assert m["capacity_bracket_low_per_s"] <= m["capacity_requests_per_s"] < m["capacity_bracket_high_per_s"]


def test_target_rates_above_the_first_failing_one_are_not_sustainable_and_not_measured():
    calls = []
    entries, not_run = cap.measure_targets(boundary(13.0, calls), [2, "inf", 20, 14, 8])
    assert calls == [2.0, 8.0, 14.0]  # from low to high; 14 violates, so 20 and inf are not run
    assert not_run == [20.0, "inf"]
    assert [(e["request_rate"], e["measured"], e["sustainable"]) for e in entries] == [
        (2.0, True, True), (8.0, True, True), (14.0, True, False), (20.0, False, False), ("inf", False, False)]
    assert entries[3]["slo_violations"] == ["above the target rate 14.0 requests/s, which violated the SLOs"]
    first = cap.at_target_metrics(entries, 2)
    assert first["target_rate"] == 2.0 and first["slo_met_at_target"] is True
    assert first["joules_per_output_token_at_target"] == 0.1 and first["ttft_ms_p99_at_target"] == 2.0
    for rate in (14, "inf"):  # measured and missed, or not sustainable: no figure at the target
        missed = cap.at_target_metrics(entries, rate)
        assert missed["slo_met_at_target"] is False
        assert all(math.isnan(missed[k]) for k in cap.AT_TARGET)
    entries, not_run = cap.measure_targets(boundary(13.0), ["inf"])  # a lone rate is measured, even overloaded
    assert not_run == [] and entries[0]["measured"] and not entries[0]["sustainable"]


# ------------------------------------------------------------------------------------------- windows by time


def test_window_requests_cover_the_window_at_the_rate():
    assert load.window_requests(4.0, 10.0, 12) == 40
    assert load.window_requests(0.5, 10.0, 12) == 12  # the workload's count lasts longer already
    assert load.window_requests(math.inf, 10.0, 12) == 12  # all at once: batches repeat instead
    assert load.window_requests(3.0, 0.0, 0) == 1


def test_results_of_several_calls_merge_into_one_window():
    a = {"completed": 2, "failed": 0, "total_input_tokens": 10, "total_output_tokens": 6, "duration": 1.0,
         "request_goodput": 2.0, "ttfts": [0.1, 0.2], "itls": [[0.01], [0.02]], "output_lens": [3, 3],
         "errors": ["", ""], "latencies": [0.3, 0.4]}
    b = {"completed": 1, "total_input_tokens": 5, "total_output_tokens": 3, "duration": 3.0, "request_goodput": 0.0,
         "ttfts": [0.5, 0.0], "itls": [[0.03], []], "output_lens": [3, 0], "errors": ["", "boom"]}
    m = load.merge_results([a, b])
    assert m["completed"] == 3 and m["failed"] == 1 and m["duration"] == 4.0
    assert m["total_output_tokens"] == 9 and m["ttfts"] == [0.1, 0.2, 0.5, 0.0]
    assert m["request_goodput"] == pytest.approx(0.5)  # 2 good requests in 4 s
    assert "latencies" not in m  # b (vLLM 0.26) has none: latency_metrics rebuilds them from TTFT and gaps
    assert load.latency_metrics(m)["ttft_ms_p50"] == pytest.approx(200.0)


def stand_in_spec(tmp_path, online_settings: dict, min_window_s: float) -> dict:
    script = tmp_path / "fake_openai.py"
    script.write_text(FAKE_OPENAI_SERVER)
    workload = {"num_prompts": 4, "input_len": {"min": 16, "max": 32}, "output_len": {"min": 8, "max": 16},
                "shared_prefix_fraction": 0.0, "seed": 0}
    return {"server_command": [sys.executable, str(script), "{port}", "0.005", str(tmp_path / "server.pid")],
            "model": "fake", "server_log": str(tmp_path / "server.log"), "engine_args": {}, "workload": workload,
            "vocab_size": 512, "warmup_prompts": 2, "cooldown_s": 0, "min_window_s": min_window_s,
            "energy": {"cpu_watts_per_core": 7.5, "ram_watts_per_gb": 0.375},
            "online": {"port": 0, "server_start_timeout_s": 60, "num_prompts": None, "slo_as_constraint": True,
                       **online_settings}}


def test_all_at_once_repeats_batches_until_the_window_is_long_enough(tmp_path):
    """4 requests at once take ~0.25 s on the stand-in server (one at a time, ~60 ms each): a 1 s window holds
    several batches, each of fresh requests."""
    spec = stand_in_spec(tmp_path, {"request_rates": ["inf"], "slo": {}}, min_window_s=1.0)
    m = online.run(spec)["measurements"]
    assert m["elapsed_s"] >= 1.0 and m["window_s"] >= m["elapsed_s"] and m["min_window_s"] == 1.0
    assert m["batches"] >= 2 and m["num_requests"] == 4 * m["batches"] == m["completed_requests"]
    assert wait_gone(int((tmp_path / "server.pid").read_text()))


def test_capacity_search_against_a_stand_in_server(tmp_path):
    """The whole worker in capacity mode: the stand-in serves ~16 requests/s at most, so a 300 ms p99 TTFT
    fails somewhere on the ramp 2, 4, 8, 16, 32; every step is a window of >= 1 s; the target rate 3 is
    measured first, on the fresh server; ``inf`` (batches of 4 requests at once) only if 3 meets the SLOs."""
    capacity = {"enabled": True, "start_rate": 2, "growth": 2, "tolerance": 0.3, "max_steps": 8, "max_time_s": 120}
    spec = stand_in_spec(tmp_path, {"request_rates": [3, "inf"], "slo": {"ttft_ms_p99": 300},
                                    "capacity": capacity}, min_window_s=1.0)
    result = online.run(spec)
    m = result["measurements"]
    steps = m["capacity_steps"]
    assert m["rate_selection"] == "capacity under the SLOs (benchmark.online.capacity)"
    assert all(s["elapsed_s"] >= 1.0 and s["window_s"] >= s["elapsed_s"] for s in steps)
    assert all(s["num_requests"] >= max(4, math.ceil(s["rate"] * 1.0)) for s in steps)
    low, high = m["capacity_bracket_low_per_s"], m["capacity_bracket_high_per_s"]
    assert m["slo_met"] is True and m["capacity_requests_per_s"] == low == m["request_rate"]
    assert high is not None and low < high and (m["capacity_end"] != "tolerance" or high / low - 1 <= 0.3)
    at_capacity = next(s for s in steps if s["rate"] == low and s["slo_met"])
    assert m["capacity_output_tokens_per_s"] == at_capacity["output_tokens_per_s"] == m["output_tokens_per_s"]
    assert m["joules_per_output_token_at_capacity"] == at_capacity["joules_per_output_token"]
    assert all(not s["slo_met"] for s in steps if s["rate"] >= high)
    assert [r["request_rate"] for r in m["rates"]] == [3.0, "inf"]
    target, at_once = m["rates"]
    assert target["measured"] and target["elapsed_s"] >= 1.0
    if target["slo_met"]:
        assert m["joules_per_output_token_at_target"] == target["joules_per_output_token"]
        assert m["ttft_ms_p99_at_target"] == target["ttft_ms_p99"] <= 300
        assert at_once["measured"] and m["rates_not_run"] == []  # 4 requests at once: it may meet the SLOs
    else:
        assert not at_once["measured"] and m["rates_not_run"] == ["inf"]
    windows = [w for w in m["rates"] if w["measured"]]
    # the targets come first: the power timeline's windows and energy_per_rate follow the order measured
    assert [e["phase"] for e in result["energy_per_rate"]] == ["target"] * len(windows) + [s["phase"] for s in steps]
    assert [p["label"] for p in result["power_timeline"]["phases"] if p["phase"] == "window"] == [
        f"{float(w['request_rate']):g} req/s" for w in [*windows, *steps]]
    assert wait_gone(int((tmp_path / "server.pid").read_text()))


# ---------------------------------------------------------------------------------------------------- config


def online_tiny() -> dict:
    return yaml.safe_load((ROOT / "tests/configs/online_tiny.yaml").read_text())


def test_online_example_config_searches_capacity_against_energy():
    cfg = validate_config(online_tiny())
    assert cfg["benchmark"]["online"]["capacity"]["enabled"] is True
    assert [o["metric"] for o in cfg["objectives"]] == ["capacity_output_tokens_per_s",
                                                         "joules_per_output_token_at_capacity"]
    default = validate_config({**online_tiny(), "benchmark": {"mode": "online"},
                               "objectives": [{"metric": "output_tokens_per_s", "direction": "maximize"},
                                              {"metric": "joules_per_output_token", "direction": "minimize"}]})
    assert default["benchmark"]["online"]["capacity"] == {"enabled": False, "start_rate": 1, "growth": 2,
                                                          "tolerance": 0.1, "max_steps": 12, "max_time_s": 600}


@pytest.mark.parametrize("mutate, expected", [
    (lambda c: c["benchmark"]["online"].pop("slo"),
     ["benchmark.online.capacity.enabled: true needs benchmark.online.slo with at least one bound"]),
    (lambda c: c["benchmark"]["online"]["capacity"].update(enabled=False),
     ["objectives: capacity_output_tokens_per_s, joules_per_output_token_at_capacity need(s) "
      "benchmark.online.capacity.enabled: true"]),
    (lambda c: c["benchmark"]["online"]["capacity"].update(max_time_s=480),
     ["benchmark.online.capacity.max_time_s: 480 is not below benchmark.timeout_s (480)"]),
    (lambda c: c["benchmark"]["online"]["capacity"].update(growth=1),
     ["benchmark.online.capacity.growth: 1 violates exclusiveMinimum 1"]),
    (lambda c: c["benchmark"]["online"]["capacity"].update(tolerance=0),
     ["benchmark.online.capacity.tolerance: 0 violates exclusiveMinimum 0"]),
])
def test_capacity_config_errors_name_the_keys(mutate, expected):
    cfg = copy.deepcopy(online_tiny())
    mutate(cfg)
    with pytest.raises(ConfigError) as info:
        validate_config(cfg)
    for fragment in expected:
        assert fragment in str(info.value), str(info.value)


# ------------------------------------------------------------------------------------------ the real engine


@pytest.mark.engine
@pytest.mark.timeout(900)
def test_capacity_search_on_the_cpu_engine(tmp_path, monkeypatch):
    """One candidate (vLLM's default) of tests/configs/online_tiny.yaml: its API server on the CPU build, the
    capacity search and the target rate on that one server."""
    from vllm_mobo.measure.model import write_model_dir

    monkeypatch.chdir(tmp_path)
    cfg = validate_config(online_tiny())
    write_model_dir(cfg["workload"]["model"], tmp_path / "model")
    rec = run_candidate(cfg, {"name": "vllm-default", "config": {}}, 0, tmp_path / "metrics.json",
                        tmp_path / "job.log", model_dir=str(tmp_path / "model"))
    assert rec["status"] == "ok", rec["failure"]
    m, settings_ = rec["metrics"], cfg["benchmark"]["online"]["capacity"]
    steps = m["capacity_steps"]
    assert 1 <= len(steps) <= settings_["max_steps"] and m["capacity_settings"]["start_rate"] == 8
    assert steps[0]["rate"] == 8.0 and all(s["elapsed_s"] >= cfg["benchmark"]["min_window_s"] for s in steps)
    assert all(s["window_s"] >= s["elapsed_s"] for s in steps)
    assert m["slo_met"] is True  # 8 req/s meets the generous bounds
    low, high = m["capacity_bracket_low_per_s"], m["capacity_bracket_high_per_s"]
    assert m["capacity_requests_per_s"] == low == m["request_rate"] > 0
    assert high is None or low < high
    if m["capacity_end"] == "tolerance":
        assert high / low - 1 <= settings_["tolerance"]
    at_capacity = next(s for s in steps if s["rate"] == low)
    assert at_capacity["slo_met"] and at_capacity["slo_violations"] == []
    assert at_capacity["ttft_ms_p99"] <= 1000 and at_capacity["tpot_ms_p99"] <= 100
    assert m["capacity_output_tokens_per_s"] == at_capacity["output_tokens_per_s"] > 0
    assert m["capacity_output_tokens_per_s_per_device"] == m["capacity_output_tokens_per_s"]  # TP x PP = 1
    assert m["joules_per_output_token_at_capacity"] == at_capacity["joules_per_output_token"] > 0
    assert [r["request_rate"] for r in m["rates"]] == [4.0]
    if m["rates"][0]["slo_met"]:
        assert m["joules_per_output_token_at_target"] == m["rates"][0]["joules_per_output_token"] > 0
    assert len(rec["energy_per_rate"]) == len(steps) + sum(r["measured"] for r in m["rates"])
    assert api_servers_in(tmp_path) == []
