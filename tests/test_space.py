"""The search space: enumeration, names, encoding and the validity rules."""

from __future__ import annotations

import numpy as np

from conftest import REPO
from vllm_mobo.config import load_config
from vllm_mobo.records import candidate_name
from vllm_mobo.search.space import Platform, SearchSpace, invalid_reason


def default_space() -> SearchSpace:
    return SearchSpace(load_config(REPO / "config.yaml")["search_space"])


def test_default_space_has_432_uniquely_named_points():
    space = default_space()
    assert len(space) == 432
    assert len(set(space.names())) == 432
    assert space.names()[0] == "bs32-seqs64-tp1-pp1-chunk0-prefix0-mbt4096"


def test_encoding_is_in_the_unit_cube_and_log_scaled():
    space = default_space()
    X = space.encode(space.configs())
    assert X.shape == (432, 7)
    assert X.min() == 0.0 and X.max() == 1.0
    # block_size 32, 64, 128 -> 0, 0.5, 1 on a log2 scale
    bs = space.encode([{"block_size": v} for v in (32, 64, 128)])[:, 0]
    assert np.allclose(bs, [0.0, 0.5, 1.0])
    # max_num_batched_tokens 4096, 8192, 12288: log2 scale is not linear
    mbt = space.encode([{"max_num_batched_tokens": v} for v in (4096, 8192, 12288)])[:, -1]
    assert np.isclose(mbt[1], 1 / np.log2(3))


def test_validity_rules_and_reasons():
    gpu = Platform(device="cuda", num_devices=1, max_model_len=8192)
    cfg = {"tensor_parallel_size": 2, "pipeline_parallel_size": 1}
    assert "exceeds the 1 GPU(s)" in invalid_reason(cfg, gpu)
    assert invalid_reason(cfg, Platform("cuda", 2, 8192)) is None
    no_chunk = {"max_num_batched_tokens": 4096, "enable_chunked_prefill": False}
    assert "max_model_len 8192 with chunked prefill off" in invalid_reason(no_chunk, gpu)
    assert invalid_reason({**no_chunk, "enable_chunked_prefill": True}, gpu) is None
    assert invalid_reason({**no_chunk, "max_num_batched_tokens": 8192}, gpu) is None
    assert "max_num_seqs 256" in invalid_reason({"max_num_batched_tokens": 128, "max_num_seqs": 256}, gpu)
    cpu = Platform(device="cpu", num_devices=2, max_model_len=2048)
    assert "multiple of 32" in invalid_reason({"block_size": 16}, cpu)
    assert invalid_reason({"block_size": 16}, gpu) is None
    assert "enforce_eager" in invalid_reason({"pipeline_parallel_size": 2}, cpu, {"enforce_eager": True})
    assert invalid_reason({"pipeline_parallel_size": 2}, cpu) is None


def test_default_space_on_one_gpu_skips_exactly_the_rule_violations():
    space = default_space()
    valid, skipped = space.split_valid(Platform("cuda", 1, 8192))
    # TP=PP=1 only (108 points), minus mbt 4096 without chunked prefill (3 x 3 x 2 = 18)
    assert len(valid) == 108 - 18
    assert len(valid) + len(skipped) == 432
    assert all(reason for _, reason in skipped)


def test_candidate_name_of_vllm_default():
    assert candidate_name({}) == "vllm-default"
    assert candidate_name({"gpu_memory_utilization": 0.85, "kv_cache_dtype": "fp8"}) == "gmu0.85-kvfp8"
