"""Energy meters: RAPL on fake sysfs trees built from real files, the process-tree CPU/RAM estimates on real
processes, and the NVML paths that exist without a GPU."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from vllm_mobo.energy import EnergyReading, EnergySession, summarize

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
    assert summarize(list(r.values()))["provenance"] == "mixed"


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
    assert mixed["provenance"] == "mixed"
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
