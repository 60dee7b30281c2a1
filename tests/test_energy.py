"""Energy meters: RAPL on fake sysfs trees built from real files, the process-tree CPU/RAM estimates on real
processes, and the NVML paths that exist without a GPU."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from vllm_mobo.measure.energy import EnergyReading, EnergySession, summarize

MAX_RANGE_UJ = 262_143_328_850


def make_domain(parent: Path, domain_id: str, name: str, energy_uj: int, max_range_uj: int = MAX_RANGE_UJ) -> Path:
    d = parent / domain_id
    d.mkdir(parents=True)
    (d / "name").write_text(name + "\n")
    (d / "energy_uj").write_text(f"{energy_uj}\n")
    (d / "max_energy_range_uj").write_text(f"{max_range_uj}\n")
    return d


def set_energy(domain: Path, energy_uj: int) -> None:
    (domain / "energy_uj").write_text(f"{energy_uj}\n")


def two_socket_tree(root: Path) -> dict[str, Path]:
    """Two packages, each with core, uncore and dram subdomains, plus psys; laid out as sysfs does: subdomains
    inside their package and also linked flat under the root."""
    domains = {"psys": make_domain(root, "intel-rapl:2", "psys", 0)}
    for n in (0, 1):
        pkg = make_domain(root, f"intel-rapl:{n}", f"package-{n}", 1_000_000)
        domains[f"package-{n}"] = pkg
        for m, sub in enumerate(("core", "uncore", "dram")):
            d = make_domain(pkg, f"intel-rapl:{n}:{m}", sub, 1_000_000)
            (root / d.name).symlink_to(d, target_is_directory=True)
            domains[f"{sub}-{n}"] = d
    return domains


def session(root: Path, **kwargs) -> EnergySession:
    return EnergySession(root_pid=os.getpid(), rapl_root=str(root), use_nvml=False, **kwargs)


def by_source(readings: list[EnergyReading]) -> dict[str, EnergyReading]:
    assert len({r.source for r in readings}) == len(readings), "one reading per source"
    return {r.source: r for r in readings}


# --------------------------------------------------------------------------------------------------------- RAPL


def test_package_and_dram_domains_are_measured(tmp_path):
    d = two_socket_tree(tmp_path)
    s = session(tmp_path)
    s.start()
    set_energy(d["package-0"], 1_000_000 + 30_000_000)  # +30 J
    set_energy(d["package-1"], 1_000_000 + 12_500_000)  # +12.5 J
    set_energy(d["dram-0"], 1_000_000 + 4_000_000)  # +4 J
    set_energy(d["dram-1"], 1_000_000 + 1_000_000)  # +1 J
    r = by_source(s.stop())

    assert set(r) == {"cpu", "ram"}
    assert r["cpu"].provenance == "measured"
    assert r["cpu"].joules == pytest.approx(42.5)
    assert r["cpu"].method == "RAPL package domains intel-rapl:0,intel-rapl:1 (whole machine)"
    assert r["cpu"].detail["domains"]["intel-rapl:1"] == {"name": "package-1", "joules": 12.5, "wrapped": False}
    assert r["ram"].provenance == "measured"
    assert r["ram"].joules == pytest.approx(5.0)
    assert r["ram"].method == "RAPL DRAM domains intel-rapl:0:2,intel-rapl:1:2 (whole machine)"
    assert summarize(list(r.values()))["provenance"] == "measured"


def test_core_uncore_and_psys_are_not_counted(tmp_path):
    d = two_socket_tree(tmp_path)
    s = session(tmp_path)
    s.start()
    set_energy(d["package-0"], 1_000_000 + 2_000_000)
    for key in ("core-0", "uncore-0", "core-1", "uncore-1", "psys"):
        set_energy(d[key], 900_000_000)  # hundreds of joules that must not appear anywhere
    r = by_source(s.stop())

    assert r["cpu"].joules == pytest.approx(2.0)
    assert set(r["cpu"].detail["domains"]) == {"intel-rapl:0", "intel-rapl:1"}
    assert r["ram"].joules == pytest.approx(0.0)
    assert set(r["ram"].detail["domains"]) == {"intel-rapl:0:2", "intel-rapl:1:2"}


def test_counter_wrap_adds_the_range(tmp_path):
    pkg = make_domain(tmp_path, "intel-rapl:0", "package-0", MAX_RANGE_UJ - 500_000)
    dram = make_domain(pkg, "intel-rapl:0:0", "dram", 7_000_000, max_range_uj=65_712_999_613)
    s = session(tmp_path)
    s.start()
    set_energy(pkg, 1_500_000)  # 0.5 J up to the wrap, 1.5 J after it
    set_energy(dram, 2_000_000)  # wrapped too: 65_712.999613 J - 7 J + 2 J
    r = by_source(s.stop())

    assert r["cpu"].joules == pytest.approx(2.0)
    assert r["cpu"].detail["domains"]["intel-rapl:0"]["wrapped"] is True
    assert r["ram"].joules == pytest.approx(65_712.999613 - 5.0)


def test_no_dram_domain_estimates_ram(tmp_path):
    pkg = make_domain(tmp_path, "intel-rapl:0", "package-0", 0)
    make_domain(pkg, "intel-rapl:0:0", "core", 0)
    s = session(tmp_path)
    s.start()
    set_energy(pkg, 3_000_000)
    r = by_source(s.stop())

    assert (r["cpu"].provenance, r["cpu"].joules) == ("measured", pytest.approx(3.0))
    assert r["ram"].provenance == "estimated"
    assert r["ram"].detail["fallback_reason"] == "no RAPL DRAM domains"
    assert summarize(list(r.values()))["provenance"] == "partly estimated"


def assert_cpu_falls_back(readings: list[EnergyReading], reason_contains: str) -> dict[str, EnergyReading]:
    r = by_source(readings)
    assert r["cpu"].provenance == "estimated"
    assert reason_contains in r["cpu"].detail["fallback_reason"]
    assert r["cpu"].method.startswith("estimated: ")
    assert f"RAPL unreadable: {r['cpu'].detail['fallback_reason']}" in r["cpu"].method
    return r


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode bits; see the variants below")
def test_permission_denied_falls_back(tmp_path):
    pkg = make_domain(tmp_path, "intel-rapl:0", "package-0", 0)
    (pkg / "energy_uj").chmod(0)
    s = session(tmp_path)
    s.start()
    assert_cpu_falls_back(s.stop(), f"permission denied reading {pkg / 'energy_uj'}")


def test_unreadable_energy_at_start_falls_back(tmp_path):
    pkg = make_domain(tmp_path, "intel-rapl:0", "package-0", 0)
    (pkg / "energy_uj").unlink()
    (pkg / "energy_uj").mkdir()  # reading it raises IsADirectoryError, an OSError
    s = session(tmp_path)
    s.start()
    assert_cpu_falls_back(s.stop(), f"cannot read {pkg / 'energy_uj'}")


def test_energy_vanishing_before_stop_falls_back(tmp_path):
    pkg = make_domain(tmp_path, "intel-rapl:0", "package-0", 0)
    dram = make_domain(pkg, "intel-rapl:0:0", "dram", 0)
    s = session(tmp_path)
    s.start()
    (pkg / "energy_uj").unlink()
    set_energy(dram, 1_000_000)
    r = assert_cpu_falls_back(s.stop(), f"cannot read {pkg / 'energy_uj'}")
    assert (r["ram"].provenance, r["ram"].joules) == ("measured", pytest.approx(1.0))  # DRAM still readable


def test_unreadable_dram_estimates_ram_only(tmp_path):
    pkg = make_domain(tmp_path, "intel-rapl:0", "package-0", 0)
    dram = make_domain(pkg, "intel-rapl:0:0", "dram", 0)
    (dram / "energy_uj").unlink()
    s = session(tmp_path)
    s.start()
    set_energy(pkg, 1_000_000)
    r = by_source(s.stop())
    assert (r["cpu"].provenance, r["cpu"].joules) == ("measured", pytest.approx(1.0))
    assert r["ram"].provenance == "estimated"
    assert str(dram / "energy_uj") in r["ram"].detail["fallback_reason"]


def test_missing_powercap_dir_falls_back(tmp_path):
    root = tmp_path / "powercap"
    s = session(root)
    s.start()
    r = assert_cpu_falls_back(s.stop(), f"no {root}/intel-rapl:* domains")
    assert "does not exist" in r["cpu"].detail["fallback_reason"]
    assert r["ram"].provenance == "estimated"


@pytest.mark.parametrize("layout, reason", [
    ("empty", "intel-rapl:* domains"),
    ("psys only", "no package domains"),
])
def test_no_package_domain_falls_back(tmp_path, layout, reason):
    if layout == "psys only":
        make_domain(tmp_path, "intel-rapl:0", "psys", 0)
    make_domain(tmp_path, "intel-rapl-mmio:0", "package-0", 0)  # the MMIO duplicate of package 0 is ignored
    s = session(tmp_path)
    s.start()
    assert_cpu_falls_back(s.stop(), reason)


# ------------------------------------------------------------------------------------------------ estimates


BURN = "import time\nwhile time.process_time() < {seconds}: pass\n"


def burn_cmd(seconds: float) -> list[str]:
    return [sys.executable, "-c", BURN.format(seconds=seconds)]


def test_cpu_estimate_counts_a_child_that_runs_and_exits_in_the_window(tmp_path):
    s = session(tmp_path / "none", cpu_watts_per_core=10.0)
    s.start()
    subprocess.run(burn_cmd(0.5), check=True)
    r = by_source(s.stop())

    assert r["cpu"].detail["busy_cpu_s"] >= 0.45
    assert r["cpu"].joules >= 0.45 * 10.0
    assert r["cpu"].joules == pytest.approx(r["cpu"].detail["busy_cpu_s"] * 10.0)


def test_cpu_estimate_counts_a_live_child_from_zero(tmp_path):
    s = session(tmp_path / "none", cpu_watts_per_core=10.0)
    s.start()
    script = BURN.format(seconds=0.5) + "print(flush=True)\ninput()\n"
    child = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        child.stdout.readline()  # the child has burnt 0.5 s and now waits, still alive, in the tree
        r = by_source(s.stop())
    finally:
        child.communicate("\n", timeout=10)
    assert r["cpu"].detail["processes_at_stop"] == r["cpu"].detail["processes_at_start"] + 1
    assert r["cpu"].detail["busy_cpu_s"] >= 0.45


def test_cpu_estimate_excludes_time_before_the_window(tmp_path):
    """A child alive at start that exits during the window counts only its time inside the window."""
    script = BURN.format(seconds=0.5) + "print(flush=True)\ninput()\n" + BURN.format(seconds=1.0)
    child = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    child.stdout.readline()  # 0.5 s burnt before the window
    s = session(tmp_path / "none")
    s.start()
    child.communicate("\n", timeout=10)  # 0.5 s more inside it, then the child exits and is reaped
    r = by_source(s.stop())
    assert 0.45 <= r["cpu"].detail["busy_cpu_s"] < 0.9


def test_idle_window_estimates_little_cpu(tmp_path):
    s = session(tmp_path / "none")
    s.start()
    time.sleep(0.3)
    r = by_source(s.stop())
    assert r["cpu"].detail["busy_cpu_s"] < 0.15
    assert r["cpu"].detail["window_s"] >= 0.3


def test_ram_estimate_uses_resident_memory_of_the_tree(tmp_path):
    s = session(tmp_path / "none", ram_watts_per_gb=0.375)
    s.start()
    ballast = b"\x01" * 200_000_000  # 0.2 GB made resident inside the window
    time.sleep(0.2)
    ram = by_source(s.stop())["ram"]
    del ballast

    own_gb = psutil.Process().memory_info().rss / 1e9
    assert ram.provenance == "estimated"
    assert ram.detail["rss_gb_stop"] - ram.detail["rss_gb_start"] >= 0.15
    assert ram.detail["rss_gb"] == ram.detail["rss_gb_stop"] >= 0.5 * own_gb
    assert ram.joules == pytest.approx(ram.detail["rss_gb"] * 0.375 * ram.detail["window_s"])
    assert "CodeCarbon v2" in ram.method and "0.375 W/GB" in ram.method


# ----------------------------------------------------------------------------------------------- session, summary


def test_start_and_stop_must_alternate(tmp_path):
    s = session(tmp_path)
    with pytest.raises(RuntimeError):
        s.stop()
    s.start()
    with pytest.raises(RuntimeError):
        s.start()
    assert len(s.stop()) == 2
    s.start()  # reusable after stop()
    assert len(s.stop()) == 2


def test_summarize_provenance_and_total():
    gpu = EnergyReading("gpu", 100.0, "measured", "NVML total-energy counter, GPUs 0", {"gpus": []})
    cpu = EnergyReading("cpu", 20.0, "estimated", "estimated: ...", {"fallback_reason": "x"})
    ram = EnergyReading("ram", 1.5, "estimated", "estimated: ...", {})

    mixed = summarize([gpu, cpu, ram])
    assert mixed["provenance"] == "partly estimated"
    assert mixed["total_j"] == pytest.approx(121.5)
    assert mixed["sources"][0] == {"source": "gpu", "joules": 100.0, "provenance": "measured",
                                   "method": "NVML total-energy counter, GPUs 0", "detail": {"gpus": []}}
    assert summarize([cpu, ram])["provenance"] == "estimated"
    assert summarize([gpu])["provenance"] == "measured"
    with pytest.raises(ValueError):
        summarize([])


# --------------------------------------------------------------------------------------------------------- NVML


@pytest.fixture
def nvml_init_calls(monkeypatch):
    """Replace nvmlInit with one that records its calls and fails as on a machine without a driver."""
    pynvml = pytest.importorskip("pynvml")
    calls = []

    def failing_init(*args, **kwargs):
        calls.append(args)
        raise pynvml.NVMLError(pynvml.NVML_ERROR_DRIVER_NOT_LOADED)

    monkeypatch.setattr(pynvml, "nvmlInit", failing_init)
    return calls


def test_no_gpu_indices_means_no_gpu_reading(tmp_path, nvml_init_calls):
    s = EnergySession(root_pid=os.getpid(), gpu_indices=None, rapl_root=str(tmp_path))
    s.start()
    assert [r.source for r in s.stop()] == ["cpu", "ram"]
    assert nvml_init_calls == []  # NVML not even initialised


def test_nvml_init_failure_means_no_gpu_reading(tmp_path, nvml_init_calls):
    s = EnergySession(root_pid=os.getpid(), gpu_indices=[0, 1], rapl_root=str(tmp_path))
    s.start()
    assert [r.source for r in s.stop()] == ["cpu", "ram"]
    assert len(nvml_init_calls) == 1


class FakeNvml:
    """The pynvml calls the meter makes, for two GPUs: GPU 0 has the total-energy counter, GPU 1 does not (its
    power is sampled); P-state is unsupported on both."""

    NVML_CLOCK_SM, NVML_CLOCK_MEM, NVML_TEMPERATURE_GPU = 1, 2, 0

    class NVMLError(Exception):
        pass

    class NVMLError_NotSupported(NVMLError):
        pass

    def __init__(self):
        self.energy_mj = {0: 5_000_000}
        self.power_mw = {0: 300_000, 1: 100_000}
        self.shutdowns = 0

    def nvmlDeviceGetHandleByIndex(self, i):
        return i

    def nvmlSystemGetDriverVersion(self):
        return b"580.159.04"

    def nvmlDeviceGetName(self, h):
        return b"Fake H100"

    def nvmlDeviceGetUUID(self, h):
        return f"GPU-fake-{h}"

    def nvmlDeviceGetEnforcedPowerLimit(self, h):
        return 700_000

    def nvmlDeviceGetTotalEnergyConsumption(self, h):
        if h not in self.energy_mj:
            raise self.NVMLError_NotSupported()
        return self.energy_mj[h]

    def nvmlDeviceGetPowerUsage(self, h):
        return self.power_mw[h]

    def nvmlDeviceGetClockInfo(self, h, kind):
        return 1980 if kind == self.NVML_CLOCK_SM else 2619

    def nvmlDeviceGetTemperature(self, h, sensor):
        return 40 + h

    def nvmlDeviceGetPerformanceState(self, h):
        raise self.NVMLError("not supported")

    def nvmlShutdown(self):
        self.shutdowns += 1


def test_nvml_counter_and_power_sampling_with_gpu_state():
    from vllm_mobo.measure.energy.nvml import NvmlMeter

    nvml = FakeNvml()
    meter = NvmlMeter(nvml, [0, 1])
    nvml.energy_mj[0] += 50_000  # 50 J on the counter
    t0 = time.perf_counter()
    time.sleep(0.3)
    reading = meter.stop(window_s=time.perf_counter() - t0)
    gpus = {g["index"]: g for g in reading.detail["gpus"]}
    assert gpus[0]["method"] == "energy_counter" and gpus[0]["joules"] == pytest.approx(50.0)
    assert gpus[1]["method"] == "power_sampling" and gpus[1]["power_samples"] >= 2
    assert gpus[1]["joules"] == pytest.approx(100.0 * 0.3, rel=0.3)  # 100 W over ~0.3 s, trapezoid
    assert reading.joules == pytest.approx(gpus[0]["joules"] + gpus[1]["joules"])
    assert reading.provenance == "measured"
    assert "counter, GPUs 0" in reading.method and "power sampled" in reading.method and "GPUs 1" in reading.method
    assert reading.detail["driver_version"] == "580.159.04"
    for i, g in gpus.items():
        assert g["name"] == "Fake H100" and g["uuid"] == f"GPU-fake-{i}" and g["power_limit_w"] == 700.0
        for moment in ("start", "end"):
            assert g[moment] == {"sm_clock_mhz": 1980, "mem_clock_mhz": 2619, "temperature_c": 40 + i,
                                 "power_w": nvml.power_mw[i] / 1000, "pstate": None}
    assert nvml.shutdowns == 1


# ------------------------------------------------------------------------------------------- idle baseline


def _bump_later(domain: Path, energy_uj: int, delay_s: float) -> threading.Thread:
    t = threading.Thread(target=lambda: (time.sleep(delay_s), set_energy(domain, energy_uj)))
    t.start()
    return t


def test_idle_baseline_is_measured_before_the_window_and_subtracted(tmp_path):
    d = two_socket_tree(tmp_path)
    s = session(tmp_path, idle_baseline_s=0.5)
    bump = _bump_later(d["package-0"], 1_000_000 + 5_000_000, 0.2)  # 5 J while idle
    s.start()  # blocks for the idle baseline
    bump.join()
    set_energy(d["package-0"], 1_000_000 + 5_000_000 + 20_000_000)  # 20 J in the window
    time.sleep(0.2)
    r = by_source(s.stop())
    cpu = r["cpu"]
    base = cpu.detail["idle_baseline"]
    assert cpu.detail["gross_joules"] == pytest.approx(20.0)
    assert base["window_s"] >= 0.5 and base["watts"] == pytest.approx(5.0 / base["window_s"])
    assert base["joules_subtracted"] == pytest.approx(base["watts"] * cpu.detail["window_s"])
    assert cpu.joules == pytest.approx(20.0 - base["joules_subtracted"])
    assert "minus an idle baseline" in cpu.method and cpu.provenance == "measured"
    assert not cpu.detail["net_clamped_at_zero"]
    summary = summarize(list(r.values()))
    assert summary["idle_subtracted"] is True
    assert summary["gross_total_j"] == pytest.approx(20.0)  # DRAM used nothing
    assert summary["total_j"] == pytest.approx(cpu.joules)


def test_idle_baseline_larger_than_the_window_clamps_at_zero(tmp_path):
    d = two_socket_tree(tmp_path)
    s = session(tmp_path, idle_baseline_s=0.3)
    bump = _bump_later(d["package-0"], 1_000_000 + 100_000_000, 0.1)  # 100 J "idle"
    s.start()
    bump.join()
    set_energy(d["package-0"], 1_000_000 + 100_000_000 + 1_000_000)  # 1 J in the window
    time.sleep(0.2)
    cpu = by_source(s.stop())["cpu"]
    assert cpu.joules == 0.0 and cpu.detail["net_clamped_at_zero"] and cpu.detail["gross_joules"] == pytest.approx(1.0)


def test_no_idle_baseline_by_default(tmp_path):
    two_socket_tree(tmp_path)
    s = session(tmp_path)
    s.start()
    r = s.stop()
    assert all("idle_baseline" not in x.detail for x in r)
    assert summarize(r)["idle_subtracted"] is False and "gross_total_j" not in summarize(r)


def test_from_config():
    off = EnergySession.from_config({"subtract_idle": False, "idle_baseline_s": 3, "cpu_watts_per_core": 5},
                                    root_pid=os.getpid())
    assert off.idle_baseline_s == 0 and off.cpu_watts_per_core == 5 and off.ram_watts_per_gb == 0.375
    on = EnergySession.from_config({"subtract_idle": True, "idle_baseline_s": 3}, root_pid=os.getpid(), gpu_indices=[1])
    assert on.idle_baseline_s == 3 and on.gpu_indices == [1]


# ------------------------------------------------------------------------------- GPU pinning and energy scope


def test_parse_visible_devices_and_pinning():
    from vllm_mobo import hardware

    uuids = ["GPU-aaa1", "GPU-bbb2", "GPU-ccc3"]
    assert hardware.parse_visible_devices(None, uuids) == [0, 1, 2]
    assert hardware.parse_visible_devices("2,0", uuids) == [2, 0]
    assert hardware.parse_visible_devices("GPU-bbb,0", uuids) == [1, 0]  # abbreviated UUIDs, as CUDA allows
    assert hardware.parse_visible_devices("0,7,1", uuids) == [0]  # CUDA stops at the first invalid entry
    assert hardware.parse_visible_devices("", uuids) == []
    assert hardware.choose_gpus(2, [2, 0, 1]) == [2, 0]
    with pytest.raises(ValueError, match="needs 4 GPUs"):
        hardware.choose_gpus(4, [0, 1])
    assert hardware.cuda_visible_devices([1, 0], uuids) == "GPU-bbb2,GPU-aaa1"


@pytest.mark.parametrize("scope, metered", [("used", [0, 1]), ("node", [0, 1, 2, 3])])
def test_candidate_pinned_to_its_gpus_and_energy_scope(monkeypatch, scope, metered):
    import yaml

    from vllm_mobo import hardware
    from vllm_mobo.config import validate_config
    from vllm_mobo.measure import runner

    uuids = [f"GPU-{i}" for i in range(4)]
    monkeypatch.setattr(hardware, "gpu_uuids", lambda: uuids)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    raw = yaml.safe_load((Path(__file__).parent / "configs/tiny.yaml").read_text())
    raw["benchmark"]["device"] = "cuda"
    raw["energy"] = {"gpu_scope": scope}
    cfg = validate_config(raw)
    spec = runner.build_spec(cfg, {"name": "tp2", "config": {"tensor_parallel_size": 2}}, "model")
    assert spec["gpus_pinned"] == [0, 1] and spec["gpu_indices"] == metered
    env = runner.worker_environment(spec)
    assert env["CUDA_VISIBLE_DEVICES"] == "GPU-0,GPU-1" and env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
