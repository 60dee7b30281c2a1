"""One candidate on the real vLLM engine; the worker's output goes to the job's log."""

from vllm_mobo.io import read_json
from vllm_mobo.measure.runner import run_candidate
from vllm_mobo.records import Record

proposal = read_json(snakemake.input.proposal)
candidate = next(c for c in proposal["candidates"] if c["name"] == snakemake.wildcards.candidate)
record = Record.from_dict(run_candidate(snakemake.config, candidate, snakemake.params.iteration,
                                         snakemake.output.metrics, snakemake.log[0],
                                         model_dir=snakemake.params.model_dir))
if record.ok:
    print(f"{record.candidate}: {record.metric('output_tokens_per_s'):.1f} output tok/s, "
          f"{record.metric('joules_per_output_token'):.4g} J/output token (energy {record.energy.provenance})")
else:
    print(f"{record.candidate}: FAILED ({record.failure.kind}): {record.failure.reason}")
