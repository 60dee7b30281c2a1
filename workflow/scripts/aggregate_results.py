"""observations.csv, pareto.csv and hypervolume.csv from every metrics.json of the run; thermal_warnings.txt (windows
that started much hotter than the run's first one, also written to the log and to Snakemake's console)."""

import sys

console = sys.stderr
sys.stderr = open(snakemake.log[0], "w")

from vllm_mobo.records import load_records
from vllm_mobo.report.tables import hypervolume_by_iteration, observations_table, pareto_table
from vllm_mobo.report.thermal import thermal_summary, thermal_warnings

objectives = snakemake.config["objectives"]
obs = observations_table(snakemake.input.metrics, list(snakemake.config["search_space"]))
obs.to_csv(snakemake.output.observations, index=False)
pareto_table(obs, objectives).to_csv(snakemake.output.pareto, index=False)
hypervolume_by_iteration(obs, objectives).to_csv(snakemake.output.hypervolume, index=False)
print(f"{len(obs)} observations ({(obs['status'] == 'ok').sum()} ok)", file=sys.stderr)

records = load_records(snakemake.input.metrics)
threshold_c = snakemake.config["benchmark"]["thermal_warn_c"]
warnings = thermal_warnings(records, threshold_c)
lines = warnings or thermal_summary(records, threshold_c)
with open(snakemake.output.thermal, "w") as fh:
    fh.write("".join(line + "\n" for line in lines))
for line in lines:
    print(line, file=sys.stderr)
for line in warnings:
    print(f"WARNING {line}", file=console)
