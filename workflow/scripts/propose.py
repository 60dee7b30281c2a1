"""Checkpoint script: the next iteration's candidates from every result so far (vllm_mobo.search.plan)."""

import sys

sys.stderr = open(snakemake.log[0], "w")

from vllm_mobo.io import read_json, write_json_atomic
from vllm_mobo.records import load_records
from vllm_mobo.search.plan import plan_iteration, platform_for

iteration = snakemake.params.iteration
records = load_records(snakemake.input.metrics)
history = [read_json(p) for p in snakemake.input.proposals]
proposal = plan_iteration(snakemake.config, iteration, records, history, platform_for(snakemake.config))
write_json_atomic(snakemake.output.proposal, proposal)
names = ", ".join(c["name"] for c in proposal["candidates"]) or "none"
print(f"iteration {iteration}: {proposal['reason']}; stop={proposal['stop']}; candidates: {names}", file=sys.stderr)
