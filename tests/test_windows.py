"""Timed windows by time (``benchmark.min_window_s``) and the detokenisation setting, offline: the real vLLM CPU
engine through the runner, the workload's seeds, and the config errors."""

from __future__ import annotations

import json
import re

import pytest

from conftest import load_test_config
from vllm_mobo.config import ConfigError, validate_config
from vllm_mobo.measure.workload import WARMUP_SEED_OFFSET, make_requests, window_seed_offset


def test_window_batches_have_fresh_seeds_that_never_repeat_the_warm_up():
    """Batch 0 is the workload itself (seed offset 0); later batches get offsets unique among themselves and
    different from the warm-up's, so every batch holds other prompts of the same lengths' distribution."""
    offsets = [window_seed_offset(k) for k in range(500)]
    assert offsets[0] == 0
    assert len(set(offsets)) == len(offsets) and WARMUP_SEED_OFFSET not in offsets
    wl = load_test_config("tiny.yaml")["workload"]
    vocab = wl["model"]["architecture"]["vocab_size"]
    warm = make_requests(wl, vocab, count=wl["num_prompts"], seed_offset=WARMUP_SEED_OFFSET)
    batches = [make_requests(wl, vocab, seed_offset=window_seed_offset(k)) for k in range(3)]
    assert batches[0] == make_requests(wl, vocab)  # the first batch is what one-batch windows measured
    prompts = [tuple(tuple(r.prompt_token_ids) for r in b) for b in [warm, *batches]]
    assert len(set(prompts)) == len(prompts)
    for b in batches:
        assert len(b) == wl["num_prompts"]
        assert all(wl["input_len"]["min"] <= len(r.prompt_token_ids) <= wl["input_len"]["max"] for r in b)
    with pytest.raises(ValueError, match="batch must be >= 0"):
        window_seed_offset(-1)


def test_min_window_s_default_and_bad_values():
    raw = load_test_config("tiny.yaml")
    del raw["benchmark"]["min_window_s"]
    cfg = validate_config(raw)
    assert cfg["benchmark"]["min_window_s"] == 10 and cfg["benchmark"]["detokenize"] is False
    for bad in (-1, "long"):
        raw["benchmark"]["min_window_s"] = bad
        with pytest.raises(ConfigError, match=r"benchmark\.min_window_s"):
            validate_config(raw)


def test_detokenize_needs_a_tokenizer():
    """detokenize: true with an architecture model (dummy weights, no tokenizer) is refused naming the key;
    with a model path it is accepted; a non-boolean is refused."""
    raw = load_test_config("tiny.yaml")
    raw["benchmark"]["detokenize"] = True
    with pytest.raises(ConfigError, match=r"benchmark\.detokenize: true needs a model with a tokenizer; "
                                          r"workload\.model\.architecture"):
        validate_config(raw)
    raw["workload"]["model"] = {"path": "facebook/opt-125m"}
    assert validate_config(raw)["benchmark"]["detokenize"] is True
    raw["benchmark"]["detokenize"] = "yes"
    with pytest.raises(ConfigError, match=r"benchmark\.detokenize: 'yes' has the wrong type; expected boolean"):
        validate_config(raw)


@pytest.mark.engine
@pytest.mark.timeout(400)
def test_offline_window_lasts_at_least_min_window_s(tmp_path):
    """The real CPU engine through the runner: a window asked to last longer than one batch of the workload runs
    further full batches under one meter reading; metrics.json records the window, its batches and requests, the
    minimum asked for and the detokenisation setting; the log has one progress line per batch."""
    from vllm_mobo.measure.model import write_model_dir
    from vllm_mobo.measure.runner import run_candidate

    raw = load_test_config("tiny.yaml")
    raw["workload"]["num_prompts"] = 4  # a batch takes a fraction of a second on the tiny model
    raw["benchmark"]["min_window_s"] = 2.0
    cfg = validate_config(raw)
    write_model_dir(cfg["workload"]["model"], tmp_path / "model")
    out, log = tmp_path / "results" / "tiny" / "iter_0" / "seqs16" / "metrics.json", tmp_path / "job.log"
    rec = run_candidate(cfg, {"name": "seqs16", "config": {"max_num_seqs": 16}}, 0, out, log,
                        model_dir=str(tmp_path / "model"))
    assert rec["status"] == "ok", rec.get("failure")
    m = json.loads(out.read_text())["metrics"]
    assert m["min_window_s"] == 2.0 and m["detokenize"] is False
    assert m["window_s"] >= m["min_window_s"] and m["elapsed_s"] == m["window_s"]
    assert m["batches"] > 1
    assert m["num_requests"] == m["batches"] * cfg["workload"]["num_prompts"]
    assert m["output_tokens_per_s"] == pytest.approx(m["output_tokens"] / m["window_s"])
    lines = re.findall(r"\[vllm-mobo\] batch (\d+): 4 requests in [\d.]+ s; window ([\d.]+) s of >= 2 s", log.read_text())
    assert [int(k) for k, _ in lines] == list(range(1, m["batches"] + 1))
    # stops at the first batch past it; the log prints the window to 0.01 s, so one just short of 2 s reads 2.00
    assert all(float(w) <= 2.0 for _, w in lines[:-1]) and float(lines[-1][1]) >= 2.0
    for source in json.loads(out.read_text())["energy"]["sources"]:  # the meters ran over every batch
        assert source["detail"]["window_s"] >= m["window_s"]
    tl = json.loads(out.read_text())["power_timeline"]  # the power timeline, the window marked inside it
    warm, window = tl["phases"]
    assert (warm["phase"], window["phase"]) == ("warmup", "window")
    assert window["end_s"] - window["start_s"] == pytest.approx(m["window_s"], abs=0.05)
    assert tl["t_s"][-1] >= window["end_s"] + 0.9  # a second of tail after it
    assert tl["channels"] == [{"name": "cpu", "source": "cpu", "provenance": "estimated",
                               "method": tl["channels"][0]["method"]}]
    inside = [w for w, t in zip(tl["watts"]["cpu"], tl["t_s"][1:]) if window["start_s"] + 0.5 < t <= window["end_s"]]
    assert inside and min(inside) > 0  # the engine is busy in every interval of the window
