"""The optimiser benchmark as a Snakemake job (rule optimizer_benchmark): vllm_mobo.replay.compare does it all."""

import sys

sys.stderr = open(snakemake.log[0], "w")
sys.stdout = sys.stderr

from vllm_mobo.replay.compare import Settings, run_benchmark

p = snakemake.params
run_benchmark(p.tables, Settings(**p.settings), p.out, jobs=max(1, snakemake.threads),
              pdf_path=snakemake.output.pdf, echo=lambda line: print(line, flush=True))
