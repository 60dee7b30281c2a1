"""Engine arguments against the installed vLLM's own parsers: validation, flags that parse back to the same
values, ``vllm serve`` command lines, and (slow) a real API server started with the exported flags."""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from vllm_mobo import engine_args as E

pytestmark = pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vLLM is not installed")

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = [ROOT / "config.yaml", *sorted((ROOT / "tests" / "configs").glob("*.yaml"))]

#: Keys the pipeline adds to a candidate's engine arguments (model location, seed, context length).
PIPELINE_ARGS = {"load_format": "dummy", "skip_tokenizer_init": True, "seed": 0, "max_model_len": 1024}


@pytest.fixture(scope="module")
def parser():
    p = E.serve_parser()
    assert p is not None, "vLLM's API-server parser could not be built"
    return p


def actions_by_dest(parser) -> dict:
    out: dict = {}
    for a in parser._actions:
        if a.option_strings:
            out.setdefault(a.dest, a)
    return out


def lines_about(found: list[str], key: str) -> list[str]:
    return [line for line in found if line.startswith(f"search_space.{key}:") or line.startswith(f"engine_args.{key}:")]


# ------------------------------------------------------------------------------------------------ merging


def test_merge_order_and_devices_used():
    merged = E.merge({"block_size": 32, "enforce_eager": True}, {"block_size": 64, "tensor_parallel_size": 2},
                     {"load_format": "dummy", "enforce_eager": False})
    assert merged == {"load_format": "dummy", "enforce_eager": True, "block_size": 64, "tensor_parallel_size": 2}
    assert E.merge({}, {}) == {}
    assert E.devices_used({}) == 1
    assert E.devices_used(merged) == 2
    assert E.devices_used({"tensor_parallel_size": 2, "pipeline_parallel_size": 2}) == 4


def test_module_import_does_not_import_vllm():
    code = "import sys, vllm_mobo.engine_args; assert 'vllm' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# ----------------------------------------------------------------------------------------------- the specs


def test_specs_know_every_engine_args_field():
    import dataclasses

    from vllm.engine.arg_utils import EngineArgs

    specs = E.engine_arg_specs()
    assert {f.name for f in dataclasses.fields(EngineArgs)} <= set(specs)
    for name in ("enable_prefix_caching", "enable_chunked_prefill", "enforce_eager"):
        assert specs[name].kind in ("bool", "store_true", "store_false")
    assert specs["max_num_seqs"].kind == "value" and specs["max_num_seqs"].flag == "--max-num-seqs"
    assert specs["dtype"].choices and "auto" in specs["dtype"].choices
    assert E.vllm_version().startswith("vllm")


# ---------------------------------------------------------------------------------------------- validation


def test_unknown_key_names_the_key_and_the_closest_argument():
    found = E.problems({"block_sze": [16, 32], "max_num_seqs": [64]}, {"enforce_eager": True})
    assert len(found) == 1, found
    assert found[0].startswith("search_space.block_sze: not a vLLM engine argument (")
    assert E.vllm_version() in found[0]
    assert "did you mean 'block_size'" in found[0]
    found = E.problems({}, {"enforce_eagre": True})
    assert len(found) == 1 and found[0].startswith("engine_args.enforce_eagre:") and "'enforce_eager'" in found[0]


def test_value_that_does_not_convert():
    found = E.problems({"max_num_seqs": ["many", 64]}, {})
    assert len(found) == 1, found
    assert "max_num_seqs" in found[0] and "'many'" in found[0]
    found = E.problems({"max_num_seqs": [True, 64], "max_num_batched_tokens": [2.5, 4096]}, {})
    assert len(lines_about(found, "max_num_seqs")) == 1 and "True" in lines_about(found, "max_num_seqs")[0]
    assert len(lines_about(found, "max_num_batched_tokens")) == 1


def test_booleans_must_be_booleans():
    found = E.problems({"enable_chunked_prefill": ["yes", "no"], "enable_prefix_caching": [False, True]},
                       {"enforce_eager": "true"})
    assert len(lines_about(found, "enable_chunked_prefill")) == 2
    assert all("true or false" in line for line in found)
    assert len(lines_about(found, "enforce_eager")) == 1
    assert not lines_about(found, "enable_prefix_caching")


def test_value_outside_vllms_choices_names_the_allowed_values():
    specs = E.engine_arg_specs()
    if specs["block_size"].choices:  # vLLM releases that list block sizes
        found = E.problems({"block_size": [7]}, {})
        assert len(found) == 1 and "block_size" in found[0]
        assert all(str(c) in found[0] for c in specs["block_size"].choices if c is not None)
    found = E.problems({"dtype": ["float99", "half"]}, {})
    assert len(found) == 1, found
    assert found[0].startswith("search_space.dtype: 'float99'")
    assert all(repr(c) in found[0] for c in specs["dtype"].choices if c is not None)


