"""Load ``config.yaml`` and validate it against the packaged JSON schema (``workflow/schemas/config.schema.yaml``).

A malformed config raises :class:`ConfigError` with one message per problem, each naming the key (as a dotted
path) and what is allowed, before any job starts.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from .records import CAPACITY_COLUMNS, OBJECTIVES
from .resources import resource

SCHEMA_PATH = resource("config.schema.yaml")
SEARCH_SPACES_PATH = resource("search_spaces.yaml")


class ConfigError(ValueError):
    """The configuration does not follow the schema or is inconsistent."""


def load_schema(path: Path | str = SCHEMA_PATH) -> dict:
    with open(path) as fh:
        return yaml.safe_load(fh)


def _key_path(error: jsonschema.ValidationError) -> str:
    parts = [str(p) if not isinstance(p, int) else f"[{p}]" for p in error.absolute_path]
    text = ".".join(parts).replace(".[", "[")
    return text or "<top level>"


def _describe(error: jsonschema.ValidationError) -> str:
    """One readable line for a schema violation: the key, what is wrong, what is allowed."""
    key = _key_path(error)
    v = error.validator
    schema = error.schema if isinstance(error.schema, dict) else {}
    if v == "enum":
        allowed = ", ".join(repr(x) for x in error.validator_value)
        return f"{key}: {error.instance!r} is not allowed; allowed values: {allowed}"
    if v == "const":
        return f"{key}: {error.instance!r} is not allowed; allowed value: {error.validator_value!r}"
    if v == "additionalProperties":
        extra = sorted(set(error.instance) - set(schema.get("properties", {})))
        allowed = ", ".join(sorted(schema.get("properties", {}))) or "none"
        return f"{key}: unknown key(s) {', '.join(extra)}; allowed keys: {allowed}"
    if v == "required":
        missing = [k for k in error.validator_value if k not in error.instance]
        return f"{key}: missing required key(s) {', '.join(missing)}"
    if v == "type":
        return f"{key}: {error.instance!r} has the wrong type; expected {error.validator_value}"
    if v in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        return f"{key}: {error.instance!r} violates {v} {error.validator_value}"
    if v == "oneOf" and key.endswith("model"):
        return f"{key}: give exactly one of `path` (a model id or directory) or `architecture` (a config.json body)"
    if v == "oneOf" and key.endswith("num_devices"):
        return f"{key}: {error.instance!r} is not allowed; use 'auto' or a positive integer"
    if v == "oneOf" and key.endswith("cooldown_s"):
        return f"{key}: {error.instance!r} is not allowed; use 'auto' or a number of seconds >= 0"
    if v == "pattern":
        return f"{key}: {error.instance!r} does not match {error.validator_value} (letters, digits, '_', '.', '-')"
    if v in ("minItems", "maxItems", "uniqueItems", "minProperties"):
        return f"{key}: {error.message} ({v} {error.validator_value})"
    return f"{key}: {error.message}"


def search_space_presets(path: Path | str = SEARCH_SPACES_PATH) -> dict[str, dict]:
    """The named search spaces (``resources/search_spaces.yaml``): preset name -> {description, space}."""
    with open(path) as fh:
        return yaml.safe_load(fh)


def expand_search_space(value: str | dict, presets: dict[str, dict] | None = None) -> dict[str, list]:
    """A config's ``search_space`` as a plain mapping of engine argument -> allowed values.

    ``value`` is a preset name (``"gpu"``), a mapping with ``preset`` and knobs that replace the preset's values or
    add knobs (``{"preset": "gpu", "tensor_parallel_size": [1]}``), or already a plain mapping (returned as a copy).
    An unknown preset raises :class:`ConfigError` naming the key and the preset names."""
    if isinstance(value, str):
        value, key = {"preset": value}, "search_space"
    else:
        key = "search_space.preset"
    if "preset" not in value:
        return copy.deepcopy(value)
    presets = search_space_presets() if presets is None else presets
    name = value["preset"]
    if name not in presets:
        raise ConfigError(f"invalid configuration:\n  - {key}: {name!r} is not a search-space preset; allowed "
                          f"presets: {', '.join(repr(p) for p in presets)} (or a mapping of engine argument -> values)")
    space = copy.deepcopy(presets[name]["space"])
    space.update(copy.deepcopy({k: v for k, v in value.items() if k != "preset"}))
    return space


def _fill_defaults(schema: dict, instance: Any, root: dict) -> None:
    """Insert schema defaults for missing object properties, recursively (after validation)."""
    if "$ref" in schema:
        ref = schema["$ref"].split("/")[-1]
        schema = root["$defs"][ref]
    if not isinstance(instance, dict):
        return
    for key, sub in schema.get("properties", {}).items():
        if key not in instance and "default" in sub:
            instance[key] = copy.deepcopy(sub["default"])
        if key in instance:
            _fill_defaults(sub, instance[key], root)


def _check_capacity(config: dict, metrics: list[str]) -> list[str]:
    """Online mode's capacity search: it needs SLOs and time inside the timeout; its metrics need it enabled."""
    bench = config["benchmark"]
    if bench["mode"] != "online":
        return []
    online, problems = bench["online"], []
    capacity = online["capacity"]
    needs = sorted(set(metrics) & {m for m in CAPACITY_COLUMNS if m in OBJECTIVES})
    if needs and not capacity["enabled"]:
        problems.append(f"objectives: {', '.join(needs)} need(s) benchmark.online.capacity.enabled: true")
    if capacity["enabled"] and not any(online["slo"].get(k) is not None for k in ("ttft_ms_p99", "tpot_ms_p99")):
        problems.append("benchmark.online.capacity.enabled: true needs benchmark.online.slo with at least one bound "
                        "(ttft_ms_p99, tpot_ms_p99): the capacity is the highest rate at which the SLOs hold")
    if capacity["enabled"] and capacity["max_time_s"] >= bench["timeout_s"]:
        problems.append(f"benchmark.online.capacity.max_time_s: {capacity['max_time_s']:g} is not below "
                        f"benchmark.timeout_s ({bench['timeout_s']:g}), which also covers the server start and the "
                        "target rates")
    return problems


