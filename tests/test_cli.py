"""The `vllm-mobo` command: subcommands, clear errors, the config check against the installed vLLM."""

from __future__ import annotations

import subprocess

import pytest

from conftest import REPO, VLLM_MOBO, load_test_config, write_config

RUN_TINY = REPO / "tests" / "fixtures" / "run_tiny" / "results" / "tiny"


def vllm_mobo(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(VLLM_MOBO), *args], capture_output=True, text=True, timeout=timeout)


def test_help_lists_every_subcommand():
    proc = vllm_mobo("--help")
    assert proc.returncode == 0
    for command in ("check", "export", "measure-table", "compare-strategies", "collect-profiles"):
        assert command in proc.stdout


def test_export_of_an_unknown_candidate_names_the_known_ones():
    proc = vllm_mobo("export", str(RUN_TINY), "--candidate", "seqs9999")
    assert proc.returncode == 1
    assert "no successful benchmark of 'seqs9999'" in proc.stderr and "vllm-default" in proc.stderr


def test_export_of_a_folder_without_a_run(tmp_path):
    proc = vllm_mobo("export", str(tmp_path))
    assert proc.returncode == 1 and "not a run directory" in proc.stderr


@pytest.mark.slow
def test_check_names_every_problem_and_passes_a_good_config(tmp_path):
    pytest.importorskip("vllm")
    config = load_test_config("tiny.yaml")
    good = write_config(tmp_path / "good", config)
    assert vllm_mobo("check", str(good)).stdout.strip().endswith("valid")
    config["search_space"]["max_num_seq"] = config["search_space"].pop("max_num_seqs")
    config["engine_args"]["enforce_eager"] = "yes"
    proc = vllm_mobo("check", str(write_config(tmp_path / "bad", config)))
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert any("search_space.max_num_seq: not a vLLM engine argument" in l and "'max_num_seqs'" in l for l in lines)
    assert any("engine_args.enforce_eager: 'yes' is not a boolean" in l for l in lines)
