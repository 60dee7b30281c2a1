"""The confirmation stage's measurements (vllm_mobo.confirm): which configurations, then every repeat."""

import sys

sys.stderr = open(snakemake.log[0], "a")

import pandas as pd

from vllm_mobo.confirm.measure import run_confirmation
from vllm_mobo.confirm.plan import select
from vllm_mobo.confirm.summary import measurements_table
from vllm_mobo.io import write_json_atomic
from vllm_mobo.records import load_records


def log(line: str) -> None:
    for stream in (sys.stdout, sys.stderr):  # the terminal shows progress, the log keeps it
        print(line, file=stream, flush=True)


config, params = snakemake.config, snakemake.params
confirm = config["confirm"]
configs = select(pd.read_csv(snakemake.input.pareto), load_records(snakemake.input.metrics), config["objectives"],
                 confirm["max_configs"], confirm["include_vllm_default"])
write_json_atomic(snakemake.output.plan, {"repeats": confirm["repeats"], "configs": configs})
log(f"[confirm] {len(configs)} configurations x {confirm['repeats']} repeats: "
    + ", ".join(c["name"] for c in configs))
paths = run_confirmation(config, configs, confirm["repeats"], params.confirm_dir, params.log_dir,
                         model_dir=params.model_dir, log=log)
measurements_table(load_records(paths), configs, params.space_keys).to_csv(snakemake.output.measurements, index=False)