def test_none_allowed_only_where_vllm_allows_it():
    assert E.problems({"max_num_seqs": [None, 64]}, {"enable_chunked_prefill": None}) == []
    assert lines_about(E.problems({"tensor_parallel_size": [None, 2]}, {}), "tensor_parallel_size")


def test_json_arguments():
    assert E.problems({}, {"compilation_config": {"mode": 0}, "hf_overrides": {"max_position_embeddings": 512}}) == []
    assert lines_about(E.problems({}, {"compilation_config": {"no_such_field": 1}}), "compilation_config")


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_search_spaces_are_valid(path):
    config = yaml.safe_load(path.read_text())
    fixed = E.merge(config.get("engine_args") or {}, {}, PIPELINE_ARGS)
    assert E.problems(config["search_space"], fixed) == []
    E.check(config["search_space"], fixed)


def test_check_raises_with_every_problem():
    with pytest.raises(E.EngineArgsError) as err:
        E.check({"block_sze": [16], "max_num_seqs": ["many"]}, {"enforce_eager": "yes"})
    assert isinstance(err.value, ValueError)
    lines = str(err.value).splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("search_space.block_sze:") and lines[2].startswith("engine_args.enforce_eager:")


# --------------------------------------------------------------------------------------------------- flags


def test_boolean_styles_follow_the_parser(parser):
    acts = actions_by_dest(parser)
    for name in ("enable_prefix_caching", "enable_chunked_prefill", "enforce_eager"):
        flag = "--" + name.replace("_", "-")
        action = acts[name]
        if isinstance(action, argparse.BooleanOptionalAction):
            assert E.to_flags({name: True}, parser) == [flag]
            assert E.to_flags({name: False}, parser) == ["--no-" + flag[2:]]
        elif isinstance(action, argparse._StoreTrueAction):
            assert E.to_flags({name: True}, parser) == [flag]
            assert E.to_flags({name: False}, parser) == []
        else:
            pytest.fail(f"unexpected action for {name}: {action!r}")
    store_true = [d for d, a in acts.items() if isinstance(a, argparse._StoreTrueAction) and d in E.engine_arg_specs()]
    assert store_true, "expected at least one store_true engine argument"
    flag = "--" + store_true[0].replace("_", "-")
    assert E.to_flags({store_true[0]: True}, parser) == [flag]
    assert E.to_flags({store_true[0]: False}, parser) == []


def test_store_false_flags():
    p = argparse.ArgumentParser()
    p.add_argument("--disable-thing", dest="disable_thing", action="store_false")
    assert E.to_flags({"disable_thing": False}, p) == ["--disable-thing"]
    assert E.to_flags({"disable_thing": True}, p) == []
    assert p.parse_args(E.to_flags({"disable_thing": False}, p)).disable_thing is False


def test_flags_parse_back_to_the_same_values(parser):
    specs = E.engine_arg_specs()
    acts = actions_by_dest(parser)
    args = {"enable_prefix_caching": False, "enable_chunked_prefill": True, "enforce_eager": True,
            "skip_tokenizer_init": False, "block_size": 64, "max_num_seqs": 8, "max_num_batched_tokens": 2048,
            "tensor_parallel_size": 2, "pipeline_parallel_size": 1, "gpu_memory_utilization": 0.5,
            "dtype": "bfloat16", "load_format": "dummy", "seed": 3, "max_model_len": 1024,
            "hf_overrides": {"max_position_embeddings": 512}, "served_model_name": ["a", "b c"]}
    store_true = next(d for d, a in acts.items() if isinstance(a, argparse._StoreTrueAction) and d in specs)
    args[store_true] = True
    for value_set in (args, {k: (not v if isinstance(v, bool) else v) for k, v in args.items()}):
        flags = E.to_flags(value_set, parser)
        assert E.to_flags(value_set) == flags  # the default parser is the API server's
        ns = parser.parse_args(["--model", "m", *flags])
        for key, value in value_set.items():
            assert getattr(ns, key) == value, (key, value, getattr(ns, key), flags)
    assert E.to_flags({"speculative_config": None, "max_num_seqs": 4}, parser) == ["--max-num-seqs", "4"]


def test_unknown_argument_passes_through(parser):
    assert E.to_flags({"no_such_arg": 3, "no_such_flag": True}, parser) == ["--no-such-arg", "3", "--no-such-flag"]


def test_serve_command_quoting_and_multiline(parser):
    args = {"model": "ignored", "max_num_seqs": 8, "enable_prefix_caching": False,
            "hf_overrides": {"max_position_embeddings": 512}}
    line = E.serve_command("/models/my model", args)
    assert line == ("vllm serve '/models/my model' --max-num-seqs 8 --no-enable-prefix-caching "
                    "--hf-overrides '{\"max_position_embeddings\": 512}'")
    multi = E.serve_command("/models/my model", args, multiline=True)
    assert multi.splitlines() == ["vllm serve '/models/my model' \\", "  --max-num-seqs 8 \\",
                                  "  --no-enable-prefix-caching \\",
                                  "  --hf-overrides '{\"max_position_embeddings\": 512}'"]
    import shlex

    assert shlex.split(multi.replace("\\\n", " ")) == shlex.split(line)


