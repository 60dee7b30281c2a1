"""tradeoffs.csv: for each objective pair, whether it trades off on the run's front (vllm_mobo.report.tradeoffs)."""

import sys

sys.stderr = open(snakemake.log[0], "w")

import pandas as pd

from vllm_mobo.report.tradeoffs import tradeoff_table, tradeoff_text

table = tradeoff_table(pd.read_csv(snakemake.input.observations), pd.read_csv(snakemake.input.pareto),
                       snakemake.params.objectives)
table.to_csv(snakemake.output.tradeoffs, index=False)
print("\n".join(tradeoff_text(table)), file=sys.stderr)
