"""Named search spaces (``search_space: gpu`` or ``{preset: gpu, ...}``): expanded while the config is validated, so
every stage sees a plain mapping; an unknown name is one clear error; the shipped GPU configs validate; the ``gpu``
preset holds vLLM's own default region of an H200, as vLLM itself computes it."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import pytest
import yaml

from conftest import REPO, load_test_config
from vllm_mobo.config import ConfigError, expand_search_space, load_config, load_schema, search_space_presets, \
    validate_config
from vllm_mobo.search.space import Platform, SearchSpace

SHIPPED_CONFIGS = sorted((REPO / "benchmarks" / "configs").glob("*.yaml"))
TABLE_CONFIGS = [p for p in SHIPPED_CONFIGS if p.stem.endswith("_table") or "_table_" in p.stem]
GPU_CONFIGS = [p for p in SHIPPED_CONFIGS if p.name.startswith("gpu") and p not in TABLE_CONFIGS]
PRESETS = search_space_presets()


@pytest.fixture
def tiny() -> dict:
    return load_test_config("tiny.yaml")


def test_every_preset_is_described_and_valid_as_a_plain_space(tiny):
    assert {"seed", "gpu"} <= set(PRESETS)
    for name, preset in PRESETS.items():
        assert preset["description"].strip(), name
        cfg = dict(tiny, search_space=copy.deepcopy(preset["space"]))
        assert validate_config(cfg)["search_space"] == preset["space"]


@pytest.mark.parametrize("name", ["seed", "gpu"])
def test_a_preset_name_expands_to_its_space(tiny, name):
    for form in (name, {"preset": name}):
        cfg = validate_config(dict(tiny, search_space=form))
        assert cfg["search_space"] == PRESETS[name]["space"]
        assert list(cfg["search_space"]) == list(PRESETS[name]["space"])  # order: candidate names follow it


def test_the_default_space_is_the_seed_preset_and_the_shipped_default_config_uses_it(tiny):
    del tiny["search_space"]
    seed = PRESETS["seed"]["space"]
    assert validate_config(tiny)["search_space"] == seed
    assert len(SearchSpace(seed)) == 432
    assert load_config(REPO / "config.yaml")["search_space"] == seed


def test_overrides_replace_values_and_add_knobs_after_the_preset(tiny):
    tiny["engine_args"] = {}
    cfg = validate_config(dict(tiny, search_space={"preset": "gpu", "tensor_parallel_size": [1],
                                                    "kv_cache_dtype": ["auto", "fp8"]}))
    space, gpu = cfg["search_space"], PRESETS["gpu"]["space"]
    assert "preset" not in space
    assert space["tensor_parallel_size"] == [1]
    assert {k: v for k, v in space.items() if k not in ("tensor_parallel_size", "kv_cache_dtype")} == \
        {k: v for k, v in gpu.items() if k != "tensor_parallel_size"}
    assert list(space) == [*gpu, "kv_cache_dtype"]
    assert len(SearchSpace(space)) == len(SearchSpace(gpu))  # TP halved, kv_cache_dtype doubled


def test_expansion_is_idempotent_and_leaves_the_input_alone(tiny):
    raw = dict(tiny, search_space={"preset": "gpu", "pipeline_parallel_size": [1]})
    before = copy.deepcopy(raw)
    once = validate_config(raw)
    assert raw == before
    assert validate_config(once)["search_space"] == once["search_space"]
    assert expand_search_space(once["search_space"]) == once["search_space"]


@pytest.mark.parametrize("form, key", [("gpu2", "search_space: 'gpu2'"),
                                       ({"preset": "h200", "max_num_seqs": [64]}, "search_space.preset: 'h200'")])
def test_an_unknown_preset_names_the_key_and_the_presets(tiny, form, key):
    with pytest.raises(ConfigError) as err:
        validate_config(dict(tiny, search_space=form))
    message = str(err.value)
    assert key in message and "not a search-space preset" in message
    assert all(repr(name) in message for name in PRESETS)


def test_preset_overrides_are_checked_like_any_space(tiny):
    with pytest.raises(ConfigError) as err:
        validate_config(dict(tiny, search_space={"preset": "gpu", "max_num_seqs": []}))
    assert "search_space.max_num_seqs" in str(err.value) and "minItems" in str(err.value)
    with pytest.raises(ConfigError) as err:
        validate_config(dict(tiny, search_space=7))
    assert "search_space: 7 has the wrong type" in str(err.value)
    tiny["engine_args"] = {"gpu_memory_utilization": 0.9}
    with pytest.raises(ConfigError) as err:
        validate_config(dict(tiny, search_space="gpu"))
    assert "gpu_memory_utilization also in search_space" in str(err.value)


@pytest.mark.parametrize("path", GPU_CONFIGS, ids=lambda p: p.name)
def test_shipped_gpu_configs_validate_and_fit_their_gpus(path: Path):
    raw = yaml.safe_load(path.read_text())
    cfg = validate_config(raw, load_schema())
    space = SearchSpace(cfg["search_space"])
    gpus = cfg["benchmark"]["num_devices"]
    valid, _ = space.split_valid(Platform("cuda", gpus, cfg["workload"]["max_model_len"]))
    assert valid, path.name
    used = {c.get("tensor_parallel_size", 1) * c.get("pipeline_parallel_size", 1) for c in valid}
    assert max(used) == gpus  # every config can use all the GPUs it is written for
    assert cfg["benchmark"]["min_window_s"] == 20 and cfg["confirm"]["repeats"] == 3
    if cfg["benchmark"]["mode"] == "online":
        assert cfg["benchmark"]["online"]["capacity"]["enabled"]
        assert [o["metric"] for o in cfg["objectives"]] == ["capacity_output_tokens_per_s",
                                                            "joules_per_output_token_at_capacity"]
    gpu = PRESETS["gpu"]["space"]
    assert {k: v for k, v in cfg["search_space"].items() if k not in ("tensor_parallel_size",
                                                                      "pipeline_parallel_size")} == \
        {k: v for k, v in gpu.items() if k not in ("tensor_parallel_size", "pipeline_parallel_size")}


def test_the_example_and_table_configs_are_told_apart():
    assert GPU_CONFIGS and TABLE_CONFIGS
    assert set(GPU_CONFIGS) | set(TABLE_CONFIGS) == set(SHIPPED_CONFIGS)


@pytest.mark.parametrize("path", TABLE_CONFIGS, ids=lambda p: p.name)
def test_shipped_table_configs_validate_and_every_configuration_fits_the_platform(path: Path):
    """A replay table's config (measured by ``measure-table`` or a whole-space pipeline run) validates, and its
    valid configurations use at most the devices it is written for (GPU tables: all of them, some configuration)."""
    cfg = validate_config(yaml.safe_load(path.read_text()), load_schema())
    space = SearchSpace(cfg["search_space"])
    on_gpu = path.name.startswith("gpu")
    devices = cfg["benchmark"]["num_devices"] if on_gpu else 2
    valid, invalid = space.split_valid(Platform("cuda" if on_gpu else "cpu", devices,
                                                cfg["workload"]["max_model_len"]), cfg["engine_args"])
    assert valid, path.name
    used = {c.get("tensor_parallel_size", 1) * c.get("pipeline_parallel_size", 1) for c in valid}
    assert max(used) == (devices if on_gpu else 1)
    if cfg["optimizer"]["strategy"] == "random":  # a whole-space pipeline run: its budget enumerates the space
        assert cfg["optimizer"]["budget"] >= len(valid)


def test_the_gpu_preset_is_accepted_by_the_installed_vllm_parser():
    engine_args = pytest.importorskip("vllm_mobo.engine_args")
    pytest.importorskip("vllm")
    fixed = {"load_format": "dummy", "skip_tokenizer_init": True, "seed": 0, "max_model_len": 4096}
    for name, preset in PRESETS.items():
        assert engine_args.problems(preset["space"], fixed) == [], name


def test_the_gpu_preset_holds_vllms_default_region_on_an_h200(monkeypatch):
    """vLLM's own defaults, as its code resolves them on a 141 GiB H200 (the platform queries answered as an H200
    would; the CPU build computes the rest): every default value is one of the preset's values."""
    pytest.importorskip("vllm")
    from vllm.config import CacheConfig
    from vllm.engine import arg_utils
    from vllm.usage.usage_lib import UsageContext

    platform = arg_utils.current_platform
    monkeypatch.setattr(platform, "get_device_total_memory", lambda *a, **k: 141 * 1024**3, raising=False)
    monkeypatch.setattr(platform, "get_device_name", lambda *a, **k: "NVIDIA H200", raising=False)
    monkeypatch.setattr(platform, "is_cpu", lambda *a, **k: False, raising=False)
    monkeypatch.setattr(platform, "is_tpu", lambda *a, **k: False, raising=False)
    batched, seqs = arg_utils.EngineArgs.get_batch_defaults(world_size=1)
    fields = {f.name: f.default for f in dataclasses.fields(arg_utils.EngineArgs)}
    gpu = PRESETS["gpu"]["space"]
    for usage in (UsageContext.LLM_CLASS, UsageContext.OPENAI_API_SERVER):  # offline and vllm serve
        assert batched[usage] in gpu["max_num_batched_tokens"]
        assert seqs[usage] in gpu["max_num_seqs"]
    assert batched[UsageContext.LLM_CLASS] > max(PRESETS["seed"]["space"]["max_num_batched_tokens"])
    assert seqs[UsageContext.LLM_CLASS] > max(PRESETS["seed"]["space"]["max_num_seqs"])  # why the seed's space misses it
    assert CacheConfig.DEFAULT_BLOCK_SIZE in gpu["block_size"]
    assert fields["gpu_memory_utilization"] in gpu["gpu_memory_utilization"]
    assert fields["performance_mode"] in gpu["performance_mode"]
    for knob in ("enable_chunked_prefill", "enable_prefix_caching"):
        assert set(gpu[knob]) == {False, True}
