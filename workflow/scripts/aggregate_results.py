"""observations.csv, pareto.csv and hypervolume.csv from every metrics.json of the run."""

import sys

sys.stderr = open(snakemake.log[0], "w")

from vllm_mobo.report.tables import hypervolume_by_iteration, observations_table, pareto_table

objectives = snakemake.config["objectives"]
obs = observations_table(snakemake.input.metrics, list(snakemake.config["search_space"]))
obs.to_csv(snakemake.output.observations, index=False)
pareto_table(obs, objectives).to_csv(snakemake.output.pareto, index=False)
hypervolume_by_iteration(obs, objectives).to_csv(snakemake.output.hypervolume, index=False)
print(f"{len(obs)} observations ({(obs['status'] == 'ok').sum()} ok)", file=sys.stderr)
