"""Profile the highlighted configurations under Nsight Systems, or say why not (vllm_mobo.profiling.run).
Never fails the pipeline for a missing nsys/GPU or a failed profile: status.csv records it."""

import sys

log = open(snakemake.log[0], "w")
sys.stderr = log

from pathlib import Path

import pandas as pd

from vllm_mobo.records import load_records
from vllm_mobo.profiling.run import profile_all

inp, out, params = snakemake.input, snakemake.output, snakemake.params
status, breakdown = profile_all(snakemake.config, pd.read_csv(inp.pareto), load_records(inp.metrics),
                                params.device, Path(params.profiles_dir), params.model_dir, log)
Path(out.status).parent.mkdir(parents=True, exist_ok=True)
status.to_csv(out.status, index=False)
breakdown.to_csv(out.breakdown, index=False)
for row in status.itertuples():
    print(f"{row.candidate or row.roles}: {row.status}: {row.reason}", file=log)
