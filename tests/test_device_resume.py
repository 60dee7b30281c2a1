"""Carrying a search between device sessions (benchmarks/device/restore_search.py, used by ``run_on_gpu.sh
pipeline CONFIG RESULTS`` with ``SET``): settings merged into the config, a search that its budget ended reopened
when the budget grows, and the confirmation stage's repeats restored with the search. Real files of the 4x H200
online run, a real Snakemake dry run."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import yaml

from conftest import REPO, run_snakemake

RUN = REPO / "docs" / "gpu" / "2026-11-26-4xh200-online-llama8b"


def _restore(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "benchmarks" / "device" / "restore_search.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def _ended_by_budget(tmp_path):
    """Iteration 0 of the run (4 benchmarks), then a proposal that stopped the search at a budget of 4, and one
    repeat of the confirmation stage on disk."""
    src = tmp_path / "fetched"
    (src / "metrics").mkdir(parents=True)
    for m in sorted((RUN / "metrics").glob("iter_0__*.json")):
        shutil.copy(m, src / "metrics" / m.name)
    shutil.copy(RUN / "proposal_iter_0.json", src / "proposal_iter_0.json")
    (src / "proposal_iter_1.json").write_text(json.dumps(
        {"iteration": 1, "candidates": [], "stop": True, "reason": "budget of 4 evaluations reached"}))
    rep = src / "confirm" / "rep_0" / "vllm-default"
    rep.mkdir(parents=True)
    shutil.copy(RUN / "metrics" / "iter_0__vllm-default.json", rep / "metrics.json")
    return src


def test_a_larger_budget_reopens_a_search_its_budget_ended(tmp_path):
    src = _ended_by_budget(tmp_path)
    work = tmp_path / "work"
    proc = _restore(RUN / "config.yaml", work, src, "--resume", "--set", "{optimizer: {budget: 6}, confirm: {max_configs: 1}}")
    assert proc.returncode == 0, proc.stderr
    assert "search reopened: removed" in proc.stdout and "4 evaluated, budget now 6" in proc.stdout
    cfg = yaml.safe_load((work / "config.yaml").read_text())
    base = yaml.safe_load((RUN / "config.yaml").read_text())
    assert cfg["optimizer"] == {**base["optimizer"], "budget": 6}  # merged key by key
    assert cfg["confirm"] == {"max_configs": 1} and cfg["workload"] == base["workload"]
    run_dir = work / "results" / base["run"]
    assert not (run_dir / "iter_1" / "proposal.json").exists()
    assert (run_dir / "confirm" / "rep_0" / "vllm-default" / "metrics.json").is_file()

    dry = run_snakemake(work, "--cores", "4", "--dry-run", "--omit-from", "analysis_notebook", "latex_source")
    assert dry.returncode == 0, dry.stderr
    assert f"output: results/{base['run']}/iter_1/proposal.json" in dry.stdout  # the search goes on
    assert f"output: results/{base['run']}/iter_0/" not in dry.stdout  # iteration 0's benchmarks are kept


def test_the_same_budget_keeps_the_search_ended(tmp_path):
    src = _ended_by_budget(tmp_path)
    work = tmp_path / "work"
    proc = _restore(RUN / "config.yaml", work, src, "--resume", "--set", "{optimizer: {budget: 4}}")
    assert proc.returncode == 0, proc.stderr
    assert "reopened" not in proc.stdout
    assert (work / "results" / "gpu4-online-llama8b" / "iter_1" / "proposal.json").is_file()


def test_set_must_be_a_mapping(tmp_path):
    proc = _restore(RUN / "config.yaml", tmp_path / "work", "", "--resume", "--set", "budget=6")
    assert proc.returncode == 2 and "--set needs a YAML mapping" in proc.stderr
