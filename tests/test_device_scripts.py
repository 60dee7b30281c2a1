"""The device helpers that move a search between the GPU machine and here (benchmarks/device/): restoring an
unfinished search so that Snakemake goes on with exactly the missing benchmarks, and assembling the profile tables
from profiles taken there. Real files of the 4x H200 online run, a real Snakemake dry run."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from conftest import REPO, VLLM_MOBO, run_snakemake

ONLINE_RUN = REPO / "docs" / "gpu" / "2026-11-26-4xh200-online-llama8b"
ONLINE_CONFIG = ONLINE_RUN / "config.yaml"  # the config the run was made with
OFFLINE_RUN = REPO / "docs" / "gpu" / "2026-11-26-4xh200-offline-llama8b-sequential"
OFFLINE_CONFIG = OFFLINE_RUN / "config.yaml"


def _script(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "benchmarks" / "device" / name), *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def test_resume_plans_only_the_benchmarks_of_the_first_unfinished_iteration(tmp_path):
    # iteration 0 finished (4 metrics), iteration 1 proposed (2 candidates) but not run: as the device left it
    src = tmp_path / "fetched"
    (src / "metrics").mkdir(parents=True)
    for m in sorted((ONLINE_RUN / "metrics").glob("iter_0__*.json")):
        shutil.copy(m, src / "metrics" / m.name)
    for it in (0, 1):
        shutil.copy(ONLINE_RUN / f"proposal_iter_{it}.json", src / f"proposal_iter_{it}.json")
    work = tmp_path / "work"
    proc = _script("restore_search.py", ONLINE_CONFIG, work, src, "--resume")
    assert proc.returncode == 0, proc.stderr
    assert "4 benchmarks restored" in proc.stdout

    dry = run_snakemake(work, "--cores", "4", "--dry-run", "--omit-from", "analysis_notebook", "latex_source")
    planned = set(re.findall(r"output: results/gpu4-online-llama8b/(iter_\d+/[^/]+)/metrics\.json", dry.stdout))
    proposed = {f"iter_1/{c['name']}" for c in json.loads((src / "proposal_iter_1.json").read_text())["candidates"]}
    assert planned == proposed and len(planned) == 2  # iteration 0's restored benchmarks are not run again


def test_without_resume_an_unfinished_search_is_refused(tmp_path):
    src = tmp_path / "fetched"
    (src / "metrics").mkdir(parents=True)
    shutil.copy(ONLINE_RUN / "proposal_iter_0.json", src / "proposal_iter_0.json")
    proc = _script("restore_search.py", ONLINE_CONFIG, tmp_path / "work", src)
    assert proc.returncode == 1
    assert "no finished search" in proc.stderr and "pareto.csv" in proc.stderr


@pytest.fixture
def offline_work(tmp_path):
    work = tmp_path / "work"
    proc = _script("restore_search.py", OFFLINE_CONFIG, work, OFFLINE_RUN,
                   "{enabled: true, configs: [energy_optimal, throughput_optimal, knee, vllm_default]}")
    assert proc.returncode == 0, proc.stderr
    return work


def test_collect_profiles_refuses_configurations_without_a_profile(offline_work):
    proc = subprocess.run([str(VLLM_MOBO), "collect-profiles", str(offline_work)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 1
    assert "no finished profile" in proc.stderr and "vllm-default" in proc.stderr
    assert not (offline_work / "results" / "gpu4-offline-llama8b" / "profiles" / "status.csv").exists()


def test_collect_profiles_reuses_the_committed_device_profiles(offline_work):
    # the per-configuration exports fetched from the GPU machine (committed with the run)
    profiles = offline_work / "results" / "gpu4-offline-llama8b" / "profiles"
    shutil.copytree(OFFLINE_RUN / "profiles", profiles)
    for name in ("status.csv", "breakdown.csv"):
        (profiles / name).unlink(missing_ok=True)
    proc = subprocess.run([str(VLLM_MOBO), "collect-profiles", str(offline_work)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    status = pd.read_csv(profiles / "status.csv")
    assert set(status["status"]) == {"profiled"}
    bd = pd.read_csv(profiles / "breakdown.csv")
    # every GPU of every profiled configuration has kernels in the window (TP=2: two rows)
    assert bd.groupby("candidate").size().to_dict() == {
        c: int(tp) * int(pp) for c, tp, pp in status[["candidate", "tensor_parallel_size",
                                                       "pipeline_parallel_size"]].itertuples(index=False)}
    assert bd["busy_ns"].gt(0).all()
    committed = pd.read_csv(OFFLINE_RUN / "profiles" / "breakdown.csv")
    assert bd["idle_pct"].round(6).tolist() == committed["idle_pct"].round(6).tolist()


def test_gpu_run_table_orders_by_iteration_and_names_each_rows_machine():
    # the three-objective table measured on three H200s (iterations 0-6, 7-12 and 13-18 each on a card of its own)
    proc = _script("gpu_run_table.py", REPO / "docs" / "gpu" / "2026-12-03-h200-online3-table")
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = [dict(zip(header, (c.strip() for c in ln.strip("|").split("|")))) for ln in lines[2:]]
    assert [int(r["iter"]) for r in rows] == sorted(int(r["iter"]) for r in rows)
    assert int(rows[-1]["iter"]) == 18 and len(rows) == 20
    assert {r["machine"] for r in rows if int(r["iter"]) <= 6} == {"vm (GPU 82459392)"}
    assert {r["machine"] for r in rows if 7 <= int(r["iter"]) <= 12} == {"vm (GPU d62c0f88)"}
    assert {r["machine"] for r in rows if int(r["iter"]) >= 13} == {"vm (GPU eb6bae28)"}
    # the 16-sequence configurations did not keep up with 20 req/s; seqs32-mbt8192-chunk1 missed the TTFT SLO
    assert {r["candidate"].strip("`") for r in rows if r["SLOs met"] == "False"} == {
        "seqs16-mbt8192-chunk1-tp1-pp1", "seqs16-mbt8192-chunk0-tp1-pp1", "seqs16-mbt2048-chunk1-tp1-pp1",
        "seqs16-mbt512-chunk1-tp1-pp1", "seqs32-mbt8192-chunk1-tp1-pp1"}
    assert "ESTIMATED" in proc.stdout


def test_gpu_run_table_has_no_machine_column_for_a_run_on_one_machine():
    proc = _script("gpu_run_table.py", REPO / "docs" / "gpu" / "2026-11-30-h200-offline-gpuspace-confirm")
    assert proc.returncode == 0, proc.stderr
    header = proc.stdout.splitlines()[0]
    assert "| machine " not in header and "| candidate " in header
