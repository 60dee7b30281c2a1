"""A malformed config gets one clear message naming the key and what is allowed, before any job starts."""

from __future__ import annotations

import copy
import re

import pytest

from conftest import REPO, load_test_config, run_snakemake, write_config
from vllm_mobo.config import ConfigError, load_config, validate_config


@pytest.fixture
def good() -> dict:
    return load_test_config("tiny.yaml")


def test_default_config_is_valid_and_defaults_are_filled():
    cfg = load_config(REPO / "config.yaml")
    assert cfg["benchmark"]["mode"] == "offline"
    assert cfg["search_space"]["block_size"] == [32, 64, 128]
    tiny = validate_config(load_test_config("tiny.yaml"))
    assert tiny["energy"]["ram_watts_per_gb"] == 0.375  # filled from the schema default
    assert tiny["optimizer"]["strategy"] == "qlognehvi"


def _error(cfg: dict) -> str:
    with pytest.raises(ConfigError) as exc:
        validate_config(cfg)
    return str(exc.value)


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda c: c["benchmark"].update(device="tpu"), ["benchmark.device", "'tpu'", "'auto'", "'cuda'", "'cpu'"]),
        (lambda c: c.update(optimiser={}), ["unknown key(s) optimiser", "allowed keys:", "optimizer"]),
        (lambda c: c["workload"].pop("model"), ["workload: missing required key(s) model"]),
        (lambda c: c["workload"]["model"].update(path="meta-llama/Llama-3.1-8B"),
         ["workload.model", "exactly one of `path`", "`architecture`"]),
        (lambda c: c["workload"].update(input_len={"min": 100, "max": 10}), ["workload.input_len", "min (100)", "max (10)"]),
        (lambda c: c["search_space"].update(block_size=[]), ["search_space.block_size", "minItems"]),
        (lambda c: c["optimizer"].update(budget=1), ["optimizer.budget", "smaller than iteration 0"]),
        (lambda c: c["optimizer"].update(batch_size=0), ["optimizer.batch_size", "minimum 1"]),
        (lambda c: c.update(objectives=[{"metric": "output_tokens_per_s", "direction": "maximize"}] * 2),
         ["objectives", "same metric twice"]),
        (lambda c: c["objectives"][1].update(metric="watts"), ["objectives[1].metric", "'watts'", "'joules_per_output_token'"]),
        (lambda c: c.update(run="my run/1"), ["run", "does not match"]),
        (lambda c: c["engine_args"].update(max_num_seqs=8), ["engine_args", "max_num_seqs also in search_space"]),
        (lambda c: c["workload"].update(max_model_len=32), ["workload.max_model_len", "below the longest request"]),
    ],
)
def test_malformed_configs_name_the_key_and_what_is_allowed(good, mutate, expected):
    cfg = copy.deepcopy(good)
    mutate(cfg)
    message = _error(cfg)
    for fragment in expected:
        assert fragment in message, f"{fragment!r} not in:\n{message}"


def test_several_problems_are_reported_together(good):
    cfg = copy.deepcopy(good)
    cfg["benchmark"]["device"] = "tpu"
    cfg["optimizer"]["strategy"] = "magic"
    message = _error(cfg)
    assert "benchmark.device" in message and "optimizer.strategy" in message


def test_snakemake_stops_before_any_job_on_a_bad_config(tmp_path, good):
    good["benchmark"]["device"] = "tpu"
    write_config(tmp_path, good)
    proc = run_snakemake(tmp_path, "--cores", "1", check=False, timeout=120)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "benchmark.device: 'tpu' is not allowed; allowed values: 'auto', 'cuda', 'cpu'" in out
    assert not (tmp_path / "results").exists()


def test_not_yaml_is_a_clear_error(tmp_path):
    bad = tmp_path / "c.yaml"
    bad.write_text("run: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


@pytest.mark.slow
def test_snakemake_stops_before_any_job_on_engine_args_vllm_does_not_know(tmp_path, good):
    """Engine arguments are checked against the installed vLLM's parser in onstart: a misspelt key and values of
    the wrong type stop the run with one line each, before any job (no model directory, no proposal)."""
    pytest.importorskip("vllm")
    good["search_space"] = {"block_sze": [16, 32], "max_num_seqs": ["many", 64]}
    good["engine_args"] = {**good.get("engine_args", {}), "enable_chunked_prefill": "yes"}
    write_config(tmp_path, good)
    proc = run_snakemake(tmp_path, "--cores", "1", check=False, timeout=300)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert re.search(r"search_space\.block_sze: not a vLLM engine argument \(vllm[-\w]* [\d.]+\); did you mean "
                     r"'block_size'", out), out[-3000:]
    assert "search_space.max_num_seqs: 'many' is not a valid" in out
    assert "engine_args.enable_chunked_prefill: 'yes' is not a boolean" in out
    assert not list((tmp_path / "results").rglob("*.json"))


def test_schema_objectives_are_the_metric_catalogue():
    """The schema's objective metrics are exactly the catalogue's objectives (one vocabulary)."""
    from vllm_mobo.config import load_schema
    from vllm_mobo.records import OBJECTIVES

    schema = load_schema()
    enum = schema["properties"]["objectives"]["items"]["properties"]["metric"]["enum"]
    assert set(enum) == set(OBJECTIVES)


def test_objective_direction_must_match_the_catalogue(good):
    cfg = copy.deepcopy(good)
    cfg["objectives"][1]["direction"] = "maximize"
    message = _error(cfg)
    assert "objectives[1].direction: 'maximize' for joules_per_output_token" in message
    assert "allowed value: 'minimize'" in message