def modelled_slo_metrics(config: dict) -> list[str]:
    """The SLO bounds the optimiser may model as constraint outcomes: online mode with ``slo_as_constraint``, outside
    capacity mode (where the SLOs hold at the capacity by construction)."""
    bench = config["benchmark"]
    online = bench.get("online") or {}
    if bench["mode"] != "online" or not online.get("slo_as_constraint", True) or \
            (online.get("capacity") or {}).get("enabled"):
        return []
    return [k for k in ("ttft_ms_p99", "tpot_ms_p99") if (online.get("slo") or {}).get(k) is not None]


def _check_noise(config: dict) -> list[str]:
    """``optimizer.noise`` as a mapping may name only modelled metrics (the file form is read at planning)."""
    noise = config["optimizer"].get("noise")
    allowed = [o["metric"] for o in config["objectives"]] + modelled_slo_metrics(config)
    extra = sorted(set(noise) - set(allowed)) if isinstance(noise, dict) else []
    return [f"optimizer.noise: {', '.join(extra)} not modelled; allowed metrics: {', '.join(allowed)} (the "
            "objectives and the SLO bounds modelled as constraints)"] if extra else []


def _check_consistency(config: dict) -> list[str]:
    """Checks JSON Schema cannot express: ranges, objective pairs, duplicate metrics."""
    problems = []
    wl = config["workload"]
    for name in ("input_len", "output_len"):
        if wl[name]["min"] > wl[name]["max"]:
            problems.append(f"workload.{name}: min ({wl[name]['min']}) is larger than max ({wl[name]['max']})")
    metrics = [o["metric"] for o in config["objectives"]]
    for m in sorted({m for m in metrics if metrics.count(m) > 1}):
        where = ", ".join(f"objectives[{i}]" for i, x in enumerate(metrics) if x == m)
        problems.append(f"objectives: the same metric twice: {m} ({where}); each metric may be an objective once "
                        "(a repeated objective adds no trade-off)")
    for i, o in enumerate(config["objectives"]):
        expected = OBJECTIVES[o["metric"]].direction
        if o["direction"] != expected:
            better = "smaller" if expected == "minimize" else "larger"
            problems.append(f"objectives[{i}].direction: '{o['direction']}' for {o['metric']}; allowed value: "
                            f"'{expected}' ({o['metric']} is better {better})")
    online_only = {name for name, m in OBJECTIVES.items() if m.online_only}
    if config["benchmark"]["mode"] != "online" and online_only & set(metrics):
        problems.append(f"objectives: {', '.join(sorted(online_only & set(metrics)))} exist only in "
                        "benchmark.mode: online")
    problems += _check_capacity(config, metrics)
    problems += _check_noise(config)
    bench = config["benchmark"]
    if bench["mode"] == "offline" and bench["detokenize"] and "architecture" in wl["model"]:
        problems.append("benchmark.detokenize: true needs a model with a tokenizer; workload.model.architecture "
                        "(dummy weights) has none: set benchmark.detokenize: false or give workload.model.path")
    overlap = set(config["search_space"]) & set(config.get("engine_args", {}))
    if overlap:
        problems.append(f"engine_args: {', '.join(sorted(overlap))} also in search_space; a knob is either searched or fixed")
    mml = wl.get("max_model_len")
    if mml is not None and mml < wl["input_len"]["max"] + wl["output_len"]["max"]:
        problems.append(
            f"workload.max_model_len: {mml} is below the longest request "
            f"(input_len.max + output_len.max = {wl['input_len']['max'] + wl['output_len']['max']})"
        )
    opt = config["optimizer"]
    n_initial = opt["initial_design"] + (1 if opt["include_vllm_default"] else 0)
    if opt["budget"] < n_initial:
        problems.append(
            f"optimizer.budget: {opt['budget']} is smaller than iteration 0 "
            f"(initial_design {opt['initial_design']} + vLLM default {int(opt['include_vllm_default'])})"
        )
    return problems


def validate_config(config: dict, schema: dict | None = None) -> dict:
    """Validate ``config``; return a copy with schema defaults filled in. Raise :class:`ConfigError` otherwise."""
    schema = schema or load_schema()
    if not isinstance(config, dict):
        raise ConfigError("config: expected a mapping of keys to values at the top level")
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (list(map(str, e.absolute_path)), e.validator))
    if errors:
        # For oneOf/anyOf the sub-errors are noise; one line per failing key is enough.
        lines = list(dict.fromkeys(_describe(e) for e in errors))
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(lines))
    config = copy.deepcopy(config)
    _fill_defaults(schema, config, schema)
    config["search_space"] = expand_search_space(config["search_space"])
    problems = _check_consistency(config)
    if problems:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(problems))
    return config


def load_config(path: Path | str) -> dict:
    path = Path(path)
    try:
        with open(path) as fh:
            raw = yaml.safe_load(fh)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    return validate_config(raw)
