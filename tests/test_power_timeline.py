"""Power timelines: the sampler on counters with a known slope, RAPL on fake sysfs trees built from real files, the
CPU estimate on a real busy process, NVML's paths through the stand-in of test_energy; the record's reader; the
figures drawn from real records."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time

import matplotlib.image as mpimg
import pandas as pd
import pytest

from test_energy import FakeNvml, burn_cmd, make_domain, set_energy, two_socket_tree
from vllm_mobo.measure.energy.timeline import (DEFAULT_INTERVAL_S, Channel, TimelineSampler, gpu_channels,
                                               rapl_channels)
from vllm_mobo.records import PowerTimeline, Record
from vllm_mobo.report.power import (shown_timelines, steadiness_figure, steadiness_table, steadiness_text,
                                    timelines_figure)


def slope_channel(name: str, watts: float, t0: float) -> Channel:
    """A cumulative counter that grows by exactly ``watts`` joules per second."""
    return Channel(name, "gpu", "measured", f"{watts:g} W test counter", lambda: watts * (time.perf_counter() - t0))


def test_counter_channels_give_each_intervals_mean_power_and_the_phases():
    t0 = time.perf_counter()
    sampler = TimelineSampler([slope_channel("gpu0", 250.0, t0),
                               Channel("gpu1", "gpu", "measured", "power", lambda: 100.0, kind="power")], 0.05)
    sampler.start()
    with sampler.phase("warmup"):
        time.sleep(0.2)
    with sampler.phase("window", "timed window"):
        time.sleep(0.4)
    block = sampler.stop(tail_s=0.1)
    tl = PowerTimeline.from_dict(block)
    assert 0 <= tl.t_s[0] < 0.05 and len(tl.t_s) == len(tl.watts["gpu0"]) + 1 == len(tl.watts["gpu1"]) + 1
    assert len(tl.t_s) >= 10 and all(b > a for a, b in zip(tl.t_s, tl.t_s[1:]))
    assert tl.watts["gpu0"] == pytest.approx([250.0] * len(tl.watts["gpu0"]), rel=0.02)
    assert set(tl.watts["gpu1"]) == {100.0}
    energy = sum(w * (b - a) for w, a, b in zip(tl.watts["gpu0"], tl.t_s, tl.t_s[1:]))
    assert energy == pytest.approx(250.0 * (tl.t_s[-1] - tl.t_s[0]), rel=0.02)  # integrates to the counter's joules
    assert [p["phase"] for p in tl.phases] == ["warmup", "window"] and tl.windows[0]["label"] == "timed window"
    warm, window = tl.phases
    assert 0 <= warm["start_s"] < warm["end_s"] <= window["start_s"] < window["end_s"] < tl.t_s[-1]
    assert window["end_s"] - window["start_s"] == pytest.approx(0.4, abs=0.05)
    stats = tl.window_power(window)
    assert stats["intervals"] >= 5 and stats["mean_w"] == pytest.approx(350.0, rel=0.02) and stats["cv"] < 0.02
    span = window["end_s"] - window["start_s"]  # partial intervals at the window's edges count for their overlap
    assert tl.joules(window["start_s"], window["end_s"], ["gpu0"]) == pytest.approx(250.0 * span, rel=0.02)
    assert tl.joules(window["start_s"], window["end_s"]) == pytest.approx(350.0 * span, rel=0.02)
    assert tl.joules(tl.t_s[0] - 1.0, tl.t_s[0]) == 0.0
    with pytest.raises(KeyError, match="no channel \\['ram'\\]"):
        tl.joules(0.0, 1.0, ["ram"])
    assert [c["name"] for c in tl.channels] == ["gpu0", "gpu1"] and tl.error is None


def test_a_failing_read_ends_the_curve_not_the_benchmark():
    calls = []

    def read():
        calls.append(1)
        if len(calls) > 4:
            raise OSError("counter gone")
        return float(len(calls))

    sampler = TimelineSampler([Channel("cpu", "cpu", "measured", "test", read)], 0.02).start()
    time.sleep(0.3)
    block = sampler.stop()
    assert block["error"] == "OSError: counter gone"
    assert len(block["watts"]["cpu"]) == 3 and len(block["t_s"]) == 4  # the reads before the failure are kept
    assert len(calls) == 5  # no read after the failure


def test_a_disabled_timeline_records_nothing_and_marks_nothing():
    sampler = TimelineSampler.from_config({"timeline_interval_s": 0}, root_pid=os.getpid())
    assert not sampler.enabled and sampler.start() is sampler
    with sampler.phase("window"):
        pass
    assert sampler.stop() is None
    assert TimelineSampler.from_config({}, root_pid=os.getpid(), rapl_root="/nonexistent").interval_s == \
        DEFAULT_INTERVAL_S == 0.5


def test_rapl_package_and_dram_channels_add_a_wrap_once(tmp_path):
    domains = two_socket_tree(tmp_path)
    channels = {c.name: c for c in rapl_channels(tmp_path, os.getpid(), 7.5)}
    assert set(channels) == {"cpu", "ram"}
    assert {c.provenance for c in channels.values()} == {"measured"}
    set_energy(domains["package-0"], 3_000_000)  # +2 J
    set_energy(domains["package-1"], 1_500_000)  # +0.5 J
    set_energy(domains["dram-0"], 1_250_000)  # +0.25 J; core, uncore and psys are never read
    set_energy(domains["core-0"], 9_000_000)
    set_energy(domains["psys"], 9_000_000)
    assert channels["cpu"].read() == pytest.approx(2.5) and channels["ram"].read() == pytest.approx(0.25)
    max_range = int((domains["package-0"] / "max_energy_range_uj").read_text())
    set_energy(domains["package-0"], 500_000)  # wrapped: max_range - 3 J + 0.5 J more
    assert channels["cpu"].read() == pytest.approx(2.5 + (max_range - 3_000_000 + 500_000) / 1e6)


def test_without_rapl_the_cpu_curve_is_the_estimate_and_shows_a_busy_child(tmp_path):
    channels = rapl_channels(tmp_path / "none", os.getpid(), 10.0)
    assert [(c.name, c.provenance) for c in channels] == [("cpu", "estimated")]
    assert "10 W per core" in channels[0].method and "RAPL unreadable" in channels[0].method
    sampler = TimelineSampler(channels, 0.1).start()
    with sampler.phase("window"):
        subprocess.run(burn_cmd(0.6), check=True)
    tl = PowerTimeline.from_dict(sampler.stop())
    joules = sum(w * (b - a) for w, a, b in zip(tl.watts["cpu"], tl.t_s, tl.t_s[1:]))
    assert joules >= 0.55 * 10.0  # the child's 0.6 CPU-seconds (and the test's own) at 10 W per core
    assert max(tl.watts["cpu"]) >= 5.0


def test_rapl_with_unreadable_dram_keeps_the_package_curve(tmp_path):
    make_domain(tmp_path, "intel-rapl:0", "package-0", 0)
    dram = make_domain(tmp_path / "intel-rapl:0", "intel-rapl:0:0", "dram", 0)
    (dram / "energy_uj").unlink()
    assert [c.name for c in rapl_channels(tmp_path, os.getpid(), 7.5)] == ["cpu"]


def test_gpu_channels_read_the_counter_or_the_power_draw():
    nvml = FakeNvml()
    gpu0, gpu1 = gpu_channels(nvml, [0, 1])
    assert (gpu0.name, gpu0.kind, gpu0.read()) == ("gpu0", "energy", 5_000.0)  # mJ -> J
    assert (gpu1.name, gpu1.kind, gpu1.read()) == ("gpu1", "power", 100.0)  # mW -> W
    assert "counter" in gpu0.method and "power draw" in gpu1.method


def test_open_meters_the_gpus_through_nvml_and_shuts_it_down(monkeypatch, tmp_path):
    import pynvml

    nvml = FakeNvml()
    monkeypatch.setattr(pynvml, "nvmlInit", lambda: None)
    for name in ("nvmlDeviceGetHandleByIndex", "nvmlDeviceGetTotalEnergyConsumption", "nvmlDeviceGetPowerUsage",
                 "nvmlShutdown"):
        monkeypatch.setattr(pynvml, name, getattr(nvml, name))
    monkeypatch.setattr(pynvml, "NVMLError_NotSupported", FakeNvml.NVMLError_NotSupported)
    monkeypatch.setitem(sys.modules, "zeus.device.gpu", None)  # the NVML path (Zeus's: test_zeus_counters)
    sampler = TimelineSampler.open(interval_s=0.02, root_pid=os.getpid(), gpu_indices=[0, 1],
                                   rapl_root=tmp_path / "none").start()
    for _ in range(5):
        nvml.energy_mj[0] += 4_000  # 4 J a step
        time.sleep(0.03)
    block = sampler.stop()
    assert [c["name"] for c in block["channels"]] == ["gpu0", "gpu1", "cpu"]
    assert max(block["watts"]["gpu0"]) > 0 and min(block["watts"]["gpu0"]) >= 0  # the counter's steps
    assert set(block["watts"]["gpu1"]) == {100.0}  # no counter: its power draw
    assert nvml.shutdowns == 1


# ---------------------------------------------------------------------------------------------- the report


def record(name: str, iteration: int, window_watts: list[float], default: bool = False) -> Record:
    """A metrics record whose timeline is 1 s of warm-up at 50 W, then a window at ``window_watts`` (0.5 s
    intervals), then 1 s of idle at 20 W."""
    watts = [50.0, 50.0, *window_watts, 20.0, 20.0]
    t = [0.5 * k for k in range(len(watts) + 1)]
    end = 1.0 + 0.5 * len(window_watts)
    return Record.from_dict({
        "run": "t", "iteration": iteration, "candidate": "vllm-default" if default else name, "status": "ok",
        "config": {}, "metrics": {"output_tokens_per_s": 100.0, "joules_per_output_token": 1.0},
        "power_timeline": {
            "interval_s": 0.5, "started_at": 0.0, "t_s": t, "watts": {"cpu": watts},
            "channels": [{"name": "cpu", "source": "cpu", "provenance": "estimated", "method": "test"}],
            "phases": [{"phase": "warmup", "label": None, "start_s": 0.0, "end_s": 1.0},
                       {"phase": "window", "label": "timed window", "start_s": 1.0, "end_s": end}]}})


def test_steadiness_counts_only_the_intervals_inside_each_window():
    steady, ramp = record("a", 0, [100.0] * 4), record("b", 1, [60.0, 80.0, 100.0, 120.0])
    table = steadiness_table([steady, ramp, Record.from_dict({"candidate": "c", "status": "failed"})])
    assert list(table["candidate"]) == ["a", "b"] and list(table["intervals"]) == [4, 4]
    a, b = table.iloc[0], table.iloc[1]
    assert a["mean_w"] == 100.0 and a["sd_w"] == 0.0 and a["cv"] == 0.0 and a["length_s"] == 2.0
    assert b["mean_w"] == 90.0 and b["sd_w"] == pytest.approx(math.sqrt(2000 / 3))
    assert b["cv"] == pytest.approx(b["sd_w"] / 90.0) and b["provenance"] == "estimated"
    text = steadiness_text(table)[0]
    assert "over 2 windows of 2 configurations" in text and "ESTIMATED" in text
    assert f"maximum of {100 * b['cv']:.1f}% (b, window timed window)" in text
    assert f"median of {100 * b['cv'] / 2:.1f}%" in text
    assert steadiness_text(steadiness_table([])) == []


def test_timeline_and_steadiness_figures_are_drawn_from_records(tmp_path):
    records = [record("seqs16", 0, [100.0] * 6, default=True), record("seqs64", 1, [90.0, 140.0, 120.0]),
               record("seqs32", 1, [80.0] * 3)]
    obs = pd.DataFrame({"iteration": [0, 1, 1], "candidate": ["vllm-default", "seqs64", "seqs32"],
                        "status": "ok", "output_tokens_per_s": [100.0, 300.0, 200.0],
                        "joules_per_output_token": [1.0, 0.5, 0.8]})
    objectives = [{"metric": "output_tokens_per_s", "direction": "maximize"},
                  {"metric": "joules_per_output_token", "direction": "minimize"}]
    shown, roles = shown_timelines(records, obs, objectives)
    assert [r.candidate for r in shown] == ["vllm-default", "seqs64"]  # seqs64 dominates seqs32
    assert roles["vllm-default"] == "vLLM's default" and "knee of the front" in roles["seqs64"]
    for name, draw in (("timelines", lambda png, pdf: timelines_figure(shown, roles, png, pdf, title="run t")),
                       ("steadiness", lambda png, pdf: steadiness_figure(steadiness_table(records), png, pdf))):
        png, pdf = tmp_path / f"{name}.png", tmp_path / f"{name}.pdf"
        draw(str(png), str(pdf))
        img = mpimg.imread(png)
        assert img.shape[0] > 200 and img[..., :3].std() > 0.01, name
        assert pdf.read_bytes()[:5] == b"%PDF-", name


def test_a_last_interval_shorter_than_half_is_joined_to_the_one_before_keeping_its_joules():
    # stop()'s read 20 ms after the thread's last one: one counter update in it would read as 1.2 kW
    sampler = TimelineSampler([Channel("gpu0", "gpu", "measured", "test", lambda: 0.0)], 0.5)
    sampler._t, sampler._watts = [0.0, 0.5, 1.0, 1.02], {"gpu0": [100.0, 100.0, 1200.0]}
    sampler._merge_short_last_interval()
    assert sampler._t == [0.0, 0.5, 1.02]
    assert sampler._watts["gpu0"][0] == 100.0
    assert sampler._watts["gpu0"][1] * 0.52 == pytest.approx(100.0 * 0.5 + 1200.0 * 0.02)
    sampler._t, sampler._watts = [0.0, 0.5, 0.8], {"gpu0": [100.0, 300.0]}  # 0.3 s: kept as measured
    sampler._merge_short_last_interval()
    assert sampler._t == [0.0, 0.5, 0.8] and sampler._watts["gpu0"] == [100.0, 300.0]