def test_server_argv(parser):
    argv = E.server_argv("/m", {"model": "x", "host": "0.0.0.0", "port": 1, "max_num_seqs": 8}, 8123,
                         python="/usr/bin/python3")
    assert argv[:9] == ["/usr/bin/python3", "-m", "vllm.entrypoints.openai.api_server", "--model", "/m", "--host",
                        "127.0.0.1", "--port", "8123"]
    assert argv[9:11] == ["--max-num-seqs", "8"]
    has_access_log_flag = any("--disable-uvicorn-access-log" in a.option_strings for a in parser._actions)
    assert ("--disable-uvicorn-access-log" in argv) == has_access_log_flag
    assert argv.count("--model") == 1 and argv.count("--port") == 1


# --------------------------------------------------------------------------------------- the real server

TINY_LLAMA = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 128,
              "intermediate_size": 256, "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2,
              "vocab_size": 512, "max_position_embeddings": 1024, "rms_norm_eps": 1.0e-05,
              "torch_dtype": "bfloat16"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


def stop_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # whatever of the group is left (engine core, workers)
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)


def non_default_args(log: str) -> dict:
    """The arguments the server parsed, from its ``non-default args: {...}`` line."""
    m = re.search(r"non-default args: (\{.*\})", log)
    assert m, "no 'non-default args' line in the server log"
    try:
        return ast.literal_eval(m.group(1))
    except (ValueError, SyntaxError):
        return {k: ast.literal_eval(v) for k, v in re.findall(r"'(\w+)': ([^,{}]+)", m.group(1))}


def engine_config_line(log: str) -> dict:
    """``key=value`` fields of the engine's ``... with config: ...`` line."""
    line = next((l for l in log.splitlines() if "with config:" in l), "")
    assert line, "no engine config line in the server log"
    return {k: v for k, v in re.findall(r"\b(\w+)=([^,\s]+)", line)}


@pytest.mark.engine
@pytest.mark.timeout(420)
def test_exported_command_starts_a_server_with_those_arguments(tmp_path):
    model = tmp_path / "tiny-llama"
    model.mkdir()
    (model / "config.json").write_text(json.dumps(TINY_LLAMA))
    # Non-default values (vLLM's defaults: 256/None/True/True on this build).
    given = {"max_num_seqs": 7, "block_size": 64, "enable_prefix_caching": False, "enable_chunked_prefill": False,
             "max_num_batched_tokens": 1024}
    engine_args = E.merge({"enforce_eager": True, "max_model_len": 512}, given,
                          {"load_format": "dummy", "skip_tokenizer_init": True})
    assert E.problems({k: [v] for k, v in given.items()}, engine_args) == []
    port = free_port()
    # The exported `vllm serve` command as the knee export writes it; the `vllm` command is missing on the CPU
    # build, so its words after the model go to the same server module that `vllm serve` starts.
    command = E.serve_command(str(model), engine_args, multiline=True)
    words = shlex.split(command.replace("\\\n", " "))
    assert words[:3] == ["vllm", "serve", str(model)]
    argv = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model), "--port", str(port),
            *words[3:]]
    env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE="1", PYTHONUNBUFFERED="1", VLLM_SERVER_DEV_MODE="1")
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while True:
            assert proc.poll() is None, f"server exited ({proc.returncode}):\n{log_path.read_text()[-4000:]}"
            try:
                if get(f"http://127.0.0.1:{port}/health", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"server not healthy:\n{log_path.read_text()[-4000:]}"
            time.sleep(1)
        # The resolved configuration, from the dev-mode endpoint where this vLLM has it.
        status, body = get(f"http://127.0.0.1:{port}/server_info?config_format=json", timeout=60)
        log = log_path.read_text(errors="replace")
    finally:
        stop_group(proc)

    parsed = non_default_args(log)
    for key, value in given.items():
        assert parsed.get(key) == value, (key, parsed)
    config_line = engine_config_line(log)
    assert config_line["enable_prefix_caching"] == "False"
    assert config_line["enable_chunked_prefill"] == "False"
    print(f"GET /server_info: HTTP {status}")
    if status == 200 and isinstance(json.loads(body).get("vllm_config"), dict):
        cfg = json.loads(body)["vllm_config"]
        assert cfg["scheduler_config"]["max_num_seqs"] == 7
        assert cfg["scheduler_config"]["max_num_batched_tokens"] == 1024
        assert cfg["scheduler_config"]["enable_chunked_prefill"] is False
        assert cfg["cache_config"]["block_size"] == 64
        assert cfg["cache_config"]["enable_prefix_caching"] is False
